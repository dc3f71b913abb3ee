//! SQLite storage: one database file in the data directory, WAL mode, embedded migrations.

pub mod attachments;
pub mod backup;
pub mod backup_files;
pub mod checkpoint;
pub mod contacts;
pub mod event_index;
pub mod forms;
pub mod handle;
pub mod health;
pub mod lock;
pub mod media;
pub mod migrations;
pub mod pageviews;
pub mod postgres;
pub mod previews;
pub mod privacy;
pub mod reader;
pub mod reads;
pub mod revisions;
pub mod search;
pub mod stored;
pub mod visitors;
pub mod writer;

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use crate::settings::Synchronous;

pub use handle::Store;
pub use migrations::MIGRATIONS;
pub use revisions::{Revision, RevisionSummary};

/// The page size of a new database (the smallest SQLite takes; see `configure`).
pub const PAGE_SIZE: u32 = 512;

/// The database file inside the data directory.
pub const DB_FILE: &str = "livechat.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(#[from] rusqlite_migration::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("revision {number} holds a bundle that cannot be read: {source}")]
    CorruptBundle {
        number: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("unknown revision source `{0}`")]
    UnknownSource(String),
    #[error("the write was not committed: {0}")]
    Commit(String),
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
    /// The database cannot be written now (disk full, I/O error, read-only): nothing was
    /// written, and a later try may succeed once the operator has made room.
    #[error("the database cannot be written now: {0}")]
    Unavailable(String),
    /// The PostgreSQL store of replicas failed (`postgres`).
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
}

impl StoreError {
    /// Whether this is the storage failing (the disk full, an I/O error, the database read
    /// only) rather than a fault of the request or of ours: a retry later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Postgres(e) => e.is_unavailable(),
            StoreError::Sqlite(e) | StoreError::Open { source: e, .. } => unavailable(e),
            StoreError::Migrate(rusqlite_migration::Error::RusqliteError { err, .. }) => {
                unavailable(err)
            }
            _ => false,
        }
    }
}

/// Whether SQLite failed because the storage cannot take writes: `SQLITE_FULL`,
/// `SQLITE_IOERR`, `SQLITE_READONLY`, `SQLITE_CANTOPEN` or `SQLITE_PERM`.
pub fn unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | ReadOnly | CannotOpen | PermissionDenied)
    )
}

/// Runs `work` all or nothing. Inside the writer's group transaction it is a savepoint;
/// on a connection of its own (the command line) an immediate transaction, so that it
/// never has to upgrade a read lock while the server writes.
pub fn atomically<T, E: From<rusqlite::Error>>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    let (begin, commit, rollback) = if conn.is_autocommit() {
        ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
    } else {
        (
            "SAVEPOINT atomically",
            "RELEASE atomically",
            "ROLLBACK TO atomically; RELEASE atomically",
        )
    };
    conn.execute_batch(begin)?;
    match work(conn) {
        Ok(value) => {
            conn.execute_batch(commit)?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.execute_batch(rollback);
            Err(e)
        }
    }
}

/// The `synchronous` of connections opened from now on: `[store] synchronous`, which
/// `serve` sets once before it opens the store (a process-wide setting, so that every
/// connection of the server, the writer's above all, gets it without passing it through).
static SYNCHRONOUS_FULL: AtomicBool = AtomicBool::new(false);

pub fn set_synchronous(mode: Synchronous) {
    SYNCHRONOUS_FULL.store(mode == Synchronous::Full, Ordering::Relaxed);
}

fn synchronous() -> Synchronous {
    if SYNCHRONOUS_FULL.load(Ordering::Relaxed) {
        Synchronous::Full
    } else {
        Synchronous::Normal
    }
}

/// Opens (creating it if need be) `DATA_DIR/livechat.db` and brings its schema up to date.
pub fn open(data_dir: &Path) -> Result<Connection, StoreError> {
    fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let mut conn = connect(data_dir)?;
    MIGRATIONS.to_latest(&mut conn)?;
    Ok(conn)
}

/// Opens `DATA_DIR/livechat.db` with the connection settings, without migrating it.
pub fn connect(data_dir: &Path) -> Result<Connection, StoreError> {
    let path = data_dir.join(DB_FILE);
    let open_err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(&path).map_err(open_err)?;
    configure(&conn).map_err(open_err)?;
    Ok(conn)
}

/// The page cache of a connection that only reads (a reader) or copies the WAL back (the
/// checkpointer), in KiB; the writer keeps SQLite's default (2,000 KiB). Each connection has
/// a private cache, and a reader's holds copies of pages the OS's file cache holds anyway;
/// under writes it is emptied at every read transaction that follows a commit (WAL), so a
/// large one buys little, while at the default the readers kept idle stay as full as an
/// idle server's reads made them (docs/benchmarks.md, #15).
pub const SMALL_CACHE_KIB: i64 = 128;

/// Gives `conn` the small page cache of [`SMALL_CACHE_KIB`].
pub fn small_cache(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "cache_size", -SMALL_CACHE_KIB)
}

/// Connection settings; they hold per connection, so they are set here and not in migrations.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // 512-byte pages for a new database (an existing one keeps its own; set before WAL,
    // which fixes it). Each message adds an entry to the event log's index keyed by
    // conversation, at a different place for each conversation, so a commit rewrites a
    // leaf of it per conversation in it: what a message writes follows the page size
    // (docs/benchmarks.md, "Bytes per message (#15)": 2 KiB, 1 KiB and 512 B measured).
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    // WAL: readers never block the writer, nor the writer the readers.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "the database is not in WAL mode");
    }
    // In WAL mode, NORMAL syncs at checkpoints rather than at every commit: a crash or
    // kill -9 of the process loses nothing, only a power loss or OS crash may lose the last
    // commits (the database stays consistent). FULL, by the server's setting, also syncs
    // at every commit.
    conn.pragma_update(None, "synchronous", synchronous().pragma())?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Another process (`livechat apply` beside the server) may hold the write lock briefly.
    conn.busy_timeout(Duration::from_millis(5000))?;
    // Temporary storage in memory. Above all the sub-journal: inside a savepoint (the writer
    // runs every job in one) SQLite copies each page before its first change, to be able
    // to roll back to it; on disk that was a temporary file written for every job.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Space that rows leave (deleted, updated, moved when a page splits) is zeroed, not
    // left behind with its old bytes: erasing a visitor (`store::privacy`) must leave no
    // copy of their text in free space, which SQLite otherwise keeps until reused.
    conn.pragma_update(None, "secure_delete", true)?;
    // After a checkpoint has emptied it, a WAL that grew under a burst is cut back to this.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_directory_and_sets_the_connection_up() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("nested/data");
        let conn = open(&data).unwrap();
        assert!(data.join(DB_FILE).is_file());
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| match v {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(s) => s,
                other => format!("{other:?}"),
            })
            .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("foreign_keys"), "1");
        assert_eq!(pragma("synchronous"), "1"); // NORMAL
        assert_eq!(pragma("busy_timeout"), "5000");
        assert_eq!(pragma("temp_store"), "2"); // MEMORY
        assert_eq!(pragma("secure_delete"), "1");
        assert_eq!(pragma("page_size"), PAGE_SIZE.to_string());
        drop(conn);
        // Opening again runs no migration twice.
        let conn = open(&data).unwrap();
        assert_eq!(MIGRATIONS.pending_migrations(&conn).unwrap(), 0);
    }

    #[test]
    fn the_storage_failing_is_told_apart_from_other_errors() {
        let tmp = tempfile::tempdir().unwrap();
        open(tmp.path()).unwrap();
        let read_only = Connection::open_with_flags(
            tmp.path().join(DB_FILE),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let e = StoreError::from(
            read_only
                .execute_batch("CREATE TABLE t (n INTEGER)")
                .unwrap_err(),
        );
        assert!(e.is_unavailable(), "read only: {e}");
        let conn = open(tmp.path()).unwrap();
        let e = StoreError::from(conn.execute_batch("SELECT * FROM nowhere").unwrap_err());
        assert!(!e.is_unavailable(), "a bad query: {e}");
        assert!(StoreError::Unavailable("full".into()).is_unavailable());
        assert!(!StoreError::Commit("x".into()).is_unavailable());
    }
}
