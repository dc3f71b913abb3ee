//! WAL checkpoints on a thread of their own.
//!
//! SQLite's default is that the connection whose commit takes the WAL past 1,000 pages copies
//! it back into the database file then and there, fsyncs included: on the writer thread,
//! with every caller of the next group waiting. Here the writer only rings a [`Link`] after
//! each commit, and this thread, on its own connection, runs passive checkpoints (which
//! never block the writer or a reader) at most every [`PAUSE`].
//!
//! A passive checkpoint beside a busy writer never quite finishes (the writer has appended
//! frames by the time it has copied), and SQLite starts the WAL file over from its beginning
//! only when a write transaction begins with every frame copied. So once the WAL holds
//! [`RESTART_AT_BYTES`], the checkpointer closes the link's gate, which holds the writer
//! between two groups, for one more pass: it copies the few frames written since the last
//! one, and the next group starts the WAL over. The writer keeps SQLite's own threshold,
//! far higher ([`WRITER_AUTOCHECKPOINT_BYTES`]), as a backstop should this thread fall behind.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// Time between two checkpoints under a steady write load: commits gather meanwhile, and
/// pages written again and again are copied once.
const PAUSE: Duration = Duration::from_millis(50);

/// The WAL's size after which the checkpointer starts it over. Each restart holds the
/// writer for its last pass and fsyncs (tens of milliseconds on a busy disk), so how often
/// it comes decides delivery's p99 under load: it was 4,096 frames, 8 MiB at 2 KiB pages
/// but only 2 MiB at the 512-byte pages of a new database (docs/benchmarks.md, #15).
const RESTART_AT_BYTES: i64 = 64 * 1024 * 1024;

/// The WAL's size after which the writer checkpoints by itself (a backstop).
const WRITER_AUTOCHECKPOINT_BYTES: i64 = 128 * 1024 * 1024;

fn page_size(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0))
        .unwrap_or(4096)
        .max(512)
}

/// `wal_autocheckpoint` for the writer's connection: in pages, for its database.
pub fn writer_autocheckpoint(conn: &Connection) -> i64 {
    WRITER_AUTOCHECKPOINT_BYTES / page_size(conn)
}

/// What the writer and the checkpointer share.
pub struct Link {
    nudge: mpsc::SyncSender<()>,
    gate: Arc<Mutex<()>>,
}

impl Link {
    /// Rung by the writer after each commit; never blocks (rings while a checkpoint is
    /// pending fold into it).
    pub fn ring(&self) {
        let _ = self.nudge.try_send(());
    }

    /// Held by the writer for each group, from `BEGIN` to `COMMIT`.
    pub fn group(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts the checkpointer on a connection of its own to the database in `data_dir` (which
/// must exist and be migrated). It ends when the returned link is dropped.
pub fn start(data_dir: &Path) -> Result<Link, StoreError> {
    let conn = super::connect(data_dir)?;
    // It copies WAL frames into the file without its page cache: it needs little.
    super::small_cache(&conn)?;
    let (nudge, rx) = mpsc::sync_channel(1);
    let gate = Arc::new(Mutex::new(()));
    let shared = gate.clone();
    thread::Builder::new()
        .name("livechat-checkpoint".into())
        .spawn(move || run(&conn, &rx, &shared))
        .map_err(|e| StoreError::Commit(format!("cannot start the checkpointer: {e}")))?;
    Ok(Link { nudge, gate })
}

fn run(conn: &Connection, rx: &mpsc::Receiver<()>, gate: &Mutex<()>) {
    // Logged when checkpoints start failing and when they work again, not each time: on a
    // full disk every commit that still fits in the WAL would add a line.
    let mut failing = false;
    let restart_at = RESTART_AT_BYTES / page_size(conn);
    while rx.recv().is_ok() {
        let outcome = match checkpoint(conn) {
            Ok((frames, _)) if frames >= restart_at => {
                let _quiet = gate.lock().unwrap_or_else(|p| p.into_inner());
                checkpoint(conn).map(|_| ())
            }
            other => other.map(|_| ()),
        };
        match outcome {
            Err(e) if !failing => {
                tracing::warn!("WAL checkpoint failed (retried after each commit): {e}");
                failing = true;
            }
            Ok(()) if failing => {
                tracing::info!("WAL checkpoints work again");
                failing = false;
            }
            _ => {}
        }
        thread::sleep(PAUSE);
    }
}

/// A passive checkpoint: (frames in the WAL, frames copied into the database).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_copied_into_the_database_by_the_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB)").unwrap();
        for _ in 0..500 {
            conn.execute("INSERT INTO t (b) VALUES (zeroblob(2000))", [])
                .unwrap();
        }
        // About 1 MB sits in the WAL; the database file only grows when it is checkpointed.
        let db = dir.path().join(crate::store::DB_FILE);
        let size = || std::fs::metadata(&db).unwrap().len();
        let before = size();
        assert!(
            before < 500_000,
            "nothing checkpointed yet ({before} bytes)"
        );
        let nudge = start(dir.path()).unwrap();
        nudge.ring();
        let mut after = before;
        for _ in 0..500 {
            after = size();
            if after > 1_000_000 {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            after > 1_000_000,
            "the checkpointer copied the WAL: {before} → {after} bytes"
        );
    }
}
