//! The engine: the one owner of live conversation state.
//!
//! A command on a conversation runs under that conversation's lock: the pure core
//! (`chat::conversation::apply`) computes the next state and its events, the writer makes
//! them durable in the next group commit, and only then are they published and the caller
//! answered (persist, then acknowledge, then publish). Commands that can add to an agent's
//! load also hold the assignment lock, so `max_chats` holds across conversations.
//! Timers are derived from the deadlines stored with each conversation, so they survive a
//! restart.

pub mod notify;
mod persist;
pub mod queries;
pub mod stats;
pub mod wire;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::chat::conversation::{Command, Conversation, Ctx, Rejection, Status, Visitor};
use crate::chat::routing::AgentView;
use crate::config::Live;
use crate::config::hours::OpeningHours;
use crate::config::schema::{Bot, Role};
use crate::config::{self, Bundle};
use crate::hub::{Frame, Hub};
use crate::store::reader::Readers;
use crate::store::writer::Writer;
use crate::store::{self, StoreError};

pub use notify::Outbound;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no such conversation")]
    NotFound,
    #[error("no bot `{0}`")]
    UnknownBot(String),
    #[error("the visitor token is not valid")]
    BadToken,
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("the form does not fit")]
    InvalidForm(Vec<crate::chat::form::FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a command did, for the HTTP answer.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The last event's sequence number (`None`: nothing changed).
    pub seq: Option<i64>,
    /// The id of the message the caller wrote, when it wrote one.
    pub message_id: Option<String>,
    /// The same `client_id` was seen before: this is the earlier answer, nothing was written.
    pub duplicate: bool,
}

impl Outcome {
    /// The answer to a retried write: the first one's.
    fn earlier(message_id: String, seq: i64) -> Outcome {
        Outcome {
            seq: Some(seq),
            message_id: Some(message_id),
            duplicate: true,
        }
    }
}

/// What a command's job in the writer did.
enum Written {
    /// Each event's `seq`.
    Stored(Vec<i64>),
    /// The same client id was written before: its message id and seq.
    Earlier(String, i64),
}

/// A visitor, as their token identifies them.
#[derive(Debug, Clone)]
pub struct VisitorRef {
    pub id: String,
    pub bot: String,
}

/// An agent, as the engine needs to know them for scoping.
#[derive(Debug, Clone)]
pub struct AgentRef {
    pub email: String,
    pub admin: bool,
}

/// A new or resumed visitor session.
#[derive(Debug, Clone, Default)]
pub struct StartSession {
    pub bot: String,
    pub token: Option<String>,
    pub page_url: Option<String>,
    pub language: Option<String>,
    pub country: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Started {
    pub token: String,
    pub visitor_id: String,
    pub conversation_id: String,
    pub resumed: bool,
    pub language: String,
    /// The events the visitor has seen in this conversation (visitor form), oldest first.
    pub events: Vec<Value>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    readers: Readers,
    hub: Hub,
    live: Arc<ArcSwap<Live>>,
    outbound: Outbound,
    convs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Conversation>>>>,
    presence: Mutex<Presence>,
    assignment: tokio::sync::Mutex<()>,
    /// Each conversation's timer task, and the time it wakes at.
    timers: Mutex<HashMap<String, (tokio::task::AbortHandle, Timestamp)>>,
    /// Asked on every visitor call, changed only when a session or conversation starts.
    known: Mutex<Known>,
    /// When each conversation in play last had its state row written (see `state_due`); a
    /// monotonic clock, so a wall clock stepped back cannot hold writes off.
    state_written: Mutex<HashMap<String, std::time::Instant>>,
}

/// A message that changes nothing but the conversation's activity (when the visitor last
/// wrote, the idle deadline) rewrites its state row at most this often: the message itself
/// is in the event log at once, and a page less per message is written. A crash may so
/// bring a conversation back with its idle deadline up to this much early.
const ACTIVITY_WRITE_EVERY: Duration = Duration::from_secs(1);

/// Visitors by token hash, and each visitor's current conversation.
#[derive(Default)]
struct Known {
    tokens: HashMap<String, VisitorRef>,
    current: HashMap<String, String>,
}

/// Entries kept before the caches start over (they fill again from the store).
const KNOWN_MAX: usize = 200_000;

impl Known {
    fn remember_token(&mut self, hash: String, visitor: VisitorRef) {
        if self.tokens.len() >= KNOWN_MAX {
            self.tokens.clear();
        }
        self.tokens.insert(hash, visitor);
    }

    fn remember_current(&mut self, visitor: String, conversation: String) {
        if self.current.len() >= KNOWN_MAX {
            self.current.clear();
        }
        self.current.insert(visitor, conversation);
    }
}

#[derive(Default)]
struct Presence {
    /// Open agent event sockets per agent.
    sockets: HashMap<String, usize>,
    /// "Accept chats" is on.
    accepting: HashSet<String>,
    /// Conversations each agent holds (assigned or chatting).
    load: HashMap<String, BTreeSet<String>>,
}

impl Engine {
    /// Starts the writer, loads the conversations in play and re-arms their timers.
    pub async fn open(
        data_dir: &std::path::Path,
        live: Arc<ArcSwap<Live>>,
        hub: Hub,
        outbound: Outbound,
    ) -> Result<Engine, StoreError> {
        let conn = store::open(data_dir)?;
        let open = persist::load_open(&conn)?;
        let accepting = persist::accepting_agents(&conn)?;
        // Checkpoints run on their own thread; the writer's own threshold is a backstop.
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            store::checkpoint::WRITER_AUTOCHECKPOINT,
        )?;
        let search = store::search::SearchIndex::new(&conn)?;
        let checkpointer = store::checkpoint::start(data_dir)?;
        let engine = Engine {
            inner: Arc::new(Inner {
                writer: Writer::start_with(conn, search, Some(checkpointer)),
                readers: Readers::new(data_dir),
                hub,
                live,
                outbound,
                convs: Mutex::new(HashMap::new()),
                presence: Mutex::new(Presence::default()),
                assignment: tokio::sync::Mutex::new(()),
                timers: Mutex::new(HashMap::new()),
                known: Mutex::new(Known::default()),
                state_written: Mutex::new(HashMap::new()),
            }),
        };
        {
            let mut presence = engine.presence();
            presence.accepting = accepting.into_iter().collect();
            for conv in &open {
                if let (Some(agent), true) = (&conv.assignee, conv.status.holds_agent()) {
                    presence
                        .load
                        .entry(agent.clone())
                        .or_default()
                        .insert(conv.id.clone());
                }
            }
        }
        for conv in open {
            // In the map before its timer, which may be overdue and fire at once.
            engine.convs().insert(
                conv.id.clone(),
                Arc::new(tokio::sync::Mutex::new(conv.clone())),
            );
            engine.schedule(&conv);
        }
        Ok(engine)
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn readers(&self) -> &Readers {
        &self.inner.readers
    }

    pub fn writer(&self) -> &Writer {
        &self.inner.writer
    }

    pub fn outbound(&self) -> &Outbound {
        &self.inner.outbound
    }

    fn convs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Conversation>>>> {
        self.inner.convs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        self.inner
            .presence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn bundle(&self) -> Arc<Bundle> {
        self.inner.live.load().bundle.clone()
    }

    // ---- visitors -----------------------------------------------------------------------

    /// Starts a visitor session, or resumes it when `token` is theirs for this bot.
    pub async fn start_session(&self, req: StartSession) -> Result<Started, EngineError> {
        let bundle = self.bundle();
        let bot = bundle
            .bots
            .get(&req.bot)
            .ok_or_else(|| EngineError::UnknownBot(req.bot.clone()))?
            .clone();
        // A visitor whose last conversation is over (closed, or ended) starts a new one as
        // the same visitor: the same token, and their earlier conversations stay theirs.
        let mut returning = None;
        if let Some(token) = req.token.as_deref().filter(|t| !t.is_empty()) {
            match self.resume(&req.bot, token).await? {
                Resume::Open(resumed) => return Ok(resumed),
                Resume::Over(visitor) => returning = Some((token.to_string(), visitor.id)),
                Resume::Stranger => {}
            }
        }
        let now = Timestamp::now();
        let (token, token_hash, visitor_id) = match returning {
            Some((token, visitor_id)) => (token, None, visitor_id),
            None => {
                let (token, hash) = crate::auth::session::new_token();
                (token, Some(hash), wire::new_id("v"))
            }
        };
        let conversation_id = wire::new_id("c");
        let transition = Conversation::start(
            conversation_id.clone(),
            req.bot.clone(),
            visitor_id.clone(),
            Visitor {
                language: req.language.clone(),
                page_url: req.page_url.clone(),
                country: req.country.clone(),
                name: None,
                email: None,
            },
            &bot,
            now,
        );
        let conv = transition.conversation.clone();
        let pending = Arc::new(persist::Pending::new(
            transition.conversation,
            &transition.events,
            &[],
            None,
            true,
            now,
        )?);
        let (job, after) = (pending.clone(), pending.clone());
        let hub = self.inner.hub.clone();
        let seqs = self
            .inner
            .writer
            .write(
                move |c| {
                    if let Some(token_hash) = &token_hash {
                        persist::insert_visitor(
                            c,
                            &persist::NewVisitor {
                                id: &job.conv.visitor_id,
                                token_hash,
                                bot: &job.conv.bot,
                                name: None,
                                email: None,
                                language: req.language.as_deref(),
                                country: req.country.as_deref(),
                                ip: req.ip.as_deref(),
                            },
                            now,
                        )?;
                    }
                    persist::write_transition(c, &job)
                },
                move |seqs| {
                    for frame in after.frames(seqs) {
                        hub.publish(frame);
                    }
                },
            )
            .await?;
        let events: Vec<Value> = pending
            .frames(&seqs)
            .filter_map(|f| f.visitor_json)
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect();
        drop(pending);
        let language = conv.language.clone();
        self.schedule(&conv);
        self.convs()
            .insert(conv.id.clone(), Arc::new(tokio::sync::Mutex::new(conv)));
        self.known()
            .remember_current(visitor_id.clone(), conversation_id.clone());
        Ok(Started {
            token,
            visitor_id,
            conversation_id,
            resumed: false,
            language,
            events,
        })
    }

    async fn resume(&self, bot: &str, token: &str) -> Result<Resume, EngineError> {
        let Some(visitor) = self.visitor(token).await.ok() else {
            return Ok(Resume::Stranger);
        };
        if visitor.bot != bot {
            return Ok(Resume::Stranger);
        }
        let id = visitor.id.clone();
        let latest = self
            .inner
            .readers
            .read(move |c| persist::latest_conversation_of(c, &id))
            .await?;
        let Some(conversation_id) = latest else {
            return Ok(Resume::Over(visitor));
        };
        let snapshot = self.peek(&conversation_id).await?;
        if matches!(snapshot.status, Status::Closed | Status::Ended) {
            // A closed or ended conversation takes no more messages: the visitor starts a
            // new one, keeping their identity (and so their history for the agents).
            return Ok(Resume::Over(visitor));
        }
        let events = queries::conversation_visitor_events(
            &self.inner.readers,
            &conversation_id,
            queries::PAGE,
        )
        .await?;
        Ok(Resume::Open(Started {
            token: token.to_string(),
            visitor_id: visitor.id,
            conversation_id,
            resumed: true,
            language: snapshot.language,
            events,
        }))
    }

    /// The visitor a bearer token belongs to.
    pub async fn visitor(&self, token: &str) -> Result<VisitorRef, EngineError> {
        let hash = crate::auth::session::token_hash(token);
        if let Some(known) = self.known().tokens.get(&hash) {
            return Ok(known.clone());
        }
        let key = hash.clone();
        let visitor = self
            .inner
            .readers
            .read(move |c| persist::visitor_by_token(c, &key))
            .await?
            .map(|(id, bot)| VisitorRef { id, bot })
            .ok_or(EngineError::BadToken)?;
        self.known().remember_token(hash, visitor.clone());
        Ok(visitor)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.inner.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The visitor's current conversation (the most recent one).
    pub async fn visitor_conversation(&self, visitor: &VisitorRef) -> Result<String, EngineError> {
        if let Some(current) = self.known().current.get(&visitor.id) {
            return Ok(current.clone());
        }
        let id = visitor.id.clone();
        let current = self
            .inner
            .readers
            .read(move |c| persist::latest_conversation_of(c, &id))
            .await?
            .ok_or(EngineError::NotFound)?;
        self.known()
            .remember_current(visitor.id.clone(), current.clone());
        Ok(current)
    }

    /// Runs a visitor's command on their current conversation.
    pub async fn visitor_command(
        &self,
        visitor: &VisitorRef,
        cmd: Command,
        client_id: Option<String>,
    ) -> Result<(String, Outcome), EngineError> {
        let conversation_id = self.visitor_conversation(visitor).await?;
        let owner = visitor.id.clone();
        let outcome = self
            .run(&conversation_id, cmd, client_id, move |conv| {
                if conv.visitor_id == owner {
                    Ok(())
                } else {
                    Err(EngineError::NotFound)
                }
            })
            .await?;
        Ok((conversation_id, outcome))
    }

    // ---- agents -------------------------------------------------------------------------

    /// The bots an agent serves (through their teams); `None` for admins, who see all.
    pub fn bots_of(&self, agent: &AgentRef) -> Option<BTreeSet<String>> {
        if agent.admin {
            return None;
        }
        let bundle = self.bundle();
        let teams: BTreeSet<&str> = bundle
            .roster
            .agents
            .iter()
            .filter(|a| a.email.as_str().eq_ignore_ascii_case(&agent.email))
            .flat_map(|a| a.teams.get_ref().iter().map(|t| t.get_ref().as_str()))
            .collect();
        Some(
            bundle
                .roster
                .teams
                .iter()
                .filter(|t| teams.contains(t.id.get_ref().as_str()))
                .flat_map(|t| t.bots.iter().map(|b| b.get_ref().clone()))
                .collect(),
        )
    }

    /// Runs an agent's command on a conversation of a bot they serve.
    pub async fn agent_command(
        &self,
        agent: &AgentRef,
        conversation_id: &str,
        cmd: Command,
        client_id: Option<String>,
    ) -> Result<Outcome, EngineError> {
        let bots = self.bots_of(agent);
        self.run(conversation_id, cmd, client_id, move |conv| match &bots {
            Some(bots) if !bots.contains(&conv.bot) => Err(EngineError::NotFound),
            _ => Ok(()),
        })
        .await
    }

    /// Whether the agent may see this conversation at all.
    pub async fn agent_may_see(
        &self,
        agent: &AgentRef,
        conversation_id: &str,
    ) -> Result<Conversation, EngineError> {
        let conv = self.peek(conversation_id).await?;
        match self.bots_of(agent) {
            Some(bots) if !bots.contains(&conv.bot) => Err(EngineError::NotFound),
            _ => Ok(conv),
        }
    }

    /// The "Accept chats" toggle.
    pub async fn set_accepting(&self, email: &str, accepting: bool) -> Result<(), EngineError> {
        let email = email.to_lowercase();
        let stored = email.clone();
        self.inner
            .writer
            .run(move |c| persist::set_accepting(c, &stored, accepting, Timestamp::now()))
            .await?;
        let changed = {
            let mut p = self.presence();
            if accepting {
                p.accepting.insert(email.clone())
            } else {
                p.accepting.remove(&email)
            }
        };
        if changed {
            self.publish_presence(&email);
            self.agents_changed();
        }
        Ok(())
    }

    /// Marks the agent online while the returned guard lives (one per open event socket).
    pub fn connect_agent(&self, email: &str) -> PresenceGuard {
        let email = email.to_lowercase();
        let first = {
            let mut p = self.presence();
            let n = p.sockets.entry(email.clone()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            self.publish_presence(&email);
            self.agents_changed();
        }
        PresenceGuard {
            engine: self.clone(),
            email,
        }
    }

    /// Every roster agent with presence and load, as routing sees them.
    pub fn agent_views(&self) -> Vec<AgentView> {
        let bundle = self.bundle();
        let p = self.presence();
        bundle
            .roster
            .agents
            .iter()
            .map(|a| {
                let email = a.email.as_str().to_lowercase();
                AgentView {
                    accepting: p.accepting.contains(&email),
                    online: p.sockets.get(&email).copied().unwrap_or(0) > 0,
                    active_chats: p.load.get(&email).map_or(0, |s| s.len() as u32),
                    max_chats: *a.max_chats.get_ref(),
                    name: a.name.clone(),
                    role: a.role,
                    teams: a
                        .teams
                        .get_ref()
                        .iter()
                        .map(|t| t.get_ref().clone())
                        .collect(),
                    email,
                }
            })
            .collect()
    }

    fn publish_presence(&self, email: &str) {
        let view = self.agent_views().into_iter().find(|a| a.email == email);
        let Some(a) = view else { return };
        let json = json!({
            "type": "agent.presence",
            "at": Timestamp::now().to_string(),
            "data": {
                "agent": a.email,
                "name": a.name,
                "online": a.online,
                "accepting": a.accepting,
                "active_chats": a.active_chats,
                "max_chats": a.max_chats,
            }
        });
        self.inner.hub.publish(Frame {
            agent_json: Some(json.to_string()),
            kind: Some("agent.presence"),
            ..Frame::default()
        });
    }

    /// Tells every waiting request that agents changed: it rings (or is offered) anew.
    pub fn agents_changed(&self) {
        let waiting: Vec<String> = self.convs().keys().cloned().collect();
        let engine = self.clone();
        tokio::spawn(async move {
            for id in waiting {
                let Some(entry) = engine.convs().get(&id).cloned() else {
                    continue;
                };
                if entry.lock().await.status != Status::New {
                    continue;
                }
                if let Err(e) = engine
                    .run(&id, Command::AgentsChanged, None, |_| Ok(()))
                    .await
                    && !matches!(e, EngineError::Rejected(_))
                {
                    tracing::warn!("re-ringing {id}: {e}");
                }
            }
        });
    }

    /// Publishes an ephemeral typing signal (never stored).
    pub fn typing(&self, conv: &Conversation, from_visitor: bool, name: Option<&str>) {
        let json = json!({
            "type": "typing",
            "conversation_id": conv.id,
            "at": Timestamp::now().to_string(),
            "data": { "from": if from_visitor { "visitor" } else { "agent" }, "name": name },
        })
        .to_string();
        self.inner.hub.publish(Frame {
            seq: None,
            conversation_id: Some(conv.id.clone()),
            bot: Some(conv.bot.clone()),
            visitor_id: Some(conv.visitor_id.clone()),
            agent_json: Some(json.clone()),
            visitor_json: (!from_visitor).then_some(json),
            kind: Some("typing"),
        });
    }

    /// Tells agents' consoles that a new config revision is live.
    pub fn config_reloaded(&self, revision: i64) {
        let json = json!({
            "type": "config.reloaded",
            "at": Timestamp::now().to_string(),
            "data": { "revision": revision },
        })
        .to_string();
        self.inner.hub.publish(Frame {
            agent_json: Some(json),
            kind: Some("config.reloaded"),
            ..Frame::default()
        });
        self.agents_changed();
    }

    /// The visitor's place among the waiting requests of their bot and team (1 = next),
    /// or 0 when their conversation is not waiting.
    pub async fn queue_position(&self, conversation_id: &str) -> Result<usize, EngineError> {
        let conv = self.peek(conversation_id).await?;
        let waiting = self.waiting(&conv.bot).await;
        Ok(crate::chat::conversation::queue_position(
            &conv,
            waiting.iter(),
        ))
    }

    async fn waiting(&self, bot: &str) -> Vec<Conversation> {
        let entries: Vec<_> = self.convs().values().cloned().collect();
        let mut waiting = Vec::new();
        for entry in entries {
            let c = entry.lock().await;
            if c.status == Status::New && c.bot == bot {
                waiting.push(c.clone());
            }
        }
        waiting
    }

    /// Tells every waiting visitor of `bot` their place in the queue (ephemeral frames).
    fn publish_queue(&self, bot: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            let waiting = engine.waiting(&bot).await;
            for conv in &waiting {
                let position = crate::chat::conversation::queue_position(conv, waiting.iter());
                let in_queue = waiting.iter().filter(|c| c.team == conv.team).count();
                let json = json!({
                    "type": "queue.position",
                    "conversation_id": conv.id,
                    "at": Timestamp::now().to_string(),
                    "data": { "position": position, "waiting": in_queue },
                })
                .to_string();
                engine.inner.hub.publish(Frame {
                    conversation_id: Some(conv.id.clone()),
                    bot: Some(conv.bot.clone()),
                    visitor_id: Some(conv.visitor_id.clone()),
                    visitor_json: Some(json),
                    kind: Some("queue.position"),
                    ..Frame::default()
                });
            }
        });
    }

    /// Tells agents' consoles that an edit of the bundle was refused (the live revision
    /// stays), with its errors; no errors means the last refusal is over.
    pub fn config_error(&self, live_revision: Option<i64>, errors: &[crate::config::Diagnostic]) {
        let json = json!({
            "type": "config.error",
            "at": Timestamp::now().to_string(),
            "data": { "revision": live_revision, "errors": errors },
        })
        .to_string();
        self.inner.hub.publish(Frame {
            agent_json: Some(json),
            kind: Some("config.error"),
            ..Frame::default()
        });
    }

    // ---- the core -----------------------------------------------------------------------

    /// A snapshot of a conversation, for reading: from memory if it is there, else from the
    /// store without keeping it in memory.
    pub async fn peek(&self, id: &str) -> Result<Conversation, EngineError> {
        let entry = self.convs().get(id).cloned();
        if let Some(entry) = entry {
            return Ok(entry.lock().await.clone());
        }
        let key = id.to_string();
        self.inner
            .readers
            .read(move |c| persist::load_conversation(c, &key))
            .await?
            .ok_or(EngineError::NotFound)
    }

    /// A conversation's entry: in memory, or loaded from the store.
    pub async fn conversation(
        &self,
        id: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Conversation>>, EngineError> {
        if let Some(entry) = self.convs().get(id) {
            return Ok(entry.clone());
        }
        let key = id.to_string();
        let loaded = self
            .inner
            .readers
            .read(move |c| persist::load_conversation(c, &key))
            .await?
            .ok_or(EngineError::NotFound)?;
        let mut convs = self.convs();
        Ok(convs
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(loaded)))
            .clone())
    }

    async fn run(
        &self,
        id: &str,
        cmd: Command,
        client_id: Option<String>,
        allow: impl FnOnce(&Conversation) -> Result<(), EngineError>,
    ) -> Result<Outcome, EngineError> {
        let entry = self.conversation(id).await?;
        let mut conv = entry.lock().await;
        allow(&conv)?;
        let adds_load = matches!(
            cmd,
            Command::Accept { .. }
                | Command::Assign { .. }
                | Command::Transfer { .. }
                | Command::Takeover { .. }
        ) || (matches!(cmd, Command::VisitorMessage { .. })
            && conv.status == Status::Resolved);
        let _assignment = if adds_load {
            Some(self.inner.assignment.lock().await)
        } else {
            None
        };
        let bundle = self.bundle();
        // Borrowed from the bundle: a bot is cloned only when it has been removed since.
        let bot: std::borrow::Cow<'_, Bot> = match bundle.bots.get(&conv.bot) {
            Some(bot) => std::borrow::Cow::Borrowed(bot),
            None => std::borrow::Cow::Owned(placeholder_bot(&conv.bot)),
        };
        let agents = self.agent_views();
        let now = Timestamp::now();
        let requested = match &cmd {
            Command::RequestLiveChat { action } => action.as_deref(),
            _ => None,
        };
        let open = is_open(&conv, &bot, requested, now);
        let ctx = Ctx {
            now,
            bot: &bot,
            agents: &agents,
            teams: &bundle.roster.teams,
            open,
        };
        // A write answers with its message's `seq` (as a retry of it does), not with that of
        // the bot's reply or the reopening that followed it.
        let writes = matches!(
            cmd,
            Command::VisitorMessage { .. } | Command::AgentMessage { .. } | Command::Note { .. }
        );
        let transition = match conv.apply(cmd, &ctx) {
            Ok(t) => t,
            // A retry may come after the state moved on (the chat ended since): it still
            // gets the first answer.
            Err(rejected) => {
                if let Some(cid) = client_id.clone() {
                    let key = conv.id.clone();
                    let earlier = self
                        .inner
                        .readers
                        .read(move |c| persist::message_by_client_id(c, &key, &cid))
                        .await?;
                    if let Some((message_id, seq)) = earlier {
                        return Ok(Outcome::earlier(message_id, seq));
                    }
                }
                return Err(rejected.into());
            }
        };
        if transition.events.is_empty() && transition.conversation == *conv {
            return Ok(Outcome::default());
        }
        let next = transition.conversation;
        let events = transition.events;
        let items = self
            .outbox_items(&bundle, &bot, &next, &events, now)
            .await?;
        let ring = !items.is_empty();
        let hub = self.inner.hub.clone();
        let doorbell = self.inner.outbound.doorbell.clone();
        // Shared with the writer's closures, which drop only their references: the memory
        // is freed here, by the thread that allocated it. (glibc's malloc takes the owning
        // arena's lock to free another thread's memory; on the writer thread those waits
        // were 40 % of its stalls in a profile of the `store` benchmark.)
        let write_state = self.state_due(&conv, &next);
        let pending = Arc::new(persist::Pending::new(
            next.clone(),
            &events,
            &items,
            client_id,
            write_state,
            now,
        )?);
        let (job, after) = (pending.clone(), pending.clone());
        let stored = self
            .inner
            .writer
            .write(
                move |c| {
                    // A retried write (same client id) answers as the first did and writes
                    // nothing: checked here, in the writer, where no other write can pass.
                    if let Some(cid) = job.client_id.as_deref()
                        && let Some((id, seq)) =
                            persist::message_by_client_id(c, &job.conv.id, cid)?
                    {
                        return Ok(Written::Earlier(id, seq));
                    }
                    persist::write_transition(c, &job).map(Written::Stored)
                },
                move |written: &Written| {
                    let Written::Stored(seqs) = written else {
                        return;
                    };
                    for frame in after.frames(seqs) {
                        hub.publish(frame);
                    }
                    if ring {
                        doorbell.ring();
                    }
                },
            )
            .await?;
        let first_message = pending.first_message().map(|(i, id)| (i, id.to_string()));
        drop(pending);
        let seqs = match stored {
            Written::Earlier(message_id, seq) => return Ok(Outcome::earlier(message_id, seq)),
            Written::Stored(seqs) => seqs,
        };
        if write_state {
            self.state_written()
                .insert(next.id.clone(), std::time::Instant::now());
        }
        let load_changed = self.update_load(&conv, &next);
        let queue_moved = (conv.status == Status::New) != (next.status == Status::New);
        let bot_id = next.bot.clone();
        *conv = next;
        self.schedule(&conv);
        let settled = matches!(
            conv.status,
            Status::Resolved | Status::Ended | Status::Closed
        );
        drop(conv);
        if settled {
            // Nothing is timed or waiting any more: keep memory for conversations in play.
            // A later command loads it again. Only when nobody else holds the entry, so two
            // commands never work on two copies.
            let mut convs = self.convs();
            if convs.get(id).is_some_and(|e| Arc::strong_count(e) == 2) {
                convs.remove(id);
                self.state_written().remove(id);
            }
        }
        if load_changed {
            self.agents_changed();
        }
        if queue_moved {
            self.publish_queue(bot_id);
        }
        let written = first_message
            .as_ref()
            .filter(|_| writes)
            .and_then(|(i, _)| seqs.get(*i));
        Ok(Outcome {
            seq: written.or(seqs.last()).copied(),
            message_id: first_message.map(|(_, id)| id),
            duplicate: false,
        })
    }

    /// Whether a transition from `before` to `after` writes the conversation's state row:
    /// always, unless it changes nothing but activity and the row was written less than
    /// [`ACTIVITY_WRITE_EVERY`] ago.
    fn state_due(&self, before: &Conversation, after: &Conversation) -> bool {
        if !before.differs_only_in_activity(after) {
            return true;
        }
        let written = self.state_written().get(&after.id).copied();
        written.is_none_or(|at| at.elapsed() >= ACTIVITY_WRITE_EVERY)
    }

    fn state_written(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        self.inner
            .state_written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Mail and webhook calls a transition causes (written in its transaction).
    async fn outbox_items(
        &self,
        bundle: &Bundle,
        bot: &Bot,
        conv: &Conversation,
        events: &[crate::chat::conversation::Event],
        now: Timestamp,
    ) -> Result<Vec<crate::mail::outbox::Item>, EngineError> {
        use crate::chat::conversation::EventKind;
        let wants_lines = events.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::LivechatRequested | EventKind::LivechatTimeout
            )
        });
        let wants_any = wants_lines || events.iter().any(|e| e.kind == EventKind::FormSubmitted);
        if !wants_any {
            return Ok(Vec::new());
        }
        let lines = if wants_lines {
            let id = conv.id.clone();
            self.inner
                .readers
                .read(move |c| persist::last_visitor_lines(c, &id, 5))
                .await?
        } else {
            Vec::new()
        };
        Ok(notify::transition_items(
            &self.inner.outbound,
            bundle,
            bot,
            conv,
            events,
            &lines,
            now,
        ))
    }

    /// An offline form sent outside a conversation (the contact page, or the API): stored,
    /// and mailed to the form's recipients, in one transaction.
    pub async fn submit_offline_form(
        &self,
        bot_id: &str,
        form_id: Option<&str>,
        values: std::collections::BTreeMap<String, String>,
        page_url: Option<String>,
        ip: Option<String>,
    ) -> Result<String, EngineError> {
        let bundle = self.bundle();
        let bot = bundle
            .bots
            .get(bot_id)
            .ok_or_else(|| EngineError::UnknownBot(bot_id.to_string()))?;
        let (form_id, form) = match form_id {
            Some(id) => bot.offline_form.get_key_value(id),
            None => bot.offline_form.iter().next(),
        }
        .ok_or(EngineError::NotFound)?;
        let clean =
            crate::chat::form::validate_form(form, &values).map_err(EngineError::InvalidForm)?;
        let now = Timestamp::now();
        let notify_ids: Vec<String> = notify::actions_with_form(bot, form_id)
            .iter()
            .flat_map(|a| a.notify.iter().map(|n| n.get_ref().clone()))
            .collect();
        let language = crate::chat::flow::default_language(bot).to_string();
        let items = notify::form_items(
            &self.inner.outbound,
            &notify::Submission {
                bot_id,
                bot,
                form_id,
                form,
                values: &clean,
                conversation_id: None,
                page_url: page_url.as_deref(),
                language: &language,
                notify: notify_ids,
            },
            now,
        )
        .map_err(|e| EngineError::Store(StoreError::Corrupt(e)))?;
        let (bot_id, form_id) = (bot_id.to_string(), form_id.clone());
        let doorbell = self.inner.outbound.doorbell.clone();
        let id = self
            .inner
            .writer
            .write(
                move |c| {
                    persist::write_submission(
                        c,
                        &persist::Submitted {
                            bot: &bot_id,
                            form: &form_id,
                            values: &clean,
                            page_url: page_url.as_deref(),
                            ip: ip.as_deref(),
                        },
                        &items,
                        now,
                    )
                },
                move |_| doorbell.ring(),
            )
            .await?;
        Ok(id)
    }

    /// Mails the visitor the transcript of their current conversation, to the address they
    /// gave in it (the only visitor-chosen recipient; the HTTP layer rate-limits it).
    pub async fn email_transcript(&self, visitor: &VisitorRef) -> Result<String, EngineError> {
        let id = self.visitor_conversation(visitor).await?;
        let conv = self.peek(&id).await?;
        let Some(email) = conv
            .email
            .clone()
            .filter(|e| crate::config::values::is_valid_email(e))
        else {
            return Err(EngineError::Rejected(Rejection::InvalidInput(
                "there is no email address in this conversation to send the transcript to".into(),
            )));
        };
        let bundle = self.bundle();
        let bot_name = bundle
            .bots
            .get(&conv.bot)
            .map_or(conv.bot.clone(), |b| b.header.name.get_ref().clone());
        let names: HashMap<String, String> = bundle
            .roster
            .agents
            .iter()
            .map(|a| (a.email.as_str().to_lowercase(), a.name.clone()))
            .collect();
        let conv_id = conv.id.clone();
        let rows: Vec<(String, Option<String>, String, String)> = self
            .inner
            .readers
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT kind, author, text, at FROM messages
                     WHERE conversation_id = ?1 AND kind != 'note' ORDER BY seq",
                )?;
                let rows = stmt.query_map([&conv_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        let messages: Vec<Value> = rows
            .into_iter()
            .map(|(kind, author, text, at)| {
                let who = match kind.as_str() {
                    "visitor" => "You".to_string(),
                    "agent" => author
                        .and_then(|a| names.get(&a.to_lowercase()).cloned())
                        .unwrap_or_else(|| "Agent".into()),
                    _ => bot_name.clone(),
                };
                json!({ "author": who, "text": text, "at": at })
            })
            .collect();
        let out = &self.inner.outbound;
        let subject = format!("Your conversation with {bot_name}");
        let ctx = json!({
            "subject": subject,
            "public_url": out.public_url,
            "bot": { "name": bot_name },
            "messages": messages,
        });
        let (text, html) = out
            .templates
            .render_pair("mail/transcript", &ctx)
            .map_err(|e| {
                EngineError::Store(StoreError::Corrupt(format!("transcript template: {e}")))
            })?;
        let item = crate::mail::outbox::Item::Mail(crate::mail::transport::Mail {
            kind: "transcript".into(),
            to: vec![email.clone()],
            reply_to: None,
            subject,
            text,
            html,
        });
        let doorbell = out.doorbell.clone();
        self.inner
            .writer
            .write(
                move |c| crate::mail::outbox::enqueue(c, &item, Timestamp::now()),
                move |_| doorbell.ring(),
            )
            .await?;
        Ok(email)
    }

    /// Keeps the per-agent load in step; true when an agent's load changed, so that waiting
    /// requests ring anew (an agent who is full stops ringing, one with room rings again).
    fn update_load(&self, before: &Conversation, after: &Conversation) -> bool {
        let held_before = before
            .assignee
            .clone()
            .filter(|_| before.status.holds_agent());
        let held_after = after
            .assignee
            .clone()
            .filter(|_| after.status.holds_agent());
        if held_before == held_after {
            return false;
        }
        let mut p = self.presence();
        if let Some(agent) = &held_before {
            p.load.entry(agent.clone()).or_default().remove(&after.id);
        }
        if let Some(agent) = &held_after {
            p.load
                .entry(agent.clone())
                .or_default()
                .insert(after.id.clone());
        }
        drop(p);
        // The team panel shows each agent's chats in hand.
        for agent in [held_before, held_after].into_iter().flatten() {
            self.publish_presence(&agent);
        }
        true
    }

    /// Arms the conversation's next deadline (replacing the one before).
    fn schedule(&self, conv: &Conversation) {
        let mut timers = self.inner.timers.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = conv.deadlines.earliest();
        if let (Some(at), Some((old, wakes))) = (earliest, timers.get(&conv.id))
            && *wakes <= at
            && !old.is_finished()
        {
            // A deadline pushed back (as every message pushes the idle timeout) keeps the
            // timer: it wakes early, finds nothing due and sets itself again (`fire`).
            return;
        }
        if let Some((old, _)) = timers.remove(&conv.id) {
            old.abort();
        }
        let Some(at) = earliest else {
            return;
        };
        let wait = Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default();
        let engine = self.clone();
        let id = conv.id.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            // Awake: no longer the conversation's pending timer (unless one replaced it), so
            // whatever `fire` does next arms a new one.
            {
                let mut timers = engine
                    .inner
                    .timers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if timers
                    .get(&id)
                    .is_some_and(|(h, _)| h.id() == tokio::task::id())
                {
                    timers.remove(&id);
                }
            }
            // Run detached: the command re-arms the timer, which aborts this task.
            tokio::spawn(async move { engine.fire(&id).await });
        });
        // Inserted under the lock the task takes when it wakes, so it always finds itself.
        timers.insert(conv.id.clone(), (handle.abort_handle(), at));
    }

    async fn fire(&self, id: &str) {
        let Some(entry) = self.convs().get(id).cloned() else {
            return;
        };
        let due = {
            let conv = entry.lock().await;
            let due = conv.deadlines.due(Timestamp::now());
            if due.is_empty() {
                // Woken before a deadline that moved later: wait for it now.
                self.schedule(&conv);
            }
            due
        };
        for cmd in due {
            match self.run(id, cmd, None, |_| Ok(())).await {
                Ok(_) | Err(EngineError::Rejected(_)) => {}
                Err(e) => tracing::error!("timer of {id}: {e}"),
            }
        }
    }

    /// Sessions of the writer in flight, for `/metrics` later; also keeps `Started` honest.
    pub fn open_conversations(&self) -> usize {
        self.convs().len()
    }
}

/// What a visitor's token finds when they come back.
enum Resume {
    /// Their conversation goes on.
    Open(Started),
    /// Theirs is over (closed or ended): a new one, for the same visitor.
    Over(VisitorRef),
    /// Not a visitor of this bot: a new visitor.
    Stranger,
}

/// Removes the agent's socket from presence when dropped.
pub struct PresenceGuard {
    engine: Engine,
    email: String,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let last = {
            let mut p = self.engine.presence();
            let n = p.sockets.entry(self.email.clone()).or_default();
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last {
            self.engine.publish_presence(&self.email);
            self.engine.agents_changed();
        }
    }
}

/// Within the opening hours of the Live Chat action the request goes to.
fn is_open(conv: &Conversation, bot: &Bot, requested: Option<&str>, now: Timestamp) -> bool {
    let Some(action) = conv.action_for(bot, requested) else {
        return true;
    };
    match bot.live_chat.get(action).and_then(|a| a.hours.as_ref()) {
        None => true,
        Some(hours) => OpeningHours::parse(hours).is_ok_and(|h| h.is_open(now)),
    }
}

/// Stands in for a bot removed from the config while conversations of it are open: agents
/// can still resolve and close them.
fn placeholder_bot(id: &str) -> Bot {
    let text = format!("name = {:?}\n", id);
    let mut ctx = config::load::FileCtx::new("removed.toml", &text);
    config::load::parse_bot(&mut ctx).expect("a bot with only a name parses")
}

/// Whether the agent with `email` is an admin in the live roster.
pub fn is_admin(bundle: &Bundle, email: &str) -> bool {
    bundle
        .roster
        .agents
        .iter()
        .any(|a| a.email.as_str().eq_ignore_ascii_case(email) && a.role == Role::Admin)
}
