//! Attachments on PostgreSQL (#17): the rows of `store::attachments` (the SQLite side), for
//! replicas, and their bytes in the database (`postgres::contents`), where every replica
//! reads them: nothing of a file is kept under `DATA_DIR/files` on PostgreSQL (an upload's
//! temporary file is removed once its content is stored). Files stored there before
//! migration 13 are still served and removed by the rules of the disk.
//!
//! A content is stored once. On SQLite an upload that finds its content stored (and so
//! drops its own copy) and a sweep or an erase that finds the content's last row gone (and
//! so removes the file) run as writer jobs, one at a time: the upload never counts on a
//! file that is about to go. Here each holds the content's advisory lock
//! ([`lock_content`]) from before it looks at what is stored until its transaction ends:
//! the upload while it checks the preview, writes its row and stores the bytes; the sweep
//! while it checks that no row is left and removes them. Whichever comes second sees what
//! the first committed.

use std::path::Path;

use deadpool_postgres::GenericClient;

use super::{PgError, contents};
use crate::store::StoreError;
use crate::store::attachments::{Stored, UNUSED_FOR_MS, remove_files};
use crate::store::previews::preview_path;

/// The advisory lock class of a content (the first key of the two-key form, whose keys
/// never meet the one-key locks of migrations, revisions, invitations or presence; the
/// second key is the content's `hashtext`): "file" in ASCII.
pub const CONTENT_LOCK: i32 = 0x6669_6c65;

/// Takes the lock of the content `sha256` until the end of the transaction `tx`. Two
/// contents may share a lock (a hash of 32 bits): they then wait for each other, nothing
/// worse.
pub async fn lock_content(tx: &impl GenericClient, sha256: &str) -> Result<(), PgError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&CONTENT_LOCK, &sha256],
    )
    .await?;
    Ok(())
}

/// Records an upload and stores its bytes, as `attachments::insert` does on disk, in a
/// transaction of its own (a savepoint when `client` is a transaction already) that holds
/// the content's lock: checked, written and stored while no sweep or erase of the same
/// content on any replica can remove it. Row and bytes commit together; the temporary
/// files (`temp`, `preview_temp`) are removed after the commit, and left to the caller when
/// it fails.
pub async fn insert(
    client: &mut impl GenericClient,
    a: &mut Stored,
    data_dir: &Path,
    temp: &Path,
    preview_temp: Option<&Path>,
) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(PgError::from)?;
    lock_content(&tx, &a.sha256).await?;
    keep_preview(&tx, a, data_dir, preview_temp).await?;
    insert_row(&tx, a).await?;
    store_contents(&tx, &a.sha256, temp, preview_temp).await?;
    tx.commit().await.map_err(super::at_commit)?;
    for path in std::iter::once(temp).chain(preview_temp) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(error = %e, path = %path.display(), "cannot remove an upload's temporary file");
        }
    }
    Ok(())
}

/// Forgets `a.preview` when the upload counts on a preview stored already (no
/// `preview_temp`) and there is none (it went with the last upload of the content), as
/// `attachments::keep_preview`. The caller holds the content's lock in `tx`.
pub async fn keep_preview(
    tx: &impl GenericClient,
    a: &mut Stored,
    data_dir: &Path,
    preview_temp: Option<&Path>,
) -> Result<(), StoreError> {
    if preview_temp.is_none()
        && !contents::has(tx, &a.sha256, true).await?
        && !preview_path(data_dir, &a.sha256).exists()
    {
        a.preview = None;
    }
    Ok(())
}

/// Stores the bytes of an upload whose row `tx` writes: the content `sha256` from `temp`,
/// and its preview from `preview_temp`, each unless it is stored already. The caller holds
/// the content's lock in `tx` and removes the temporary files once `tx` is committed.
pub async fn store_contents(
    tx: &impl GenericClient,
    sha256: &str,
    temp: &Path,
    preview_temp: Option<&Path>,
) -> Result<(), StoreError> {
    if !contents::has(tx, sha256, false).await? {
        contents::write(tx, sha256, false, temp).await?;
    }
    if let Some(preview) = preview_temp
        && !contents::has(tx, sha256, true).await?
    {
        contents::write(tx, sha256, true, preview).await?;
    }
    Ok(())
}

/// The upload's row alone; the caller holds [`lock_content`] in the same transaction from
/// before it looked at the content's files ([`insert`] does all of it).
pub async fn insert_row(tx: &impl GenericClient, a: &Stored) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO attachments (id, sha256, name, type, size, width, height, bot,
                                  visitor_id, agent_email, conversation_id, created_ms,
                                  preview, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &[
            &a.id,
            &a.sha256,
            &a.name,
            &a.mime,
            &(a.size as i64),
            &a.width.map(i64::from),
            &a.height.map(i64::from),
            &a.bot,
            &a.visitor_id,
            &a.agent_email,
            &a.conversation_id,
            &a.created_ms,
            &a.preview,
            &a.duration_ms.map(|ms| ms as i64),
        ],
    )
    .await
    .map_err(PgError::from)?;
    Ok(())
}

const COLUMNS: &str = "a.id, a.sha256, a.name, a.type, a.size, a.width, a.height, a.bot,
    a.visitor_id, a.agent_email, a.conversation_id, a.created_ms, a.preview, a.duration_ms";

/// A row's columns from `at` on, in the order of [`COLUMNS`].
fn stored_at(r: &tokio_postgres::Row, at: usize) -> Stored {
    let dimension = |i: usize| {
        r.get::<_, Option<i64>>(i)
            .and_then(|n| u32::try_from(n).ok())
    };
    Stored {
        id: r.get(at),
        sha256: r.get(at + 1),
        name: r.get(at + 2),
        mime: r.get(at + 3),
        size: r.get::<_, i64>(at + 4).max(0) as u64,
        width: dimension(at + 5),
        height: dimension(at + 6),
        bot: r.get(at + 7),
        visitor_id: r.get(at + 8),
        agent_email: r.get(at + 9),
        conversation_id: r.get(at + 10),
        created_ms: r.get(at + 11),
        preview: r.get(at + 12),
        duration_ms: r.get::<_, Option<i64>>(at + 13).map(|ms| ms.max(0) as u64),
    }
}

pub async fn get(client: &impl GenericClient, id: &str) -> Result<Option<Stored>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM attachments a WHERE a.id = $1"),
            &[&id],
        )
        .await
        .map_err(PgError::from)?;
    Ok(row.map(|r| stored_at(&r, 0)))
}

/// The files of a conversation's messages, in order: (message id, file). Message ids are
/// ordered bytewise, as SQLite orders text.
pub async fn by_message(
    client: &impl GenericClient,
    conversation_id: &str,
) -> Result<Vec<(String, Stored)>, StoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT ma.message_id, {COLUMNS} FROM message_attachments ma
                 JOIN attachments a ON a.id = ma.attachment_id
                 WHERE a.conversation_id = $1
                 ORDER BY ma.message_id COLLATE \"C\", ma.position"
            ),
            &[&conversation_id],
        )
        .await
        .map_err(PgError::from)?;
    Ok(rows.iter().map(|r| (r.get(0), stored_at(r, 1))).collect())
}

/// Bytes counted against a conversation's total: its files, and the uploads its visitor
/// (or this agent) sent that no message uses yet.
pub async fn conversation_bytes(
    client: &impl GenericClient,
    conversation_id: Option<&str>,
    visitor_id: Option<&str>,
    agent_email: Option<&str>,
) -> Result<u64, StoreError> {
    let n: i64 = client
        .query_one(
            "SELECT coalesce(sum(size), 0)::bigint FROM attachments
             WHERE ($1::text IS NOT NULL AND conversation_id = $1)
                OR (conversation_id IS NULL AND used_ms IS NULL
                    AND (visitor_id = $2 OR agent_email = $3))",
            &[&conversation_id, &visitor_id, &agent_email],
        )
        .await
        .map_err(PgError::from)?
        .get(0);
    Ok(n.max(0) as u64)
}

/// A message refers to its files, in the message's transaction (as `attachments::link`).
/// A file first used here now belongs to the conversation. Beside a sweep on another
/// replica, the update waits for the upload's row: a sweep that deleted it first leaves
/// nothing to update (as when the sweep ran first on SQLite), one that comes second finds it
/// used and keeps it.
pub async fn link(
    client: &impl GenericClient,
    message_id: &str,
    conversation_id: &str,
    ids: &[String],
    now_ms: i64,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let positions: Vec<i64> = (0..ids.len() as i64).collect();
    client
        .execute(
            "INSERT INTO message_attachments (message_id, position, attachment_id)
             SELECT $1, position, id FROM unnest($2::bigint[], $3::text[]) AS l (position, id)",
            &[&message_id, &positions, &ids],
        )
        .await
        .map_err(PgError::from)?;
    client
        .execute(
            "UPDATE attachments SET conversation_id = coalesce(conversation_id, $2),
                                    used_ms = coalesce(used_ms, $3)
             WHERE id = ANY($1)",
            &[&ids, &conversation_id, &now_ms],
        )
        .await
        .map_err(PgError::from)?;
    Ok(())
}

/// Removes the uploads no message used within [`UNUSED_FOR_MS`] and those of conversations
/// that are gone, and every file no row refers to any more, as `attachments::sweep`, in a
/// transaction of its own (a savepoint in a caller's) that holds the lock of each content
/// it looks at while it removes files. Returns how many rows went.
pub async fn sweep(
    client: &mut impl GenericClient,
    data_dir: &Path,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let tx = client.transaction().await.map_err(PgError::from)?;
    let gone = sweep_rows(&tx, now_ms).await?;
    if !gone.is_empty() {
        let unused = unreferenced(&tx, &gone).await?;
        contents::remove(&tx, &unused).await?;
        remove_files(data_dir, &unused);
    }
    tx.commit().await.map_err(super::at_commit)?;
    Ok(gone.len())
}

/// The rows half of [`sweep`] (its selection): deletes the uploads it removes and the
/// messages' references to them, and returns their contents' `sha256`, one per row.
pub async fn sweep_rows(tx: &impl GenericClient, now_ms: i64) -> Result<Vec<String>, StoreError> {
    let gone: Vec<String> = tx
        .query(
            "DELETE FROM attachments a
             WHERE (a.used_ms IS NULL AND a.created_ms < $1)
                OR (a.conversation_id IS NOT NULL
                    AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = a.conversation_id))
             RETURNING a.sha256",
            &[&(now_ms - UNUSED_FOR_MS)],
        )
        .await
        .map_err(PgError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !gone.is_empty() {
        tx.execute(
            "DELETE FROM message_attachments ma
             WHERE NOT EXISTS (SELECT 1 FROM attachments a WHERE a.id = ma.attachment_id)",
            &[],
        )
        .await
        .map_err(PgError::from)?;
    }
    Ok(gone)
}

/// Removes from the database (and from this replica's disk, for files stored before
/// migration 13) each content of `shas` that no upload refers to any more (after an erase
/// took their rows), with its preview, as `attachments::remove_unreferenced`, in a
/// transaction of its own (a savepoint in a caller's, which the erase's should be) holding
/// each content's lock. Returns how many contents went: from the database, or (when there
/// are more of them) from the disk.
pub async fn remove_unreferenced(
    client: &mut impl GenericClient,
    data_dir: &Path,
    shas: &[String],
) -> Result<usize, StoreError> {
    let tx = client.transaction().await.map_err(PgError::from)?;
    let unused = unreferenced(&tx, shas).await?;
    let removed = contents::remove(&tx, &unused).await?;
    // Files a replica kept on disk before migration 13, whichever holds them.
    let on_disk = remove_files(data_dir, &unused);
    tx.commit().await.map_err(super::at_commit)?;
    Ok(removed.max(on_disk))
}

/// Of `shas`, those no upload refers to any more: sorted, each once, each under its
/// content's lock, taken in that order (so two sweeps never wait for each other in a
/// circle) and held until the end of `tx`. The caller removes their contents before it ends.
pub async fn unreferenced(
    tx: &impl GenericClient,
    shas: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut shas = shas.to_vec();
    shas.sort();
    shas.dedup();
    let mut unused = Vec::new();
    for sha in shas {
        lock_content(tx, &sha).await?;
        // A statement of its own after the lock: in PostgreSQL's default isolation it sees
        // every upload committed before the lock was granted.
        let still: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM attachments WHERE sha256 = $1)",
                &[&sha],
            )
            .await
            .map_err(PgError::from)?
            .get(0);
        if !still {
            unused.push(sha);
        }
    }
    Ok(unused)
}
