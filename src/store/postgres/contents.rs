//! The bytes of attachments on PostgreSQL (#17): every replica reads every file, so the
//! contents live in the database (`file_contents`, migration 13) and not under any
//! replica's `DATA_DIR/files`. A content (or its preview) is kept once, in pieces of
//! [`PIECE`] bytes numbered from 0: an upload writes them from its temporary file one at a
//! time, and a download reads only the pieces of the range it sends, one query each, so
//! neither holds a whole file in memory and a slow reader holds no connection between
//! pieces.
//!
//! Whether a content is there, its writing and its removal happen under the content's lock
//! (`attachments::lock_content`), in the transaction of the row that refers to it or of
//! the sweep or erase that found no row left: the rules that kept the files on disk.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use deadpool_postgres::GenericClient;
use tokio::io::AsyncReadExt;

use super::{PgError, PgStore};
use crate::store::StoreError;

/// The size of one piece of a stored content (the last one may be shorter).
pub const PIECE: usize = 1024 * 1024;

/// Whether the content `sha256` (its preview when `preview`) is stored.
pub async fn has(
    client: &impl GenericClient,
    sha256: &str,
    preview: bool,
) -> Result<bool, StoreError> {
    let found: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM file_contents
                            WHERE sha256 = $1 AND preview = $2 AND piece = 0)",
            &[&sha256, &preview],
        )
        .await
        .map_err(PgError::from)?
        .get(0);
    Ok(found)
}

/// Writes the file at `path` as the content `sha256` (its preview when `preview`), piece
/// by piece. The caller holds the content's lock and found it not stored ([`has`]).
pub async fn write(
    tx: &impl GenericClient,
    sha256: &str,
    preview: bool,
    path: &Path,
) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Unavailable(format!("cannot read an upload: {e}"));
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let statement = tx
        .prepare("INSERT INTO file_contents (sha256, preview, piece, data) VALUES ($1, $2, $3, $4)")
        .await
        .map_err(PgError::from)?;
    let mut buf = vec![0u8; PIECE];
    let mut piece = 0i32;
    loop {
        // Fill the piece: a read may answer less than asked before the end of the file.
        let mut filled = 0;
        while filled < PIECE {
            let n = file.read(&mut buf[filled..]).await.map_err(io)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 && piece > 0 {
            return Ok(());
        }
        tx.execute(&statement, &[&sha256, &preview, &piece, &&buf[..filled]])
            .await
            .map_err(PgError::from)?;
        if filled < PIECE {
            return Ok(());
        }
        piece += 1;
    }
}

/// Removes the contents `shas` and their previews; the caller holds each one's lock and
/// found no upload refers to it (`attachments::unreferenced`). How many contents went.
pub async fn remove(tx: &impl GenericClient, shas: &[String]) -> Result<usize, StoreError> {
    if shas.is_empty() {
        return Ok(0);
    }
    let removed: i64 = tx
        .query_one(
            "WITH gone AS (DELETE FROM file_contents WHERE sha256 = ANY($1)
                           RETURNING sha256, preview, piece)
             SELECT count(*) FROM gone WHERE NOT preview AND piece = 0",
            &[&shas],
        )
        .await
        .map_err(PgError::from)?
        .get(0);
    Ok(removed.max(0) as usize)
}

/// The size in bytes of the content `sha256` (its preview when `preview`), `None` when it
/// is not stored.
pub async fn size(
    client: &impl GenericClient,
    sha256: &str,
    preview: bool,
) -> Result<Option<u64>, StoreError> {
    let row = client
        .query_one(
            "SELECT count(*), coalesce(sum(octet_length(data)), 0)::bigint FROM file_contents
             WHERE sha256 = $1 AND preview = $2",
            &[&sha256, &preview],
        )
        .await
        .map_err(PgError::from)?;
    let (pieces, bytes): (i64, i64) = (row.get(0), row.get(1));
    Ok((pieces > 0).then_some(bytes.max(0) as u64))
}

/// The first bytes of the preview of `sha256`, enough to tell its type, if it is stored.
pub async fn preview_head(
    client: &impl GenericClient,
    sha256: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = client
        .query_opt(
            "SELECT substring(data FROM 1 FOR 16) FROM file_contents
             WHERE sha256 = $1 AND preview AND piece = 0",
            &[&sha256],
        )
        .await
        .map_err(PgError::from)?;
    Ok(row.map(|r| r.get(0)))
}

/// What is left to send of a download: `len` bytes of the content from `at`.
struct Reading {
    store: Arc<PgStore>,
    sha256: String,
    preview: bool,
    at: u64,
    len: u64,
}

/// `len` bytes of the content `sha256` (its preview when `preview`) from byte `first`, as a
/// stream of at most a piece each, every piece read with a connection taken from the pool
/// for that query alone. A piece that is missing meanwhile (the content was removed) ends
/// the stream with an error: the answer is cut short, never padded.
pub fn read(
    store: Arc<PgStore>,
    sha256: String,
    preview: bool,
    first: u64,
    len: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let start = Reading {
        store,
        sha256,
        preview,
        at: first,
        len,
    };
    futures_util::stream::try_unfold(start, |mut r| async move {
        if r.len == 0 {
            return Ok(None);
        }
        let piece = (r.at / PIECE as u64) as i32;
        let offset = r.at % PIECE as u64;
        let take = r.len.min(PIECE as u64 - offset);
        let client = r.store.pool().get().await.map_err(std::io::Error::other)?;
        // `substring` counts from 1; only the bytes sent leave the database.
        let row = client
            .query_opt(
                "SELECT substring(data FROM $4 FOR $5) FROM file_contents
                 WHERE sha256 = $1 AND preview = $2 AND piece = $3",
                &[
                    &r.sha256,
                    &r.preview,
                    &piece,
                    &(offset as i32 + 1),
                    &(take as i32),
                ],
            )
            .await
            .map_err(std::io::Error::other)?;
        drop(client);
        let data: Vec<u8> = row
            .ok_or_else(|| std::io::Error::other("the stored file went while it was sent"))?
            .get(0);
        if data.len() as u64 != take {
            return Err(std::io::Error::other(
                "a stored piece is shorter than counted",
            ));
        }
        r.at += take;
        r.len -= take;
        Ok(Some((Bytes::from(data), r)))
    })
}
