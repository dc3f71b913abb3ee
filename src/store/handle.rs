//! The store interface (#17): one handle on whichever database the server runs on, SQLite
//! (the embedded default: the one writer and its readers) or PostgreSQL (the pool that
//! replicas share). Callers ask it for an operation by name and await the answer; they no
//! longer hand a closure over a `rusqlite::Connection` to the writer or the readers.
//!
//! Each area writes its operations as `impl Store` blocks in the module that owns its SQL
//! (`auth::stored`, …): the SQLite arm runs today's function on a reader or in the writer,
//! unchanged; the PostgreSQL arm calls the same operation's async twin. An enum rather than a
//! trait, so that the engine, the HTTP state and the extractors carry no type parameter.
//! Areas not moved yet still reach the writer and the readers directly (docs/postgres.md,
//! "What remains").

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
