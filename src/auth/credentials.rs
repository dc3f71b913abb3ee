//! Stored passwords: `agents.password_hash`, keyed by the lowercased email.

use std::collections::HashSet;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{rfc3339, session};

/// Stores `phc` (from `password::hash`) as the password of `email_key` and ends the agent's
/// sessions, all or nothing. Answers how many sessions were ended.
pub fn set_password(
    conn: &Connection,
    email_key: &str,
    phc: &str,
    now: Timestamp,
) -> rusqlite::Result<usize> {
    crate::store::atomically(conn, |tx| {
        tx.execute(
            "INSERT INTO agents (email, password_hash, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (email) DO UPDATE
             SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
            params![email_key, phc, rfc3339(now)],
        )?;
        let ended = session::delete_all_of(tx, email_key)?;
        // A password chosen any way uses up the invitations still open: an old link in a
        // mailbox must not be able to change it again.
        tx.execute(
            "UPDATE invites SET used_at = ?2 WHERE agent_email = ?1 AND used_at IS NULL",
            params![email_key, rfc3339(now)],
        )?;
        Ok(ended)
    })
}

/// The stored PHC string of `email_key`, if the agent has a password.
pub fn password_hash(conn: &Connection, email_key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT password_hash FROM agents WHERE email = ?1",
        [email_key],
        |row| row.get::<_, Option<String>>(0),
    )
    .optional()
    .map(Option::flatten)
}

/// The email keys that have a password.
pub fn with_password(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = conn.prepare("SELECT email FROM agents WHERE password_hash IS NOT NULL")?;
    let emails = stmt.query_map([], |row| row.get(0))?;
    emails.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::MIGRATIONS.to_latest(&mut conn).unwrap();
        conn
    }

    #[test]
    fn setting_a_password_again_replaces_it_and_ends_the_sessions() {
        let conn = db();
        let now: Timestamp = "2025-03-01T10:00:00Z".parse().unwrap();
        assert_eq!(password_hash(&conn, "ana@acme.example").unwrap(), None);
        assert_eq!(
            set_password(&conn, "ana@acme.example", "$first", now).unwrap(),
            0
        );
        let s = session::create(&conn, "ana@acme.example", now).unwrap();
        let other = session::create(&conn, "bo@acme.example", now).unwrap();
        assert_eq!(
            set_password(&conn, "ana@acme.example", "$second", now).unwrap(),
            1
        );
        assert_eq!(
            password_hash(&conn, "ana@acme.example").unwrap().as_deref(),
            Some("$second")
        );
        assert_eq!(session::find(&conn, &s.token_hash).unwrap(), None);
        assert!(session::find(&conn, &other.token_hash).unwrap().is_some());
        assert_eq!(
            with_password(&conn).unwrap(),
            HashSet::from(["ana@acme.example".to_string()])
        );
    }

    #[test]
    fn an_agent_row_without_a_password_has_none() {
        let conn = db();
        conn.execute(
            "INSERT INTO agents (email, accepting, updated_at) VALUES ('bo@acme.example', 1, 'x')",
            [],
        )
        .unwrap();
        assert_eq!(password_hash(&conn, "bo@acme.example").unwrap(), None);
        assert!(with_password(&conn).unwrap().is_empty());
    }
}
