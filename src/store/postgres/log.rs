//! The event log on PostgreSQL: events appended by group commits, each group's `seq` numbers
//! taken from the counter row by the last statement of its transaction.
//!
//! Why the counter row: readers (every replica's tailer) poll `seq > last` and must never
//! skip an event. With a sequence, a transaction can take its numbers, stall, and commit
//! after a later one has been read; the reader has moved past its numbers for good. With
//! the counter, a transaction that appends holds the counter row's lock from the moment it
//! takes its numbers until it commits, and the next one waits for that commit before it can
//! take the numbers that follow: commits become visible in `seq` order, and a rollback gives
//! its numbers back, so `max(seq) = count(*)` always. The lock is held for one statement and
//! the commit; group commit (many jobs a transaction) is what makes that cheap.

use std::ops::Range;
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::conversations::{self, Guard, Refused};
use super::effects::{self, Effect};
use super::outbox::{self, NewItem};
use super::{PgError, PgStore};

/// The channel that wakes every replica's tailer after a commit that appended events; the
/// payload is the newest `seq` of that commit.
pub const CHANNEL: &str = "livechat_events";

/// At most this many events go into one group commit.
const GROUP_EVENTS: usize = 4096;

/// An event to append. The fields are the SQLite log's (`events`), so that the two stores
/// hold the same rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub conversation_id: Option<String>,
    pub bot: Option<String>,
    pub kind: String,
    pub at: String,
    pub visitor_visible: bool,
    pub data: String,
    pub client_id: Option<String>,
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: NewEvent,
}

/// The columns of an event as [`from_row`] reads them.
pub const COLUMNS: &str = "seq, conversation_id, bot, type, at, visitor_visible, data, client_id";

/// A conversation's messages and notes on PostgreSQL, from the log by its index on
/// `(conversation_id, seq)`: SQLite's view `conversation_messages`, columns and all.
pub const MESSAGES: &str = "SELECT e.data::json ->> 'message_id' AS id, e.seq,
            CASE e.type WHEN 'note.created' THEN 'note' ELSE e.data::json ->> 'author' END AS kind,
            e.data::json ->> 'agent' AS author, e.data::json ->> 'text' AS text, e.at
     FROM events e
     WHERE e.conversation_id = $1 AND e.type IN ('message.created', 'note.created')";

/// An event from a row selected with [`COLUMNS`].
pub fn from_row(row: &tokio_postgres::Row) -> StoredEvent {
    StoredEvent {
        seq: row.get(0),
        event: NewEvent {
            conversation_id: row.get(1),
            bot: row.get(2),
            kind: row.get(3),
            at: row.get(4),
            visitor_visible: row.get(5),
            data: row.get(6),
            client_id: row.get(7),
        },
    }
}

/// Appends `events` in the open transaction `tx` and returns their `seq` numbers. It must be
/// the transaction's last statement before the commit: it takes the counter row's lock,
/// which every other appending commit then waits for.
pub async fn append(tx: &impl GenericClient, events: &[&NewEvent]) -> Result<Range<i64>, PgError> {
    if events.is_empty() {
        return Ok(0..0);
    }
    let count = events.len() as i64;
    let column = |f: fn(&NewEvent) -> Option<&str>| events.iter().map(|e| f(e)).collect::<Vec<_>>();
    let conversation = column(|e| e.conversation_id.as_deref());
    let bot = column(|e| e.bot.as_deref());
    let kind = column(|e| Some(&e.kind));
    let at = column(|e| Some(&e.at));
    let data = column(|e| Some(&e.data));
    let client_id = column(|e| e.client_id.as_deref());
    let visible: Vec<bool> = events.iter().map(|e| e.visitor_visible).collect();
    let last: i64 = tx
        .query_one(&tx.prepare_cached("WITH counter AS (
                 UPDATE seq_counter SET last = last + $1 RETURNING last
             ), appended AS (
                 INSERT INTO events (seq, conversation_id, bot, type, at, visitor_visible, data, client_id)
                 SELECT counter.last - $1 + e.n, e.conversation_id, e.bot, e.type, e.at,
                        e.visitor_visible, e.data, e.client_id
                 FROM counter, unnest($2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::boolean[], $7::text[], $8::text[])
                      WITH ORDINALITY AS e (conversation_id, bot, type, at, visitor_visible,
                                            data, client_id, n)
             )
             SELECT last FROM counter").await?,
            &[
                &count,
                &conversation,
                &bot,
                &kind,
                &at,
                &visible,
                &data,
                &client_id,
            ],
        )
        .await?
        .get(0);
    Ok(last - count + 1..last + 1)
}

/// Wakes the tailers: `NOTIFY` with the newest `seq`, as a statement of its own after the
/// commit (inside the transaction it would take a lock that serialises every commit of the
/// database). Best effort: a tailer that misses it finds the events at its next poll.
pub async fn notify(client: &impl GenericClient, newest: i64) {
    if let Err(e) = client
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &newest.to_string()])
        .await
    {
        tracing::debug!(error = %e, "NOTIFY after a commit failed; the tailers' poll finds the events");
    }
}

/// What a job is answered: its `seq` numbers, or why its guard refused it.
pub type Appended = Result<Range<i64>, Refused>;

type Reply = oneshot::Sender<Result<Appended, Arc<PgError>>>;

/// What one job writes, all or nothing: a conversation's row when `guard` holds (none: the
/// events alone), its events, and what it leaves to deliver (mail, webhook calls).
#[derive(Debug, Clone, Default)]
pub struct Transition {
    pub guard: Option<Guard>,
    pub events: Vec<NewEvent>,
    pub outbox: Vec<NewItem>,
    /// The rows written beside them (a visitor's profile, a message's files, …).
    pub effects: Vec<Effect>,
}

struct Job {
    transition: Transition,
    reply: Reply,
}

/// A replica's log writer: appends go to its committers, each of which takes every job
/// waiting (up to [`GROUP_EVENTS`] events) into one transaction, decides the jobs' guards
/// (`conversations::write`), queues the outbox items and appends the events of those
/// written, commits, answers each job, then notifies the tailers.
#[derive(Clone)]
pub struct LogWriter {
    jobs: mpsc::Sender<Job>,
}

impl LogWriter {
    /// Starts `committers` committing tasks on the store's pool. More than one overlaps one
    /// group's round trips with the next group's; the counter row still orders the commits.
    pub fn start(store: &PgStore, committers: usize) -> LogWriter {
        let (jobs, queue) = mpsc::channel::<Job>(GROUP_EVENTS);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..committers.max(1) {
            let store = store.clone();
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                // A committer keeps its connection: taking one from the pool for each group
                // would queue the commit behind every read waiting for the pool. One the
                // server closed, or that failed with the database gone, is given back (the
                // pool discards it) and another taken (`commit`).
                let mut connection = None;
                while let Some(group) = next_group(&queue).await {
                    commit(&store, &mut connection, group).await;
                }
            });
        }
        LogWriter { jobs }
    }

    /// Appends `events` as one unit (all or none) and returns their `seq` numbers once they
    /// are committed.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Range<i64>, PgError> {
        let transition = Transition {
            events,
            ..Transition::default()
        };
        match self.write(transition).await? {
            Ok(seqs) => Ok(seqs),
            Err(refused) => unreachable!("an append without a guard was refused: {refused:?}"),
        }
    }

    /// Writes a conversation's transition: its row, if `guard` holds, and its events.
    pub async fn transition(
        &self,
        guard: Guard,
        events: Vec<NewEvent>,
    ) -> Result<Appended, PgError> {
        self.write(Transition {
            guard: Some(guard),
            events,
            outbox: Vec::new(),
            effects: Vec::new(),
        })
        .await
    }

    /// Writes `transition` in the next group commit; answers once it is committed.
    pub async fn write(&self, transition: Transition) -> Result<Appended, PgError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { transition, reply })
            .await
            .map_err(|_| PgError::WriterGone)?;
        match answer.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(e)) => Err(PgError::Group(e)),
            Err(_) => Err(PgError::WriterGone),
        }
    }
}

/// Waits for a job, then takes every job already waiting, up to [`GROUP_EVENTS`] events.
async fn next_group(queue: &Mutex<mpsc::Receiver<Job>>) -> Option<Vec<Job>> {
    let mut queue = queue.lock().await;
    let first = queue.recv().await?;
    let mut size = first.transition.events.len();
    let mut group = vec![first];
    while size < GROUP_EVENTS {
        match queue.try_recv() {
            Ok(job) => {
                size += job.transition.events.len();
                group.push(job);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

/// Writes `group` in one transaction and answers its jobs. The committer's kept
/// `connection` is checked first: one the server has closed (a restart, a failover, its
/// session ended) is dropped, and the pool, which checks a connection given back, gives a
/// fresh one. It is dropped too after a failure that is the database gone; then, if the
/// kept connection failed before its COMMIT was sent, the group is written once more on a
/// fresh one: its transaction ended with the session, so nothing of it is written (a COMMIT
/// whose answer was lost, which may have landed, is never tried again).
async fn commit(
    store: &PgStore,
    connection: &mut Option<deadpool_postgres::Object>,
    group: Vec<Job>,
) {
    if connection.as_ref().is_some_and(|c| c.is_closed()) {
        *connection = None;
    }
    let kept = connection.is_some();
    let mut result = write_group(store, connection, &group).await;
    if let Err(e) = &result
        && kept
        && e.is_unavailable()
        && !e.is_commit_unknown()
    {
        tracing::debug!(error = %e, "the committer's connection failed; writing the group on a fresh one");
        *connection = None;
        result = write_group(store, connection, &group).await;
    }
    match result {
        Ok((seqs, decided)) => {
            let mut next = seqs.start;
            for (job, refused) in group.into_iter().zip(decided) {
                let answer = match refused {
                    Some(refused) => Err(refused),
                    None => {
                        let n = job.transition.events.len() as i64;
                        next += n;
                        Ok(next - n..next)
                    }
                };
                let _ = job.reply.send(Ok(answer));
            }
        }
        Err(e) if group.len() > 1 && !e.is_unavailable() => {
            // One job's fault (a value PostgreSQL refuses, a deadlock it broke) must not fail
            // the jobs that shared its group: each is tried again in a group of its own, on
            // the same connection (its transaction was rolled back).
            tracing::debug!(error = %e, jobs = group.len(), "a group commit failed; its jobs go one by one");
            for job in group {
                Box::pin(commit(store, connection, vec![job])).await;
            }
        }
        Err(e) => {
            if e.is_unavailable() {
                *connection = None;
            }
            tracing::warn!(error = %e, jobs = group.len(), "a group commit of the event log failed");
            let e = Arc::new(e);
            for job in group {
                let _ = job.reply.send(Err(Arc::clone(&e)));
            }
        }
    }
}

/// One transaction for `group`: its guards decided, its outbox items queued and the events
/// of the jobs written appended, then the commit and the tailers' `NOTIFY`. Returns the
/// `seq` numbers of the appended events and each job's refusal, if any.
async fn write_group(
    store: &PgStore,
    connection: &mut Option<deadpool_postgres::Object>,
    group: &[Job],
) -> Result<(Range<i64>, Vec<Option<Refused>>), PgError> {
    let client = match connection {
        Some(client) => client,
        None => connection.insert(store.pool().get().await?),
    };
    let tx = client.transaction().await?;
    let guards: Vec<&Guard> = group
        .iter()
        .filter_map(|job| job.transition.guard.as_ref())
        .collect();
    let mut refusals = conversations::write(&tx, &guards).await?.into_iter();
    let decided: Vec<Option<Refused>> = group
        .iter()
        .map(|job| {
            let guard = job.transition.guard.as_ref();
            guard.and_then(|_| refusals.next().flatten())
        })
        .collect();
    let written = || {
        group
            .iter()
            .zip(&decided)
            .filter(|(_, refused)| refused.is_none())
            .map(|(job, _)| &job.transition)
    };
    let items: Vec<&NewItem> = written().flat_map(|t| &t.outbox).collect();
    outbox::enqueue(&tx, &items).await?;
    let effects: Vec<&Effect> = written().flat_map(|t| &t.effects).collect();
    effects::apply(&tx, &effects).await?;
    let events: Vec<&NewEvent> = written().flat_map(|t| &t.events).collect();
    let seqs = append(&tx, &events).await?;
    tx.commit().await.map_err(super::at_commit)?;
    if !seqs.is_empty() {
        notify(&*client, seqs.end - 1).await;
    }
    Ok((seqs, decided))
}
