//! Config revisions through the store interface (`store::Store`): the SQLite arm is
//! `store::revisions` on a reader and `deploy::record_loaded` in the writer, the PostgreSQL
//! arm `store::postgres::revisions` and `deploy::record_loaded_pg`. Installing a bundle is
//! SQLite's `deploy::apply_locked` (into the bundle directory) or, on PostgreSQL,
//! `deploy::apply_pg` (into the database, announced to every replica).

use std::sync::Arc;

use crate::config::Bundle;
use crate::store::handle::client;
use crate::store::postgres::revisions as pg;
use crate::store::revisions::{self, Revision, RevisionSummary};
use crate::store::{Store, StoreError};

impl Store {
    /// The revision for a bundle the server loaded from its directory: the latest if it has
    /// this content, else a new one summarised against the latest. On PostgreSQL a bundle
    /// that is an earlier revision is not recorded again (`deploy::record_loaded_pg`): the
    /// answer is then the live revision, another bundle, which the replica serves instead of
    /// its directory's (the caller tells them apart by `hash`).
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
                    super::Loaded::Behind { loaded, live } => {
                        tracing::warn!(
                            loaded,
                            live = live.number,
                            "this replica's bundle directory is revision {loaded}, earlier than \
                             the live revision {}: serving revision {} from the database; the \
                             directory is served again once an edit of it is recorded",
                            live.number,
                            live.number
                        );
                        Ok(live)
                    }
                }
            }
        }
    }

    /// Installs `bundle` on PostgreSQL: recorded as the next revision in the database and
    /// announced to every replica (`deploy::apply_pg`), no bundle directory written. The
    /// SQLite server installs into its directory instead (`deploy::apply_locked`, in the
    /// writer), so there this answers `None`.
    pub async fn apply_to_database(
        &self,
        bundle: &Bundle,
        source: &str,
        note: Option<&str>,
        dry_run: bool,
    ) -> Option<Result<super::ApplyOutcome, StoreError>> {
        let Store::Postgres(pg) = self else {
            return None;
        };
        Some(match client(pg).await {
            Ok(mut client) => super::apply_pg(&mut client, bundle, source, note, dry_run).await,
            Err(e) => Err(e),
        })
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
