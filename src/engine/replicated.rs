//! The engine on PostgreSQL (#17): what a replica keeps beside the engine's own state when
//! several replicas share one database.
//!
//! - **Writes** go through the log writer (`postgres::log::LogWriter`) as guarded
//!   transitions: a conversation's row is written only at the version this replica read it
//!   at. Each conversation's version is kept here; a transition refused as stale (another
//!   replica wrote the conversation since) makes the engine read the conversation again and
//!   run the command once more on what is there now (`Engine::run_to_end`).
//! - **Publishing**: the tailer is the only publisher of stored events to this replica's
//!   sockets, its own commits included, so no socket sees a newer `seq` before an older
//!   one. A command waits for the tailer to reach its events before it answers.
//! - **Timers**: every transition writes the conversation's earliest deadline as its row in
//!   `timers`; any replica claims the due rows for a lease (`postgres::timers::claim`),
//!   reads the conversation afresh and fires what is due as an ordinary command. A second
//!   firing finds nothing due (`require_due`) and writes nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::chat::conversation::Conversation;
use crate::hub::{Frame, Hub};
use crate::store::StoreError;
use crate::store::handle::client;
use crate::store::postgres::conversations::ACTIVE;
use crate::store::postgres::log::{LogWriter, StoredEvent};
use crate::store::postgres::tailer::Tailer;
use crate::store::postgres::{PgError, PgStore, presence, timers};

use super::wire;

/// Committing tasks of the log writer: two overlap one group's round trips with the next's.
const COMMITTERS: usize = 2;

/// The tailer's poll when no notification comes.
const TAIL_POLL: Duration = Duration::from_secs(1);

/// How long a command waits for the tailer to publish its own events before it answers
/// anyway (they are committed; the sockets get them when the tailer does).
const PUBLISH_WAIT: Duration = Duration::from_secs(5);

/// How long a replica holds the timers it claimed: one that dies holding them delays them
/// by at most this.
const TIMER_LEASE: Duration = Duration::from_secs(10);

/// Timers claimed at once.
const TIMER_BATCH: i64 = 100;

/// The longest the timer loop sleeps without looking (timers set by other replicas).
const TIMER_POLL: Duration = Duration::from_secs(1);

/// Conversations whose visitor the publisher remembers before it starts over.
const VISITORS_MAX: usize = 100_000;

/// A replica's part of the shared database.
pub(super) struct Replicated {
    pub pg: Arc<PgStore>,
    pub writer: LogWriter,
    tailer: Tailer,
    /// Each conversation this replica holds: the version it last read or wrote it at, and
    /// whether another replica may have written it since (shared with the publisher).
    known: Arc<Mutex<HashMap<String, Known>>>,
    /// This replica's name in timer leases.
    pub replica: String,
    /// What the engine does with the other replicas' frames (`relay::Heed`).
    pub heed: super::relay::Heed,
    /// Woken when a local write sets a deadline sooner than the timer loop's next look.
    pub timers_wake: Notify,
    /// Woken when an agent's sockets on this replica come or go (the presence loop writes
    /// the counts).
    pub presence_wake: Notify,
}

/// A conversation as this replica knows it.
#[derive(Debug, Clone, Copy)]
struct Known {
    version: i64,
    /// The newest `seq` this replica knows the copy includes: an event of the conversation
    /// published after it comes from a write this copy lacks (or one it has whose answer
    /// was not in yet; reading again is then only a read too many).
    as_of: i64,
    /// An event newer than `as_of` was published: read the conversation again before
    /// using the copy.
    stale: bool,
}

/// What the database says of every agent, across replicas (`Replicated::cluster`).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Cluster {
    /// Agents with a socket on a live replica.
    pub online: HashSet<String>,
    /// The conversations each agent holds (assigned or chatting).
    pub load: HashMap<String, BTreeSet<String>>,
    /// Agents whose "Accept chats" is on (toggled on any replica).
    pub accepting: HashSet<String>,
    /// Agents whose "Take video calls" is off (toggled on any replica).
    pub no_video: HashSet<String>,
}

impl Replicated {
    /// Starts the log writer and the tailer (from the log's end: what came before is in
    /// the store, for replays), whose pages are published to `hub`.
    pub async fn start(pg: Arc<PgStore>, hub: Hub) -> Result<Replicated, StoreError> {
        let last: i64 = client(&pg)
            .await?
            .query_one("SELECT last FROM seq_counter", &[])
            .await
            .map_err(PgError::from)?
            .get(0);
        let writer = LogWriter::start(&pg, COMMITTERS);
        let (pages, incoming) = mpsc::channel(64);
        // The other replicas' ephemeral frames, as the tailer hears them (a full queue
        // drops them: best effort).
        let (heard, frames) = mpsc::channel(super::relay::QUEUE);
        let tailer = Tailer::start((*pg).clone(), last, TAIL_POLL, pages, Some(heard));
        let known = Arc::new(Mutex::new(HashMap::new()));
        let replica = wire::new_id("r");
        let heed = super::relay::Heed::default();
        super::relay::start(pg.clone(), &hub, replica.clone(), frames, heed.clone());
        tokio::spawn(publish(
            pg.clone(),
            incoming,
            hub,
            known.clone(),
            heed.clone(),
        ));
        Ok(Replicated {
            pg,
            writer,
            tailer,
            known,
            replica,
            heed,
            timers_wake: Notify::new(),
            presence_wake: Notify::new(),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        lock(&self.known)
    }

    /// The version this replica knows a conversation at (0: new, never written).
    pub fn version(&self, id: &str) -> i64 {
        self.known().get(id).map_or(0, |k| k.version)
    }

    /// Whether another replica may have written the conversation since this one read or
    /// wrote it.
    pub fn is_stale(&self, id: &str) -> bool {
        self.known().get(id).is_some_and(|k| k.stale)
    }

    /// The conversation was read at `version`, when the tailer had published up to
    /// [`Replicated::position`] `as_of`.
    pub fn set_read(&self, id: &str, version: i64, as_of: i64) {
        let known = Known {
            version,
            as_of,
            stale: false,
        };
        self.known().insert(id.to_string(), known);
    }

    /// This replica wrote the conversation at `version`, its events up to `seq` (none:
    /// what it knew stays).
    pub fn set_written(&self, id: &str, version: i64, seq: Option<i64>) {
        let mut known = self.known();
        let k = known.entry(id.to_string()).or_insert(Known {
            version,
            as_of: 0,
            stale: false,
        });
        k.version = version;
        if let Some(seq) = seq {
            k.as_of = k.as_of.max(seq);
        }
    }

    /// Every copy may be older than the database (notices were lost): each is read again
    /// before it is used.
    pub fn all_stale(&self) {
        for k in self.known().values_mut() {
            k.stale = true;
        }
    }

    pub fn forget(&self, id: &str) {
        self.known().remove(id);
    }

    /// The newest `seq` the tailer has published.
    pub fn position(&self) -> i64 {
        self.tailer.position()
    }

    /// Waits (a while at most) until the tailer has published `seq`.
    pub async fn published(&self, seq: i64) {
        match tokio::time::timeout(PUBLISH_WAIT, self.tailer.caught_up(seq)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, seq, "the tailer stopped before a command's events")
            }
            Err(_) => tracing::warn!(
                seq,
                "the tailer has not reached a command's events yet; answering anyway"
            ),
        }
    }

    /// A conversation and its version, read from the database.
    pub async fn load(&self, id: &str) -> Result<Option<(i64, Conversation)>, StoreError> {
        let row = client(&self.pg)
            .await?
            .query_opt(
                "SELECT version, state FROM conversations WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(PgError::from)?;
        row.map(|r| Ok((r.get(0), parse(r.get(1))?))).transpose()
    }

    /// The conversations in play, with their versions (as `persist::load_open`).
    pub async fn load_open(&self) -> Result<Vec<(i64, Conversation)>, StoreError> {
        let rows = client(&self.pg)
            .await?
            .query(
                "SELECT version, state FROM conversations
                 WHERE status IN ('bot', 'collecting', 'new', 'assigned', 'chatting')",
                &[],
            )
            .await
            .map_err(PgError::from)?;
        rows.iter()
            .map(|r| Ok((r.get(0), parse(r.get(1))?)))
            .collect()
    }

    /// Claims the timers due now for this replica.
    pub async fn claim_timers(&self) -> Result<Vec<String>, StoreError> {
        let c = client(&self.pg).await?;
        Ok(timers::claim(&c, &self.replica, TIMER_LEASE, TIMER_BATCH).await?)
    }

    /// Says this replica is alive (true: its row was made anew, and its socket counts must
    /// all be written again), then sweeps the replicas gone silent: the agents offline
    /// because of it.
    pub async fn heartbeat(&self) -> Result<(bool, Vec<String>), StoreError> {
        let mut c = client(&self.pg).await?;
        let fresh = presence::heartbeat(&c, &self.replica).await?;
        let gone = presence::sweep(&mut c, presence::SILENT).await?;
        Ok((fresh, gone))
    }

    /// Writes how many sockets of each agent this replica holds now.
    pub async fn write_sockets(&self, counts: &[(String, usize)]) -> Result<(), StoreError> {
        let c = client(&self.pg).await?;
        for (email, n) in counts {
            let n = i32::try_from(*n).unwrap_or(i32::MAX);
            presence::set_sockets(&c, &self.replica, email, n).await?;
        }
        Ok(())
    }

    /// Who is online and what each agent holds, as the database says now.
    pub async fn cluster(&self) -> Result<Cluster, StoreError> {
        let c = client(&self.pg).await?;
        let online = presence::online(&c, presence::SILENT).await?;
        let active: Vec<&str> = ACTIVE.to_vec();
        let rows = c
            .query(
                "SELECT assignee, id FROM conversations
                 WHERE status = ANY($1) AND assignee IS NOT NULL",
                &[&active],
            )
            .await
            .map_err(PgError::from)?;
        let mut load: HashMap<String, BTreeSet<String>> = HashMap::new();
        for r in rows {
            let agent: String = r.get(0);
            load.entry(agent.to_lowercase())
                .or_default()
                .insert(r.get(1));
        }
        let store = crate::store::Store::Postgres(self.pg.clone());
        let accepting = store.accepting_agents().await?;
        let no_video = store.no_video_agents().await?;
        Ok(Cluster {
            online: online.into_iter().map(|e| e.to_lowercase()).collect(),
            load,
            accepting: accepting.into_iter().collect(),
            no_video: no_video.into_iter().collect(),
        })
    }

    /// The requests waiting for an agent (status `new`), of every replica.
    pub async fn waiting(&self) -> Result<Vec<String>, StoreError> {
        let rows = client(&self.pg)
            .await?
            .query("SELECT id FROM conversations WHERE status = 'new'", &[])
            .await
            .map_err(PgError::from)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// How long the timer loop may sleep: until the next timer, at most [`TIMER_POLL`].
    pub async fn next_timer(&self) -> Duration {
        let next = match client(&self.pg).await {
            Ok(c) => timers::next_due(&c).await.ok().flatten(),
            Err(_) => None,
        };
        next.map_or(TIMER_POLL, |d| d.min(TIMER_POLL))
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        self.tailer.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn parse(state: &str) -> Result<Conversation, StoreError> {
    serde_json::from_str(state).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The tailer's pages, published to this replica's sockets in `seq` order. The frames are
/// the ones a local commit made (`persist::Pending::frames`): the envelopes are put together
/// from the stored row, and the visitor's part is the event's visitor view. A conversation's
/// visitor is read once (its row is committed with its first events) and remembered. A
/// conversation's start, from any replica, is heeded by the engine (the visitor's current
/// conversation is the new one).
async fn publish(
    pg: Arc<PgStore>,
    mut pages: mpsc::Receiver<Vec<StoredEvent>>,
    hub: Hub,
    known: Arc<Mutex<HashMap<String, Known>>>,
    heed: super::relay::Heed,
) {
    let mut visitors: HashMap<String, String> = HashMap::new();
    while let Some(page) = pages.recv().await {
        let unknown: Vec<&str> = page
            .iter()
            .filter_map(|e| e.event.conversation_id.as_deref())
            .filter(|id| !visitors.contains_key(*id))
            .collect();
        if !unknown.is_empty() {
            if visitors.len() > VISITORS_MAX {
                visitors.clear();
            }
            match lookup_visitors(&pg, &unknown).await {
                Ok(found) => visitors.extend(found),
                Err(e) => {
                    tracing::warn!(error = %e, "the visitors of published events were not read; visitors get them at their next replay")
                }
            }
        }
        {
            // Conversations held here that another replica wrote: read again before use.
            let mut known = lock(&known);
            for stored in &page {
                if let Some(k) = stored
                    .event
                    .conversation_id
                    .as_deref()
                    .and_then(|id| known.get_mut(id))
                    && stored.seq > k.as_of
                {
                    k.stale = true;
                }
            }
        }
        for stored in page {
            let frame = frame(&stored, &visitors);
            if stored.event.kind == super::relay::CONVERSATION_STARTED
                && let Some(heed) = heed.get()
            {
                heed(&Frame {
                    seq: frame.seq,
                    conversation_id: frame.conversation_id.clone(),
                    visitor_id: frame.visitor_id.clone(),
                    kind: Some(super::relay::CONVERSATION_STARTED),
                    ..Frame::default()
                });
            }
            hub.publish(frame);
        }
    }
}

async fn lookup_visitors(pg: &PgStore, ids: &[&str]) -> Result<Vec<(String, String)>, StoreError> {
    let rows = client(pg)
        .await?
        .query(
            "SELECT id, visitor_id FROM conversations WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(PgError::from)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The hub frame of a stored event.
fn frame(stored: &StoredEvent, visitors: &HashMap<String, String>) -> Frame {
    let e = &stored.event;
    let conversation = e.conversation_id.as_deref().unwrap_or_default();
    let data: serde_json::Value = serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null);
    let agent = wire::envelope(stored.seq, &e.kind, conversation, &e.at, &data);
    let visitor = e.visitor_visible.then(|| {
        let seen = wire::visitor_data(&e.kind, &e.data);
        wire::envelope(stored.seq, &e.kind, conversation, &e.at, &seen)
    });
    Frame {
        seq: Some(stored.seq),
        conversation_id: e.conversation_id.clone(),
        bot: e.bot.clone(),
        visitor_id: e
            .conversation_id
            .as_ref()
            .and_then(|id| visitors.get(id).cloned()),
        agent_json: Some(agent.to_string().into()),
        visitor_json: visitor.map(|v| v.to_string().into()),
        kind: None,
        to_agent: None,
    }
}
