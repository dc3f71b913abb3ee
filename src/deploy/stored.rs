//! Config revisions through the store interface (`store::Store`): the SQLite arm is
//! `store::revisions` on a reader and `deploy::record_loaded` in the writer, the PostgreSQL
//! arm `store::postgres::revisions` and `deploy::record_loaded_pg`. Installing a bundle is
//! SQLite's `deploy::apply_locked` (into the bundle directory) or, on PostgreSQL,
//! `deploy::apply_pg` (into the database, announced to every replica); `livechat apply` and
//! `livechat rollback` also write the bundle directory they were given.

use std::path::Path;
use std::sync::Arc;

use super::{ApplyOutcome, DeployError};
use crate::config::{Bundle, install};
use crate::store::handle::client;
use crate::store::postgres::revisions as pg;
use crate::store::revisions::{self, Revision, RevisionSummary};
use crate::store::{Store, StoreError};

impl Store {
    /// The revision for a bundle the server loaded from its directory: the latest if it has
    /// this content, else a new one summarised against the latest. On PostgreSQL a bundle
    /// that is an earlier revision is recorded again only when `edited` (the directory
    /// changed since this replica last read it: `deploy::record_loaded_pg`); else the
    /// answer is the live revision, another bundle, which the replica serves instead of
    /// its directory's (the caller tells them apart by `hash`).
    pub async fn record_loaded(
        &self,
        bundle: Arc<Bundle>,
        source: &str,
        edited: bool,
    ) -> Result<Revision, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let source = source.to_string();
                db.write(move |c| super::record_loaded(c, &bundle, &source))
                    .await
            }
            Store::Postgres(pg) => {
                let mut client = client(pg).await?;
                match super::record_loaded_pg(&mut client, &bundle, source, edited).await? {
                    super::Loaded::Live(revision) => Ok(revision),
                    super::Loaded::Behind { loaded, live } => {
                        tracing::warn!(
                            loaded,
                            live = live.number,
                            "this replica's bundle directory is revision {loaded}, earlier than \
                             the live revision {}: serving revision {} from the database; an \
                             edit of the directory is recorded and served",
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

    /// `deploy::apply_noted` through the store: installs `bundle` into `live_dir` and records
    /// it as a new revision unless it is the live one (SQLite: in the writer; PostgreSQL:
    /// under the revisions' lock, committed once the files are in place).
    pub async fn apply_bundle(
        &self,
        live_dir: &Path,
        bundle: Bundle,
        source: &str,
        note: Option<&str>,
        dry_run: bool,
    ) -> Result<ApplyOutcome, DeployError> {
        match self {
            Store::Sqlite(db) => {
                let dir = live_dir.to_path_buf();
                let (source, note) = (source.to_string(), note.map(str::to_string));
                db.write(move |c| {
                    Ok::<_, StoreError>(super::apply_noted(
                        c,
                        &dir,
                        &bundle,
                        &source,
                        note.as_deref(),
                        dry_run,
                    ))
                })
                .await?
            }
            Store::Postgres(pg) => {
                // The same lock of the directory as on SQLite: a server loading from it
                // sees the old bundle or the new one.
                let _lock = if dry_run {
                    None
                } else {
                    Some(super::lock_exclusive(live_dir)?)
                };
                let mut client = client(pg).await?;
                // Recorded and announced: every replica serves it from the database. The
                // directory given is brought to it too (files edited by hand put back).
                let outcome = super::apply_pg(&mut client, &bundle, source, note, dry_run).await?;
                if !dry_run && install::read_locked(live_dir).ok().as_ref() != Some(&bundle.sources)
                {
                    install::install_locked(live_dir, &bundle.sources)
                        .map_err(super::install_error(live_dir))?;
                }
                Ok(outcome)
            }
        }
    }
}
