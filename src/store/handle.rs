//! The store interface (#17): one handle on whichever database the server runs on, SQLite
//! (the embedded default: the one writer and its readers) or PostgreSQL (the pool that
//! replicas share). Callers ask it for an operation by name and await the answer; they no
//! longer hand a closure over a `rusqlite::Connection` to the writer or the readers.
//!
//! Each area writes its operations as `impl Store` blocks in the module that owns its SQL
//! (`auth::stored`, …): the SQLite arm runs today's function on a reader or in the writer,
//! unchanged; the PostgreSQL arm calls the same operation's async twin. An enum rather than a
//! trait, so that the engine, the HTTP state and the extractors carry no type parameter.
//! What stays SQLite's alone (the writer thread, the checkpointer, the backup of the file)
//! reaches the writer and the readers directly (docs/postgres.md, "The move, area by
//! area").

use std::sync::Arc;

use rusqlite::Connection;

use super::StoreError;
use super::postgres::{PgError, PgStore};
use super::reader::Readers;
use super::writer::Writer;

#[derive(Clone)]
pub enum Store {
    Sqlite(Sqlite),
    Postgres(Arc<PgStore>),
}

/// The SQLite store: the one writer, whose jobs run one at a time in group commits, and the
/// pool of read-only connections.
#[derive(Clone)]
pub struct Sqlite {
    pub writer: Writer,
    pub readers: Readers,
}

impl Store {
    pub fn sqlite(writer: Writer, readers: Readers) -> Store {
        Store::Sqlite(Sqlite { writer, readers })
    }

    /// Opens (creating it if need be) the SQLite database of `data_dir`, brings its schema up
    /// to date, and starts its writer (with the indexes it fills once per group and the WAL
    /// checkpointer on a thread of its own) and its readers.
    pub fn open_sqlite(data_dir: &std::path::Path) -> Result<Store, StoreError> {
        let conn = super::open(data_dir)?;
        // Checkpoints run on their own thread; the writer's own threshold is a backstop.
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            super::checkpoint::writer_autocheckpoint(&conn),
        )?;
        // Indexed once per group at most, not per message (see each).
        let indexes = (
            super::search::SearchIndex::new(&conn)?,
            super::event_index::EventIndex::new(),
        );
        let checkpointer = super::checkpoint::start(data_dir)?;
        Ok(Store::sqlite(
            Writer::start_with(conn, indexes, Some(checkpointer)),
            Readers::new(data_dir),
        ))
    }

    pub fn postgres(pg: PgStore) -> Store {
        Store::Postgres(Arc::new(pg))
    }

    /// Which database this is, for logs and `/metrics`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

impl Sqlite {
    /// `query` on a reader connection, off the async workers.
    pub async fn read<T, E, Q>(&self, query: Q) -> Result<T, StoreError>
    where
        T: Send + 'static,
        StoreError: From<E>,
        Q: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.readers.read(move |conn| Ok(query(conn)?)).await
    }

    /// `work` as a job of the writer; answers once it is durable.
    pub async fn write<T, E, W>(&self, work: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        StoreError: From<E>,
        W: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.writer.run(move |conn| Ok(work(conn)?)).await
    }
}

/// A connection of the PostgreSQL pool.
pub(crate) async fn client(pg: &PgStore) -> Result<deadpool_postgres::Object, StoreError> {
    Ok(pg.pool().get().await.map_err(PgError::from)?)
}
