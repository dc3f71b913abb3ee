//! Attachments: the files visitors and agents send. The bytes live under
//! `DATA_DIR/files`, one file per content (named by its SHA-256), so two uploads of the same
//! file are stored once; the `attachments` table has a row per upload (who sent it, the name
//! they gave, what the content is) and `message_attachments` each message's files.
//!
//! Files are put in place and removed inside writer jobs, so an upload that reuses a
//! stored file and the sweep that removes the last row of that file never cross.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use crate::chat::conversation::Attachment;
use crate::config::schema::AttachmentKind;

/// The directory of the files, inside the data directory.
pub const FILES_DIR: &str = "files";

/// How long an upload that no message refers to is kept (milliseconds).
pub const UNUSED_FOR_MS: i64 = 60 * 60 * 1000;

/// Where the file of this content is kept.
pub fn file_path(data_dir: &Path, sha256: &str) -> PathBuf {
    data_dir
        .join(FILES_DIR)
        .join(&sha256[..2.min(sha256.len())])
        .join(sha256)
}

/// Where uploads are written while they arrive.
pub fn temp_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(FILES_DIR).join("tmp")
}

/// What a file is, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    pub mime: &'static str,
    pub kind: AttachmentKind,
}

impl Sniffed {
    /// Whether browsers may show it in the page: raster images, audio and video only.
    pub fn inline(&self) -> bool {
        matches!(
            self.kind,
            AttachmentKind::Image | AttachmentKind::Audio | AttachmentKind::Video
        )
    }
}

/// How many first bytes [`sniff`] looks at.
pub const SNIFF_BYTES: usize = 64;

/// The type of a file from its content alone: the client's `Content-Type` and the file's
/// name are never asked. What is not recognised (SVG, HTML, office files, text) is a `file`,
/// `application/octet-stream`.
pub fn sniff(head: &[u8]) -> Sniffed {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let found = |mime, kind| Sniffed { mime, kind };
    use AttachmentKind::*;
    if at(0, b"\x89PNG\r\n\x1a\n") {
        found("image/png", Image)
    } else if at(0, b"\xff\xd8\xff") {
        found("image/jpeg", Image)
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        found("image/gif", Image)
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        found("image/webp", Image)
    } else if at(0, b"RIFF") && at(8, b"WAVE") {
        found("audio/wav", Audio)
    } else if at(0, b"OggS") {
        found("audio/ogg", Audio)
    } else if at(0, b"ID3") || (head.len() > 1 && head[0] == 0xff && head[1] & 0xe0 == 0xe0) {
        found("audio/mpeg", Audio)
    } else if at(0, b"fLaC") {
        found("audio/flac", Audio)
    } else if at(4, b"ftypM4A") {
        found("audio/mp4", Audio)
    } else if at(4, b"ftyp") {
        found("video/mp4", Video)
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        found("video/webm", Video)
    } else if at(0, b"%PDF-") {
        found("application/pdf", Pdf)
    } else {
        found("application/octet-stream", File)
    }
}

/// Width and height of a PNG or GIF, read from its header (nothing is decoded).
pub fn dimensions(head: &[u8], mime: &str) -> Option<(u32, u32)> {
    let be = |i: usize| Some(u32::from_be_bytes(head.get(i..i + 4)?.try_into().ok()?));
    let le = |i: usize| Some(u16::from_le_bytes(head.get(i..i + 2)?.try_into().ok()?) as u32);
    match mime {
        "image/png" if head.get(12..16) == Some(b"IHDR") => Some((be(16)?, be(20)?)),
        "image/gif" => Some((le(6)?, le(8)?)),
        _ => None,
    }
}

/// An upload's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    pub sha256: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bot: String,
    /// The visitor who sent it, or the agent.
    pub visitor_id: Option<String>,
    pub agent_email: Option<String>,
    /// Set by an agent's upload, and by the first message that refers to it.
    pub conversation_id: Option<String>,
    pub created_ms: i64,
    /// The type of the picture's preview (`store::previews`), when one was made.
    pub preview: Option<String>,
    /// The length of a recording, when its header tells (`store::media`).
    pub duration_ms: Option<u64>,
}

impl Stored {
    /// As clients see it (in an upload's answer, `message.created` and the details).
    pub fn view(&self) -> Attachment {
        Attachment {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.mime.clone(),
            size: self.size,
            width: self.width,
            height: self.height,
            duration: self.duration_ms.map(|ms| ms as f64 / 1000.0),
            url: format!("/api/v1/attachments/{}", self.id),
            preview_url: self
                .preview
                .as_ref()
                .map(|_| format!("/api/v1/attachments/{}/preview", self.id)),
        }
    }
}

/// Records an upload and puts its file in place: `temp` becomes the file of its content,
/// or is removed when that content is stored already; the same for the preview made from
/// it (`preview_temp`), kept beside it. An upload that counts on the preview stored already
/// (`a.preview` without `preview_temp`) loses it when that preview went meanwhile.
pub fn insert(
    conn: &Connection,
    a: &mut Stored,
    data_dir: &Path,
    temp: &Path,
    preview_temp: Option<&Path>,
) -> Result<(), StoreError> {
    keep_preview(a, data_dir, preview_temp);
    insert_row(conn, a)?;
    place_files(&a.sha256, data_dir, temp, preview_temp)
}

/// Forgets `a.preview` when the upload counts on a preview stored already (no
/// `preview_temp`) and there is none: it went with the last upload of the content. The
/// first step of an insert, on either store; the caller holds what keeps the content's
/// files from going meanwhile (SQLite's writer, PostgreSQL's content lock).
pub fn keep_preview(a: &mut Stored, data_dir: &Path, preview_temp: Option<&Path>) {
    if preview_temp.is_none() && !super::previews::preview_path(data_dir, &a.sha256).exists() {
        a.preview = None;
    }
}

/// The upload's row alone (see [`insert`]).
pub fn insert_row(conn: &Connection, a: &Stored) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO attachments (id, sha256, name, type, size, width, height, bot,
                                  visitor_id, agent_email, conversation_id, created_ms,
                                  preview, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        a.id,
        a.sha256,
        a.name,
        a.mime,
        a.size as i64,
        a.width,
        a.height,
        a.bot,
        a.visitor_id,
        a.agent_email,
        a.conversation_id,
        a.created_ms,
        a.preview,
        a.duration_ms.map(|ms| ms as i64)
    ])?;
    Ok(())
}

/// Puts an upload's files in place once its row is written: `temp` becomes the file of
/// the content `sha256`, or is removed when that file is there already; the same for the
/// preview (`preview_temp`). The file half of an insert, on either store, under the same
/// guard as [`keep_preview`].
pub fn place_files(
    sha256: &str,
    data_dir: &Path,
    temp: &Path,
    preview_temp: Option<&Path>,
) -> Result<(), StoreError> {
    let dest = file_path(data_dir, sha256);
    let preview_dest = super::previews::preview_path(data_dir, sha256);
    let io = |e: std::io::Error| StoreError::Unavailable(format!("cannot store a file: {e}"));
    if dest.exists() {
        std::fs::remove_file(temp).map_err(io)?;
    } else {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::rename(temp, &dest).map_err(io)?;
    }
    if let Some(preview) = preview_temp {
        if preview_dest.exists() {
            std::fs::remove_file(preview).map_err(io)?;
        } else {
            std::fs::rename(preview, &preview_dest).map_err(io)?;
        }
    }
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Stored>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments a WHERE a.id = ?1"
        ))?
        .query_row([id], stored)
        .optional()?)
}

const COLUMNS: &str = "a.id, a.sha256, a.name, a.type, a.size, a.width, a.height, a.bot,
    a.visitor_id, a.agent_email, a.conversation_id, a.created_ms, a.preview, a.duration_ms";

fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    stored_at(r, 0)
}

/// A row's columns from `at` on, in the order of [`COLUMNS`].
fn stored_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Stored> {
    Ok(Stored {
        id: r.get(at)?,
        sha256: r.get(at + 1)?,
        name: r.get(at + 2)?,
        mime: r.get(at + 3)?,
        size: r.get::<_, i64>(at + 4)?.max(0) as u64,
        width: r.get(at + 5)?,
        height: r.get(at + 6)?,
        bot: r.get(at + 7)?,
        visitor_id: r.get(at + 8)?,
        agent_email: r.get(at + 9)?,
        conversation_id: r.get(at + 10)?,
        created_ms: r.get(at + 11)?,
        preview: r.get(at + 12)?,
        duration_ms: r.get::<_, Option<i64>>(at + 13)?.map(|ms| ms.max(0) as u64),
    })
}

/// The files of a conversation's messages, in order: (message id, file).
pub fn by_message(
    conn: &Connection,
    conversation_id: &str,
) -> Result<Vec<(String, Stored)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT ma.message_id, {COLUMNS} FROM message_attachments ma
         JOIN attachments a ON a.id = ma.attachment_id
         WHERE a.conversation_id = ?1 ORDER BY ma.message_id, ma.position"
    ))?;
    let rows = stmt.query_map([conversation_id], |r| {
        let message: String = r.get(0)?;
        let row = stored_at(r, 1)?;
        Ok((message, row))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Bytes counted against a conversation's total: its files, and the uploads its visitor
/// (or this agent) sent that no message uses yet.
pub fn conversation_bytes(
    conn: &Connection,
    conversation_id: Option<&str>,
    visitor_id: Option<&str>,
    agent_email: Option<&str>,
) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT coalesce(sum(size), 0) FROM attachments
             WHERE (?1 IS NOT NULL AND conversation_id = ?1)
                OR (conversation_id IS NULL AND used_ms IS NULL
                    AND (visitor_id = ?2 OR agent_email = ?3))",
        )?
        .query_row(params![conversation_id, visitor_id, agent_email], |r| {
            r.get(0)
        })?;
    Ok(n.max(0) as u64)
}

/// A message refers to its files: in the message's transaction, so both are stored or
/// neither. A file first used here now belongs to the conversation.
pub fn link(
    conn: &Connection,
    message_id: &str,
    conversation_id: &str,
    ids: &[String],
    now_ms: i64,
) -> Result<(), StoreError> {
    for (position, id) in ids.iter().enumerate() {
        conn.prepare_cached(
            "INSERT INTO message_attachments (message_id, position, attachment_id)
             VALUES (?1, ?2, ?3)",
        )?
        .execute(params![message_id, position as i64, id])?;
        conn.prepare_cached(
            "UPDATE attachments SET conversation_id = coalesce(conversation_id, ?2),
                                    used_ms = coalesce(used_ms, ?3)
             WHERE id = ?1",
        )?
        .execute(params![id, conversation_id, now_ms])?;
    }
    Ok(())
}

/// Removes the uploads no message used within [`UNUSED_FOR_MS`] and those of conversations
/// that are gone, and every file no row refers to any more. Returns how many rows went.
pub fn sweep(conn: &Connection, data_dir: &Path, now_ms: i64) -> Result<usize, StoreError> {
    let gone = sweep_rows(conn, now_ms)?;
    if gone.is_empty() {
        return Ok(0);
    }
    remove_unreferenced(conn, data_dir, &gone)?;
    Ok(gone.len())
}

/// The rows half of [`sweep`]: deletes the uploads it removes (and the messages' references
/// to them) and returns their contents' `sha256`, one per row.
pub fn sweep_rows(conn: &Connection, now_ms: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM attachments
         WHERE (used_ms IS NULL AND created_ms < ?1)
            OR (conversation_id IS NOT NULL
                AND conversation_id NOT IN (SELECT id FROM conversations))
         RETURNING sha256",
    )?;
    let gone: Vec<String> = stmt
        .query_map([now_ms - UNUSED_FOR_MS], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if gone.is_empty() {
        return Ok(gone);
    }
    conn.prepare_cached(
        "DELETE FROM message_attachments
         WHERE attachment_id NOT IN (SELECT id FROM attachments)",
    )?
    .execute([])?;
    Ok(gone)
}

/// Removes from the disk each file of `shas` that no upload refers to any more (after an
/// erase took their rows), with its preview. Returns how many files went (previews not
/// counted).
pub fn remove_unreferenced(
    conn: &Connection,
    data_dir: &Path,
    shas: &[String],
) -> Result<usize, StoreError> {
    let unused = unreferenced(conn, shas)?;
    Ok(remove_files(data_dir, &unused))
}

/// Of `shas`, those no upload refers to any more: sorted, each once.
pub fn unreferenced(conn: &Connection, shas: &[String]) -> Result<Vec<String>, StoreError> {
    let mut shas = shas.to_vec();
    shas.sort();
    shas.dedup();
    let mut unused = Vec::new();
    for sha in shas {
        let still: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM attachments WHERE sha256 = ?1)")?
            .query_row([&sha], |r| r.get(0))?;
        if !still {
            unused.push(sha);
        }
    }
    Ok(unused)
}

/// Removes the files of the contents `shas` and their previews from the disk (the caller
/// found no row refers to them, [`unreferenced`], and keeps it so until they are gone);
/// how many files went (previews not counted). A file that cannot be removed is logged.
pub fn remove_files(data_dir: &Path, shas: &[String]) -> usize {
    let mut removed = 0;
    for sha in shas {
        match std::fs::remove_file(super::previews::preview_path(data_dir, sha)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, sha256 = %sha, "cannot remove a preview"),
        }
        match std::fs::remove_file(file_path(data_dir, sha)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, sha256 = %sha, "cannot remove a file"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_content() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").mime, "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n").kind, AttachmentKind::Pdf);
        assert_eq!(
            sniff(b"<svg onload=alert(1)>").mime,
            "application/octet-stream"
        );
        assert_eq!(sniff(b"<html><script>").kind, AttachmentKind::File);
        assert_eq!(sniff(b"").kind, AttachmentKind::File);
        assert!(!sniff(b"%PDF-").inline());
        assert!(sniff(b"GIF89a").inline());
    }

    fn upload(conn: &Connection, dir: &Path, id: &str, content: &str, created_ms: i64) -> PathBuf {
        let sha = format!("{content:0>64}");
        let temp = dir.join(format!("{id}.part"));
        std::fs::write(&temp, content).unwrap();
        let mut row = Stored {
            id: id.into(),
            sha256: sha.clone(),
            name: "a.pdf".into(),
            mime: "application/pdf".into(),
            size: content.len() as u64,
            width: None,
            height: None,
            bot: "support".into(),
            visitor_id: Some("v_1".into()),
            agent_email: None,
            conversation_id: None,
            created_ms,
            preview: None,
            duration_ms: None,
        };
        let dest = file_path(dir, &sha);
        insert(conn, &mut row, dir, &temp, None).unwrap();
        assert!(!temp.exists(), "the upload is put in place or dropped");
        dest
    }

    fn conversation(conn: &Connection, id: &str) {
        conn.execute(
            "INSERT INTO conversations (id, visitor_id, bot, status, created_at, updated_at, state)
             VALUES (?1, 'v_1', 'support', 'chatting', 'x', 'x', '{}')",
            [id],
        )
        .unwrap();
    }

    #[test]
    fn a_file_is_stored_once_and_goes_with_the_last_upload_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::MIGRATIONS.to_latest(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
             VALUES ('v_1', 'h', 'support', 'x', 'x')",
            [],
        )
        .unwrap();
        let now = 10 * UNUSED_FOR_MS;
        conversation(&conn, "c_1");
        conversation(&conn, "c_2");
        // The same bytes sent in two conversations, and an upload nobody used.
        let shared = upload(&conn, dir.path(), "a_1", "abc", now);
        assert_eq!(upload(&conn, dir.path(), "a_2", "abc", now), shared);
        let unused = upload(&conn, dir.path(), "a_3", "def", now - UNUSED_FOR_MS - 1);
        let fresh = upload(&conn, dir.path(), "a_4", "ghi", now);
        // The shared file's preview lives beside it and goes with it.
        let preview = crate::store::previews::preview_path(dir.path(), &format!("{:0>64}", "abc"));
        std::fs::write(&preview, b"preview").unwrap();
        link(&conn, "m_1", "c_1", &["a_1".into()], now).unwrap();
        link(&conn, "m_2", "c_2", &["a_2".into()], now).unwrap();
        assert_eq!(
            conversation_bytes(&conn, Some("c_1"), Some("v_1"), None).unwrap(),
            3 + 3 + 3
        );

        // An hour on, the unused upload goes; the fresh one and the used ones stay.
        assert_eq!(sweep(&conn, dir.path(), now).unwrap(), 1);
        assert!(!unused.exists() && fresh.exists() && shared.exists());
        // One conversation gone: its upload goes, the file stays for the other.
        conn.execute("DELETE FROM conversations WHERE id = 'c_1'", [])
            .unwrap();
        assert_eq!(sweep(&conn, dir.path(), now).unwrap(), 1);
        assert!(shared.exists() && preview.exists());
        assert!(get(&conn, "a_1").unwrap().is_none());
        // The last one gone: the file goes too, and the message no longer lists it.
        conn.execute("DELETE FROM conversations WHERE id = 'c_2'", [])
            .unwrap();
        assert_eq!(sweep(&conn, dir.path(), now).unwrap(), 1);
        assert!(!shared.exists() && !preview.exists());
        let links: i64 = conn
            .query_row("SELECT count(*) FROM message_attachments", [], |r| r.get(0))
            .unwrap();
        assert_eq!(links, 0);
    }

    #[test]
    fn dimensions_come_from_the_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(20_000u32.to_be_bytes());
        png.extend(30u32.to_be_bytes());
        assert_eq!(dimensions(&png, "image/png"), Some((20_000, 30)));
        assert_eq!(
            dimensions(b"GIF89a\x02\x00\x03\x00", "image/gif"),
            Some((2, 3))
        );
        assert_eq!(dimensions(b"GIF89a", "image/gif"), None);
    }
}
