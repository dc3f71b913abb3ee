//! The engine: the one owner of live conversation state.
//!
//! A command on a conversation runs under that conversation's lock: the pure core
//! (`chat::conversation::apply`) computes the next state and its events, the writer makes
//! them durable in the next group commit, and only then are they published and the caller
//! answered (persist, then acknowledge, then publish). Commands that can add to an agent's
//! load also hold the assignment lock, so `max_chats` holds across conversations.
//! Timers are derived from the deadlines stored with each conversation, so they survive a
//! restart.

pub mod contacts;
mod live_visitors;
pub mod notify;
mod persist;
mod presence;
pub mod privacy;
mod privacy_stored;
pub mod queries;
mod reads;
mod relay;
mod replicated;
mod signals;
pub mod stats;
mod timers;
mod visitors;
pub mod wire;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::chat::conversation::{Command, Conversation, Ctx, Rejection, Status, Visitor};
use crate::chat::routing::AgentView;
use crate::config::Live;
use crate::config::schema::{Bot, Role};
use crate::config::{self, Bundle};
use crate::hub::{Frame, Hub, Scope};
use crate::store::postgres::effects::Effect;
use crate::store::reader::Readers;
use crate::store::visitors::OwnedVisitor;
use crate::store::writer::Writer;
use crate::store::{Store, StoreError};

use live_visitors::Online;
pub use live_visitors::{Listening, PageView, Viewed};
pub use notify::Outbound;
use presence::Presence;
pub use presence::PresenceGuard;
use visitors::Known;

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
    /// A mail template failed to render (the operator's templates directory).
    #[error("{0}")]
    Template(String),
    /// A limit on what one client (or the whole server) may do was reached.
    #[error("{message}")]
    Limited { code: &'static str, message: String },
    /// Refused for the state things are in (answered `409` with `code`).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
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

/// What writing a transition did.
enum Committed {
    /// Each event's `seq`.
    Stored(Vec<i64>),
    /// The same client id was written before: its message id and seq.
    Earlier(String, i64),
    /// PostgreSQL: another replica wrote the conversation since it was read; nothing was
    /// written.
    Stale,
    /// PostgreSQL: the transition gives its assignee a chat beyond their `max_chats`,
    /// counted across replicas; nothing was written.
    Full,
}

/// Times a command runs again on a conversation other replicas keep changing before it
/// gives up with a `409`.
const STALE_ATTEMPTS: usize = 8;

/// The agent's `max_chats` in the roster (`None`: not in it).
fn max_chats(bundle: &Bundle, email: &str) -> Option<u32> {
    bundle
        .roster
        .agents
        .iter()
        .find(|a| a.email.as_str().eq_ignore_ascii_case(email))
        .map(|a| *a.max_chats.get_ref())
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
pub struct StartSession {
    pub bot: String,
    pub token: Option<String>,
    pub page_url: Option<String>,
    pub language: Option<String>,
    /// The first language the visitor asked for, for routing (`None`: `language`).
    pub requested_language: Option<String>,
    pub country: Option<String>,
    pub ip: Option<String>,
    /// Asked only when a new conversation would start (not on a resume): false refuses
    /// it with `too_many_sessions` (the caller's limit per client address).
    pub allow_new: Box<dyn FnOnce() -> bool + Send>,
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
    /// The database: SQLite's one writer and its readers, or the shared PostgreSQL.
    store: Store,
    /// Where uploaded files are kept (SQLite's database too): shared by the replicas on
    /// PostgreSQL.
    data_dir: std::path::PathBuf,
    /// On PostgreSQL: the log writer, the tailer and the versions of conversations.
    replicated: Option<replicated::Replicated>,
    hub: Hub,
    live: Arc<ArcSwap<Live>>,
    outbound: Outbound,
    convs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Conversation>>>>,
    presence: Mutex<Presence>,
    /// Moves on after each change of `presence` (see `presence()`).
    presence_changes: AtomicU64,
    /// Moved on by each "Accept chats" or "Take video calls" made here: a reading of the
    /// database's toggles begun before one is older than this replica's (`take_cluster`).
    toggles: AtomicU64,
    /// The last `agent_views()`: the `presence_changes` and the bundle it was made from.
    #[allow(clippy::type_complexity)]
    agent_views: Mutex<Option<(u64, Arc<Bundle>, Arc<Vec<AgentView>>)>>,
    assignment: tokio::sync::Mutex<()>,
    /// Each conversation's timer task, and the time it wakes at.
    timers: Mutex<HashMap<String, (tokio::task::AbortHandle, Timestamp)>>,
    /// Asked on every visitor call, changed only when a session or conversation starts.
    known: Mutex<Known>,
    /// Visitors online (see `live_visitors`).
    online: Mutex<Online>,
    /// When each conversation in play last had its state row written (see `state_due`); a
    /// monotonic clock, so a wall clock stepped back cannot hold writes off.
    state_written: Mutex<HashMap<String, std::time::Instant>>,
}

/// Presence, locked. When let go it moves `presence_changes` on — before the lock itself
/// is released, so whoever reads the counter after that sees the change once it locks.
struct PresenceLock<'a> {
    guard: std::sync::MutexGuard<'a, Presence>,
    changes: &'a AtomicU64,
}

impl std::ops::Deref for PresenceLock<'_> {
    type Target = Presence;
    fn deref(&self) -> &Presence {
        &self.guard
    }
}

impl std::ops::DerefMut for PresenceLock<'_> {
    fn deref_mut(&mut self) -> &mut Presence {
        &mut self.guard
    }
}

impl Drop for PresenceLock<'_> {
    fn drop(&mut self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

/// A message that changes nothing but the conversation's activity (when the visitor last
/// wrote, the idle deadline) rewrites its state row at most this often: the message itself
/// is in the event log at once, and a page less per message is written. A crash may so
/// bring a conversation back with its idle deadline up to this much early.
const ACTIVITY_WRITE_EVERY: Duration = Duration::from_secs(1);

/// Entries kept before the caches start over (they fill again from the store).
const KNOWN_MAX: usize = 200_000;

impl Engine {
    /// Loads the conversations in play from `store` and re-arms their timers. On
    /// PostgreSQL it also starts this replica's log writer, tailer and timer loop
    /// (`replicated`).
    pub async fn open(
        store: Store,
        data_dir: std::path::PathBuf,
        live: Arc<ArcSwap<Live>>,
        hub: Hub,
        outbound: Outbound,
    ) -> Result<Engine, StoreError> {
        let (open, accepting, replicated) = match &store {
            Store::Sqlite(db) => {
                let (open, accepting) = db
                    .write(|c| {
                        Ok::<_, StoreError>((persist::load_open(c)?, persist::accepting_agents(c)?))
                    })
                    .await?;
                (open, accepting, None)
            }
            Store::Postgres(pg) => {
                let replicated = replicated::Replicated::start(pg.clone(), hub.clone()).await?;
                let mut open = Vec::new();
                let as_of = replicated.position();
                for (version, conv) in replicated.load_open().await? {
                    replicated.set_read(&conv.id, version, as_of);
                    open.push(conv);
                }
                let accepting = store.accepting_agents().await?;
                (open, accepting, Some(replicated))
            }
        };
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                data_dir,
                replicated,
                hub,
                live,
                outbound,
                convs: Mutex::new(HashMap::new()),
                presence: Mutex::new(Presence::default()),
                presence_changes: AtomicU64::new(0),
                toggles: AtomicU64::new(0),
                agent_views: Mutex::new(None),
                assignment: tokio::sync::Mutex::new(()),
                timers: Mutex::new(HashMap::new()),
                known: Mutex::new(Known::default()),
                online: Mutex::new(Online::default()),
                state_written: Mutex::new(HashMap::new()),
            }),
        };
        let no_video = engine.inner.store.no_video_agents().await?;
        {
            let mut presence = engine.presence();
            presence.accepting = accepting.into_iter().collect();
            presence.no_video = no_video.into_iter().collect();
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
        if let Some(r) = &engine.inner.replicated {
            let inner = Arc::downgrade(&engine.inner);
            let _ = r.heed.set(Box::new(move |frame| {
                if let Some(inner) = inner.upgrade() {
                    Engine { inner }.heed(frame);
                }
            }));
            // A notice heard before the engine could heed it (an erase while the open
            // conversations were loading) was only delivered: every copy is read again
            // before its first use.
            r.all_stale();
            engine.start_shared_timers();
            engine.start_shared_presence();
        }
        Ok(engine)
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// SQLite's readers (`None` on PostgreSQL).
    pub fn readers(&self) -> Option<&Readers> {
        match &self.inner.store {
            Store::Sqlite(db) => Some(&db.readers),
            Store::Postgres(_) => None,
        }
    }

    /// SQLite's one writer (`None` on PostgreSQL).
    pub fn writer(&self) -> Option<&Writer> {
        match &self.inner.store {
            Store::Sqlite(db) => Some(&db.writer),
            Store::Postgres(_) => None,
        }
    }

    /// The store interface (`store::Store`).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn outbound(&self) -> &Outbound {
        &self.inner.outbound
    }

    fn convs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Conversation>>>> {
        self.inner.convs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Presence, to read or change: the agent views are made again after it is let go.
    fn presence(&self) -> PresenceLock<'_> {
        PresenceLock {
            guard: self
                .inner
                .presence
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            changes: &self.inner.presence_changes,
        }
    }

    fn bundle(&self) -> Arc<Bundle> {
        self.inner.live.load().bundle.clone()
    }

    // ---- visitors -----------------------------------------------------------------------

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

    /// What a console of this agent may hear (see `hub::Scope`), from the roster in force:
    /// an agent no longer in it serves no bot.
    pub fn scope_of(&self, email: &str) -> Scope {
        let admin = self
            .bundle()
            .roster
            .agents
            .iter()
            .find(|a| a.email.as_str().eq_ignore_ascii_case(email))
            .map(|a| a.role == Role::Admin);
        let bots = match admin {
            Some(admin) => self.bots_of(&AgentRef {
                email: email.to_string(),
                admin,
            }),
            None => Some(BTreeSet::new()),
        };
        Scope {
            email: email.to_string(),
            bots,
        }
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

    // ---- the core -----------------------------------------------------------------------

    /// A snapshot of a conversation, for reading: from memory if it is there, else from the
    /// store without keeping it in memory.
    pub async fn peek(&self, id: &str) -> Result<Conversation, EngineError> {
        let entry = self.convs().get(id).cloned();
        // On PostgreSQL a copy another replica has written since is read again.
        let stale = self
            .inner
            .replicated
            .as_ref()
            .is_some_and(|r| r.is_stale(id));
        if let Some(entry) = entry.filter(|_| !stale) {
            return Ok(entry.lock().await.clone());
        }
        let key = id.to_string();
        self.inner
            .store
            .load_conversation(&key)
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
        let as_of = self.inner.replicated.as_ref().map_or(0, |r| r.position());
        let (version, loaded) = match &self.inner.replicated {
            None => (None, self.inner.store.load_conversation(&key).await?),
            Some(r) => match r.load(&key).await? {
                Some((version, conv)) => (Some(version), Some(conv)),
                None => (None, None),
            },
        };
        let loaded = loaded.ok_or(EngineError::NotFound)?;
        let mut convs = self.convs();
        Ok(convs
            .entry(id.to_string())
            .or_insert_with(|| {
                if let (Some(r), Some(version)) = (&self.inner.replicated, version) {
                    r.set_read(id, version, as_of);
                }
                Arc::new(tokio::sync::Mutex::new(loaded))
            })
            .clone())
    }

    /// On PostgreSQL, waits (5 s at most) until the tailer has handed this replica's sockets
    /// the newest of `seqs`; on SQLite they were published at the commit.
    async fn published(&self, seqs: &[i64]) {
        if let (Some(r), Some(&last)) = (&self.inner.replicated, seqs.last()) {
            r.published(last).await;
        }
    }

    /// On PostgreSQL, takes the database's view of every agent now (who is online, accepts
    /// chats, holds what), rather than at the presence loop's next look.
    async fn refresh_cluster(&self) {
        if let Some(r) = &self.inner.replicated {
            let toggles = self.inner.toggles.load(Ordering::Acquire);
            match r.cluster().await {
                Ok(cluster) => self.take_cluster(cluster, toggles),
                Err(e) => tracing::warn!(error = %e, "reading presence across servers failed"),
            }
        }
    }

    /// The version this replica knows a conversation at (PostgreSQL; 0 on SQLite).
    fn replicated_version(&self, id: &str) -> i64 {
        self.inner.replicated.as_ref().map_or(0, |r| r.version(id))
    }

    /// Reads a conversation held under its lock afresh from the shared database, after
    /// another replica wrote it (a transition refused as stale, a timer claimed), keeping
    /// the agents' load in step. `NotFound` when it is gone (erased).
    async fn reload(&self, conv: &mut Conversation) -> Result<(), EngineError> {
        let Some(r) = &self.inner.replicated else {
            return Ok(());
        };
        let as_of = r.position();
        let Some((version, fresh)) = r.load(&conv.id).await? else {
            // Erased through another replica, its notice lost or not yet heeded: the copy
            // goes too.
            if self.drop_cached(&conv.id, None) {
                self.agents_changed();
            }
            return Err(EngineError::NotFound);
        };
        r.set_read(&conv.id, version, as_of);
        if self.update_load(conv, &fresh) {
            self.agents_changed();
        }
        *conv = fresh;
        Ok(())
    }

    async fn run(
        &self,
        id: &str,
        cmd: Command,
        client_id: Option<String>,
        allow: impl FnOnce(&Conversation) -> Result<(), EngineError> + Send + 'static,
    ) -> Result<Outcome, EngineError> {
        // On a task of its own: a caller that goes away (an HTTP client or a socket that
        // disconnects drops the handler's future) must not stop a command between its
        // commit and what the engine keeps of it in memory after.
        let engine = self.clone();
        let id = id.to_string();
        tokio::spawn(async move { engine.run_to_end(&id, cmd, client_id, allow).await })
            .await
            .unwrap_or_else(|e| {
                Err(EngineError::Store(StoreError::Commit(format!(
                    "a conversation's command failed: {e}"
                ))))
            })
    }

    async fn run_to_end(
        &self,
        id: &str,
        cmd: Command,
        client_id: Option<String>,
        allow: impl FnOnce(&Conversation) -> Result<(), EngineError>,
    ) -> Result<Outcome, EngineError> {
        let entry = self.conversation(id).await?;
        let mut conv = entry.lock().await;
        // An entry leaves the map while held only when its conversation is erased (a
        // visitor's erase, retention): a command that waited for it finds nothing.
        if !self.convs().get(id).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
            return Err(EngineError::NotFound);
        }
        allow(&conv)?;
        if self
            .inner
            .replicated
            .as_ref()
            .is_some_and(|r| r.is_stale(id))
        {
            self.reload(&mut conv).await?;
        }
        // Whether the command gives a chat to the agent it names: only then is a refusal for
        // the agent's `max_chats` across replicas the answer (`Committed::Full`).
        let claims = matches!(
            cmd,
            Command::Accept { .. }
                | Command::Assign { .. }
                | Command::Transfer { .. }
                | Command::Takeover { .. }
        );
        let adds_load = claims
            || (matches!(cmd, Command::VisitorMessage { .. }) && conv.status == Status::Resolved);
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
        // A write answers with its message's `seq` (as a retry of it does), not with that of
        // the bot's reply or the reopening that followed it.
        let writes = matches!(
            cmd,
            Command::VisitorMessage { .. } | Command::AgentMessage { .. } | Command::Note { .. }
        );
        // On PostgreSQL a command may run again on the conversation as another replica left
        // it (a stale write): it is kept until then.
        let mut cmd = Some(cmd);
        let mut attempts = 0;
        let (next, seqs, first_message, write_state) = loop {
            attempts += 1;
            let this = match &self.inner.replicated {
                Some(_) => cmd.clone(),
                None => cmd.take(),
            }
            .expect("a command runs again only on PostgreSQL");
            let agents = self.agent_views();
            let now = Timestamp::now();
            let requested = match &this {
                Command::RequestLiveChat { action } | Command::RequestVideo { action } => {
                    action.as_deref()
                }
                _ => None,
            };
            let open = conv.within_hours(&bot, requested, now);
            let ctx = Ctx {
                now,
                bot: &bot,
                agents: &agents,
                teams: &bundle.roster.teams,
                open,
            };
            let transition = match conv.apply(this, &ctx) {
                Ok(t) => t,
                // On PostgreSQL the copy may be older than the database (another replica's
                // write not yet heard of): refused on it, the command runs again on the
                // conversation as it is, if that is newer.
                Err(_)
                    if self.inner.replicated.is_some() && attempts < STALE_ATTEMPTS && {
                        let before = self.replicated_version(id);
                        self.reload(&mut conv).await?;
                        self.replicated_version(id) != before
                    } =>
                {
                    continue;
                }
                // A retry may come after the state moved on (the chat ended since): it still
                // gets the first answer.
                Err(rejected) => {
                    if let Some(cid) = client_id.clone() {
                        let key = conv.id.clone();
                        let earlier = self.inner.store.message_by_client_id(&key, &cid).await?;
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
                .outbox_items(&bundle, &bot, conv.status, &next, &events, now)
                .await?;
            let ring = !items.is_empty();
            // Shared with the writer's closures, which drop only their references: the memory
            // is freed here, by the thread that allocated it. (glibc's malloc takes the owning
            // arena's lock to free another thread's memory; on the writer thread those waits
            // were 40 % of its stalls in a profile of the `store` benchmark.)
            let write_state = self.state_due(&conv, &next);
            let pending = Arc::new(persist::Pending::new(
                next.clone(),
                &events,
                &items,
                client_id.clone(),
                write_state,
                now,
            )?);
            let max_chats = next.assignee.as_deref().and_then(|a| max_chats(&bundle, a));
            match self.commit(&pending, None, ring, max_chats).await? {
                Committed::Stored(seqs) => {
                    let first_message = pending.first_message().map(|(i, id)| (i, id.to_string()));
                    break (next, seqs, first_message, write_state);
                }
                Committed::Earlier(message_id, seq) => {
                    return Ok(Outcome::earlier(message_id, seq));
                }
                // Routing, a reopening or a timeout gave the chat to an agent this replica
                // thought had room: with the database's count of everyone's chats, the
                // command runs again and routes elsewhere.
                Committed::Full if !claims && attempts < STALE_ATTEMPTS => {
                    drop(pending);
                    self.refresh_cluster().await;
                }
                Committed::Full => {
                    let agent = next.assignee.clone().unwrap_or_default();
                    return Err(Rejection::AtCapacity(agent).into());
                }
                Committed::Stale if attempts < STALE_ATTEMPTS => {
                    drop(pending);
                    self.reload(&mut conv).await?;
                }
                Committed::Stale => {
                    return Err(EngineError::Conflict {
                        code: "conflict",
                        message: "the conversation kept changing on other servers; try again"
                            .into(),
                    });
                }
            }
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
        drop(_assignment);
        if settled {
            // Nothing is timed or waiting any more: keep memory for conversations in play.
            // A later command loads it again. Only when nobody else holds the entry, so two
            // commands never work on two copies.
            let mut convs = self.convs();
            if convs.get(id).is_some_and(|e| Arc::strong_count(e) == 2) {
                convs.remove(id);
                self.state_written().remove(id);
                if let Some(r) = &self.inner.replicated {
                    r.forget(id);
                }
            }
        }
        if load_changed {
            self.agents_changed();
        }
        // Answered once this replica's sockets have the events (on PostgreSQL they come
        // through the tailer), with no lock held meanwhile.
        self.published(&seqs).await;
        // After the events: a visitor learns their place once they know they wait (on
        // PostgreSQL the position would otherwise overtake the tailer's `livechat.requested`).
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

    /// Writes a transition: in SQLite's writer (which publishes its events after the commit)
    /// or as a guarded transition of PostgreSQL's log writer (whose events the tailer
    /// publishes; this waits for it). A retried message (same client id) writes nothing and
    /// answers as the first did. `newcomer` is stored with a new visitor's first
    /// conversation; `ring` wakes the mail worker for the items written.
    async fn commit(
        &self,
        pending: &Arc<persist::Pending>,
        newcomer: Option<OwnedVisitor>,
        ring: bool,
        max_chats: Option<u32>,
    ) -> Result<Committed, EngineError> {
        let doorbell = self.inner.outbound.doorbell.clone();
        let db = match &self.inner.store {
            Store::Sqlite(db) => db,
            Store::Postgres(_) => {
                return self.commit_shared(pending, newcomer, ring, max_chats).await;
            }
        };
        let hub = self.inner.hub.clone();
        let (job, after) = (pending.clone(), pending.clone());
        let written = db
            .writer
            .write(
                move |c| {
                    // A retried write (same client id) answers as the first did and writes
                    // nothing: checked here, in the writer, where no other write can pass.
                    if let Some(cid) = job.client_id.as_deref()
                        && let Some((id, seq)) = persist::seen_client_id(c, &job.conv.id, cid)?
                    {
                        return Ok(Committed::Earlier(id, seq));
                    }
                    if let Some(v) = &newcomer {
                        persist::insert_visitor(c, &v.borrowed(), job.now())?;
                    }
                    persist::write_transition(c, &job).map(Committed::Stored)
                },
                move |written: &Committed| {
                    let Committed::Stored(seqs) = written else {
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
        Ok(written)
    }

    /// [`Engine::commit`] on PostgreSQL.
    async fn commit_shared(
        &self,
        pending: &Arc<persist::Pending>,
        newcomer: Option<OwnedVisitor>,
        ring: bool,
        max_chats: Option<u32>,
    ) -> Result<Committed, EngineError> {
        let r = self
            .inner
            .replicated
            .as_ref()
            .expect("the engine on PostgreSQL keeps its replica's part");
        let id = pending.conv.id.clone();
        let version = r.version(&id);
        let due = pending.conv.deadlines.earliest();
        let mut transition = pending.pg_transition(version, max_chats, due)?;
        if let Some(v) = newcomer {
            let at = pending.at().to_string();
            transition
                .effects
                .insert(0, Effect::Visitor { visitor: v, at });
        } else if version == 0 {
            // A returning visitor's new conversation: their row is locked with it, so that a
            // sweep or an erase of the visitor waits for it (and then sees it).
            transition
                .effects
                .insert(0, Effect::LockVisitor(pending.conv.visitor_id.clone()));
        }
        let appended = r.writer.write(transition).await.map_err(StoreError::from)?;
        use crate::store::postgres::conversations::Refused;
        match appended {
            Ok(seqs) => {
                r.set_written(&id, version + 1, seqs.clone().last());
                if ring {
                    self.inner.outbound.doorbell.ring();
                }
                Ok(Committed::Stored(seqs.collect()))
            }
            Err(Refused::Stale) => Ok(Committed::Stale),
            Err(Refused::AgentFull) => Ok(Committed::Full),
            Err(Refused::Duplicate { seq }) => {
                let cid = pending.client_id.clone().unwrap_or_default();
                let message_id = self
                    .inner
                    .store
                    .message_by_client_id(&id, &cid)
                    .await?
                    .map(|(m, _)| m)
                    .unwrap_or_default();
                Ok(Committed::Earlier(message_id, seq))
            }
        }
    }

    /// Mail and webhook calls a transition causes (written in its transaction).
    async fn outbox_items(
        &self,
        bundle: &Bundle,
        bot: &Bot,
        was: Status,
        conv: &Conversation,
        events: &[crate::chat::conversation::Event],
        now: Timestamp,
    ) -> Result<Vec<crate::mail::outbox::Item>, EngineError> {
        use crate::chat::conversation::EventKind;
        let wants_lines = notify::starts_ringing(was, events)
            || events
                .iter()
                .any(|e| e.kind() == EventKind::LivechatTimeout);
        let wants_any = wants_lines || events.iter().any(|e| e.kind() == EventKind::FormSubmitted);
        if !wants_any {
            return Ok(Vec::new());
        }
        let lines = if wants_lines {
            let id = conv.id.clone();
            self.inner.store.last_visitor_lines(&id, 5).await?
        } else {
            Vec::new()
        };
        Ok(notify::transition_items(
            &self.inner.outbound,
            bundle,
            bot,
            was,
            conv,
            events,
            &lines,
            now,
        ))
    }

    /// Mails the visitor the transcript of their current conversation, to the address they
    /// gave in it: the only visitor-chosen recipient, so only for a chat one of the team
    /// took part in (they saw the address), and only when `allow(address)` (the caller's
    /// limits per recipient and for the server) says so.
    pub async fn email_transcript(
        &self,
        visitor: &VisitorRef,
        allow: impl FnOnce(&str) -> bool,
    ) -> Result<String, EngineError> {
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
        if !conv.had_a_person() {
            return Err(EngineError::Rejected(Rejection::NotAllowed(
                "the transcript is mailed only for a chat with one of the team".into(),
            )));
        }
        if !allow(&email) {
            return Err(EngineError::Limited {
                code: "too_many_requests",
                message: "this address was sent its transcripts for today; try again later".into(),
            });
        }
        let rows = self.inner.store.transcript_rows(&conv.id).await?;
        let out = &self.inner.outbound;
        let mail = crate::mail::transcript::compose(out, &self.bundle(), &conv.bot, &email, rows)
            .map_err(EngineError::Template)?;
        let item = crate::mail::outbox::Item::Mail(mail);
        self.store().enqueue_outbox(&item).await?;
        out.doorbell.ring();
        Ok(email)
    }

    /// Sessions of the writer in flight, for `/metrics` later; also keeps `Started` honest.
    pub fn open_conversations(&self) -> usize {
        self.convs().len()
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
