//! Attachments through the store interface: `store::attachments` on SQLite, where the
//! writer runs an upload's row and its file moves as one job, and
//! `store::postgres::attachments` on PostgreSQL, where a transaction holding the content's
//! lock does.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use crate::store::attachments::{self as files, Stored};
use crate::store::handle::client;
use crate::store::postgres::{PgStore, attachments as pg};
use crate::store::reader::Readers;
use crate::store::writer::WeakWriter;
use crate::store::{Store, StoreError};

impl Store {
    /// Bytes counted against a conversation's total: its files, and the uploads its visitor
    /// (or this agent) sent that no message uses yet.
    pub async fn attachment_bytes(
        &self,
        conversation_id: Option<&str>,
        visitor_id: Option<&str>,
        agent_email: Option<&str>,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let own = |s: Option<&str>| s.map(str::to_string);
                let (conv, visitor, agent) =
                    (own(conversation_id), own(visitor_id), own(agent_email));
                db.read(move |c| {
                    files::conversation_bytes(
                        c,
                        conv.as_deref(),
                        visitor.as_deref(),
                        agent.as_deref(),
                    )
                })
                .await
            }
            Store::Postgres(pg) => {
                pg::conversation_bytes(&client(pg).await?, conversation_id, visitor_id, agent_email)
                    .await
            }
        }
    }

    /// Records an upload and puts its files in place (`temp`, and the preview made from it,
    /// `preview_temp`), as `attachments::insert`; answers the row as stored (without the
    /// preview it counted on, if that went meanwhile).
    pub async fn record_upload(
        &self,
        mut upload: Stored,
        data_dir: &Path,
        temp: &Path,
        preview_temp: Option<&Path>,
    ) -> Result<Stored, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (dir, temp) = (data_dir.to_path_buf(), temp.to_path_buf());
                let preview_temp = preview_temp.map(Path::to_path_buf);
                db.write(move |c| {
                    files::insert(c, &mut upload, &dir, &temp, preview_temp.as_deref())?;
                    Ok::<_, StoreError>(upload)
                })
                .await
            }
            Store::Postgres(pg) => {
                let mut conn = client(pg).await?;
                pg::insert(&mut conn, &mut upload, data_dir, temp, preview_temp).await?;
                Ok(upload)
            }
        }
    }

    /// One upload's row.
    pub async fn attachment(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = id.to_string();
                db.read(move |c| files::get(c, &id)).await
            }
            Store::Postgres(pg) => pg::get(&client(pg).await?, id).await,
        }
    }

    /// Removes the uploads no message used in time and those of conversations that are
    /// gone, and the files no row refers to any more (`attachments::sweep`); how many rows
    /// went.
    pub async fn sweep_attachments(
        &self,
        data_dir: &Path,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let dir = data_dir.to_path_buf();
                db.write(move |c| files::sweep(c, &dir, now_ms)).await
            }
            Store::Postgres(pg) => pg::sweep(&mut client(pg).await?, data_dir, now_ms).await,
        }
    }
}

/// How often [`sweep_every`] sweeps.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Sweeps now and every [`SWEEP_EVERY`], for as long as something else keeps the store
/// open: the task holds SQLite's writer (or PostgreSQL's pool) weakly, as it held the
/// writer before.
pub fn sweep_every(store: &Store, data_dir: PathBuf) -> impl Future<Output = ()> + Send + 'static {
    let watched = Watched::of(store);
    async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            let Some(store) = watched.upgrade() else {
                return;
            };
            let now = jiff::Timestamp::now().as_millisecond();
            match store.sweep_attachments(&data_dir, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "attachments swept"),
                Err(e) => tracing::warn!(error = %e, "cannot sweep attachments"),
            }
        }
    }
}

/// A store held without keeping its writer (SQLite) or its pool (PostgreSQL) alive. SQLite's
/// readers are held, with the idle connections they keep: the sweep only writes, but the
/// store it is handed has both.
enum Watched {
    Sqlite(WeakWriter, Readers),
    Postgres(Weak<PgStore>),
}

impl Watched {
    fn of(store: &Store) -> Watched {
        match store {
            Store::Sqlite(db) => Watched::Sqlite(db.writer.downgrade(), db.readers.clone()),
            Store::Postgres(pg) => Watched::Postgres(Arc::downgrade(pg)),
        }
    }

    fn upgrade(&self) -> Option<Store> {
        match self {
            Watched::Sqlite(writer, readers) => {
                Some(Store::sqlite(writer.upgrade()?, readers.clone()))
            }
            Watched::Postgres(pg) => Some(Store::Postgres(pg.upgrade()?)),
        }
    }
}
