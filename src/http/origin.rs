//! Which browser origins may call: the server's own pages always, other sites as a bot's
//! `allowed_origins` says.

use axum::http::{HeaderMap, StatusCode, header};

use super::error::AppError;

fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// `scheme://host[:port]` of a URL, without path or trailing slash.
fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

/// Whether an `Origin` the browser sent is this server's own: the host the request was sent
/// to (a proxy that keeps `Host` keeps this true), or the configured `public_url`.
fn is_own(origin: &str, headers: &HeaderMap, public_url: &str) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let by_host = origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest.eq_ignore_ascii_case(host));
    by_host || origin_of(public_url).is_some_and(|o| o.eq_ignore_ascii_case(origin))
}

/// Whether the request comes from this server's own pages, or from no browser page at all
/// (no `Origin`: curl, a server, a same-origin navigation).
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    origin(headers).is_none_or(|o| is_own(o, headers, public_url))
}

/// The bot `bot_id` of the live bundle, for a visitor's request from a page that may
/// embed it: `404 unknown_bot`, or `403 origin_not_allowed` from another site.
pub fn embedded_bot<'b>(
    bundle: &'b crate::config::Bundle,
    headers: &HeaderMap,
    bot_id: &str,
    public_url: &str,
) -> Result<&'b crate::config::Bot, AppError> {
    let bot = bundle
        .bots
        .get(bot_id)
        .ok_or_else(|| AppError::unknown_bot(bot_id))?;
    check_bot_origin(headers, bot_id, bot, public_url)?;
    Ok(bot)
}

/// The widget may only be embedded on the bot's `allowed_origins` (when it has any); the
/// bot's own pages on this server (`/chat/{bot}`, the landing page) always may.
pub fn check_bot_origin(
    headers: &HeaderMap,
    bot_id: &str,
    bot: &crate::config::Bot,
    public_url: &str,
) -> Result<(), AppError> {
    let allowed = &bot.header.allowed_origins;
    if allowed.is_empty() || allowed.iter().any(|o| o.get_ref() == "*") {
        return Ok(());
    }
    match origin(headers) {
        None => Ok(()),
        Some(o) if is_own(o, headers, public_url) => Ok(()),
        Some(o) if allowed.iter().any(|a| a.get_ref().eq_ignore_ascii_case(o)) => Ok(()),
        Some(o) => {
            let err = AppError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!("this bot may not be embedded on {o}"),
            );
            // The contact page is on our own origin, so it works wherever the widget may not.
            Err(match contact_path(bot_id, bot) {
                Some(url) => err.with_details(serde_json::json!({ "contact_url": url })),
                None => err,
            })
        }
    }
}

/// The bot's no-JavaScript contact page (a path on this server), when it has an offline
/// form.
fn contact_path(bot_id: &str, bot: &crate::config::Bot) -> Option<String> {
    (!bot.offline_form.is_empty()).then(|| format!("/bots/{bot_id}/contact"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn own_pages_by_host_or_public_url() {
        let public = "https://chat.acme.example/";
        assert!(same_origin(&headers(None, "x"), public));
        assert!(same_origin(
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            public
        ));
        // Behind a proxy that rewrote Host, public_url still names the site.
        assert!(same_origin(
            &headers(Some("https://chat.acme.example"), "127.0.0.1:8080"),
            public
        ));
        assert!(!same_origin(
            &headers(Some("https://evil.example"), "127.0.0.1:8080"),
            public
        ));
        assert!(!same_origin(
            &headers(Some("http://127.0.0.1:8080.evil.example"), "127.0.0.1:8080"),
            public
        ));
    }

    #[test]
    fn origin_of_cuts_the_path() {
        assert_eq!(
            origin_of("https://a.example/x/y"),
            Some("https://a.example")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin_of("nonsense"), None);
    }
}
