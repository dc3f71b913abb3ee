//! Passwords and login sessions on PostgreSQL (#17), for replicas: the rows and the rules of
//! `session` and `credentials` (the SQLite side), so that an agent signed in through one
//! replica is signed in on all of them. Not used by `serve` yet (docs/postgres.md).

use std::collections::HashSet;

use deadpool_postgres::GenericClient;
use jiff::Timestamp;

use super::rfc3339;
use super::session::{NewSession, Session, new_session};
use crate::store::postgres::{PgError, at_commit};

/// Starts a session for `agent_email` (the caller lowercases it, `auth::email_key`) and clears that agent's expired ones, in
/// one transaction (as `session::create`).
pub async fn create_session(
    client: &mut deadpool_postgres::Object,
    agent_email: &str,
    now: Timestamp,
) -> Result<NewSession, PgError> {
    let session = new_session(now);
    let tx = client.transaction().await?;
    // Expired sessions are kept until their agent logs in again (a stale cookie is told
    // `session_expired` meanwhile); times are RFC 3339 text, compared as times here.
    let expired: Vec<String> = tx
        .query(
            "SELECT token_hash, expires_at FROM sessions WHERE agent_email = $1",
            &[&agent_email],
        )
        .await?
        .iter()
        .filter(|r| {
            r.get::<_, String>(1)
                .parse::<Timestamp>()
                .map_or(true, |at| now >= at)
        })
        .map(|r| r.get(0))
        .collect();
    tx.execute(
        "DELETE FROM sessions WHERE token_hash = ANY($1)",
        &[&expired],
    )
    .await?;
    tx.execute(
        "INSERT INTO sessions (token_hash, agent_email, csrf_token, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &session.token_hash,
            &agent_email,
            &session.csrf_token,
            &rfc3339(now),
            &rfc3339(session.expires_at),
        ],
    )
    .await?;
    tx.commit().await.map_err(at_commit)?;
    Ok(session)
}

/// The session whose token hashes to `token_hash`, expired or not.
pub async fn find_session(
    client: &impl GenericClient,
    token_hash: &str,
) -> Result<Option<Session>, PgError> {
    // Every agent request asks: prepared once per connection.
    let statement = client
        .prepare_cached(
            "SELECT agent_email, csrf_token, expires_at FROM sessions WHERE token_hash = $1",
        )
        .await?;
    let row = client.query_opt(&statement, &[&token_hash]).await?;
    Ok(row.map(|r| Session {
        agent_email: r.get(0),
        csrf_token: r.get(1),
        // An unreadable time is taken as long past: that session is over.
        expires_at: r.get::<_, String>(2).parse().unwrap_or(Timestamp::MIN),
    }))
}

/// Ends one session; whether there was one.
pub async fn delete_session(
    client: &impl GenericClient,
    token_hash: &str,
) -> Result<bool, PgError> {
    Ok(client
        .execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
        .await?
        > 0)
}

/// Stores `phc` as the password of `email_key`, ends the agent's sessions and uses up their
/// open invitations, all or nothing (as `credentials::set_password`). Answers how many
/// sessions were ended.
pub async fn set_password(
    client: &mut deadpool_postgres::Object,
    email_key: &str,
    phc: &str,
    now: Timestamp,
) -> Result<u64, PgError> {
    let tx = client.transaction().await?;
    let ended = set_password_in(&tx, email_key, phc, now).await?;
    tx.commit().await.map_err(at_commit)?;
    Ok(ended)
}

/// [`set_password`] inside the caller's transaction `tx`.
pub async fn set_password_in(
    tx: &impl GenericClient,
    email_key: &str,
    phc: &str,
    now: Timestamp,
) -> Result<u64, PgError> {
    let now = rfc3339(now);
    // The agent's invitations first, then the agent's row: the order `mail::pg::redeem`
    // takes them in (its invitation, then this), so the two never wait for each other in
    // a circle. A password chosen any way uses up the invitations still open.
    tx.execute(
        "UPDATE invites SET used_at = $2 WHERE agent_email = $1 AND used_at IS NULL",
        &[&email_key, &now],
    )
    .await?;
    tx.execute(
        "INSERT INTO agents (email, password_hash, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (email) DO UPDATE
         SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
        &[&email_key, &phc, &now],
    )
    .await?;
    let ended = tx
        .execute("DELETE FROM sessions WHERE agent_email = $1", &[&email_key])
        .await?;
    Ok(ended)
}

/// The stored PHC string of `email_key`, if the agent has a password.
pub async fn password_hash(
    client: &impl GenericClient,
    email_key: &str,
) -> Result<Option<String>, PgError> {
    let row = client
        .query_opt(
            "SELECT password_hash FROM agents WHERE email = $1",
            &[&email_key],
        )
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// The email keys that have a password.
pub async fn with_password(client: &impl GenericClient) -> Result<HashSet<String>, PgError> {
    let rows = client
        .query(
            "SELECT email FROM agents WHERE password_hash IS NOT NULL",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
