//! Visitors online: the widget's page views (visitor side), the list agents see and their
//! invitations (agent side). The rules are the engine's (`engine::live_visitors`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::agent::agent_ref;
use super::client::ClientAddr;
use super::error::{ApiJson, AppError};
use super::origin::embedded_bot;
use super::visitor::{MAX_URL, country, widget_json};
use crate::auth::AuthAgent;
use crate::engine::{EngineError, PageView};

/// Longest page title kept, in characters.
const MAX_TITLE: usize = 300;
/// Longest invitation, in characters.
const MAX_INVITE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageViewRequest {
    bot: String,
    url: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    referrer: Option<String>,
    #[serde(default)]
    language: Option<String>,
}

/// `POST /api/v1/visitor/pageviews`: the widget reports the page it is on. The visitor's
/// token (`Authorization: Bearer`), when it names a visitor of this bot, is kept; else a
/// new visitor and token are made (counted like new sessions). No conversation starts.
pub async fn page_view(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PageViewRequest>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let bundle = state.live.load().bundle.clone();
    let bot = embedded_bot(&bundle, &headers, &req.bot, &state.settings.public_url)?;
    let url = req.url.trim();
    if url.is_empty()
        || url.len() > MAX_URL
        || !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(AppError::bad_request(
            "invalid_input",
            format!("url must be an http(s) address of at most {MAX_URL} bytes"),
        ));
    }
    if req.referrer.as_deref().is_some_and(|r| r.len() > MAX_URL) {
        return Err(AppError::bad_request(
            "invalid_input",
            format!("referrer must be at most {MAX_URL} bytes"),
        ));
    }
    let title = req
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if title.is_some_and(|t| t.chars().count() > MAX_TITLE) {
        return Err(AppError::bad_request(
            "invalid_input",
            format!("title must be at most {MAX_TITLE} characters"),
        ));
    }
    if let Some(ip) = client.ip
        && !state.limits.allow_pageview(ip)
    {
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_pageviews",
            "too many page views from this address; try again in a minute",
        ));
    }
    // What the visitor asked for: the widget's, else the browser's first language.
    let language = super::visitor::requested_language(req.language.clone(), &headers);
    let shown = crate::chat::conversation::pick_language(bot, language.as_deref());
    let viewed = state
        .engine
        .page_view(PageView {
            bot: req.bot.clone(),
            token: crate::auth::bearer(&headers).map(str::to_string),
            url: url.to_string(),
            title: title.map(str::to_string),
            referrer: req.referrer.filter(|r| !r.trim().is_empty()),
            language,
            country: country(&state, client, &headers),
            allow_new: {
                let limits = state.limits.clone();
                Box::new(move || client.ip.is_none_or(|ip| limits.allow_session(ip)))
            },
        })
        .await?;
    let status = if viewed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    // Where a browsing visitor's socket starts: nothing before now is theirs to hear again
    // (a returning visitor's old conversations would otherwise replay at every page).
    let last_seq = crate::engine::queries::last_seq(state.store()).await?;
    Ok((
        status,
        Json(json!({
            "token": viewed.token,
            "visitor_id": viewed.visitor_id,
            "conversation_id": viewed.conversation_id,
            "last_seq": last_seq,
            "invite": viewed.invite,
            "widget": widget_json(&req.bot, bot, &shown),
        })),
    ))
}

/// `GET /api/v1/visitors`: visitors online on the bots the agent serves.
pub async fn list(State(state): State<AppState>, agent: AuthAgent) -> Json<Value> {
    let visitors = state.engine.visitors_online(&agent_ref(&agent));
    Json(json!({ "visitors": visitors }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    text: String,
}

/// `POST /api/v1/visitors/{id}/invite`: the widget opens with the agent's words; the
/// visitor's reply starts a chat assigned to that agent.
pub async fn invite(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<Json<Value>, AppError> {
    let text = req.text.trim();
    if text.is_empty() || text.chars().count() > MAX_INVITE {
        return Err(AppError::bad_request(
            "invalid_input",
            format!("text must be 1 to {MAX_INVITE} characters"),
        ));
    }
    match state
        .engine
        .invite_visitor(&agent_ref(&agent), &id, text.to_string())
        .await
    {
        Ok(()) => Ok(Json(json!({ "visitor_id": id, "invited": true }))),
        Err(EngineError::NotFound) => Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such visitor online",
        )),
        Err(e) => Err(e.into()),
    }
}
