//! The event log by conversation: `event_index (conversation_id, seq)`, filled by the
//! writer in batches, and the views that read a conversation's events through it.
//!
//! An index on `events (conversation_id, seq)` kept by SQLite itself put each message's
//! entry at its conversation's place in the index, a different place for each conversation
//! of a group commit: one index page written per message, and more when a page split (at
//! 512-byte pages most of all, with 64 conversations writing at once about four pages per
//! message, four fifths of what the writer wrote; docs/benchmarks.md, "Bytes per message").
//! Filled in batches sorted by conversation, a conversation's new entries share their page.
//!
//! So the writer indexes the events above the mark (`event_index_mark.upto`) at most every
//! [`INDEX_EVERY`], or as soon as [`INDEX_AT`] events wait, in the group's transaction, and
//! moves the mark. Readers never wait for it: `conversation_events` is the indexed events of
//! a conversation and, after them, those above the mark (a short scan of the log's newest
//! rows by `seq`), so a reader sees every committed event, in one snapshot. A query that
//! names the conversation (`WHERE conversation_id = ?` or `IN (…)`) gets both halves
//! searched by key; a query that refers to an outer row (a correlated subquery) cannot, and
//! spells the two halves out with [`indexed`] and [`unindexed`] instead. A query for the
//! newest few (`ORDER BY seq DESC LIMIT n`) selects plain columns and filters on plain
//! columns: SQLite then merges the two halves from their ends; a computed column (a JSON
//! field) makes it read and sort the whole conversation first.

use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::writer::GroupStep;

/// How long the newest events may wait for the index (readers see them meanwhile).
pub const INDEX_EVERY: Duration = Duration::from_millis(250);

/// How many events may wait for the index before it catches up, whatever the time: the
/// readers' scan of the unindexed events stays short under any load.
pub const INDEX_AT: i64 = 4096;

/// The events of conversation `conv` (an SQL expression, e.g. `c.id`) that the index
/// holds, as `FROM` and `WHERE` text over alias `alias` of `events`.
pub fn indexed(alias: &str, conv: &str) -> String {
    format!(
        "event_index i JOIN events {alias} ON {alias}.seq = i.seq WHERE i.conversation_id = {conv}"
    )
}

/// The events of conversation `conv` above the mark, as `FROM` and `WHERE` text over alias
/// `alias` of `events`.
pub fn unindexed(alias: &str, conv: &str) -> String {
    format!(
        "events {alias} WHERE {alias}.seq > (SELECT upto FROM event_index_mark)
           AND {alias}.conversation_id = {conv}"
    )
}

/// Brings the index up to the log's newest event when due.
pub struct EventIndex {
    last: Option<Instant>,
    every: Duration,
}

impl EventIndex {
    pub fn new() -> EventIndex {
        EventIndex::every(INDEX_EVERY)
    }

    /// Indexing at most every `period` (the first group indexes at once).
    pub fn every(period: Duration) -> EventIndex {
        EventIndex {
            last: None,
            every: period,
        }
    }
}

impl Default for EventIndex {
    fn default() -> Self {
        EventIndex::new()
    }
}

fn mark(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT upto FROM event_index_mark")?
        .query_row([], |r| r.get(0))
}

/// The newest event's `seq` (0 for an empty log).
pub fn newest(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
        .query_row([], |r| r.get(0))
}

/// Indexes every event above the mark and moves it to the newest. Run inside a
/// transaction (the writer's group): the entries and the mark commit together.
pub fn catch_up(conn: &Connection) -> rusqlite::Result<()> {
    let (from, to) = (mark(conn)?, newest(conn)?);
    if to <= from {
        return Ok(());
    }
    // Sorted by conversation: each conversation's entries are written next to each other.
    // `OR IGNORE`: entries already there (should a step have failed between the two
    // statements) are not an error.
    conn.prepare_cached(
        "INSERT OR IGNORE INTO event_index (conversation_id, seq)
         SELECT conversation_id, seq FROM events
         WHERE seq > ?1 AND seq <= ?2 AND conversation_id IS NOT NULL
         ORDER BY conversation_id, seq",
    )?
    .execute([from, to])?;
    conn.prepare_cached("UPDATE event_index_mark SET upto = ?1")?
        .execute([to])?;
    Ok(())
}

impl GroupStep for EventIndex {
    fn before_commit(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        let due = self.last.is_none_or(|at| at.elapsed() >= self.every);
        if !due && newest(conn)? - mark(conn)? < INDEX_AT {
            return Ok(());
        }
        self.last = Some(Instant::now());
        catch_up(conn)
    }

    fn after_commit(&mut self, _committed: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Connection) {
        let tmp = tempfile::tempdir().unwrap();
        let conn = crate::store::open(tmp.path()).unwrap();
        (tmp, conn)
    }

    fn event(conn: &Connection, conv: &str) -> i64 {
        conn.execute(
            "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data)
             VALUES (?1, 'b', 'message.created', 't', 1, '{}')",
            [conv],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn seqs(conn: &Connection, conv: &str) -> Vec<i64> {
        conn.prepare("SELECT seq FROM conversation_events WHERE conversation_id = ?1 ORDER BY seq")
            .unwrap()
            .query_map([conv], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn counted(conn: &Connection, conv: &str) -> i64 {
        let sql = format!(
            "SELECT (SELECT count(*) FROM {}) + (SELECT count(*) FROM {})",
            indexed("e", "?1"),
            unindexed("e", "?1")
        );
        conn.query_row(&sql, [conv], |r| r.get(0)).unwrap()
    }

    #[test]
    fn a_conversation_reads_the_same_events_before_during_and_after_indexing() {
        let (_tmp, conn) = db();
        let a1 = event(&conn, "a");
        let b1 = event(&conn, "b");
        let a2 = event(&conn, "a");
        // Nothing indexed yet: the events are read from above the mark.
        assert_eq!(seqs(&conn, "a"), vec![a1, a2]);
        assert_eq!(counted(&conn, "a"), 2);
        catch_up(&conn).unwrap();
        let a3 = event(&conn, "a");
        // Half indexed, half above the mark: once each, in order.
        assert_eq!(seqs(&conn, "a"), vec![a1, a2, a3]);
        assert_eq!(seqs(&conn, "b"), vec![b1]);
        assert_eq!(counted(&conn, "a"), 3);
        let indexed: i64 = conn
            .query_row("SELECT count(*) FROM event_index", [], |r| r.get(0))
            .unwrap();
        assert_eq!(indexed, 3);
        catch_up(&conn).unwrap();
        assert_eq!(seqs(&conn, "a"), vec![a1, a2, a3]);
        assert_eq!(counted(&conn, "a"), 3);
        assert_eq!(mark(&conn).unwrap(), a3);
    }

    #[test]
    fn the_step_indexes_when_due_or_when_many_events_wait() {
        let (_tmp, conn) = db();
        let mut step = EventIndex::every(Duration::from_secs(3600));
        event(&conn, "a");
        step.before_commit(&conn).unwrap();
        assert_eq!(mark(&conn).unwrap(), 1, "the first group indexes at once");
        event(&conn, "a");
        step.before_commit(&conn).unwrap();
        assert_eq!(mark(&conn).unwrap(), 1, "not due, and one event waits");
        for _ in 0..INDEX_AT {
            event(&conn, "b");
        }
        step.before_commit(&conn).unwrap();
        assert_eq!(mark(&conn).unwrap(), 2 + INDEX_AT);
    }

    /// A query naming the conversation reaches both halves by key, never by a scan of
    /// the index or of the whole log.
    #[test]
    fn a_conversations_events_are_found_by_key() {
        let (_tmp, conn) = db();
        let plan = |sql: &str| -> String {
            conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
                .join("\n")
        };
        for sql in [
            "SELECT seq FROM conversation_events WHERE conversation_id = 'a' AND seq > 5 ORDER BY seq LIMIT 10",
            "SELECT id FROM conversation_messages WHERE conversation_id = 'a' AND client_id = 'x'",
            "SELECT seq FROM conversation_events WHERE conversation_id IN (SELECT id FROM conversations WHERE visitor_id = 'v')",
        ] {
            let p = plan(sql);
            assert!(
                p.contains("SEARCH i USING PRIMARY KEY (conversation_id=?"),
                "{sql}\n{p}"
            );
            assert!(
                p.contains("SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"),
                "{sql}\n{p}"
            );
            scans_nothing_large(sql, &p);
        }
        // The newest events first, read from the two halves' ends, not sorted whole (the
        // read mark's clamp, a resumed widget's page, a request alert's last lines).
        for sql in [
            "SELECT seq FROM conversation_events WHERE conversation_id = 'a' ORDER BY seq DESC LIMIT 1",
            "SELECT seq, type, conversation_id, at, data FROM conversation_events
               WHERE conversation_id = 'a' AND visitor_visible = 1 ORDER BY seq DESC LIMIT 50",
            "SELECT seq, data FROM conversation_events WHERE conversation_id = 'a'
               AND type = 'message.created' AND seq < 99 ORDER BY seq DESC LIMIT 32",
        ] {
            let p = plan(sql);
            assert!(p.contains("MERGE (UNION ALL)"), "{sql}\n{p}");
            assert!(!p.contains("TEMP B-TREE"), "{sql}\n{p}");
            scans_nothing_large(sql, &p);
        }
        // The correlated subqueries (lists of conversations with their unread counts).
        let sql = format!(
            "SELECT {} FROM conversations c WHERE c.visitor_id = 'v'",
            crate::store::reads::unread_sql("'a@x'")
        );
        let p = plan(&sql);
        assert!(
            p.contains("SEARCH i USING PRIMARY KEY (conversation_id=?"),
            "{sql}\n{p}"
        );
        scans_nothing_large(&sql, &p);
    }

    /// Only the one-row mark is ever scanned.
    fn scans_nothing_large(sql: &str, plan: &str) {
        for line in plan.lines() {
            assert!(
                !line.starts_with("SCAN") || line == "SCAN event_index_mark",
                "{sql}\n{plan}"
            );
        }
    }
}
