//! The store of the commands that work on the database (`agent`, `history`, `rollback`,
//! `apply`, `visitor`), opened here only (#17). Which database it is comes from the same
//! resolution `serve` uses (`Settings::database`: `--database-url`, else
//! `LIVECHAT_DATABASE_URL`, else `database_url` of the settings file): PostgreSQL when one is
//! named, else the SQLite database of the data directory as before. A message about the
//! PostgreSQL database names its URL with the password replaced by `***`.

use std::process::ExitCode;

use crate::settings::{Database, Settings};
use crate::store::postgres::PgStore;
use crate::store::reader::Readers;
use crate::store::writer::Writer;
use crate::store::{self, DB_FILE, Store};

/// A command needs a connection or two, not a replica's pool.
const POOL: usize = 2;

/// What a command wants of the SQLite database when there is none yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missing {
    /// Looking must not create a database where there is none: no store.
    Leave,
    /// Writing makes it (and brings its schema up to date).
    Create,
}

/// The runtime a command's store runs on: one thread is enough for one command.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| super::fail(format!("cannot start the async runtime: {e}")))
}

/// The command's store: PostgreSQL when the settings name one (connected, its schema brought
/// up to date as `serve` does), else SQLite in the data directory; `None` when that has no
/// database yet and `missing` says to leave it so. Runs inside the runtime: the SQLite
/// writer answers on a task of it.
pub(super) async fn open(settings: &Settings, missing: Missing) -> Result<Option<Opened>, String> {
    if let Some(db) = &settings.database {
        return Ok(Some(Opened {
            store: Some(connect(db).await?),
            writer: None,
        }));
    }
    let data_dir = &settings.data_dir;
    if missing == Missing::Leave && !data_dir.join(DB_FILE).is_file() {
        return Ok(None);
    }
    let conn = store::open(data_dir).map_err(|e| e.to_string())?;
    let (writer, thread) = Writer::start_joinable(conn);
    Ok(Some(Opened {
        store: Some(Store::sqlite(writer, Readers::new(data_dir))),
        writer: Some(thread),
    }))
}

/// A command's store. Dropped, on SQLite, it waits for the writer's thread to close its
/// connection (the last one: the readers' close with the store), so the command leaves the
/// data directory as one connection of its own did, the `-wal` and `-shm` files gone.
pub(super) struct Opened {
    store: Option<Store>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::ops::Deref for Opened {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.store
            .as_ref()
            .expect("the store is open until dropped")
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        drop(self.store.take());
        if let Some(thread) = self.writer.take() {
            let _ = thread.join();
        }
    }
}

/// PostgreSQL of `database_url`, or the one line that says why not.
pub(super) async fn connect(db: &Database) -> Result<Store, String> {
    match PgStore::connect_to(&db.url, POOL.min(db.pool)).await {
        Ok(pg) => Ok(Store::postgres(pg)),
        Err(e) => Err(format!(
            "cannot use the database {}: {}",
            db.url.redacted(),
            reasons(&e)
        )),
    }
}

/// `e` and the causes it does not repeat, on one line ("error connecting to server:
/// Connection refused (os error 111)").
fn reasons(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        next = cause.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The line `apply` and `rollback` end with on PostgreSQL: the revision is in the database,
/// announced to the running replicas, and in this machine's bundle directory.
pub(super) const REPLICAS_NOTE: &str = "Recorded in the PostgreSQL database and announced: \
every running replica serves it within moments.\n";
