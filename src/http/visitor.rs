//! The visitor API: sessions, messages, actions, history. Authorised by the visitor token
//! (`Authorization: Bearer <token>`), which names one visitor of one bot.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::client::ClientAddr;
use super::error::{ApiJson, ApiQuery, AppError};
use super::origin::embedded_bot;
use crate::chat::conversation::Command;
use crate::chat::flow::Pick;
use crate::chat::text::render_text;
use crate::engine::{StartSession, VisitorRef, queries};

/// The visitor a request's bearer token belongs to.
pub struct AuthVisitor(pub VisitorRef);

impl FromRequestParts<AppState> for AuthVisitor {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = crate::auth::bearer(&parts.headers).ok_or_else(|| {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the visitor token as `Authorization: Bearer <token>`",
            )
        })?;
        let visitor = state.engine.visitor(token).await?;
        Ok(AuthVisitor(visitor))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    bot: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    page_url: Option<String>,
    #[serde(default)]
    referrer: Option<String>,
    #[serde(default)]
    language: Option<String>,
}

/// Longest page URL or referrer kept.
pub(super) const MAX_URL: usize = 2048;

pub async fn start_session(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SessionRequest>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let bundle = state.live.load().bundle.clone();
    let bot = embedded_bot(&bundle, &headers, &req.bot, &state.settings.public_url)?;
    if req.page_url.as_deref().is_some_and(|u| u.len() > MAX_URL)
        || req.referrer.as_deref().is_some_and(|u| u.len() > MAX_URL)
    {
        return Err(AppError::bad_request(
            "invalid_input",
            "page_url or referrer is too long",
        ));
    }
    let language = req
        .language
        .clone()
        .or_else(|| accept_language(&headers, bot))
        .filter(|l| l.len() <= 35);
    // Routing looks at what the visitor asked for first, even in a language the bot lacks.
    let requested_language = requested_language(req.language.clone(), &headers);
    let started = state
        .engine
        .start_session(StartSession {
            bot: req.bot.clone(),
            token: req.token.clone(),
            page_url: req.page_url.clone(),
            language,
            requested_language,
            country: country(&state, client, &headers),
            ip: None,
            allow_new: {
                let limits = state.limits.clone();
                Box::new(move || client.ip.is_none_or(|ip| limits.allow_session(ip)))
            },
        })
        .await?;
    let status = if started.resumed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({
            "token": started.token,
            "visitor_id": started.visitor_id,
            "conversation_id": started.conversation_id,
            "resumed": started.resumed,
            "widget": widget_json(&req.bot, bot, &started.language),
            "events": started.events,
        })),
    ))
}

/// How the widget looks, in `lang`: what its launcher and panel need.
pub(super) fn widget_json(bot_id: &str, bot: &crate::config::Bot, lang: &str) -> Value {
    let w = &bot.header.widget;
    let ctx = json!({ "bot": { "name": bot.header.name.get_ref() } });
    json!({
        "bot": bot_id,
        "name": bot.header.name.get_ref(),
        "title": render_text(&w.title, lang, &ctx),
        "subtitle": w.subtitle.as_ref().map(|t| render_text(t, lang, &ctx)),
        "launcher": render_text(&w.launcher, lang, &ctx),
        "color": w.color.0,
        "position": match w.position {
            crate::config::schema::WidgetPosition::Left => "left",
            crate::config::schema::WidgetPosition::Right => "right",
        },
        "avatar_url": w.avatar_url,
        "auto_open_secs": w.auto_open.map(|d| d.get().as_secs()),
        "attachments": bot.header.attachments.enabled,
        "language": lang,
    })
}

#[derive(Debug, Deserialize)]
pub struct WidgetQuery {
    bot: String,
    #[serde(default)]
    language: Option<String>,
}

/// `GET /api/v1/visitor/widget?bot=`: how the widget looks, without starting a session, so
/// a page view costs nothing until the visitor opens the chat.
pub async fn widget(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WidgetQuery>,
) -> Result<Json<Value>, AppError> {
    let bundle = state.live.load().bundle.clone();
    let bot = embedded_bot(&bundle, &headers, &q.bot, &state.settings.public_url)?;
    let wanted = q.language.or_else(|| accept_language(&headers, bot));
    let lang = crate::chat::conversation::pick_language(bot, wanted.as_deref());
    Ok(Json(json!({ "widget": widget_json(&q.bot, bot, &lang) })))
}

/// What the visitor asked for: the widget's `language`, else the first tag of the
/// browser's `Accept-Language` (a tag of at most 35 characters, BCP 47's longest).
pub(super) fn requested_language(given: Option<String>, headers: &HeaderMap) -> Option<String> {
    given
        .or_else(|| {
            let accept = headers.get(axum::http::header::ACCEPT_LANGUAGE)?;
            crate::chat::conversation::first_language(accept.to_str().ok()?)
        })
        .filter(|l| !l.is_empty() && l.len() <= 35)
}

/// The visitor's language from the browser's `Accept-Language` (see `preferred_language`).
pub fn accept_language(headers: &HeaderMap, bot: &crate::config::schema::Bot) -> Option<String> {
    let value = headers
        .get(axum::http::header::ACCEPT_LANGUAGE)?
        .to_str()
        .ok()?;
    crate::chat::conversation::preferred_language(bot, value)
}

/// The visitor's country, from the header a trusted proxy sets (`country_header`); from
/// anyone else, a header the client chose.
pub(super) fn country(state: &AppState, client: ClientAddr, headers: &HeaderMap) -> Option<String> {
    if !client.via_trusted_proxy {
        return None;
    }
    let name = state.settings.country_header.as_deref()?;
    let value = headers.get(name)?.to_str().ok()?.trim();
    (value.len() == 2 && value.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| value.to_ascii_uppercase())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    #[serde(default)]
    client_id: Option<String>,
    /// May be left out when the message carries files.
    #[serde(default, deserialize_with = "present_text")]
    text: Option<String>,
    /// Ids of uploads (`POST /api/v1/visitor/attachments`) the message carries.
    #[serde(default)]
    attachments: Vec<String>,
}

/// A `text` that is there is a string (`null` is refused, as a wrong type).
pub fn present_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// A message's text: required, unless the message carries files.
pub fn body_text(text: Option<String>, attachments: &[String]) -> Result<String, AppError> {
    match text {
        Some(text) => Ok(text),
        None if !attachments.is_empty() => Ok(String::new()),
        None => Err(AppError::bad_request(
            "invalid_body",
            "send `text`, or `attachments` (with an optional `text`)",
        )),
    }
}

/// Longest `client_id` accepted.
pub const MAX_CLIENT_ID: usize = 128;

pub fn check_client_id(client_id: &Option<String>) -> Result<(), AppError> {
    match client_id {
        Some(c) if c.is_empty() || c.len() > MAX_CLIENT_ID => Err(AppError::bad_request(
            "invalid_input",
            format!("client_id must be 1 to {MAX_CLIENT_ID} characters"),
        )),
        // An id is the client's own token, never text to show: control characters (a NUL
        // above all, which PostgreSQL refuses in text) have no place in it.
        Some(c) if c.chars().any(char::is_control) => Err(AppError::bad_request(
            "invalid_input",
            "client_id must not contain control characters",
        )),
        _ => Ok(()),
    }
}

/// The key a write's `client_id` is kept under: each author's ids are their own, so the
/// widget's "1" and a console's "1" in the same conversation are two messages.
pub fn client_key(author: &str, client_id: Option<String>) -> Option<String> {
    client_id.map(|c| format!("{author}:{c}"))
}

pub async fn post_message(
    State(state): State<AppState>,
    AuthVisitor(visitor): AuthVisitor,
    ApiJson(req): ApiJson<MessageRequest>,
) -> Result<Json<Value>, AppError> {
    send_message(&state, &visitor, req).await.map(Json)
}

/// A visitor's message, by HTTP or over their socket: the same checks, the same answer,
/// and one limit for both (`message_burst`, `message_refill`). A message over it is
/// refused before anything is read or written; one that gets further counts, whatever
/// becomes of it (a file it carries adds nothing: uploads make no message).
pub(super) async fn send_message(
    state: &AppState,
    visitor: &VisitorRef,
    req: MessageRequest,
) -> Result<Value, AppError> {
    state
        .limits
        .take_message(&visitor.id)
        .map_err(AppError::too_many_messages)?;
    check_client_id(&req.client_id)?;
    let text = body_text(req.text, &req.attachments)?;
    let attachments = super::attachments::for_message(
        state,
        req.attachments,
        super::attachments::Sender::Visitor(&visitor.id),
    )
    .await?;
    let (conversation_id, outcome) = state
        .engine
        .visitor_command(
            visitor,
            Command::VisitorMessage { text, attachments },
            client_key("visitor", req.client_id),
        )
        .await?;
    Ok(json!({
        "conversation_id": conversation_id,
        "message_id": outcome.message_id,
        "seq": outcome.seq,
        "duplicate": outcome.duplicate,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionRequest {
    /// Picks a choice of a step: by `value` (or label), or by `index` (0-based).
    Choice {
        #[serde(default)]
        step: Option<String>,
        #[serde(default)]
        value: Option<String>,
        #[serde(default)]
        index: Option<usize>,
    },
    Form {
        form: String,
        values: BTreeMap<String, String>,
    },
    RequestLiveChat {
        #[serde(default)]
        action: Option<String>,
    },
    RequestVideo {
        #[serde(default)]
        action: Option<String>,
    },
    /// The visitor takes the call the agent offered.
    AcceptVideo,
    /// The visitor declines it; the chat goes on in text.
    DeclineVideo,
    /// The visitor hangs up.
    EndVideo,
    End,
    Skip,
    Back,
    /// Mail the transcript to the address the visitor gave in this conversation.
    EmailTranscript,
    /// Rate the chat a person had with the visitor, once it is over.
    Rate {
        rating: crate::chat::conversation::Rating,
        #[serde(default)]
        comment: Option<String>,
    },
}

/// A visitor's action. Actions that move the flow (choices, forms, skip, back, asking for a
/// person) take from the same bucket as messages: each makes the bot write, a choice is
/// echoed as a message, so clicking in a loop floods the log as surely as typing.
pub async fn post_action(
    State(state): State<AppState>,
    AuthVisitor(visitor): AuthVisitor,
    ApiJson(req): ApiJson<ActionRequest>,
) -> Result<Json<Value>, AppError> {
    // Ending, hanging up, answering a call and rating are never held back: a visitor who
    // has just used up the bucket must still be able to leave (the transcript mail has a
    // limit of its own).
    let limited = !matches!(
        req,
        ActionRequest::End
            | ActionRequest::EndVideo
            | ActionRequest::AcceptVideo
            | ActionRequest::DeclineVideo
            | ActionRequest::Rate { .. }
            | ActionRequest::EmailTranscript
    );
    if limited {
        state
            .limits
            .take_message(&visitor.id)
            .map_err(AppError::too_many_messages)?;
    }
    let cmd = match req {
        ActionRequest::Choice { step, value, index } => {
            let pick = match (value, index) {
                (Some(v), None) => Pick::Value(v),
                (None, Some(i)) => Pick::Index(i),
                _ => {
                    return Err(AppError::bad_request(
                        "invalid_input",
                        "a choice needs exactly one of `value` and `index`",
                    ));
                }
            };
            Command::Choose { step, pick }
        }
        ActionRequest::Form { form, values } => Command::SubmitForm { form, values },
        ActionRequest::RequestLiveChat { action } => Command::RequestLiveChat { action },
        ActionRequest::RequestVideo { action } => Command::RequestVideo { action },
        ActionRequest::AcceptVideo => Command::AnswerVideo { accept: true },
        ActionRequest::DeclineVideo => Command::AnswerVideo { accept: false },
        ActionRequest::EndVideo => Command::EndVideo {
            by: "visitor".into(),
        },
        ActionRequest::EmailTranscript => {
            if !state.limits.allow_transcript(&visitor.id) {
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "the transcript was sent several times already; try again later",
                ));
            }
            let limits = state.limits.clone();
            let to = state
                .engine
                .email_transcript(&visitor, |address| limits.allow_recipient(address))
                .await?;
            return Ok(Json(json!({ "sent_to": to })));
        }
        ActionRequest::Rate { rating, comment } => Command::Rate { rating, comment },
        ActionRequest::End => Command::VisitorEnd,
        ActionRequest::Skip => Command::Skip,
        ActionRequest::Back => Command::Back,
    };
    let (conversation_id, outcome) = state.engine.visitor_command(&visitor, cmd, None).await?;
    Ok(Json(json!({
        "conversation_id": conversation_id,
        "seq": outcome.seq,
    })))
}

#[derive(Debug, Deserialize)]
pub struct After {
    #[serde(default)]
    pub after: i64,
}

pub async fn history(
    State(state): State<AppState>,
    AuthVisitor(visitor): AuthVisitor,
    ApiQuery(q): ApiQuery<After>,
) -> Result<Json<Value>, AppError> {
    let events = queries::visitor_events(state.store(), &visitor.id, q.after, queries::PAGE)
        .await
        .map_err(AppError::internal)?;
    let last = events
        .last()
        .and_then(|e| e["seq"].as_i64())
        .unwrap_or(q.after);
    Ok(Json(json!({
        "events": events,
        "last_seq": last,
        "more": events.len() == queries::PAGE,
    })))
}

/// The API answers any origin (the widget is embedded elsewhere) but never with credentials:
/// visitor calls are authorised by a token, and the agent session cookie is `SameSite=Strict`
/// and not allowed across origins, so this opens nothing to other sites.
pub fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{Method, header};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(3600))
}

/// `GET /api/v1/visitor/queue`: where the visitor's request stands (for clients without a
/// socket; sockets get `queue.position` frames).
pub async fn queue(
    State(state): State<AppState>,
    AuthVisitor(visitor): AuthVisitor,
) -> Result<Json<Value>, AppError> {
    let id = state.engine.visitor_conversation(&visitor).await?;
    let position = state.engine.queue_position(&id).await?;
    Ok(Json(json!({ "conversation_id": id, "position": position })))
}
