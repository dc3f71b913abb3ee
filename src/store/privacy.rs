//! Personal data: a visitor's export, and erasing conversations and visitors for good.
//!
//! A visitor is a `visitors` row (`v_…`): the id a widget's token stands for, kept across
//! that visitor's conversations with one bot. Erasing deletes their rows and leaves each of
//! their events in the log as a tombstone (type `redacted`, empty data), so every `seq`
//! stays and a replay after any point has no gap. Deleted text must not linger in the
//! database or its WAL, so connections run with `secure_delete` (freed space is zeroed:
//! also the space rows leave when pages split, long before an erase), the
//! search index physically drops a deleted message's terms (FTS5 `secure-delete`, set by
//! migration 5), and [`truncate_wal`] afterwards copies the WAL into the database and cuts
//! it to nothing, old page images with it.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::StoreError;

/// The type a tombstone takes in the event log.
pub const REDACTED: &str = "redacted";

/// Conversation statuses that are over: what retention may delete.
const SETTLED: &str = "('resolved', 'ended', 'closed')";

/// What one erase removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    /// Each conversation removed: (id, bot, status, assignee).
    pub conversations: Vec<ErasedConversation>,
    pub messages: usize,
    pub forms: usize,
    /// Page views the widget reported.
    pub pageviews: usize,
    /// Events turned into tombstones.
    pub events: usize,
    pub visitors: usize,
    /// The visitors whose profile was removed.
    pub visitor_ids: Vec<String>,
    /// The stored files (by SHA-256) of the attachments removed; a file goes from the disk
    /// once no other upload refers to it (`store::attachments::remove_unreferenced`).
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedConversation {
    pub id: String,
    pub bot: String,
    pub status: String,
    pub assignee: Option<String>,
}

impl Erased {
    pub fn ids(&self) -> Vec<String> {
        self.conversations.iter().map(|c| c.id.clone()).collect()
    }
}

/// Whether the visitor exists.
pub fn visitor_exists(conn: &Connection, visitor_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM visitors WHERE id = ?1")?
        .query_row([visitor_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The visitor's conversations, oldest first.
pub fn conversations_of(conn: &Connection, visitor_id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM conversations WHERE visitor_id = ?1 ORDER BY created_at, rowid",
    )?;
    let ids = stmt
        .query_map([visitor_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// The visitor's email as their profile keeps it.
pub fn email_of(conn: &Connection, visitor_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT email FROM visitors WHERE id = ?1")?
        .query_row([visitor_id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Everything stored about one visitor, as JSON; `None` if there is no such visitor.
pub fn export(conn: &Connection, visitor_id: &str) -> Result<Option<Value>, StoreError> {
    let profile = conn
        .prepare(
            "SELECT id, bot, name, email, language, country, ip, created_at, last_seen_at
             FROM visitors WHERE id = ?1",
        )?
        .query_row([visitor_id], |r| {
            Ok(json!({
                "id": r.get::<_, String>(0)?,
                "bot": r.get::<_, String>(1)?,
                "name": r.get::<_, Option<String>>(2)?,
                "email": r.get::<_, Option<String>>(3)?,
                "language": r.get::<_, Option<String>>(4)?,
                "country": r.get::<_, Option<String>>(5)?,
                "ip": r.get::<_, Option<String>>(6)?,
                "created_at": r.get::<_, String>(7)?,
                "last_seen_at": r.get::<_, String>(8)?,
            }))
        })
        .optional()?;
    let Some(profile) = profile else {
        return Ok(None);
    };
    let mut conversations = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT id, bot, status, assignee, team, created_at, updated_at, state
         FROM conversations WHERE visitor_id = ?1 ORDER BY created_at, rowid",
    )?;
    let rows = stmt.query_map([visitor_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            json!({
                "id": r.get::<_, String>(0)?,
                "bot": r.get::<_, String>(1)?,
                "status": r.get::<_, String>(2)?,
                "assignee": r.get::<_, Option<String>>(3)?,
                "team": r.get::<_, Option<String>>(4)?,
                "created_at": r.get::<_, String>(5)?,
                "updated_at": r.get::<_, String>(6)?,
            }),
            r.get::<_, String>(7)?,
        ))
    })?;
    for row in rows {
        let (id, mut conv, state) = row?;
        let state: Value =
            serde_json::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        conv["state"] = state;
        conv["messages"] = Value::Array(messages_of(conn, &id)?);
        conversations.push(conv);
    }
    let mut stmt = conn.prepare(
        "SELECT id, bot, form, conversation_id, fields, page_url, ip, created_at
         FROM form_submissions
         WHERE visitor_id = ?1
            OR conversation_id IN (SELECT id FROM conversations WHERE visitor_id = ?1)
         ORDER BY created_at, rowid",
    )?;
    let forms = stmt
        .query_map([visitor_id], |r| {
            let fields: String = r.get(4)?;
            Ok(json!({
                "id": r.get::<_, String>(0)?,
                "bot": r.get::<_, String>(1)?,
                "form": r.get::<_, String>(2)?,
                "conversation_id": r.get::<_, Option<String>>(3)?,
                "values": serde_json::from_str::<Value>(&fields).unwrap_or(Value::String(fields)),
                "page_url": r.get::<_, Option<String>>(5)?,
                "ip": r.get::<_, Option<String>>(6)?,
                "created_at": r.get::<_, String>(7)?,
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(json!({
        "visitor": profile,
        "conversations": conversations,
        "forms": forms,
        "attachments": attachments_of(conn, visitor_id)?,
        "contact": super::contacts::of_visitor(conn, visitor_id)?,
        "pageviews": super::pageviews::of_visitor(conn, visitor_id)?,
    })))
}

/// The metadata of the files in the visitor's conversations and of their own uploads
/// (not the files: they are served to whoever may see them).
fn attachments_of(conn: &Connection, visitor_id: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.name, a.type, a.size, a.conversation_id, a.agent_email, a.created_ms
         FROM attachments a
         WHERE a.visitor_id = ?1
            OR a.conversation_id IN (SELECT id FROM conversations WHERE visitor_id = ?1)
         ORDER BY a.created_ms, a.id",
    )?;
    let rows = stmt
        .query_map([visitor_id], |r| {
            Ok(json!({
                "id": r.get::<_, String>(0)?,
                "name": r.get::<_, String>(1)?,
                "type": r.get::<_, String>(2)?,
                "size": r.get::<_, i64>(3)?,
                "conversation_id": r.get::<_, Option<String>>(4)?,
                "from_agent": r.get::<_, Option<String>>(5)?,
                "created_ms": r.get::<_, i64>(6)?,
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// A conversation's messages and notes, oldest first, as the API shows them:
/// `{id, seq, kind, agent, text, at}` (the conversation details and a visitor's export).
pub fn messages_of(conn: &Connection, conversation_id: &str) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, kind, author, text, at FROM conversation_messages
         WHERE conversation_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt
        .query_map([conversation_id], |r| {
            Ok(json!({
                "id": r.get::<_, String>(0)?,
                "seq": r.get::<_, i64>(1)?,
                "kind": r.get::<_, String>(2)?,
                "agent": r.get::<_, Option<String>>(3)?,
                "text": r.get::<_, String>(4)?,
                "at": r.get::<_, String>(5)?,
            }))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Runs `work` with zeroing of freed space on (as every connection of `store::connect` has
/// it): deleted text is overwritten in the pages that held it, not just unlinked. It stays
/// on: space freed earlier without it could hold copies of the text.
pub fn securely<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.pragma_update(None, "secure_delete", true)?;
    work(conn)
}

/// Erases a visitor: their conversations (see [`erase_conversations`]), their offline forms
/// and their profile. Run it inside [`securely`].
pub fn erase_visitor(conn: &Connection, visitor_id: &str) -> Result<Erased, StoreError> {
    let ids = conversations_of(conn, visitor_id)?;
    let mut erased = erase_conversations(conn, &ids)?;
    erased.forms += conn
        .prepare_cached("DELETE FROM form_submissions WHERE visitor_id = ?1")?
        .execute([visitor_id])?;
    // Uploads the visitor made that no message used yet.
    let files: Vec<String> = conn
        .prepare_cached("DELETE FROM attachments WHERE visitor_id = ?1 RETURNING sha256")?
        .query_map([visitor_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    erased.files.extend(files);
    // Their contact fields (the foreign key would cascade; said here so it is plain).
    super::contacts::erase(conn, visitor_id)?;
    erased.pageviews += super::pageviews::erase_of(conn, visitor_id)?;
    let gone = conn
        .prepare_cached("DELETE FROM visitors WHERE id = ?1")?
        .execute([visitor_id])?;
    erased.visitors += gone;
    if gone > 0 {
        erased.visitor_ids.push(visitor_id.to_string());
    }
    Ok(erased)
}

/// Erases conversations: their messages and notes (out of the search index first), their
/// offline forms and their rows; their events become tombstones. Run it inside
/// [`securely`]. Ids that name no conversation are skipped.
pub fn erase_conversations(conn: &Connection, ids: &[String]) -> Result<Erased, StoreError> {
    let mut erased = Erased::default();
    for id in ids {
        let found = conn
            .prepare_cached("SELECT bot, status, assignee FROM conversations WHERE id = ?1")?
            .query_row([id], |r| {
                Ok(ErasedConversation {
                    id: id.clone(),
                    bot: r.get(0)?,
                    status: r.get(1)?,
                    assignee: r.get(2)?,
                })
            })
            .optional()?;
        let Some(conv) = found else { continue };
        // Only rows the index holds: messages written in this very group are not indexed
        // yet, and an external-content index must never be told to delete what it lacks.
        conn.prepare_cached(
            "INSERT INTO messages_fts (messages_fts, rowid, text)
             SELECT 'delete', m.seq, m.text FROM conversation_messages m
             WHERE m.conversation_id = ?1 AND m.seq IN (SELECT id FROM messages_fts_docsize)",
        )?
        .execute([id])?;
        // A message is its event (`messages` is a view over the log): it goes with the
        // event's tombstone below.
        erased.messages += conn
            .prepare_cached(
                "SELECT count(*) FROM conversation_messages WHERE conversation_id = ?1",
            )?
            .query_row([id], |r| r.get::<_, i64>(0))? as usize;
        erased.forms += conn
            .prepare_cached("DELETE FROM form_submissions WHERE conversation_id = ?1")?
            .execute([id])?;
        conn.prepare_cached(
            "DELETE FROM message_attachments WHERE attachment_id IN
               (SELECT id FROM attachments WHERE conversation_id = ?1)",
        )?
        .execute([id])?;
        let files: Vec<String> = conn
            .prepare_cached("DELETE FROM attachments WHERE conversation_id = ?1 RETURNING sha256")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        erased.files.extend(files);
        erased.events += conn
            .prepare_cached(
                "UPDATE events SET type = ?2, data = '{}', visitor_visible = 0, client_id = NULL
                 WHERE seq IN (SELECT seq FROM conversation_events WHERE conversation_id = ?1)",
            )?
            .execute(params![id, REDACTED])?;
        conn.prepare_cached("DELETE FROM conversations WHERE id = ?1")?
            .execute([id])?;
        erased.conversations.push(conv);
    }
    Ok(erased)
}

/// Settled conversations (resolved, ended or closed) last changed before `cutoff` (a
/// stored time, see `persist::stamp`), at most `limit` of them, oldest first.
pub fn expired_conversations(
    conn: &Connection,
    cutoff: &str,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id FROM conversations WHERE status IN {SETTLED} AND updated_at < ?1
         ORDER BY updated_at LIMIT ?2"
    ))?;
    let ids = stmt
        .query_map(params![cutoff, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// After retention removed conversations: visitors last seen before `cutoff` with no
/// conversation left lose their profile, and offline forms sent outside any conversation
/// before `cutoff` go too. Run it inside [`securely`].
pub fn erase_expired_leftovers(conn: &Connection, cutoff: &str) -> Result<Erased, StoreError> {
    let mut erased = Erased::default();
    erased.forms += conn.execute(
        "DELETE FROM form_submissions WHERE conversation_id IS NULL AND created_at < ?1
           AND (visitor_id IS NULL OR visitor_id NOT IN (SELECT id FROM visitors))",
        [cutoff],
    )?;
    let mut stmt = conn.prepare(
        "DELETE FROM visitors WHERE last_seen_at < ?1
           AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = visitors.id)
         RETURNING id",
    )?;
    erased.visitor_ids = stmt
        .query_map([cutoff], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    erased.visitors = erased.visitor_ids.len();
    Ok(erased)
}

/// Copies the whole WAL into the database and cuts the WAL file to nothing, so page images
/// from before an erase are gone from it. Waits for readers on older snapshots (the
/// connection's busy timeout), and tries a few times while the server writes. True when
/// the WAL was emptied.
pub fn truncate_wal(data_dir: &Path) -> Result<bool, StoreError> {
    let conn = super::connect(data_dir)?;
    for _ in 0..20 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(conn: &Connection, visitor: &str, conv: &str, text: &str) {
        conn.execute(
            "INSERT INTO visitors (id, token_hash, bot, email, created_at, last_seen_at)
             VALUES (?1, ?1 || 'h', 'b', 'x@example.com', 't1', 't1')",
            [visitor],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO conversations (id, visitor_id, bot, status, created_at, updated_at, state)
             VALUES (?1, ?2, 'b', 'closed', 't1', 't1', '{}')",
            [conv, visitor],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data)
             VALUES (?1, 'b', 'message.created', 't1', 1,
                     json_object('message_id', 'm' || ?1, 'author', 'visitor', 'text', ?2))",
            [conv, text],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO messages_fts (rowid, text) SELECT seq, text FROM messages
             WHERE conversation_id = ?1",
            [conv],
        )
        .unwrap();
    }

    fn matches(conn: &Connection, word: &str) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1",
            [word],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn erasing_a_visitor_leaves_tombstones_and_the_other_visitor() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        seed(&conn, "v_a", "c_a", "parcel alpha");
        seed(&conn, "v_b", "c_b", "parcel beta");
        let exported = export(&conn, "v_a").unwrap().unwrap();
        assert_eq!(
            exported["conversations"][0]["messages"][0]["text"],
            "parcel alpha"
        );
        let erased = securely(&conn, |c| erase_visitor(c, "v_a")).unwrap();
        assert_eq!((erased.messages, erased.events, erased.visitors), (1, 1, 1));
        assert_eq!(export(&conn, "v_a").unwrap(), None);
        assert_eq!(matches(&conn, "alpha"), 0);
        assert_eq!(matches(&conn, "beta"), 1);
        let (kind, data): (String, String) = conn
            .query_row("SELECT type, data FROM events WHERE seq = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((kind.as_str(), data.as_str()), (REDACTED, "{}"));
        let seqs: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seqs, 2, "no event is deleted");
        // The index still takes new messages and stays consistent.
        conn.execute(
            "INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')",
            [],
        )
        .unwrap();
    }

    #[test]
    fn retention_finds_settled_conversations_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        seed(&conn, "v_a", "c_a", "old");
        assert_eq!(
            expired_conversations(&conn, "t0", 10).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(expired_conversations(&conn, "t2", 10).unwrap(), vec!["c_a"]);
        securely(&conn, |c| erase_conversations(c, &["c_a".to_string()])).unwrap();
        let left = securely(&conn, |c| erase_expired_leftovers(c, "t2")).unwrap();
        assert_eq!(left.visitors, 1);
        assert!(!visitor_exists(&conn, "v_a").unwrap());
    }
}
