//! Read marks: per agent and conversation, the last event `seq` the agent has read. A
//! conversation's unread count for an agent is the number of visitor messages after it.

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// The unread count of the conversation `c.id` for the agent bound to parameter `agent`
/// (a placeholder such as `?1`), as an SQL expression over `conversations c`.
pub fn unread_sql(agent: &str) -> String {
    // Over the log's two halves (a correlated subquery, see `event_index`).
    let read = format!(
        "coalesce((SELECT r.seq FROM reads r
                   WHERE r.agent_email = {agent} AND r.conversation_id = c.id), 0)"
    );
    let visitor = "e.type = 'message.created' AND json_extract(e.data, '$.author') = 'visitor'";
    format!(
        "((SELECT count(*) FROM {} AND i.seq > {read} AND {visitor})
          + (SELECT count(*) FROM {} AND e.seq > {read} AND {visitor}))",
        super::event_index::indexed("e", "c.id"),
        super::event_index::unindexed("e", "c.id"),
    )
}

/// The agent's mark on the conversation (0: never read).
pub fn mark(conn: &Connection, agent: &str, conversation_id: &str) -> Result<i64, StoreError> {
    let seq = conn
        .prepare_cached("SELECT seq FROM reads WHERE agent_email = ?1 AND conversation_id = ?2")?
        .query_row(params![agent, conversation_id], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0))
}

/// Visitor messages of the conversation after the agent's mark.
pub fn unread(conn: &Connection, agent: &str, conversation_id: &str) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT {} FROM conversations c WHERE c.id = ?2",
        unread_sql("?1")
    );
    let n = conn
        .prepare_cached(&sql)?
        .query_row(params![agent, conversation_id], |r| r.get(0))
        .optional()?;
    Ok(n.unwrap_or(0))
}

/// What a mark is after `set_mark`: the `seq` it holds and what is still unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub seq: i64,
    pub unread: i64,
}

/// Marks the conversation read by the agent up to `seq`. A mark never moves back (another
/// tab may have read further), nor past the conversation's newest event, so a message
/// that comes later is unread however large a `seq` was sent.
pub fn set_mark(
    conn: &Connection,
    agent: &str,
    conversation_id: &str,
    seq: i64,
    at: &str,
) -> Result<Mark, StoreError> {
    let newest: i64 = conn
        // The last row rather than `max(seq)`: SQLite then merges the view's two halves
        // from their ends instead of reading the whole conversation.
        .prepare_cached(
            "SELECT seq FROM conversation_events WHERE conversation_id = ?1
             ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([conversation_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let seq = seq.clamp(0, newest);
    conn.prepare_cached(
        "INSERT INTO reads (agent_email, conversation_id, seq, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (agent_email, conversation_id)
         DO UPDATE SET seq = max(seq, excluded.seq), at = excluded.at",
    )?
    .execute(params![agent, conversation_id, seq, at])?;
    Ok(Mark {
        seq: mark(conn, agent, conversation_id)?,
        unread: unread(conn, agent, conversation_id)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let tmp = tempfile::tempdir().unwrap();
        let conn = super::super::open(tmp.path()).unwrap();
        conn.execute_batch(
            "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
               VALUES ('v1', 'h', 'b', 't', 't');
             INSERT INTO conversations (id, visitor_id, bot, status, created_at, updated_at, state)
               VALUES ('c1', 'v1', 'b', 'new', 't', 't', '{}');",
        )
        .unwrap();
        (tmp, conn)
    }

    fn message(conn: &Connection, seq: i64, kind: &str) {
        conn.execute(
            "INSERT INTO events (seq, conversation_id, bot, type, at, visitor_visible, data)
             VALUES (?1, 'c1', 'b', 'message.created', 't', 1,
                     json_object('message_id', ?2, 'author', ?3, 'text', 'x'))",
            params![seq, format!("m{seq}"), kind],
        )
        .unwrap();
    }

    #[test]
    fn visitor_messages_after_the_mark_are_unread_and_the_mark_never_moves_back() {
        let (_tmp, conn) = db();
        message(&conn, 1, "visitor");
        message(&conn, 2, "agent");
        message(&conn, 3, "visitor");
        assert_eq!(unread(&conn, "ana@x", "c1").unwrap(), 2);
        let m = set_mark(&conn, "ana@x", "c1", 1, "t").unwrap();
        assert_eq!(m, Mark { seq: 1, unread: 1 });
        // Someone else's mark is their own.
        assert_eq!(unread(&conn, "bea@x", "c1").unwrap(), 2);
        // Past the newest event: held at it, so the next message is unread.
        let m = set_mark(&conn, "ana@x", "c1", 99, "t").unwrap();
        assert_eq!(m, Mark { seq: 3, unread: 0 });
        let m = set_mark(&conn, "ana@x", "c1", 2, "t").unwrap();
        assert_eq!(m.seq, 3, "a mark never moves back");
        message(&conn, 4, "visitor");
        assert_eq!(unread(&conn, "ana@x", "c1").unwrap(), 1);
        assert_eq!(unread(&conn, "ana@x", "nowhere").unwrap(), 0);
    }
}
