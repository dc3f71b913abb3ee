//! Login sessions in the `sessions` table. The client holds a random token; the database
//! holds only its SHA-256, so a copy of the database signs nobody in.

use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::rfc3339;

/// The cookie that carries the session token.
pub const COOKIE: &str = "livechat_session";

/// How long a session lasts after login.
pub const LIFETIME: SignedDuration = SignedDuration::from_hours(14 * 24);

/// What login hands out. The token is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub token_hash: String,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Lowercased, the key of the `agents` table.
    pub agent_email: String,
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

impl Session {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

pub use crate::ids::{new_token, random_token, token_hash};

/// A new session's tokens and expiry, for a login at `now` (stored by `create`, or by
/// `auth::pg::create_session` on PostgreSQL).
pub fn new_session(now: Timestamp) -> NewSession {
    let token = random_token();
    NewSession {
        token_hash: token_hash(&token),
        token,
        csrf_token: random_token(),
        // Whole seconds, as stored.
        expires_at: Timestamp::from_second((now + LIFETIME).as_second())
            .expect("fourteen days from now is a valid time"),
    }
}

/// Starts a session for `agent_email` (lowercased) and clears that agent's expired ones.
pub fn create(
    conn: &Connection,
    agent_email: &str,
    now: Timestamp,
) -> rusqlite::Result<NewSession> {
    let session = new_session(now);
    delete_expired_of(conn, agent_email, now)?;
    conn.execute(
        "INSERT INTO sessions (token_hash, agent_email, csrf_token, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            session.token_hash,
            agent_email,
            session.csrf_token,
            rfc3339(now),
            rfc3339(session.expires_at)
        ],
    )?;
    Ok(session)
}

/// The session whose token hashes to `token_hash`, expired or not.
pub fn find(conn: &Connection, token_hash: &str) -> rusqlite::Result<Option<Session>> {
    // Every agent request asks: keep the statement prepared.
    conn.prepare_cached(
        "SELECT agent_email, csrf_token, expires_at FROM sessions WHERE token_hash = ?1",
    )?
    .query_row([token_hash], |row| {
        let expires_at: String = row.get(2)?;
        Ok(Session {
            agent_email: row.get(0)?,
            csrf_token: row.get(1)?,
            // An unreadable time is taken as long past: that session is over.
            expires_at: expires_at.parse().unwrap_or(Timestamp::MIN),
        })
    })
    .optional()
}

/// Ends one session. Answers whether there was one.
pub fn delete(conn: &Connection, token_hash: &str) -> rusqlite::Result<bool> {
    conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])
        .map(|n| n > 0)
}

/// Ends every session of one agent (a new password signs the agent out everywhere).
pub fn delete_all_of(conn: &Connection, agent_email: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM sessions WHERE agent_email = ?1", [agent_email])
}

/// Expired sessions are kept until their agent logs in again, so a stale cookie is told
/// `session_expired` rather than `unauthorized` in the meantime.
fn delete_expired_of(conn: &Connection, agent_email: &str, now: Timestamp) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare("SELECT token_hash, expires_at FROM sessions WHERE agent_email = ?1")?;
    let expired: Vec<String> = stmt
        .query_map([agent_email], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .filter_map(Result::ok)
        .filter(|(_, at)| at.parse::<Timestamp>().map_or(true, |at| now >= at))
        .map(|(hash, _)| hash)
        .collect();
    for hash in expired {
        delete(conn, &hash)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::MIGRATIONS.to_latest(&mut conn).unwrap();
        conn
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_hashes() {
        let conn = db();
        let s = create(&conn, "ana@acme.example", at("2025-03-01T10:00:00Z")).unwrap();
        assert_eq!(s.token.len(), 64);
        assert_ne!(s.token, s.csrf_token);
        assert_ne!(s.token, random_token());
        assert_eq!(s.token_hash, token_hash(&s.token));
        let stored: (String, String) = conn
            .query_row("SELECT token_hash, expires_at FROM sessions", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(stored.0, s.token_hash);
        assert_ne!(stored.0, s.token);
        assert_eq!(stored.1, "2025-03-15T10:00:00Z");
    }

    #[test]
    fn a_session_is_found_by_its_token_hash_until_deleted() {
        let conn = db();
        let s = create(&conn, "ana@acme.example", at("2025-03-01T10:00:00Z")).unwrap();
        let found = find(&conn, &s.token_hash).unwrap().unwrap();
        assert_eq!(found.agent_email, "ana@acme.example");
        assert_eq!(found.csrf_token, s.csrf_token);
        assert_eq!(found.expires_at, at("2025-03-15T10:00:00Z"));
        assert_eq!(find(&conn, &token_hash("another token")).unwrap(), None);
        // The token itself is no key.
        assert_eq!(find(&conn, &s.token).unwrap(), None);
        assert!(delete(&conn, &s.token_hash).unwrap());
        assert!(!delete(&conn, &s.token_hash).unwrap());
        assert_eq!(find(&conn, &s.token_hash).unwrap(), None);
    }

    #[test]
    fn a_session_expires_fourteen_days_after_login() {
        let conn = db();
        let s = create(&conn, "ana@acme.example", at("2025-03-01T10:00:00Z")).unwrap();
        let found = find(&conn, &s.token_hash).unwrap().unwrap();
        assert!(!found.is_expired(at("2025-03-15T09:59:59Z")));
        assert!(found.is_expired(at("2025-03-15T10:00:00Z")));
    }

    #[test]
    fn logging_in_clears_only_that_agents_expired_sessions() {
        let conn = db();
        let old = create(&conn, "ana@acme.example", at("2025-01-01T00:00:00Z")).unwrap();
        let recent = create(&conn, "ana@acme.example", at("2025-03-01T00:00:00Z")).unwrap();
        let other = create(&conn, "bo@acme.example", at("2025-01-01T00:00:00Z")).unwrap();
        create(&conn, "ana@acme.example", at("2025-03-02T00:00:00Z")).unwrap();
        assert_eq!(find(&conn, &old.token_hash).unwrap(), None);
        assert!(find(&conn, &recent.token_hash).unwrap().is_some());
        assert!(find(&conn, &other.token_hash).unwrap().is_some());
    }

    #[test]
    fn all_sessions_of_an_agent_can_be_ended() {
        let conn = db();
        let now = at("2025-03-01T00:00:00Z");
        create(&conn, "ana@acme.example", now).unwrap();
        create(&conn, "ana@acme.example", now).unwrap();
        let other = create(&conn, "bo@acme.example", now).unwrap();
        assert_eq!(delete_all_of(&conn, "ana@acme.example").unwrap(), 2);
        assert!(find(&conn, &other.token_hash).unwrap().is_some());
    }
}
