//! The browser side, embedded in the binary: the widget script visitors' pages load, the
//! full-page chat, and the agent console. Plain JavaScript, no build step.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::AppError;

const WIDGET_JS: &str = include_str!("../../assets/widget.js");
const WIDGET_CSS: &str = include_str!("../../assets/widget.css");
const CONSOLE_JS: &str = include_str!("../../assets/console.js");
const CONSOLE_CSS: &str = include_str!("../../assets/console.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Short: a new release is picked up within minutes without a cache-busting URL.
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

pub async fn widget_js() -> Response {
    asset("text/javascript; charset=utf-8", WIDGET_JS)
}

pub async fn widget_css() -> Response {
    asset("text/css; charset=utf-8", WIDGET_CSS)
}

pub async fn console_js() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

pub async fn console_css() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

/// Pages of our own: no framing by other sites, no inline script.
fn page(state: &AppState, name: &str, ctx: serde_json::Value) -> Response {
    match state.engine.outbound().templates.render(name, ctx) {
        Ok(html) => (
            [
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::REFERRER_POLICY, "same-origin"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; frame-ancestors 'none'",
                ),
            ],
            Html(html),
        )
            .into_response(),
        Err(e) => AppError::internal(format!("page {name}: {e}")).into_response(),
    }
}

/// `GET /chat/{bot}`: the chat as a page of its own (a link to share, or a fallback).
pub async fn chat_page(State(state): State<AppState>, Path(bot_id): Path<String>) -> Response {
    let bundle = state.live.load().bundle.clone();
    let Some(bot) = bundle.bots.get(&bot_id) else {
        return AppError::new(
            StatusCode::NOT_FOUND,
            "unknown_bot",
            format!("there is no bot `{bot_id}`"),
        )
        .into_response();
    };
    page(
        &state,
        "pages/chat.html",
        json!({
            "lang": crate::chat::flow::default_language(bot),
            "color": bot.header.widget.color.0,
            "bot": bot_id,
            "bot_name": bot.header.name.get_ref(),
        }),
    )
}

/// `GET /console`: the agent console.
pub async fn console(State(state): State<AppState>) -> Response {
    page(&state, "pages/console.html", json!({}))
}

#[cfg(test)]
mod tests {
    use super::WIDGET_JS;

    /// The widget's built-in texts: one object per language, a text per name. A language
    /// missing a name would show English there; one with a name of its own, nothing.
    #[test]
    fn every_widget_language_has_every_text() {
        let table = &WIDGET_JS[WIDGET_JS.find("const STR = {").unwrap()..];
        let table = &table[..table.find("\n  };").unwrap()];
        // (language, its names): a language starts on a line `    xx: {`, each text is a
        // line `      name: "…",`.
        let mut languages: Vec<(String, Vec<String>)> = Vec::new();
        for line in table.lines().skip(1) {
            if let Some(code) = line
                .strip_prefix("    ")
                .and_then(|l| l.strip_suffix(": {"))
            {
                languages.push((code.to_string(), Vec::new()));
            } else if let Some((name, _)) = line
                .strip_prefix("      ")
                .and_then(|l| l.split_once(": \""))
            {
                languages.last_mut().unwrap().1.push(name.to_string());
            }
        }
        let english = languages[0].1.clone();
        assert!(english.len() >= 28, "{english:?}");
        for (code, names) in &languages {
            assert_eq!(names, &english, "the widget's `{code}` texts");
        }
        let codes: Vec<&str> = languages.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(codes, ["en", "de", "es", "fr", "it", "nl", "pt"]);
    }
}
