//! The first pages a newcomer meets: `/` says what this server is and links to the console
//! and to each bot's pages; `/demo/{bot}` is a stand-in for a customer's site with the
//! widget embedded as theirs would embed it; and the icon browsers ask every page for.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::AppError;
use super::page::page;
use crate::config::Bot;

const FAVICON_SVG: &str = include_str!("../../assets/favicon.svg");

/// Whether a visitor of `bot` can reach a person at any hour: it has a Live Chat action
/// and none of its actions keeps opening hours.
fn always_open(bot: &Bot) -> bool {
    !bot.live_chat.is_empty() && bot.live_chat.values().all(|a| a.hours.is_none())
}

fn public_url(state: &AppState) -> String {
    state.settings.public_url.trim_end_matches('/').to_string()
}

/// `GET /`: what this server is, where the console is, and every bot's pages.
pub async fn landing(State(state): State<AppState>) -> Response {
    let live = state.live.load_full();
    // While nobody of the roster can sign in, the page points at the printed setup link.
    let with_password = match state.store().with_password().await {
        Ok(emails) => emails,
        Err(e) => return AppError::from(e).into_response(),
    };
    let first_run = !live
        .bundle
        .roster
        .agents
        .iter()
        .any(|a| with_password.contains(&crate::auth::email_key(a.email.as_str())));
    let bots: Vec<Value> = live
        .bundle
        .bots
        .iter()
        .map(|(id, bot)| {
            json!({
                "id": id,
                "name": bot.header.name.get_ref(),
                "color": bot.header.widget.color.0,
                "live_chat": !bot.live_chat.is_empty(),
                "always_open": always_open(bot),
                "contact": !bot.offline_form.is_empty(),
            })
        })
        .collect();
    // The demo shows a bot a person can answer now whatever the hour, if there is one.
    let demo = live
        .bundle
        .bots
        .iter()
        .find(|(_, bot)| always_open(bot))
        .or_else(|| live.bundle.bots.iter().next())
        .map(|(id, bot)| json!({ "id": id, "name": bot.header.name.get_ref() }));
    page(
        &state,
        StatusCode::OK,
        "pages/landing.html",
        json!({
            "bots": bots,
            "demo": demo,
            "first_run": first_run,
            "revision": live.revision.as_ref().map(|r| r.number),
            "public_url": public_url(&state),
        }),
    )
}

/// `GET /demo/{bot}`: a plain page that embeds the bot's widget with the one script line a
/// customer's site would carry.
pub async fn demo(State(state): State<AppState>, Path(bot_id): Path<String>) -> Response {
    let bundle = state.live.load().bundle.clone();
    let Some(bot) = bundle.bots.get(&bot_id) else {
        return AppError::unknown_bot(&bot_id).into_response();
    };
    page(
        &state,
        StatusCode::OK,
        "pages/demo.html",
        json!({
            "bot": bot_id,
            "bot_name": bot.header.name.get_ref(),
            "public_url": public_url(&state),
        }),
    )
}

/// `GET /favicon.svg`, and `/favicon.ico` for browsers that ask for that name anyway (they
/// read the content type, not the name).
pub async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        FAVICON_SVG,
    )
        .into_response()
}
