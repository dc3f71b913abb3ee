//! Event streams over WebSocket, for visitors and agents.
//!
//! Each socket is one `select!` over the hub, the socket and a ping timer. It subscribes to
//! the hub *before* replaying the log after `after=N`, then skips live frames it already
//! sent, so a reconnecting client gets every event once, in order, without gaps. A socket
//! that falls behind the hub replays from the log instead of holding others up.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::FromRef;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::agent::TextKind;
use super::client::ClientAddr;
use super::error::{ApiQuery, AppError, json_error, not_a_websocket};
use super::extract::signed_in;
use super::limits::{ConnPermit, SocketPlace};
use super::origin::{check_bot_origin, same_origin};
use super::visitor::After;
use super::{AppState, Sessions};
use crate::auth::AuthAgent;
use crate::auth::extract::{Credential, Via};
use crate::engine::{AgentRef, Engine, Listening, VisitorRef, queries};
use crate::hub::{Frame, Text};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use futures_util::SinkExt;
use tokio::sync::broadcast::error::TryRecvError;

/// Bounds on what a client may send: a frame (auth, typing, a call's signal, a message
/// written on the socket) is at most 16 KiB; longer messages go by HTTP.
const MAX_MESSAGE: usize = 16 * 1024;
const PING_EVERY: Duration = Duration::from_secs(25);
/// How long a visitor socket may take to send its auth frame.
const AUTH_WITHIN: Duration = Duration::from_secs(10);
/// Typing signals from one socket are passed on at most this often.
const TYPING_EVERY: Duration = Duration::from_millis(1000);

fn limits(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        // What clients send is small (typing, a message); the buffer grows for a larger
        // frame. Held by every open socket.
        .read_buffer_size(256)
        // Frames are buffered until the socket is flushed, so a burst goes out in one
        // write; every send but a burst's flushes at once.
        .write_buffer_size(MAX_MESSAGE)
}

enum Who {
    Visitor(VisitorRef),
    Agent {
        agent: AgentRef,
        name: String,
        /// The bots the agent serves (`None`: an admin, all of them).
        bots: Option<BTreeSet<String>>,
        /// The session the socket was opened with, checked again every second.
        session: Box<AgentSession>,
    },
}

struct AgentSession {
    sessions: Sessions,
    token_hash: String,
}

/// How often an open console socket asks whether its session still holds: a logout, a
/// new password, a removal from the roster (any process, even `livechat agent password`)
/// ends it within this, and a change of role or teams re-scopes it.
const SESSION_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Who writes a message sent on a socket.
enum Author {
    Visitor(VisitorRef),
    Agent(AgentRef),
}

/// Writes a socket has read and not begun yet, at most: so many, and so many bytes.
const MAX_QUEUED_WRITES: usize = 32;
const MAX_QUEUED_BYTES: usize = 64 * 1024;

impl Who {
    fn author(&self) -> Author {
        match self {
            Who::Visitor(v) => Author::Visitor(v.clone()),
            Who::Agent { agent, .. } => Author::Agent(agent.clone()),
        }
    }

    async fn replay(&self, engine: &Engine, after: i64) -> Result<Vec<Value>, AppError> {
        match self {
            Who::Visitor(v) => {
                queries::visitor_events(engine.store(), &v.id, after, queries::PAGE).await
            }
            Who::Agent { bots, .. } => {
                queries::agent_events(engine.store(), bots.clone(), after, queries::PAGE).await
            }
        }
        .map_err(AppError::internal)
    }

    /// The text this subscriber gets of a frame, if any. (The hub gives a console only
    /// what its scope sees; this holds for a socket whose scope just narrowed.)
    fn sees<'f>(&self, frame: &'f Frame) -> Option<&'f Text> {
        match self {
            Who::Visitor(v) => frame
                .visitor_json
                .as_ref()
                .filter(|_| frame.visitor_id.as_deref() == Some(v.id.as_str())),
            Who::Agent { bots, agent, .. } => frame
                .agent_json
                .as_ref()
                .filter(|_| match (bots, &frame.bot) {
                    (None, _) | (_, None) => true,
                    (Some(bots), Some(bot)) => bots.contains(bot),
                })
                .filter(|_| frame.to_agent.as_ref().is_none_or(|to| *to == agent.email)),
        }
    }
}

/// A socket's hold on the server: its address's place and its connection's permit, kept
/// for the socket's life.
type Hold = (Option<SocketPlace>, Option<Extension<ConnPermit>>);

/// Takes a WebSocket place for the client's address: `429 too_many_sockets` when it holds
/// `sockets_per_address` already.
fn hold(
    state: &AppState,
    client: ClientAddr,
    permit: Option<Extension<ConnPermit>>,
) -> Result<Hold, AppError> {
    let Some(ip) = client.ip else {
        return Ok((None, permit));
    };
    match state.limits.open_socket(ip) {
        Some(place) => Ok((Some(place), permit)),
        None => Err(AppError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_sockets",
            "this address has as many event sockets open as it may; close some first",
        )),
    }
}

pub async fn visitor_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientAddr,
    permit: Option<Extension<ConnPermit>>,
    ApiQuery(q): ApiQuery<After>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let ws = ws.map_err(not_a_websocket)?;
    let hold = hold(&state, client, permit)?;
    // What the socket's task needs, in one box: what an async block captures keeps its
    // place in the future for the block's life, even once moved out or dropped.
    let opening = Box::new((hold, state, headers, q.after));
    Ok(limits(ws).on_upgrade(move |mut socket| async move {
        // Served on a task of its own: the task axum starts for the upgrade ends here,
        // where it would otherwise stay beside ours for the socket's life with its own
        // copy of the socket (moved out, its place still held) and its settings.
        tokio::spawn(async move {
            // Unboxed in a block of its own, so that the box goes now, not with the socket.
            let (_hold, state, headers, after) = {
                let opening = opening;
                *opening
            };
            // The header values point into the connection's 16 KiB read buffer: they go
            // with the auth, rather than stay for the socket's life (most of an idle
            // widget's memory).
            let Some(visitor) = Box::pin(visitor_auth(&state, headers, &mut socket)).await else {
                let _ = socket.send(Message::Close(None)).await;
                return;
            };
            let (mut who, mut frames, _listening) = widget(&state, visitor);
            run(&mut socket, &state, &mut who, &mut frames, after).await;
        });
    }))
}

/// A widget's socket, once its visitor is known: who it serves, its hub subscription, and
/// the visitor online while it listens (and can hear an invitation). Not async: a value
/// borrowed in an async fn keeps its place in the future after it has moved on.
fn widget(state: &AppState, visitor: VisitorRef) -> (Who, crate::hub::Subscription, Listening) {
    let frames = state.engine.hub().subscribe_visitor(&visitor.id);
    let listening = state.engine.visitor_listening(&visitor);
    (Who::Visitor(visitor), frames, listening)
}

#[derive(Deserialize)]
struct AuthFrame {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

/// Reads the first frame, `{"type":"auth","token":"…"}`; answers with an error frame if bad.
async fn visitor_auth(
    state: &AppState,
    headers: HeaderMap,
    socket: &mut WebSocket,
) -> Option<VisitorRef> {
    let first = tokio::time::timeout(AUTH_WITHIN, socket.recv())
        .await
        .ok()??
        .ok()?;
    let text = match first {
        Message::Text(t) => t,
        _ => return None,
    };
    let refuse = error_frame;
    let Ok(auth) = serde_json::from_str::<AuthFrame>(&text) else {
        let _ = socket
            .send(Message::Text(
                refuse(
                    "invalid_auth",
                    "the first frame must be {\"type\":\"auth\",\"token\":\"…\"}",
                )
                .into(),
            ))
            .await;
        return None;
    };
    if auth.kind != "auth" {
        let _ = socket
            .send(Message::Text(
                refuse(
                    "invalid_auth",
                    "the first frame must be {\"type\":\"auth\",\"token\":\"…\"}",
                )
                .into(),
            ))
            .await;
        return None;
    }
    let visitor = match state.engine.visitor(&auth.token).await {
        Ok(v) => v,
        Err(_) => {
            let _ = socket
                .send(Message::Text(
                    refuse("invalid_token", "the visitor token is not valid").into(),
                ))
                .await;
            return None;
        }
    };
    let bundle = state.live.load().bundle.clone();
    if let Some(bot) = bundle.bots.get(&visitor.bot)
        && check_bot_origin(&headers, &visitor.bot, bot, &state.settings.public_url).is_err()
    {
        let _ = socket
            .send(Message::Text(
                refuse("origin_not_allowed", "this bot may not be embedded here").into(),
            ))
            .await;
        return None;
    }
    let ok = serde_json::json!({"type": "ready", "visitor_id": visitor.id}).to_string();
    socket.send(Message::Text(ok.into())).await.ok()?;
    Some(visitor)
}

pub async fn agent_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: ClientAddr,
    permit: Option<Extension<ConnPermit>>,
    agent: AuthAgent,
    ApiQuery(q): ApiQuery<After>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let ws = ws.map_err(not_a_websocket)?;
    // A cookie rides along on a cross-site WebSocket handshake and the handshake is a GET,
    // which CSRF checks leave alone: a browser's socket must come from our own pages. Only
    // a bearer token (which no browser adds on its own) is exempt; an `Authorization:
    // Basic` header that an auth proxy makes the browser send is not.
    let by_cookie = Credential::from_headers(&headers).is_none_or(|c| c.via == Via::Cookie);
    if by_cookie && !same_origin(&headers, &state.settings.public_url) {
        return Err(AppError::new(
            axum::http::StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "the console socket must be opened from this server's own pages",
        ));
    }
    let who = AgentRef {
        email: agent.email.clone(),
        admin: agent.is_admin(),
    };
    let scope = state.engine.scope_of(&who.email);
    let hold = hold(&state, client, permit)?;
    // In one box, as for a widget's socket.
    let opening = Box::new((hold, state, agent, who, scope, q.after));
    Ok(limits(ws).on_upgrade(move |mut socket| async move {
        // On a task of its own, as a widget's socket.
        tokio::spawn(async move {
            let (_hold, state, agent, who, scope, after) = {
                let opening = opening;
                *opening
            };
            // Subscribed before the agent counts as online: whoever sees them online (and
            // then, say, turns "Accept chats" on) knows this socket hears what follows.
            let bots = scope.bots.clone();
            let mut frames = state.engine.hub().subscribe(scope);
            let _online = state.engine.connect_agent(&who.email);
            let session = Box::new(AgentSession {
                sessions: Sessions::from_ref(&state),
                token_hash: agent.token_hash.clone(),
            });
            let mut who = Who::Agent {
                agent: who,
                name: agent.name.clone(),
                bots,
                session,
            };
            run(&mut socket, &state, &mut who, &mut frames, after).await;
        });
    }))
}

/// `{"type":"error","error":{"code":…,"message":…}}`: why a socket is refused or ended.
fn error_frame(code: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "error": {"code": code, "message": message}}).to_string()
}

async fn send(socket: &mut WebSocket, text: impl Into<Utf8Bytes>) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

/// At most this many frames are written together before the socket is flushed.
const BURST: usize = 64;

/// One frame from the hub: the text to pass to the socket if this socket sees it (and has
/// not sent it already). Not async: the socket's loop feeds it, so that the loop's future
/// holds no more than that write needs.
fn on_frame(
    engine: &Engine,
    who: &mut Who,
    frames: &crate::hub::Subscription,
    frame: &Frame,
    last: &mut i64,
) -> Option<Utf8Bytes> {
    if is_config_reload(frame) {
        // Teams may have changed: see what the new roster says.
        rescope(engine, who, frames);
    }
    let text = who.sees(frame)?;
    if let Some(seq) = frame.seq {
        if seq <= *last {
            return None;
        }
        *last = seq;
    }
    // The hub's bytes, shared: no copy per socket.
    Some(Utf8Bytes::try_from(text.bytes()).unwrap_or_else(|_| Utf8Bytes::from(&**text)))
}

/// Ends a socket: an error frame first, if any, then the close frame. Rare, so the socket's
/// loop awaits it boxed.
async fn close(socket: &mut WebSocket, error: Option<String>, code: u16, reason: &'static str) {
    if let Some(error) = error {
        let _ = socket.send(Message::Text(error.into())).await;
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
}

/// Tells the hub what a console sees now, as the roster in force has it (its agent's
/// teams or role may have changed), and keeps the same for the socket's own checks. Made
/// under the hub's lock, so that it cannot undo the scope a newer reload has given.
fn rescope(engine: &Engine, who: &mut Who, frames: &crate::hub::Subscription) {
    if let Who::Agent { agent, bots, .. } = who {
        let scope = frames.rescope_with(|| engine.scope_of(&agent.email));
        if let Some(scope) = scope {
            *bots = scope.bots;
        }
    }
}

/// Sends the logged events after `last`; returns the new last `seq`, or None if the socket
/// is gone.
async fn catch_up(
    socket: &mut WebSocket,
    engine: &Engine,
    who: &Who,
    mut last: i64,
) -> Option<i64> {
    loop {
        let page = match Box::pin(who.replay(engine, last)).await {
            Ok(p) => p,
            Err(_) => return None,
        };
        let full = page.len() == queries::PAGE;
        for event in page {
            last = event["seq"].as_i64().unwrap_or(last);
            if !send(socket, event.to_string()).await {
                return None;
            }
        }
        if !full {
            return Some(last);
        }
    }
}

/// Serves one socket. `frames` is its hub subscription, made by the caller before anything
/// the socket should hear can happen: a widget hears only its own visitor's frames, a
/// console what its scope sees. It borrows what the socket's task owns: an argument taken
/// by value would be held twice in the task's future (rust-lang/rust#62958).
async fn run(
    socket: &mut WebSocket,
    state: &AppState,
    who: &mut Who,
    frames: &mut crate::hub::Subscription,
    after: i64,
) {
    let engine = &state.engine;
    // The rare and large awaits (a replay, a write, a session check) are boxed: the
    // future of every open socket is only as big as its idle loop needs.
    let Some(mut last) = Box::pin(catch_up(socket, engine, who, after.max(0))).await else {
        return;
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_typing = tokio::time::Instant::now() - TYPING_EVERY;
    let mut signals = SignalBudget::new();
    // Only a console checks its session again (a widget's socket holds no timer for it).
    let mut recheck = matches!(who, Who::Agent { .. }).then(|| {
        let first = tokio::time::Instant::now() + SESSION_CHECK_EVERY;
        tokio::time::interval_at(first, SESSION_CHECK_EVERY)
    });
    let mut writing: Option<Pin<Box<dyn Future<Output = String> + Send + '_>>> = None;
    let mut queued = VecDeque::new();
    loop {
        tokio::select! {
            _ = async { recheck.as_mut().expect("a console's").tick().await }, if recheck.is_some() => {
                let ended = Box::pin(recheck_session(who)).await;
                rescope(engine, who, frames);
                if let Some(ended) = ended {
                    let error = error_frame("session_ended", &ended);
                    let reason = "session_ended";
                    Box::pin(close(socket, Some(error), SESSION_ENDED_CLOSE, reason)).await;
                    break;
                }
            }
            // What a wake-up does is awaited boxed: the loop's future holds only what waits.
            frame = frames.recv() => {
                if !Box::pin(on_frames(socket, engine, who, frames, frame, &mut last)).await {
                    break;
                }
            }
            reply = async { writing.as_mut().expect("a write in progress").await }, if writing.is_some() => {
                writing = queued
                    .pop_front()
                    .map(|(author, kind, text)| Box::pin(on_write(state, author, kind, text)) as _);
                if SinkExt::send(socket, Message::Text(reply.into())).await.is_err() {
                    break;
                }
            }
            // A client that writes faster than its writes commit is read no further until
            // they catch up.
            incoming = socket.recv(), if queued.len() < MAX_QUEUED_WRITES
                && queued.iter().map(|q: &(Author, String, Utf8Bytes)| q.2.len()).sum::<usize>() < MAX_QUEUED_BYTES => match incoming {
                Some(Ok(Message::Text(text))) => match write_kind(text) {
                    Ok((kind, text)) => {
                        // Written in the order sent, one after the other, while the loop
                        // goes on passing frames to the socket.
                        let author = who.author();
                        if writing.is_none() {
                            writing = Some(Box::pin(on_write(state, author, kind, text)));
                        } else {
                            queued.push_back((author, kind, text));
                        }
                    }
                    Err(text) => {
                        let typing = &mut last_typing;
                        let told = on_client_frame(socket, state, who, text, &mut signals, typing);
                        if !Box::pin(told).await {
                            break;
                        }
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if SinkExt::send(socket, Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// The `type` of a write (`message` or `note`) and its frame, or the frame if it is none.
/// Writes are routed by their `type` alone: any other field of the wrong shape still gets
/// its answer. (Not async, and the frame passed by value: a value an async fn borrows keeps
/// its place in the future.)
fn write_kind(text: Utf8Bytes) -> Result<(String, Utf8Bytes), Utf8Bytes> {
    match serde_json::from_str::<FrameType>(&text) {
        Ok(kind) if kind.kind == "message" || kind.kind == "note" => Ok((kind.kind, text)),
        _ => Err(text),
    }
}

/// A client frame that is not a write: call signalling, passed on within its budget, or
/// typing, passed on at most once a second; anything else is dropped. False when it ended
/// the socket.
async fn on_client_frame(
    socket: &mut WebSocket,
    state: &AppState,
    who: &Who,
    text: Utf8Bytes,
    signals: &mut SignalBudget,
    last_typing: &mut tokio::time::Instant,
) -> bool {
    let engine = &state.engine;
    match serde_json::from_str::<ClientFrame>(&text) {
        Ok(frame) if frame.kind == "signal" => {
            if !signals.take() {
                let error = error_frame(
                    "too_many_signals",
                    "this socket sent call signalling faster than allowed",
                );
                close(socket, Some(error), POLICY_CLOSE, "too_many_signals").await;
                return false;
            }
            on_signal(engine, who, frame, state.settings.webrtc.relay_only).await;
        }
        Ok(frame)
            if frame.kind == "typing"
                && last_typing.elapsed() >= TYPING_EVERY
                && on_typing(engine, who, &frame).await =>
        {
            *last_typing = tokio::time::Instant::now();
        }
        _ => {}
    }
    true
}

/// A wake-up by the hub: `first` and the frames already waiting behind it go out in one
/// write. False when the socket is done.
async fn on_frames(
    socket: &mut WebSocket,
    engine: &Engine,
    who: &mut Who,
    frames: &mut crate::hub::Subscription,
    first: Result<Arc<Frame>, RecvError>,
    last: &mut i64,
) -> bool {
    // This frame and those already waiting behind it go out in one write.
    let mut next = Some(first);
    let mut fed = 0;
    // Fed and not flushed yet (a replay after a lag flushes only what it sends).
    let mut unflushed = false;
    let mut go_on = true;
    while let Some(frame) = next.take() {
        match frame {
            Ok(frame) => {
                if let Some(text) = on_frame(engine, who, frames, &frame, last) {
                    // SinkExt's, not the socket's own `send` and its larger future.
                    if SinkExt::feed(socket, Message::Text(text)).await.is_err() {
                        go_on = false;
                        break;
                    }
                    fed += 1;
                    unflushed = true;
                    if frame.kind == Some(crate::engine::privacy::VISITOR_ERASED) {
                        // The visitor is gone: their socket ends with the error frame.
                        let reason = "visitor_erased";
                        Box::pin(close(socket, None, VISITOR_ERASED_CLOSE, reason)).await;
                        go_on = false;
                        break;
                    }
                }
            }
            Err(RecvError::Lagged(_)) => {
                fed = 0;
                match Box::pin(catch_up(socket, engine, who, *last)).await {
                    Some(l) => *last = l,
                    None => {
                        go_on = false;
                        break;
                    }
                }
            }
            Err(RecvError::Closed) => {
                go_on = false;
                break;
            }
        }
        if fed < BURST {
            next = match frames.try_recv() {
                Ok(frame) => Some(Ok(frame)),
                Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                Err(TryRecvError::Empty) => None,
            };
        }
    }
    if unflushed && socket.flush().await.is_err() {
        return false;
    }
    go_on
}

/// The close code of a console socket whose session ended (a private-use code).
const SESSION_ENDED_CLOSE: u16 = 4001;
/// The close code of a widget socket whose visitor was erased.
const VISITOR_ERASED_CLOSE: u16 = 4002;

/// Asks again whether an agent socket's session holds. `Some(why)` when it ended; when it
/// holds, the socket takes the agent's role and teams as the live roster has them now.
async fn recheck_session(who: &mut Who) -> Option<String> {
    let Who::Agent {
        agent,
        name,
        session,
        ..
    } = who
    else {
        return None;
    };
    match signed_in(&session.sessions, session.token_hash.clone()).await {
        Ok((now, _)) => {
            agent.admin = now.is_admin();
            *name = now.name;
            None
        }
        // Only a session that is gone ends the socket, not a store that hiccuped.
        Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => Some(e.message),
        Err(_) => None,
    }
}

fn is_config_reload(frame: &Frame) -> bool {
    frame.kind == Some("config.reloaded")
}

/// Just the `type` of a client frame.
#[derive(Deserialize)]
struct FrameType {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct ClientFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    conversation_id: Option<String>,
    /// A `signal` frame's payload: an object, passed on as it is.
    #[serde(default)]
    data: Option<serde_json::Map<String, Value>>,
}

/// The close code of a socket that broke a limit of what it may send.
const POLICY_CLOSE: u16 = 1008;

/// How many `signal` frames a socket may send: a burst (the ICE candidates of a call come
/// many at once) refilled at a steady rate.
struct SignalBudget {
    tokens: f64,
    at: tokio::time::Instant,
}

impl SignalBudget {
    const BURST: f64 = 100.0;
    const PER_SECOND: f64 = 20.0;

    fn new() -> SignalBudget {
        SignalBudget {
            tokens: Self::BURST,
            at: tokio::time::Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * Self::PER_SECOND;
        self.tokens = (self.tokens + refill).min(Self::BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A call's signalling from this socket: to the other side of the call only, and only
/// while the sender is a side of it (checked at every frame). Anything else is dropped.
async fn on_signal(engine: &Engine, who: &Who, frame: ClientFrame, relay_only: bool) -> bool {
    let Some(data) = frame.data else {
        return false;
    };
    let data = if relay_only {
        match relayed_only(data) {
            Some(d) => Value::Object(d),
            None => return false,
        }
    } else {
        Value::Object(data)
    };
    match who {
        Who::Visitor(v) => {
            let Ok(id) = engine.visitor_conversation(v).await else {
                return false;
            };
            let Ok(conv) = engine.peek(&id).await else {
                return false;
            };
            engine.signal(&conv, true, "visitor", &data)
        }
        Who::Agent { agent, .. } => {
            let Some(id) = frame.conversation_id else {
                return false;
            };
            match engine.agent_may_see(agent, &id).await {
                Ok(conv) => engine.signal(&conv, false, &agent.email, &data),
                Err(_) => false,
            }
        }
    }
}

/// A `message` (or, from an agent, `note`) frame: written exactly as the HTTP endpoint
/// writes it, with the same checks and errors; the answer is an `ack` frame after the
/// commit, `{"type":"ack","client_id",…the HTTP answer}` or `{"type":"ack","client_id",
/// "status","error":{code,message}}`. The frame is the HTTP body plus `type` (and, from an
/// agent, `conversation_id`); a `client_id` is required, as the client matches answers by it.
async fn on_write(state: &AppState, who: Author, kind: String, text: Utf8Bytes) -> String {
    let kind = kind.as_str();
    let mut body: serde_json::Map<String, Value> = match serde_json::from_str(&text) {
        Ok(b) => b,
        Err(e) => return nack(None, json_error(e)),
    };
    body.remove("type");
    let conversation = body.remove("conversation_id");
    let client_id = body.get("client_id").cloned();
    if !matches!(&client_id, Some(Value::String(_))) {
        return nack(
            client_id,
            AppError::bad_request(
                "invalid_input",
                "a message over the socket needs a `client_id`: its ack carries it back",
            ),
        );
    }
    let body = Value::Object(body);
    let written = match &who {
        Author::Visitor(visitor) if kind == "message" => {
            match serde_json::from_value::<super::visitor::MessageRequest>(body) {
                Ok(req) => super::visitor::send_message(state, visitor, req).await,
                Err(e) => Err(json_error(e)),
            }
        }
        Author::Visitor(_) => Err(AppError::bad_request(
            "invalid_input",
            "a visitor's socket sends `message`, `typing` and `signal` frames",
        )),
        Author::Agent(agent) => {
            let Some(Value::String(id)) = conversation else {
                return nack(
                    client_id,
                    AppError::bad_request(
                        "invalid_input",
                        "an agent's message names its `conversation_id`",
                    ),
                );
            };
            let kind = if kind == "note" {
                TextKind::Note
            } else {
                TextKind::Message
            };
            match serde_json::from_value::<super::agent::TextRequest>(body) {
                Ok(req) => super::agent::write_text(state, agent, &id, req, kind).await,
                Err(e) => Err(json_error(e)),
            }
        }
    };
    match written {
        Ok(Value::Object(mut answer)) => {
            answer.insert("type".into(), "ack".into());
            answer.insert("client_id".into(), client_id.unwrap_or_default());
            Value::Object(answer).to_string()
        }
        Ok(_) => nack(client_id, AppError::internal("a write answered no object")),
        Err(e) => nack(client_id, e),
    }
}

/// The `ack` of a write that was refused: the HTTP status and error it would have had.
fn nack(client_id: Option<Value>, e: AppError) -> String {
    serde_json::json!({
        "type": "ack",
        "client_id": client_id.unwrap_or(Value::Null),
        "status": e.status.as_u16(),
        "error": e.error_object(),
    })
    .to_string()
}

/// With `[webrtc] relay_only`, what one side may tell the other of its network: relay
/// candidates only. Browsers are told to gather nothing else; should one not be (the
/// lookup of its ICE settings failed, a client of its own), a host or server-reflexive
/// candidate, which carries its addresses, is dropped here, and such lines are cut from a
/// session description.
fn relayed_only(
    mut data: serde_json::Map<String, Value>,
) -> Option<serde_json::Map<String, Value>> {
    let is_relay = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.windows(2).any(|w| w == ["typ", "relay"])
    };
    if let Some(candidate) = data.get("candidate") {
        let line = candidate
            .get("candidate")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // An empty candidate ends the gathering: nothing in it.
        if !line.is_empty() && !is_relay(line) {
            return None;
        }
    }
    if let Some(Value::String(sdp)) = data.get_mut("sdp").and_then(|d| d.get_mut("sdp")) {
        *sdp = sdp
            .split_inclusive('\n')
            .filter(|l| !l.trim_start().starts_with("a=candidate:") || is_relay(l))
            .collect();
    }
    Some(data)
}

/// A `typing` frame: passed on to the other side. True if it was.
async fn on_typing(engine: &Engine, who: &Who, frame: &ClientFrame) -> bool {
    match who {
        Who::Visitor(v) => {
            let Ok(id) = engine.visitor_conversation(v).await else {
                return false;
            };
            let Ok(conv) = engine.conversation(&id).await else {
                return false;
            };
            let conv = conv.lock().await.clone();
            engine.typing(&conv, true, None);
            true
        }
        Who::Agent { agent, name, .. } => {
            let Some(id) = &frame.conversation_id else {
                return false;
            };
            match engine.agent_may_see(agent, id).await {
                Ok(conv) => {
                    engine.typing(&conv, false, Some(name));
                    true
                }
                Err(_) => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::relayed_only;
    use serde_json::{Value, json};

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn relay_only_passes_relay_candidates_and_nothing_that_names_an_address() {
        let host = json!({"candidate": {"candidate":
            "candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host generation 0"}});
        let srflx = json!({"candidate": {"candidate":
            "candidate:2 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 192.168.1.20 rport 54321"}});
        let relay = json!({"candidate": {"candidate":
            "candidate:3 1 udp 41885439 198.51.100.9 49160 typ relay raddr 203.0.113.7 rport 61000"}});
        assert!(relayed_only(map(host)).is_none());
        assert!(relayed_only(map(srflx)).is_none());
        assert!(relayed_only(map(relay.clone())).is_some());
        assert!(relayed_only(map(json!({"candidate": {"candidate": ""}}))).is_some());
        assert!(relayed_only(map(json!({"state": {"muted": true}}))).is_some());
        let sdp = "v=0\r\na=candidate:1 1 udp 1 192.168.1.20 5 typ host\r\n\
                   a=candidate:3 1 udp 1 198.51.100.9 6 typ relay raddr 0.0.0.0 rport 0\r\na=end\r\n";
        let cut = relayed_only(map(json!({"sdp": {"type": "offer", "sdp": sdp}}))).unwrap();
        let cut = cut["sdp"]["sdp"].as_str().unwrap();
        assert!(!cut.contains("192.168.1.20"), "{cut}");
        assert!(cut.contains("typ relay") && cut.starts_with("v=0") && cut.ends_with("a=end\r\n"));
    }
}
