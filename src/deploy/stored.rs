//! Config revisions through the store interface (`store::Store`): the SQLite arm is
//! `store::revisions` on a reader and `deploy::record_loaded` in the writer, the PostgreSQL
//! arm `store::postgres::revisions` and `deploy::record_loaded_pg`. Installing a bundle into
//! the bundle directory (`apply`) stays SQLite's until replicas install from the database.

use std::sync::Arc;

use crate::config::Bundle;
use crate::store::handle::client;
use crate::store::postgres::revisions as pg;
use crate::store::revisions::{self, Revision, RevisionSummary};
use crate::store::{Store, StoreError};

impl Store {
    /// The revision for a bundle the server loaded from its directory: the latest if it has
    /// this content, else a new one summarised against the latest. On PostgreSQL a bundle
    /// that is an earlier revision is not recorded again (`deploy::record_loaded_pg`): that
    /// revision is the answer.
    pub async fn record_loaded(
        &self,
        bundle: Arc<Bundle>,
        source: &str,
    ) -> Result<Revision, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let source = source.to_string();
                db.write(move |c| super::record_loaded(c, &bundle, &source))
                    .await
            }
            Store::Postgres(pg) => {
                let mut client = client(pg).await?;
                match super::record_loaded_pg(&mut client, &bundle, source).await? {
                    super::Loaded::Live(revision) => Ok(revision),
                    // This replica serves what it loaded, an earlier revision; taking the
                    // live one from the database instead is not built yet (#17).
                    super::Loaded::Behind { loaded, live } => {
                        tracing::warn!(
                            loaded,
                            live = live.number,
                            "this replica's bundle is an earlier revision than the live one"
                        );
                        pg::get(&client, loaded).await?.ok_or_else(|| {
                            StoreError::Corrupt(format!("revision {loaded} is gone"))
                        })
                    }
                }
            }
        }
    }

    /// The newest revision, if any.
    pub async fn latest_revision(&self) -> Result<Option<Revision>, StoreError> {
        match self {
            Store::Sqlite(db) => db.read(revisions::latest).await,
            Store::Postgres(pg) => pg::latest(&client(pg).await?).await,
        }
    }

    /// Revision `number`, if there is one.
    pub async fn revision(&self, number: i64) -> Result<Option<Revision>, StoreError> {
        match self {
            Store::Sqlite(db) => db.read(move |c| revisions::get(c, number)).await,
            Store::Postgres(pg) => pg::get(&client(pg).await?, number).await,
        }
    }

    /// Every revision, newest first.
    pub async fn revisions(&self) -> Result<Vec<RevisionSummary>, StoreError> {
        match self {
            Store::Sqlite(db) => db.read(revisions::list).await,
            Store::Postgres(pg) => pg::list(&client(pg).await?).await,
        }
    }
}
