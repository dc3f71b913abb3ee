//! The full-text index of messages (`messages_fts`), kept up to date by the writer: at most
//! every [`INDEX_EVERY`], and at once before a search.
//!
//! An insert trigger would index each message inside its job's savepoint, and FTS5 writes
//! its pending terms out as a new index segment at every savepoint release: one segment,
//! and soon a merge, per message. Indexed once per group commit instead, a busy writer
//! still wrote a segment (about eleven pages) per commit, most of what a small commit wrote
//! besides its messages. So the newest messages are indexed in a group at most every
//! [`INDEX_EVERY`], in that group's transaction, and a search first asks the writer to
//! index what is left ([`catch_up`]): a search still finds every acknowledged message.
//! (Should the indexing itself fail, the group still commits and a later one catches up,
//! from the index's own highest row id, after a restart too.)
//!
//! The mark of what is indexed is the index's own highest row id (a message's `seq`: the
//! index's content is the view `messages` over the event log), read each time, so that
//! nothing kept in memory can disagree with the index after a failed group or an erase (an
//! erase takes out of the index only what it holds).

use std::time::{Duration, Instant};

use rusqlite::Connection;

// The newest event's `seq`: a message is its event (`messages` is a view over the log), so
// the messages to index are those of the events above the mark.
use super::event_index::newest as highest;
use super::writer::GroupStep;

/// How long the newest messages may wait for the index, unless a search asks first.
pub const INDEX_EVERY: Duration = Duration::from_millis(250);

/// Indexes the messages above the highest row id the index holds, now and then.
pub struct SearchIndex {
    last: Option<Instant>,
    every: Duration,
}

impl SearchIndex {
    pub fn new(_conn: &Connection) -> rusqlite::Result<SearchIndex> {
        Ok(SearchIndex::every(INDEX_EVERY))
    }

    /// Indexing at most every `period` (the first group indexes at once).
    pub fn every(period: Duration) -> SearchIndex {
        SearchIndex {
            last: None,
            every: period,
        }
    }
}

/// The highest row id in the index (its `docsize` table has a row per document).
fn indexed(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT coalesce(max(id), 0) FROM messages_fts_docsize")?
        .query_row([], |r| r.get(0))
}

/// Whether messages wait to be indexed (a read, to spare a search a writer job).
pub fn behind(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(highest(conn)? > indexed(conn)?)
}

/// Indexes every message not in the index yet (a writer job, before a search).
pub fn catch_up(conn: &Connection) -> rusqlite::Result<()> {
    let top = highest(conn)?;
    let upto = indexed(conn)?;
    if top > upto {
        conn.prepare_cached(
            "INSERT INTO messages_fts (rowid, text)
             SELECT seq, text FROM messages WHERE seq > ?1 AND seq <= ?2",
        )?
        .execute([upto, top])?;
    }
    Ok(())
}

impl GroupStep for SearchIndex {
    fn before_commit(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        if self.last.is_some_and(|at| at.elapsed() < self.every) {
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
    use crate::store::writer::Writer;

    fn insert(conn: &Connection, id: &str, text: &str) -> Result<(), crate::store::StoreError> {
        conn.execute(
            "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
             VALUES ('v', 'h', 'b', 't', 't') ON CONFLICT DO NOTHING",
            [],
        )?;
        conn.execute(
            "INSERT INTO conversations (id, visitor_id, bot, status, created_at, updated_at, state)
             VALUES ('c', 'v', 'b', 'chatting', 't', 't', '{}') ON CONFLICT DO NOTHING",
            [],
        )?;
        // A message is its event (`messages` is a view over the log).
        conn.execute(
            "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data)
             VALUES ('c', 'b', 'message.created', 't', 1,
                     json_object('message_id', ?1, 'author', 'visitor', 'text', ?2))",
            [id, text],
        )?;
        Ok(())
    }

    /// What a search finds: the writer catches the index up first, as before every search.
    async fn search(writer: &Writer, dir: &std::path::Path, word: &str) -> Vec<String> {
        writer.run(|c| Ok(catch_up(c)?)).await.unwrap();
        found(dir, word)
    }

    /// What the index holds now.
    fn found(dir: &std::path::Path, word: &str) -> Vec<String> {
        let conn = crate::store::connect(dir).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT m.id FROM messages m JOIN messages_fts ON messages_fts.rowid = m.seq
                 WHERE messages_fts MATCH ?1 ORDER BY m.id",
            )
            .unwrap();
        stmt.query_map([word], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn messages_left_out_of_the_index_are_caught_up_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        // As if a group committed its messages but its indexing failed, then the server
        // stopped.
        insert(&conn, "m1", "left out parcel").unwrap();
        let index = SearchIndex::new(&conn).unwrap();
        let writer = Writer::start_with(conn, index, None);
        writer
            .run(|c| insert(c, "m2", "the next parcel"))
            .await
            .unwrap();
        assert_eq!(found(dir.path(), "parcel"), vec!["m1", "m2"]);
    }

    #[tokio::test]
    async fn groups_index_now_and_then_and_a_search_catches_up_first() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        let writer = Writer::start_with(conn, SearchIndex::every(Duration::from_secs(3600)), None);
        writer
            .run(|c| insert(c, "m1", "first parcel"))
            .await
            .unwrap();
        writer
            .run(|c| insert(c, "m2", "second parcel"))
            .await
            .unwrap();
        // The first group indexed; the second, within the period, left it to later.
        assert_eq!(found(dir.path(), "parcel"), vec!["m1"]);
        assert_eq!(
            search(&writer, dir.path(), "parcel").await,
            vec!["m1", "m2"]
        );
    }

    #[tokio::test]
    async fn a_message_after_an_erased_newest_one_is_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        let writer = Writer::start_with(conn, SearchIndex::every(INDEX_EVERY), None);
        writer
            .run(|c| insert(c, "m1", "first parcel"))
            .await
            .unwrap();
        writer
            .run(|c| insert(c, "m2", "erased parcel"))
            .await
            .unwrap();
        // The newest message erased (as `store::privacy` does: out of the index, its event
        // a tombstone), so the index's highest row id falls back; then a new one.
        writer
            .run(|c| {
                c.execute(
                    "INSERT INTO messages_fts (messages_fts, rowid, text)
                     SELECT 'delete', seq, text FROM messages WHERE id = 'm2'",
                    [],
                )?;
                c.execute(
                    "UPDATE events SET type = 'redacted', data = '{}'
                     WHERE seq = (SELECT seq FROM messages WHERE id = 'm2')",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        writer
            .run(|c| insert(c, "m3", "later parcel"))
            .await
            .unwrap();
        assert_eq!(
            search(&writer, dir.path(), "parcel").await,
            vec!["m1", "m3"]
        );
        assert_eq!(
            search(&writer, dir.path(), "erased").await,
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn acknowledged_messages_are_searchable_and_rolled_back_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(dir.path()).unwrap();
        let index = SearchIndex::new(&conn).unwrap();
        let writer = Writer::start_with(conn, index, None);
        // Several jobs in flight together, one of which fails after writing its message.
        let ok = |id: &'static str, text: &'static str| {
            let w = writer.clone();
            async move { w.run(move |c| insert(c, id, text)).await }
        };
        let failing = {
            let w = writer.clone();
            async move {
                w.run(|c| {
                    insert(c, "m9", "never acknowledged parcel")?;
                    Err::<(), _>(crate::store::StoreError::Corrupt("refused".into()))
                })
                .await
            }
        };
        let (a, b, c) = tokio::join!(
            ok("m1", "where is my parcel"),
            failing,
            ok("m2", "the parcel arrived")
        );
        assert!(a.is_ok() && c.is_ok() && b.is_err());
        assert_eq!(
            search(&writer, dir.path(), "parcel").await,
            vec!["m1", "m2"]
        );
        ok("m3", "another parcel").await.unwrap();
        assert_eq!(
            search(&writer, dir.path(), "parcel").await,
            vec!["m1", "m2", "m3"]
        );
    }
}
