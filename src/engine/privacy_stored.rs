//! A visitor's export, erasing a visitor and the retention sweep through the store interface
//! (`store::Store`, #17), for the engine (`engine::privacy`) and `livechat visitor`.
//!
//! The SQLite arm of each is the writer job or the read the engine ran before, unchanged:
//! `store::privacy` with `mail::outbox::forget*` in the same job, under `securely`. The
//! PostgreSQL arm runs `store::postgres::privacy` and `store::postgres::outbox::forget*` in
//! one transaction, each conversation locked before it goes (replicas sweeping at once erase
//! it once). These operations live here, not in `store/stored/`, because an erase's one
//! job spans the store's rows and the outbox, and `store` may not use `mail` (as
//! `engine::queries` holds the replays' `impl Store`).
//!
//! What stays SQLite's alone: `secure_delete` (freed pages zeroed) and cutting the WAL back
//! ([`Store::cut_back_wal`]). PostgreSQL keeps erased text in dead tuples until VACUUM
//! reclaims them, and in its WAL and backups; that is the operator's to handle
//! (docs/privacy.md, "On PostgreSQL").

use std::path::Path;

use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use serde_json::Value;
use tokio_postgres::IsolationLevel;

use crate::store::handle::client;
use crate::store::postgres::{self, PgError, outbox as pg_outbox, privacy as pg};
use crate::store::privacy::{self as rows, Erased};
use crate::store::{Store, StoreError};

/// What one retention batch removed: the rows, the outbox items forgotten with them, and
/// whether the batch was full (another may follow at once).
pub type ExpiredBatch = (Erased, Vec<String>, bool);

impl Store {
    /// Everything stored about a visitor (`store::privacy::export`); `None` when there is
    /// no such visitor. On PostgreSQL read in one repeatable-read transaction, so the copy
    /// is of one moment, as a SQLite reader's snapshot is.
    pub async fn export_visitor(&self, visitor_id: &str) -> Result<Option<Value>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = visitor_id.to_string();
                db.readers.read(move |c| rows::export(c, &id)).await
            }
            Store::Postgres(store) => {
                let mut conn = client(store).await?;
                let tx = conn
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .map_err(PgError::from)?;
                let exported = pg::export(&tx, visitor_id).await?;
                tx.commit().await.map_err(postgres::at_commit)?;
                Ok(exported)
            }
        }
    }

    /// The visitor's conversations, oldest first; `None` when there is no such visitor.
    pub async fn visitor_conversations(
        &self,
        visitor_id: &str,
    ) -> Result<Option<Vec<String>>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = visitor_id.to_string();
                db.readers
                    .read(move |c| {
                        if rows::visitor_exists(c, &id)? {
                            Ok(Some(rows::conversations_of(c, &id)?))
                        } else {
                            Ok(None)
                        }
                    })
                    .await
            }
            Store::Postgres(store) => {
                let conn = client(store).await?;
                if !pg::visitor_exists(&conn, visitor_id).await? {
                    return Ok(None);
                }
                Ok(Some(pg::conversations_of(&conn, visitor_id).await?))
            }
        }
    }

    /// Erases a visitor's rows (`store::privacy::erase_visitor`) with the outbox items
    /// about their conversations and the mail to their address; answers what went and the
    /// ids of the outbox items (whose mail files the caller removes). One writer job with
    /// secure delete on SQLite, one transaction on PostgreSQL.
    pub async fn erase_visitor_rows(
        &self,
        visitor_id: &str,
    ) -> Result<(Erased, Vec<String>), StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = visitor_id.to_string();
                db.writer
                    .run(move |c| {
                        rows::securely(c, |c| {
                            let email = rows::email_of(c, &id)?;
                            let ids = rows::conversations_of(c, &id)?;
                            let outbox = crate::mail::outbox::forget(c, &ids, email.as_deref())?;
                            Ok((rows::erase_visitor(c, &id)?, outbox))
                        })
                    })
                    .await
            }
            Store::Postgres(store) => {
                let mut conn = client(store).await?;
                let tx = conn.transaction().await.map_err(PgError::from)?;
                // Read before the erase takes the row; the erase locks the visitor's
                // conversations before their row (the log writer's order), so nothing here
                // locks the row first.
                let email = pg::email_of(&tx, visitor_id).await?;
                let erased = pg::erase_visitor(&tx, visitor_id).await?;
                // The conversations the erase took, late ones included.
                let outbox = pg_outbox::forget(&tx, &erased.ids(), email.as_deref()).await?;
                tx.commit().await.map_err(postgres::at_commit)?;
                Ok((erased, outbox))
            }
        }
    }

    /// One batch of the retention sweep: at most `limit` settled conversations last changed
    /// before `cutoff` (a stored time), with their outbox items; when the batch is not full,
    /// also the profiles and offline forms left over from before `cutoff` and the outbox
    /// items settled before `outbox_cutoff`. One writer job with secure delete on SQLite,
    /// one transaction on PostgreSQL, where a conversation another replica erased first is
    /// skipped (its outbox items are that replica's to forget).
    pub async fn erase_expired(
        &self,
        cutoff: &str,
        outbox_cutoff: Timestamp,
        limit: usize,
    ) -> Result<ExpiredBatch, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let cutoff = cutoff.to_string();
                let outbox_cutoff = outbox_cutoff.to_string();
                db.writer
                    .run(move |c| {
                        rows::securely(c, |c| {
                            let ids = rows::expired_conversations(c, &cutoff, limit)?;
                            let mut outbox = crate::mail::outbox::forget(c, &ids, None)?;
                            let mut erased = rows::erase_conversations(c, &ids)?;
                            let more = ids.len() == limit;
                            if !more {
                                let left = rows::erase_expired_leftovers(c, &cutoff)?;
                                erased.forms += left.forms;
                                erased.visitors += left.visitors;
                                erased.visitor_ids.extend(left.visitor_ids);
                                outbox.extend(crate::mail::outbox::forget_settled_before(
                                    c,
                                    &outbox_cutoff,
                                )?);
                            }
                            Ok((erased, outbox, more))
                        })
                    })
                    .await
            }
            Store::Postgres(store) => {
                let mut conn = client(store).await?;
                let tx = conn.transaction().await.map_err(PgError::from)?;
                let ids = pg::expired_conversations(&tx, cutoff, limit).await?;
                let mut erased = pg::erase_conversations(&tx, &ids).await?;
                let mut outbox = pg_outbox::forget(&tx, &erased.ids(), None).await?;
                let more = ids.len() == limit;
                if !more {
                    let left = pg::erase_expired_leftovers(&tx, cutoff).await?;
                    erased.forms += left.forms;
                    erased.visitors += left.visitors;
                    erased.visitor_ids.extend(left.visitor_ids);
                    outbox.extend(pg_outbox::forget_settled_before(&tx, outbox_cutoff).await?);
                }
                tx.commit().await.map_err(postgres::at_commit)?;
                Ok((erased, outbox, more))
            }
        }
    }

    /// After an erase: removes from `data_dir` the files of `shas` (and their previews)
    /// that no upload refers to any more (`attachments::remove_unreferenced`); how many
    /// went. A writer job on SQLite; on PostgreSQL a transaction holding each content's
    /// lock, so an upload of the same content on another replica keeps its file.
    pub async fn remove_unreferenced_files(
        &self,
        data_dir: &Path,
        shas: &[String],
    ) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (dir, shas) = (data_dir.to_path_buf(), shas.to_vec());
                db.writer
                    .run(move |c| crate::store::attachments::remove_unreferenced(c, &dir, &shas))
                    .await
            }
            Store::Postgres(store) => {
                let mut conn = client(store).await?;
                postgres::attachments::remove_unreferenced(&mut conn, data_dir, shas).await
            }
        }
    }

    /// After an erase on SQLite: copies the WAL into the database and cuts it to nothing
    /// (`privacy::truncate_wal`), answering whether it could (readers may hold it). `None`
    /// on PostgreSQL, which has no such step: its dead tuples go at VACUUM, its WAL and
    /// backups by the operator's retention (docs/privacy.md).
    pub async fn cut_back_wal(&self) -> Result<Option<bool>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let dir = db.readers.data_dir();
                let truncated = tokio::task::spawn_blocking(move || rows::truncate_wal(&dir))
                    .await
                    .map_err(|e| StoreError::Commit(format!("the WAL checkpoint failed: {e}")))??;
                Ok(Some(truncated))
            }
            Store::Postgres(_) => Ok(None),
        }
    }
}
