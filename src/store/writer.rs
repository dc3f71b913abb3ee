//! The one writer: a dedicated thread owns the write connection and commits in groups.
//!
//! Callers hand it a job (a closure over the connection). The thread takes every job that
//! is waiting, runs each inside its own savepoint of one transaction, commits once, and only
//! then completes the jobs, in the order they ran. So a caller is told "done" only after its
//! writes are durable, and hooks run after commit (publishing events) see commits in order.
//! Many concurrent writers share one fsync instead of paying one each.
//!
//! Work that need not be repeated per job runs once per group: a [`GroupStep`] runs after
//! the jobs, in the same transaction (the search index and the log's index by conversation
//! are brought up to date there), and
//! WAL checkpoints run on a thread of their own (see [`super::checkpoint`]), so the writer's
//! time goes to the jobs.
//!
//! A group that cannot commit (the disk full, an I/O error) fails as a whole: each of its
//! callers gets the error, nothing of it is acknowledged, and the thread goes on with the
//! next group, so writes resume by themselves once there is room again. The outcome of
//! each group is recorded in the store's [`Health`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak, mpsc};
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;
use super::health::Health;

/// Why a group did not commit; every caller in it gets it.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    /// The storage cannot take writes (see [`super::unavailable`]).
    unavailable: bool,
}

impl Failure {
    fn of(e: &rusqlite::Error) -> Failure {
        Failure {
            message: e.to_string(),
            unavailable: super::unavailable(e),
        }
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> StoreError {
        if f.unavailable {
            StoreError::Unavailable(f.message)
        } else {
            StoreError::Commit(f.message)
        }
    }
}

type Commit = Result<(), Failure>;
/// Runs after the group commit: `Ok` when the job's writes are durable.
type Finisher = Box<dyn FnOnce(Commit) + Send>;
/// A committed group's finishers, handed to the async runtime.
type Done = tokio::sync::mpsc::UnboundedSender<(Vec<Finisher>, Commit)>;
/// A job, given the connection to run on, or `None` when its group has failed before its
/// turn (it then only waits for the group's failure). Answers its finisher and, when it
/// failed because the storage cannot take writes, why.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (Finisher, Option<Failure>) + Send>;

/// The most jobs one transaction takes; more wait for the next commit.
const MAX_GROUP: usize = 512;

/// A group of at least this many jobs means the writer is busy: the next group waits up to
/// [`GATHER_FOR`] for [`GATHER_UP_TO`] jobs before it commits.
const BUSY_AT: usize = 4;
const GATHER_FOR: std::time::Duration = std::time::Duration::from_micros(500);
const GATHER_UP_TO: usize = 32;

/// Work done once per group, after its jobs, in their transaction.
pub trait GroupStep: Send + 'static {
    /// Runs before the commit. An error is logged and the group still commits: a step must
    /// be able to catch up with the next group.
    fn before_commit(&mut self, conn: &Connection) -> rusqlite::Result<()>;
    /// Whether the group (and so the step's writes) committed.
    fn after_commit(&mut self, committed: bool);
}

/// No step.
impl GroupStep for () {
    fn before_commit(&mut self, _: &Connection) -> rusqlite::Result<()> {
        Ok(())
    }
    fn after_commit(&mut self, _: bool) {}
}

/// Two steps, one after the other (each still catches up by itself should it fail).
impl<A: GroupStep, B: GroupStep> GroupStep for (A, B) {
    fn before_commit(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let first = self.0.before_commit(conn);
        let second = self.1.before_commit(conn);
        first.and(second)
    }
    fn after_commit(&mut self, committed: bool) {
        self.0.after_commit(committed);
        self.1.after_commit(committed);
    }
}

#[derive(Clone)]
pub struct Writer {
    jobs: Arc<mpsc::Sender<Job>>,
    counts: Arc<Counts>,
    health: Arc<Health>,
}

/// A writer that does not keep its thread running (for tasks that watch it).
pub struct WeakWriter {
    jobs: Weak<mpsc::Sender<Job>>,
    counts: Arc<Counts>,
    health: Arc<Health>,
}

impl WeakWriter {
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The writer, while some [`Writer`] still holds its thread.
    pub fn upgrade(&self) -> Option<Writer> {
        Some(Writer {
            jobs: self.jobs.upgrade()?,
            counts: self.counts.clone(),
            health: self.health.clone(),
        })
    }
}

/// What the writer has done since it started (for `/metrics`).
#[derive(Default)]
pub struct Counts {
    /// Transactions committed (or attempted).
    pub groups: AtomicU64,
    /// Jobs run in them.
    pub jobs: AtomicU64,
}

impl Writer {
    /// Starts the writer thread on `conn`. It ends when every `Writer` clone is dropped.
    pub fn start(conn: Connection) -> Writer {
        Writer::start_with(conn, (), None)
    }

    /// [`Writer::start`], with the thread's handle: joined once every `Writer` clone is
    /// dropped, it has closed the connection. A command that exits only then leaves no
    /// `-wal` or `-shm` beside the database, as when it had one connection of its own.
    pub fn start_joinable(conn: Connection) -> (Writer, thread::JoinHandle<()>) {
        Writer::spawn(conn, (), None)
    }

    /// The same, with `step` run once per group, and the checkpointer told after each
    /// commit (and let hold the writer between two groups).
    pub fn start_with(
        conn: Connection,
        step: impl GroupStep,
        checkpointer: Option<super::checkpoint::Link>,
    ) -> Writer {
        Writer::spawn(conn, step, checkpointer).0
    }

    fn spawn(
        conn: Connection,
        step: impl GroupStep,
        checkpointer: Option<super::checkpoint::Link>,
    ) -> (Writer, thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>();
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
        let health = Arc::new(Health::default());
        let recorded = health.clone();
        // A group's callers are told on one task of the runtime: the writer wakes it once
        // per group instead of waking each caller itself (each wake a system call, and on
        // two cores often a switch away from the writer).
        let done = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (done, mut groups) = tokio::sync::mpsc::unbounded_channel();
            runtime.spawn(async move {
                while let Some((finishers, commit)) = groups.recv().await {
                    finish(finishers, &commit);
                }
            });
            done
        });
        let thread = thread::Builder::new()
            .name("livechat-writer".into())
            .spawn(move || run(conn, rx, step, checkpointer, done, &counted, &recorded))
            .expect("spawn the writer thread");
        let writer = Writer {
            jobs: Arc::new(tx),
            counts,
            health,
        };
        (writer, thread)
    }

    /// Whether the store can be written, as the last group found it, and the free space.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// This writer without keeping its thread running.
    pub fn downgrade(&self) -> WeakWriter {
        WeakWriter {
            jobs: Arc::downgrade(&self.jobs),
            counts: self.counts.clone(),
            health: self.health.clone(),
        }
    }

    /// A small real write (the database header's application id, to the value it has): it
    /// fails while the storage takes no writes, and so tells when it takes them again.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            let id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
            conn.pragma_update(None, "application_id", id)?;
            Ok(())
        })
        .await
    }

    /// Group commits and jobs so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.groups.load(Ordering::Relaxed),
            self.counts.jobs.load(Ordering::Relaxed),
        )
    }

    /// Runs `work` in the next group commit; `after` runs once it is durable (in commit
    /// order, on one task of the runtime — keep it short and non-blocking), then the result
    /// is returned.
    pub async fn write<T, W, A>(&self, work: W, after: A) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let answer = self.send(work, after)?;
        answer.await.map_err(|_| stopped())?
    }

    /// `write` with nothing to do after commit.
    pub async fn run<T, W>(&self, work: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write(work, |_| {}).await
    }

    /// `run` for code on a blocking thread (config reloads): waits for the commit without
    /// an async runtime. Never call it on an async worker.
    pub fn run_blocking<T, W>(&self, work: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let answer = self.send(work, |_| {})?;
        answer.blocking_recv().map_err(|_| stopped())?
    }

    /// Queues `work` for the next group; the answer comes once it is durable.
    fn send<T, W, A>(
        &self,
        work: W,
        after: A,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        W: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn: Option<&Connection>| {
            let result = conn.map(|conn| in_savepoint(conn, work));
            let failed = match &result {
                Some(Err(e)) if e.is_unavailable() => Some(Failure {
                    message: e.to_string(),
                    unavailable: true,
                }),
                _ => None,
            };
            let finish: Finisher = Box::new(move |commit: Commit| {
                let result = match (result, commit) {
                    (Some(Ok(value)), Ok(())) => {
                        after(&value);
                        Ok(value)
                    }
                    (Some(Err(e)), _) => Err(e),
                    (_, Err(failure)) => Err(failure.into()),
                    (None, Ok(())) => Err(StoreError::Commit("the write did not run".into())),
                };
                let _ = reply.send(result);
            });
            (finish, failed)
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        Ok(answer)
    }
}

fn stopped() -> StoreError {
    StoreError::Commit("the writer has stopped".into())
}

fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Prepared once and kept: these run for every job, and parsing them each time showed.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match work(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            // Undo this job's writes only; the others in the group still commit.
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn run(
    conn: Connection,
    rx: mpsc::Receiver<Job>,
    mut step: impl GroupStep,
    checkpointer: Option<super::checkpoint::Link>,
    done: Option<Done>,
    counts: &Counts,
    health: &Health,
) {
    // The last group found others waiting: the writer is what callers wait for.
    let mut busy = false;
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if busy && group.len() < GATHER_UP_TO {
            // Under a write load a commit costs pages of its own (the log's last leaf, the
            // file's header, the `seq` counter) besides its messages': a moment's wait
            // for the callers about to come makes fewer, larger commits.
            let until = std::time::Instant::now() + GATHER_FOR;
            while group.len() < GATHER_UP_TO {
                let left = until.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
        }
        busy = group.len() >= BUSY_AT;
        // The checkpointer may hold the writer here, between two groups (see checkpoint.rs).
        let gate = checkpointer.as_ref().map(|link| link.group());
        counts.groups.fetch_add(1, Ordering::Relaxed);
        counts.jobs.fetch_add(group.len() as u64, Ordering::Relaxed);
        // `Err` once the group cannot commit any more: then the jobs after do not run.
        let mut group_failed = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| Failure::of(&e))
            .err();
        // A job that failed because the storage takes no writes (its own savepoint undone).
        let mut job_failed = None;
        let mut finishers: Vec<Finisher> = Vec::with_capacity(group.len());
        for job in group {
            let on = group_failed.is_none().then_some(&conn);
            let (finish, failed) = job(on);
            finishers.push(finish);
            if on.is_some() && conn.is_autocommit() {
                // SQLite rolled the whole transaction back on an I/O error or a full disk
                // (it may): the jobs before this one are undone too, and the ones after
                // must not run outside the group's transaction.
                group_failed = Some(failed.clone().unwrap_or_else(|| Failure {
                    message: "the group's transaction was rolled back".into(),
                    unavailable: false,
                }));
            }
            if failed.is_some() {
                job_failed = failed;
            }
        }
        let commit = match group_failed {
            Some(failure) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                step.after_commit(false);
                Err(failure)
            }
            None => {
                let stepped = step
                    .before_commit(&conn)
                    .inspect_err(|e| tracing::warn!("group step failed (retried next group): {e}"))
                    .is_ok();
                let commit = conn.execute_batch("COMMIT").map_err(|e| {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    Failure::of(&e)
                });
                step.after_commit(stepped && commit.is_ok());
                commit
            }
        };
        match (&commit, &job_failed) {
            (Err(failure), _) | (Ok(()), Some(failure)) => {
                if !failure.unavailable {
                    tracing::error!("group commit failed: {}", failure.message);
                }
                health.write_failed(&failure.message, failure.unavailable);
            }
            (Ok(()), None) => health.write_succeeded(),
        }
        drop(gate);
        if let (Some(link), Ok(())) = (&checkpointer, &commit) {
            link.ring();
        }
        match &done {
            Some(done) => {
                if let Err(returned) = done.send((finishers, commit)) {
                    // The runtime is gone (shutting down): tell the callers from here.
                    let (finishers, commit) = returned.0;
                    finish(finishers, &commit);
                }
            }
            None => finish(finishers, &commit),
        }
    }
}

fn finish(finishers: Vec<Finisher>, commit: &Commit) {
    for finish in finishers {
        finish(commit.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
            .unwrap();
        (dir, Writer::start(conn))
    }

    #[tokio::test]
    async fn a_failed_job_rolls_back_alone_and_hooks_run_in_commit_order() {
        let (dir, writer) = writer();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut pending = Vec::new();
        for n in [1, 2, 2, 3] {
            let w = writer.clone();
            let order = order.clone();
            pending.push(tokio::spawn(async move {
                w.write(
                    move |c| {
                        c.execute("INSERT INTO t (n) VALUES (?1)", [n])?;
                        Ok(n)
                    },
                    move |n| order.lock().unwrap().push(*n),
                )
                .await
            }));
            // Keep submission order deterministic for the order check.
            tokio::task::yield_now().await;
        }
        let mut results = Vec::new();
        for p in pending {
            results.push(p.await.unwrap().is_ok());
        }
        assert_eq!(results.iter().filter(|ok| **ok).count(), 3);
        let order = order.lock().unwrap().clone();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 2, 3]);
        let conn = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
        let count: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            count, 3,
            "the duplicate's insert was undone, the others kept"
        );
    }

    #[tokio::test]
    async fn a_full_database_fails_its_writes_plainly_and_the_writer_goes_on_when_there_is_room() {
        let (dir, writer) = writer();
        writer
            .run(|c| {
                c.execute_batch("CREATE TABLE b (x BLOB)")?;
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                // SQLite's own limit on the file's size answers SQLITE_FULL like a full disk.
                c.pragma_update(None, "max_page_count", pages + 20)?;
                Ok(())
            })
            .await
            .unwrap();
        let insert = || {
            writer.run(|c| {
                c.execute("INSERT INTO b (x) VALUES (zeroblob(4000))", [])?;
                Ok(c.last_insert_rowid())
            })
        };
        let mut stored = Vec::new();
        let refused = loop {
            match insert().await {
                Ok(id) => stored.push(id),
                Err(e) => break e,
            }
            assert!(stored.len() < 100, "the limit never bound");
        };
        assert!(refused.is_unavailable(), "{refused}");
        assert!(!stored.is_empty());
        let failing = writer.health().failing().expect("the health says so");
        assert!(failing.reason.contains("full"), "{}", failing.reason);
        // The writer is still there: a write that fits goes through meanwhile…
        writer
            .run(|c| Ok(c.execute("DELETE FROM t", [])?))
            .await
            .unwrap();
        assert!(writer.health().failing().is_none(), "a commit clears it");
        assert!(insert().await.unwrap_err().is_unavailable());
        // …and once there is room, writes succeed again, without a restart.
        writer
            .run(|c| Ok(c.pragma_update(None, "max_page_count", 1_000_000)?))
            .await
            .unwrap();
        stored.push(insert().await.unwrap());
        assert!(writer.health().failing().is_none());
        // Every acknowledged write is there, nothing else.
        let conn = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
        let mut ids: Vec<i64> = conn
            .prepare("SELECT rowid FROM b ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        ids.sort();
        assert_eq!(ids, stored);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_on_a_full_database_acknowledge_only_what_was_stored() {
        let (dir, writer) = writer();
        writer
            .run(|c| {
                c.execute_batch("CREATE TABLE b (n INTEGER, x BLOB)")?;
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                // Room for some tens of the rows below, whatever the page size.
                c.pragma_update(None, "max_page_count", pages + 120 * 1024 / size)?;
                Ok(())
            })
            .await
            .unwrap();
        // Bursts of writes, so that groups hold many jobs when the limit binds.
        let mut acked = Vec::new();
        let mut refused = 0;
        for burst in 0..20 {
            let pending: Vec<_> = (0..25)
                .map(|i| {
                    let w = writer.clone();
                    let n = burst * 100 + i;
                    tokio::spawn(async move {
                        w.run(move |c| {
                            c.execute("INSERT INTO b VALUES (?1, zeroblob(1500))", [n])?;
                            Ok(n)
                        })
                        .await
                    })
                })
                .collect();
            for p in pending {
                match p.await.unwrap() {
                    Ok(n) => acked.push(n),
                    Err(e) => {
                        assert!(e.is_unavailable(), "{e}");
                        refused += 1;
                    }
                }
            }
        }
        assert!(refused > 0 && !acked.is_empty(), "{refused} refused");
        let conn = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE)).unwrap();
        let mut stored: Vec<i64> = conn
            .prepare("SELECT n FROM b")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        stored.sort();
        acked.sort();
        assert_eq!(stored, acked, "exactly the acknowledged writes are stored");
    }
}
