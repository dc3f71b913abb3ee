//! One POST of a payload to a webhook, and what its outcome means for the outbox.

use std::io::Read;
use std::time::Duration;

use jiff::Timestamp;

use super::{kind_name, sign, signature_message};
use crate::config::schema::WebhookKind;

/// A delivery that did not succeed, in terms the outbox acts on. The message never
/// contains the webhook's URL (a secret): it names the webhook by its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// True: try again later (429, 408, 5xx, no connection, timeout). False: the
    /// request itself is refused (a wrong or revoked URL, a rejected payload); retrying
    /// cannot help, dead-letter it.
    pub retryable: bool,
    pub message: String,
    /// The receiver's `Retry-After` (in seconds), when it sent one with a retryable status:
    /// the outbox should wait at least this long.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Delivery {}

/// The longest `Retry-After` taken into account; the outbox's own backoff caps it anyway.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 60 * 60);
/// How much of an error answer is read, and how much of it is quoted in the message.
const ANSWER_READ: u64 = 4096;
const ANSWER_QUOTED: usize = 200;

/// POSTs `body` (a [`payload`](super::payload) as JSON) to the webhook at `url`, waiting at
/// most `timeout` in all (connecting, sending, the answer). Blocking: run it on a worker
/// thread or in `spawn_blocking`. Redirects are not followed.
///
/// Every request has `Content-Type: application/json`. A generic webhook's request also
/// has `X-Livechat-Event` (the payload's `event`), `X-Livechat-Timestamp` (unix seconds
/// at sending, fresh on each try) and, when `secret` is given and not empty,
/// `X-Livechat-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
/// The other kinds have no signing scheme; `secret` is ignored for them.
///
/// `Ok(status)` on any 2xx. Teams' legacy connector answers its rate limiting with
/// `200` and a "delivery failed … 429" text: that is a retryable failure here.
pub fn deliver(
    url: &str,
    kind: WebhookKind,
    secret: Option<&str>,
    body: &[u8],
    timeout: Duration,
) -> Result<u16, Delivery> {
    let name = kind_name(kind);
    if !super::is_enabled(url) {
        return Err(refused(
            None,
            format!("the {name} webhook has no URL: it is switched off"),
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("livechat/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent
        .post(url.trim())
        .header("Content-Type", "application/json");
    if kind == WebhookKind::Generic {
        let timestamp = Timestamp::now().as_second();
        if let Some(event) = event_of(body) {
            request = request.header("X-Livechat-Event", event);
        }
        request = request.header("X-Livechat-Timestamp", timestamp.to_string());
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            let signature = sign(secret.as_bytes(), &signature_message(timestamp, body));
            request = request.header("X-Livechat-Signature", signature);
        }
    }

    let mut response = match request.send(body) {
        Ok(response) => response,
        Err(e) => return Err(transport_failure(name, url, timeout, e)),
    };
    let status = response.status();
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
    let mut answer = Vec::new();
    let read_answer = !status.is_success() || kind == WebhookKind::Teams;
    if read_answer {
        // A broken or slow answer body changes nothing about the outcome.
        let _ = response
            .body_mut()
            .as_reader()
            .take(ANSWER_READ)
            .read_to_end(&mut answer);
    }
    let quoted = quote(&answer, url);

    match code {
        200..=299 if kind == WebhookKind::Teams && teams_throttled(&answer) => Err(Delivery {
            status: Some(code),
            retryable: true,
            message: format!(
                "the {name} webhook answered {code} but did not post: it is rate limited{quoted}"
            ),
            retry_after,
        }),
        200..=299 => Ok(code),
        408 | 429 | 500..=599 => Err(Delivery {
            status: Some(code),
            retryable: true,
            message: format!("the {name} webhook answered {code} {reason}{quoted}"),
            retry_after,
        }),
        300..=399 => Err(refused(
            Some(code),
            format!(
                "the {name} webhook answered {code} {reason}: a redirect, which is not \
                 followed; check its URL{quoted}"
            ),
        )),
        _ => Err(refused(
            Some(code),
            format!(
                "the {name} webhook answered {code} {reason}: the request is refused; \
                 check its URL and settings{quoted}"
            ),
        )),
    }
}

fn refused(status: Option<u16>, message: String) -> Delivery {
    Delivery {
        status,
        retryable: false,
        message,
        retry_after: None,
    }
}

/// The `event` of a generic payload, for the `X-Livechat-Event` header.
fn event_of(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let event = value.get("event")?.as_str()?;
    event
        .bytes()
        .all(|b| b.is_ascii_graphic())
        .then(|| event.to_string())
}

/// Teams' legacy connector reports throttling as a 200 whose text says the delivery failed.
fn teams_throttled(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer).to_ascii_lowercase();
    text.contains("delivery failed") || text.contains("http error 429")
}

/// `": <the start of the answer>"` on one line, with anything of the URL in it (a
/// receiver may echo its path or query, which hold the secret) redacted; empty when there
/// is no answer text.
fn quote(answer: &[u8], url: &str) -> String {
    let text = String::from_utf8_lossy(answer);
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return String::new();
    }
    text = redact(&text, url);
    if text.chars().count() > ANSWER_QUOTED {
        text = text.chars().take(ANSWER_QUOTED - 1).collect::<String>() + "…";
    }
    format!(": {text}")
}

/// `text` with the URL and every long piece of it (path segments, query values: where
/// webhook tokens live) replaced by `[redacted]`.
fn redact(text: &str, url: &str) -> String {
    let url = url.trim();
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (host, rest) = after_scheme
        .split_once(['/', '?'])
        .unwrap_or((after_scheme, ""));
    let mut secrets: Vec<&str> = vec![url, rest];
    secrets.extend(
        rest.split(['/', '?', '&', '=', '#'])
            .filter(|piece| piece.len() >= 8 && *piece != host),
    );
    secrets.retain(|s| s.len() >= 8);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for secret in secrets {
        out = out.replace(secret, "[redacted]");
    }
    out
}

/// What went wrong before any answer, in words that never contain the URL.
fn transport_failure(name: &str, url: &str, timeout: Duration, e: ureq::Error) -> Delivery {
    use ureq::Error as E;
    let (retryable, what) = match e {
        E::Timeout(_) => (
            true,
            format!(
                "did not answer within {}",
                humantime::format_duration(timeout)
            ),
        ),
        E::HostNotFound => (
            true,
            "could not be reached: its host name did not resolve".into(),
        ),
        E::ConnectionFailed => (true, "could not be reached: the connection failed".into()),
        E::Io(io) => (true, format!("could not be reached: {}", io.kind())),
        E::Tls(what) => (true, format!("could not be reached: TLS failed ({what})")),
        E::BadUri(_) | E::Http(_) | E::RequireHttpsOnly(_) => (
            false,
            "has a URL that is not a valid http(s) URL: check it".into(),
        ),
        E::InvalidProxyUrl => (
            false,
            "cannot be sent: the proxy setting is not valid".into(),
        ),
        E::TooManyRedirects | E::RedirectFailed => (
            false,
            "answered with a redirect, which is not followed; check its URL".into(),
        ),
        other => (true, format!("failed: {}", redact(&other.to_string(), url))),
    };
    Delivery {
        status: None,
        retryable,
        message: format!("the {name} webhook {what}"),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.slack.com/services/T0001/B0002/Xsecrettoken123456";

    #[test]
    fn redact_removes_the_url_and_its_long_pieces() {
        let text = format!("no service at {URL} or /services/T0001/B0002/Xsecrettoken123456");
        let out = redact(&text, URL);
        assert!(!out.contains("Xsecrettoken123456"), "{out}");
        assert!(!out.contains("services/T0001"), "{out}");
        let google = "https://chat.googleapis.com/v1/spaces/AAAAxyz/messages\
                      ?key=AIzaSyDdI0hCZtE6&token=abcDEF123456789";
        let out = redact("bad token=abcDEF123456789 key AIzaSyDdI0hCZtE6", google);
        assert_eq!(out, "bad token=[redacted] key [redacted]");
        assert_eq!(redact("plain words", URL), "plain words");
    }

    #[test]
    fn quote_is_one_short_line() {
        assert_eq!(quote(b"", URL), "");
        assert_eq!(quote(b"  no_service\n\n", URL), ": no_service");
        let long = "e".repeat(1000);
        let q = quote(long.as_bytes(), URL);
        assert_eq!(q.chars().count(), 2 + ANSWER_QUOTED);
        assert!(q.ends_with('…'));
    }

    #[test]
    fn the_event_header_comes_from_the_body() {
        assert_eq!(
            event_of(br#"{"event":"form.submitted","x":1}"#).as_deref(),
            Some("form.submitted")
        );
        assert_eq!(event_of(b"not json"), None);
        assert_eq!(event_of(br#"{"event":"bad\nvalue"}"#), None);
    }

    #[test]
    fn teams_throttling_inside_a_200_is_recognised() {
        assert!(teams_throttled(
            b"Webhook message delivery failed with error: \
              Microsoft Teams endpoint returned HTTP error 429"
        ));
        assert!(!teams_throttled(b"1"));
    }

    #[test]
    fn an_empty_url_is_refused_without_sending() {
        let err =
            deliver(" ", WebhookKind::Slack, None, b"{}", Duration::from_secs(1)).unwrap_err();
        assert!(!err.retryable);
        assert_eq!(err.status, None);
        assert_eq!(
            err.message,
            "the Slack webhook has no URL: it is switched off"
        );
    }

    #[test]
    fn a_malformed_url_is_refused_and_not_quoted() {
        let url = "hooks.slack.com/services/T0001/B0002/Xsecrettoken123456";
        let err =
            deliver(url, WebhookKind::Slack, None, b"{}", Duration::from_secs(1)).unwrap_err();
        assert!(!err.retryable, "{err:?}");
        assert!(!err.message.contains("Xsecrettoken"), "{}", err.message);
    }
}
