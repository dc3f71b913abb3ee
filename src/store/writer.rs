//! The one writer: a dedicated thread owns the write connection and commits in groups.
//!
//! Callers hand it a job (a closure over the connection). The thread takes every job that
//! is waiting, runs each inside its own savepoint of one transaction, commits once, and only
//! then completes the jobs, in the order they ran. So a caller is told "done" only after its
//! writes are durable, and hooks run after commit (publishing events) see commits in order.
//! Many concurrent writers share one fsync instead of paying one each.
//!
//! Work that need not be repeated per job runs once per group: a [`GroupStep`] runs after
//! the jobs, in the same transaction (the search index is brought up to date there), and
//! WAL checkpoints run on a thread of their own (see [`super::checkpoint`]), so the writer's
//! time goes to the jobs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;

/// Runs after the group commit: `Ok` when the job's writes are durable.
type Finisher = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A committed group's finishers, handed to the async runtime.
type Done = tokio::sync::mpsc::UnboundedSender<(Vec<Finisher>, Result<(), String>)>;
type Job = Box<dyn FnOnce(&Connection) -> Finisher + Send>;

/// The most jobs one transaction takes; more wait for the next commit.
const MAX_GROUP: usize = 512;

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

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    counts: Arc<Counts>,
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

    /// The same, with `step` run once per group, and the checkpointer told after each
    /// commit (and let hold the writer between two groups).
    pub fn start_with(
        conn: Connection,
        step: impl GroupStep,
        checkpointer: Option<super::checkpoint::Link>,
    ) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>();
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
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
        thread::Builder::new()
            .name("livechat-writer".into())
            .spawn(move || run(conn, rx, step, checkpointer, done, &counted))
            .expect("spawn the writer thread");
        Writer { jobs: tx, counts }
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
        let job: Job = Box::new(move |conn: &Connection| {
            let result = in_savepoint(conn, work);
            Box::new(move |commit: Result<(), String>| {
                let result = match (result, commit) {
                    (Ok(value), Ok(())) => {
                        after(&value);
                        Ok(value)
                    }
                    (Ok(_), Err(e)) => Err(StoreError::Commit(e)),
                    (Err(e), _) => Err(e),
                };
                let _ = reply.send(result);
            })
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
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        // The checkpointer may hold the writer here, between two groups (see checkpoint.rs).
        let gate = checkpointer.as_ref().map(|link| link.group());
        counts.groups.fetch_add(1, Ordering::Relaxed);
        counts.jobs.fetch_add(group.len() as u64, Ordering::Relaxed);
        let begun = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string());
        let finishers: Vec<Finisher> = match &begun {
            Ok(()) => group.into_iter().map(|job| job(&conn)).collect(),
            Err(_) => Vec::new(),
        };
        let stepped = begun.is_ok()
            && step
                .before_commit(&conn)
                .inspect_err(|e| tracing::warn!("group step failed (retried next group): {e}"))
                .is_ok();
        let commit = begun.and_then(|()| {
            conn.execute_batch("COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                e.to_string()
            })
        });
        if let Err(e) = &commit {
            tracing::error!("group commit failed: {e}");
        }
        step.after_commit(stepped && commit.is_ok());
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

fn finish(finishers: Vec<Finisher>, commit: &Result<(), String>) {
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
}
