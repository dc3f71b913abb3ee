//! The agent API: availability, the conversation list, details, and every command an agent
//! gives. Each call sees only the conversations of bots the agent's teams serve (admins: all).

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiJson, ApiQuery, AppError, body_rejection, json_error};
use super::visitor::{check_client_id, client_key};
use crate::auth::AuthAgent;
use crate::chat::conversation::{Command, TransferTarget};
use crate::engine::queries::{self, ListFilter};
use crate::engine::{AgentRef, Outcome};

pub(super) fn agent_ref(agent: &AuthAgent) -> AgentRef {
    AgentRef {
        email: agent.email.clone(),
        admin: agent.is_admin(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    /// "Accept chats".
    #[serde(default)]
    accepting: Option<bool>,
    /// "Take video calls".
    #[serde(default)]
    video: Option<bool>,
}

pub async fn set_availability(
    State(state): State<AppState>,
    agent: AuthAgent,
    ApiJson(req): ApiJson<Availability>,
) -> Result<Json<Value>, AppError> {
    if req.accepting.is_none() && req.video.is_none() {
        return Err(AppError::bad_request(
            "invalid_body",
            "give `accepting`, `video` or both",
        ));
    }
    if let Some(accepting) = req.accepting {
        state.engine.set_accepting(&agent.email, accepting).await?;
    }
    if let Some(video) = req.video {
        state.engine.set_video(&agent.email, video).await?;
    }
    let me = state
        .engine
        .agent_views()
        .iter()
        .find(|a| a.email == agent.email)
        .cloned();
    Ok(Json(json!({
        "accepting": me.as_ref().map_or(req.accepting.unwrap_or(false), |a| a.accepting),
        "video": me.as_ref().is_none_or(|a| a.video),
    })))
}

/// Every agent of the roster with presence and load (the console's team panel).
pub async fn agents(State(state): State<AppState>, _agent: AuthAgent) -> Json<Value> {
    let agents: Vec<Value> = state
        .engine
        .agent_views()
        .iter()
        .map(|a| {
            json!({
                "email": a.email,
                "name": a.name,
                "teams": a.teams,
                "online": a.online,
                "accepting": a.accepting,
                "active_chats": a.active_chats,
                "max_chats": a.max_chats,
                "video": a.video,
            })
        })
        .collect();
    Json(json!({ "agents": agents }))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
    #[serde(default)]
    bot: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    /// `true`: only conversations with visitor messages the caller has not read.
    #[serde(default)]
    unread: Option<bool>,
}

const STATUSES: [&str; 8] = [
    "bot",
    "collecting",
    "new",
    "assigned",
    "chatting",
    "resolved",
    "closed",
    "ended",
];

pub async fn list(
    State(state): State<AppState>,
    agent: AuthAgent,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, AppError> {
    if let Some(status) = &q.status
        && let Some(bad) = status
            .split(',')
            .map(str::trim)
            .find(|s| !STATUSES.contains(s))
    {
        return Err(AppError::bad_request(
            "invalid_input",
            format!("unknown status `{bad}`; one of {}", STATUSES.join(", ")),
        ));
    }
    if q.q.as_deref().is_some_and(|s| s.len() > 200) {
        return Err(AppError::bad_request(
            "invalid_input",
            "the search is too long",
        ));
    }
    let assignee = match q.assignee.as_deref() {
        Some("me") => Some(agent.email.clone()),
        other => other.map(str::to_string),
    };
    let bots = state.engine.bots_of(&agent_ref(&agent));
    // Read before the rows: a console that opens its socket with `after=last_seq` misses
    // nothing that changed since, and replays nothing older.
    let last_seq = queries::last_seq(state.store())
        .await
        .map_err(AppError::internal)?;
    // On SQLite the search index first takes in the newest messages (`queries::list`).
    let list = queries::list(
        state.store(),
        bots,
        ListFilter {
            status: q.status,
            assignee,
            bot: q.bot,
            q: q.q,
            limit: q.limit.unwrap_or(100),
            reader: agent.email.clone(),
            unread: q.unread.unwrap_or(false),
        },
    )
    .await
    .map_err(AppError::internal)?;
    let names = bot_names(&state);
    let list: Vec<Value> = list.into_iter().map(|c| with_bot_name(c, &names)).collect();
    Ok(Json(json!({ "conversations": list, "last_seq": last_seq })))
}

/// The bots' display names, by id.
fn bot_names(state: &AppState) -> std::collections::BTreeMap<String, String> {
    state
        .live
        .load()
        .bundle
        .bots
        .iter()
        .map(|(id, bot)| (id.clone(), bot.header.name.get_ref().clone()))
        .collect()
}

fn with_bot_name(mut conv: Value, names: &std::collections::BTreeMap<String, String>) -> Value {
    let name = conv["bot"].as_str().and_then(|id| names.get(id)).cloned();
    conv["bot_name"] = json!(name);
    conv
}

pub async fn details(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let conv = state.engine.agent_may_see(&agent_ref(&agent), &id).await?;
    let unread = state.engine.unread(&agent.email, &conv.id).await?;
    let fields = contact_fields(&state, &conv.bot);
    let mut details = queries::details(state.store(), conv, fields)
        .await
        .map_err(AppError::internal)?;
    details["unread"] = json!(unread);
    Ok(Json(with_bot_name(details, &bot_names(&state))))
}

/// The contact fields a bot declares (none for a bot no longer in the bundle).
fn contact_fields(state: &AppState, bot: &str) -> Vec<crate::config::contacts::ContactField> {
    state
        .live
        .load()
        .bundle
        .bots
        .get(bot)
        .map(|b| b.header.contact_fields.clone())
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// Field name → value; an empty value clears the field.
    fields: std::collections::BTreeMap<String, String>,
}

/// `PUT /api/v1/conversations/{id}/contact` `{"fields": {"company": "Acme"}}`: sets contact
/// fields of the conversation's visitor; answers with every declared field and its value.
pub async fn set_contact(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ContactRequest>,
) -> Result<Json<Value>, AppError> {
    let me = agent_ref(&agent);
    let outcome = state.engine.set_contact(&me, &id, req.fields).await?;
    let conv = state.engine.agent_may_see(&me, &id).await?;
    let fields = contact_fields(&state, &conv.bot);
    let contact = crate::engine::contacts::of_visitor(state.store(), &conv.visitor_id, &fields)
        .await
        .map_err(AppError::internal)?;
    Ok(Json(json!({
        "conversation_id": id,
        "seq": outcome.seq,
        "contact": contact,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    seq: i64,
}

/// `POST /api/v1/conversations/{id}/read` `{"seq": N}`: the caller has read the
/// conversation up to event `N`; their other consoles hear `conversation.read`.
pub async fn read(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReadRequest>,
) -> Result<Json<Value>, AppError> {
    if req.seq < 0 {
        return Err(AppError::bad_request(
            "invalid_input",
            "`seq` is the number of an event: 0 or more",
        ));
    }
    let mark = state
        .engine
        .mark_read(&agent_ref(&agent), &id, req.seq)
        .await?;
    Ok(Json(json!({
        "conversation_id": id,
        "seq": mark.seq,
        "unread": mark.unread,
    })))
}

pub async fn transcript(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let conv = state.engine.agent_may_see(&agent_ref(&agent), &id).await?;
    let csv = queries::transcript_csv(state.store(), conv.id.clone())
        .await
        .map_err(AppError::internal)?;
    Ok(csv_attachment(format!("transcript-{}.csv", conv.id), csv))
}

/// A CSV body to be saved as `filename`.
fn csv_attachment(filename: String, csv: String) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        csv,
    )
}

async fn command(
    state: &AppState,
    agent: &AuthAgent,
    id: &str,
    cmd: Command,
    client_id: Option<String>,
) -> Result<Json<Value>, AppError> {
    let outcome: Outcome = state
        .engine
        .agent_command(&agent_ref(agent), id, cmd, client_id)
        .await?;
    Ok(Json(answer(id, &outcome)))
}

/// What a command of an agent answers.
fn answer(id: &str, outcome: &Outcome) -> Value {
    json!({
        "conversation_id": id,
        "seq": outcome.seq,
        "message_id": outcome.message_id,
        "duplicate": outcome.duplicate,
    })
}

/// Handlers of the commands that take no body: each is the command the agent gives.
macro_rules! bodiless {
    ($($(#[$doc:meta])* $name:ident => $make:expr;)*) => {$(
        $(#[$doc])*
        pub async fn $name(
            State(state): State<AppState>,
            agent: AuthAgent,
            Path(id): Path<String>,
        ) -> Result<Json<Value>, AppError> {
            let make: fn(&AuthAgent) -> Command = $make;
            command(&state, &agent, &id, make(&agent), None).await
        }
    )*};
}

bodiless! {
    /// First accept wins; the others get 409 `already_taken`.
    accept => |a| Command::Accept { agent: a.email.clone() };
    /// The assignee gives the conversation back to the queue.
    unassign => |a| Command::Unassign { by: a.email.clone() };
    /// The agent takes a conversation from the bot.
    takeover => |a| Command::Takeover { agent: a.email.clone() };
    /// Stops the ringing for this agent only.
    mute => |a| Command::Mute { agent: a.email.clone() };
    /// Archives a resolved or ended conversation.
    close => |_| Command::Close;
    /// The assignee offers the visitor a video call.
    offer_video => |a| Command::OfferVideo { agent: a.email.clone() };
    /// The assignee hangs up (or withdraws the offer).
    end_video => |a| Command::EndVideo { by: a.email.clone() };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextRequest {
    #[serde(default)]
    client_id: Option<String>,
    /// May be left out when a message carries files.
    #[serde(default, deserialize_with = "super::visitor::present_text")]
    text: Option<String>,
    /// Ids of uploads to this conversation a message carries (not notes).
    #[serde(default)]
    attachments: Vec<String>,
}

/// What an agent writes in a conversation: a message the visitor sees, or a note for the
/// team. Each keeps its own client ids (a note and a message never answer for each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextKind {
    Message,
    Note,
}

/// An agent's message or note, by HTTP or over their socket: the same checks, the same
/// answer.
pub(super) async fn write_text(
    state: &AppState,
    agent: &AgentRef,
    id: &str,
    req: TextRequest,
    kind: TextKind,
) -> Result<Value, AppError> {
    check_client_id(&req.client_id)?;
    let text = super::visitor::body_text(req.text, &req.attachments)?;
    if kind == TextKind::Note && !req.attachments.is_empty() {
        return Err(AppError::bad_request(
            "invalid_input",
            "notes carry no files",
        ));
    }
    let attachments = if req.attachments.is_empty() {
        Vec::new()
    } else {
        // Whether the agent may see the conversation is asked before its files are.
        state.engine.agent_may_see(agent, id).await?;
        super::attachments::for_message(
            state,
            req.attachments,
            super::attachments::Sender::Agent(id),
        )
        .await?
    };
    let (key, cmd) = match kind {
        TextKind::Message => (
            client_key(&format!("agent:{}", agent.email), req.client_id),
            Command::AgentMessage {
                agent: agent.email.clone(),
                text,
                attachments,
            },
        ),
        TextKind::Note => (
            client_key(&format!("note:{}", agent.email), req.client_id),
            Command::Note {
                agent: agent.email.clone(),
                text,
            },
        ),
    };
    let outcome = state.engine.agent_command(agent, id, cmd, key).await?;
    Ok(answer(id, &outcome))
}

pub async fn message(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TextRequest>,
) -> Result<Json<Value>, AppError> {
    write_text(&state, &agent_ref(&agent), &id, req, TextKind::Message)
        .await
        .map(Json)
}

pub async fn note(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TextRequest>,
) -> Result<Json<Value>, AppError> {
    write_text(&state, &agent_ref(&agent), &id, req, TextKind::Note)
        .await
        .map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    agent: String,
}

pub async fn assign(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AssignRequest>,
) -> Result<Json<Value>, AppError> {
    let cmd = Command::Assign {
        by: agent.email.clone(),
        agent: req.agent.to_lowercase(),
        by_admin: agent.is_admin(),
    };
    command(&state, &agent, &id, cmd, None).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    team: Option<String>,
}

pub async fn transfer(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TransferRequest>,
) -> Result<Json<Value>, AppError> {
    let to = match (req.agent, req.team) {
        (Some(a), None) => TransferTarget::Agent(a.to_lowercase()),
        (None, Some(t)) => TransferTarget::Team(t),
        _ => {
            return Err(AppError::bad_request(
                "invalid_input",
                "transfer to exactly one of `agent` and `team`",
            ));
        }
    };
    let cmd = Command::Transfer {
        by: agent.email.clone(),
        to,
    };
    command(&state, &agent, &id, cmd, None).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    #[serde(default)]
    note: Option<String>,
}

pub async fn resolve(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = body.map_err(body_rejection)?;
    // The body is optional: an empty one resolves without a note.
    let req: ResolveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResolveRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(json_error)?
    };
    let note = req.note.filter(|n| !n.trim().is_empty());
    let cmd = Command::Resolve {
        by: agent.email.clone(),
        note,
    };
    command(&state, &agent, &id, cmd, None).await
}

/// `GET /api/v1/responses`: the canned responses the agent may use — those for every bot,
/// and those limited to bots the agent serves. Texts are templates; the console fills in
/// `{{ name }}`-style values itself or sends them as written.
pub async fn responses(State(state): State<AppState>, agent: AuthAgent) -> Json<Value> {
    let bundle = state.live.load().bundle.clone();
    let bots = state.engine.bots_of(&agent_ref(&agent));
    let list: Vec<Value> = bundle
        .responses
        .responses
        .iter()
        .filter(|r| {
            r.bots.is_empty()
                || match &bots {
                    None => true,
                    Some(mine) => r.bots.iter().any(|b| mine.contains(b.get_ref())),
                }
        })
        .map(|r| {
            json!({
                "shortcut": r.shortcut.get_ref(),
                "text": r.text.as_str(),
                "bots": r.bots.iter().map(|b| b.get_ref()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "responses": list }))
}

#[derive(Debug, Deserialize)]
pub struct StatsParams {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    bot: Option<String>,
}

/// `[from, to)` of a query: `to` defaults to now, `from` to 7 days before it.
fn period(q: &StatsParams) -> Result<(jiff::Timestamp, jiff::Timestamp), AppError> {
    let to = match &q.to {
        Some(t) => parse_time("to", t)?,
        None => jiff::Timestamp::now(),
    };
    let from = match &q.from {
        Some(f) => parse_time("from", f)?,
        None => to
            .checked_sub(jiff::SignedDuration::from_hours(7 * 24))
            .map_err(AppError::internal)?,
    };
    if from >= to {
        return Err(AppError::bad_request(
            "invalid_query",
            "`from` must be before `to`",
        ));
    }
    Ok((from, to))
}

/// The bots the caller sees (`None`: all, for admins); `404 unknown_bot` when `bot` is
/// not among them.
fn scoped_bots(
    state: &AppState,
    agent: &AuthAgent,
    bot: Option<&str>,
) -> Result<Option<std::collections::BTreeSet<String>>, AppError> {
    let visible = state.engine.bots_of(&agent_ref(agent));
    if let (Some(bot), Some(mine)) = (bot, &visible)
        && !mine.contains(bot)
    {
        return Err(AppError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_bot",
            format!("no bot `{bot}` among yours"),
        ));
    }
    Ok(visible)
}

/// `GET /api/v1/conversations.csv?from=…&to=…&bot=…`: the conversations opened in the
/// period, one row each (the period as for `stats`).
pub async fn export(
    State(state): State<AppState>,
    agent: AuthAgent,
    ApiQuery(q): ApiQuery<StatsParams>,
) -> Result<impl IntoResponse, AppError> {
    let (from, to) = period(&q)?;
    let visible = scoped_bots(&state, &agent, q.bot.as_deref())?;
    let fields_of = state
        .live
        .load()
        .bundle
        .bots
        .iter()
        .map(|(id, bot)| (id.clone(), bot.header.contact_fields.clone()))
        .collect();
    let csv = queries::conversations_csv(state.store(), from, to, q.bot, visible, fields_of)
        .await
        .map_err(AppError::internal)?;
    let day = |t: jiff::Timestamp| t.strftime("%Y-%m-%d").to_string();
    Ok(csv_attachment(
        format!("conversations-{}-{}.csv", day(from), day(to)),
        csv,
    ))
}

/// A time given as RFC 3339 (`2026-11-01T00:00:00Z`) or a UTC date (`2026-11-01`).
fn parse_time(field: &str, s: &str) -> Result<jiff::Timestamp, AppError> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    s.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                format!("`{field}` must be a date (2026-11-01) or an RFC 3339 time"),
            )
        })
}

/// `GET /api/v1/stats?from=&to=&bot=`: the dashboard's numbers for the bots the caller
/// serves (admins: all), by default over the last 7 days.
pub async fn stats(
    State(state): State<AppState>,
    agent: AuthAgent,
    ApiQuery(q): ApiQuery<StatsParams>,
) -> Result<Json<Value>, AppError> {
    let (from, to) = period(&q)?;
    let visible = scoped_bots(&state, &agent, q.bot.as_deref())?;
    let stats = crate::engine::stats::stats(
        state.store(),
        crate::engine::stats::StatsQuery {
            from,
            to,
            bot: q.bot,
            visible,
        },
    )
    .await
    .map_err(AppError::internal)?;
    Ok(Json(stats))
}

/// Personal data requests are for admins only: `403 not_allowed` for any other agent.
fn admin_only(agent: &AuthAgent) -> Result<(), AppError> {
    if agent.is_admin() {
        Ok(())
    } else {
        Err(AppError::new(
            axum::http::StatusCode::FORBIDDEN,
            "not_allowed",
            "only an admin may export or erase a visitor's data",
        ))
    }
}

fn no_visitor() -> AppError {
    AppError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        "no such visitor",
    )
}

/// `GET /api/v1/visitors/{id}/export`: everything stored about a visitor, as a JSON file.
pub async fn export_visitor(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    admin_only(&agent)?;
    let mut exported = match state.engine.export_visitor(&id).await {
        Err(crate::engine::EngineError::NotFound) => return Err(no_visitor()),
        other => other?,
    };
    exported["exported_at"] = json!(jiff::Timestamp::now().to_string());
    exported["exported_by"] = json!(agent.email);
    let filename: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"visitor-{filename}.json\""),
        )],
        Json(exported),
    ))
}

/// `DELETE /api/v1/visitors/{id}`: erases a visitor and everything about them.
pub async fn erase_visitor(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    admin_only(&agent)?;
    let mail_dir = state.settings.data_dir.join("mail");
    let removed = match state.engine.erase_visitor(&id, &mail_dir).await {
        Err(crate::engine::EngineError::NotFound) => return Err(no_visitor()),
        other => other?,
    };
    tracing::info!("visitor {id} erased by {}", agent.email);
    Ok(Json(json!({
        "visitor_id": id,
        "erased": {
            "conversations": removed.conversations,
            "messages": removed.messages,
            "forms": removed.forms,
            "pageviews": removed.pageviews,
            "events_redacted": removed.events_redacted,
            "outbox_items": removed.outbox_items,
            "mail_files": removed.mail_files,
        },
    })))
}
