//! Config revisions through the store interface (`store::Store`): the SQLite arm is
//! `store::revisions` on a reader and `deploy::record_loaded` in the writer, the PostgreSQL
//! arm `store::postgres::revisions` and `deploy::record_loaded_pg`. Installing a bundle into
//! the bundle directory (`livechat apply`, `livechat rollback`) records its revision in
//! either; the admin API's apply stays SQLite's until replicas install from the database.

use std::path::Path;
use std::sync::Arc;

use super::{ApplyOutcome, DeployError};
use crate::config::plan::Plan;
use crate::config::{Bundle, install};
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
                // sees the old bundle or the new one with its revision recorded.
                let _lock = if dry_run {
                    None
                } else {
                    Some(super::lock_exclusive(live_dir)?)
                };
                let mut client = client(pg).await?;
                apply_pg(&mut client, live_dir, &bundle, source, note, dry_run).await
            }
        }
    }
}

/// `deploy::apply_locked` on PostgreSQL: the plan against the live revision read under the
/// revisions' lock, the new revision inserted, the files installed, then the commit (a
/// failed install records nothing).
async fn apply_pg(
    client: &mut deadpool_postgres::Object,
    live_dir: &Path,
    bundle: &Bundle,
    source: &str,
    note: Option<&str>,
    dry_run: bool,
) -> Result<ApplyOutcome, DeployError> {
    use crate::store::postgres::{PgError, at_commit};
    let install_err = super::install_error(live_dir);
    let tx = client
        .transaction()
        .await
        .map_err(|e| StoreError::from(PgError::from(e)))?;
    pg::lock(&tx).await.map_err(StoreError::from)?;
    let live = pg::latest(&tx).await?;
    let base_bundle = match &live {
        Some(revision) => super::stored_bundle(revision),
        None => super::dir_bundle(live_dir, !dry_run),
    };
    let plan = Plan::between(&base_bundle, bundle);
    let base = live.as_ref().map(Revision::to_summary);
    if let Some(revision) = live.filter(|r| r.hash == bundle.hash) {
        // As on SQLite: files edited by hand since are put back as the live revision has them.
        if !dry_run && install::read_locked(live_dir).ok().as_ref() != Some(&bundle.sources) {
            install::install_locked(live_dir, &bundle.sources).map_err(install_err)?;
        }
        return Ok(ApplyOutcome {
            plan,
            base,
            revision: Some(revision),
            unchanged: true,
        });
    }
    if dry_run {
        return Ok(ApplyOutcome {
            plan,
            base,
            revision: None,
            unchanged: false,
        });
    }
    let summary = match note {
        Some(note) => format!("{note}: {}", plan.summary()),
        None => plan.summary(),
    };
    let revision = pg::insert(&tx, &bundle.hash, source, &summary, &bundle.sources).await?;
    install::install_locked(live_dir, &bundle.sources).map_err(install_err)?;
    tx.commit()
        .await
        .map_err(|e| StoreError::from(at_commit(e)))?;
    Ok(ApplyOutcome {
        plan,
        base,
        revision: Some(revision),
        unchanged: false,
    })
}
