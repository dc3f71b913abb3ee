//! Invitations: an agent who appears in an applied bundle without a password is mailed a
//! link to choose one. Each link works once and for a week; only its hash is stored.

use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::Outbound;
use super::outbox::{self, Item};
use super::transport::Mail;
use crate::auth::session::{new_token, token_hash};
use crate::auth::{credentials, email_key};
use crate::config::Roster;
use crate::config::schema::Role;
use crate::store::StoreError;

pub const LIFETIME: SignedDuration = SignedDuration::from_hours(7 * 24);

/// The agent an unused, unexpired invitation token belongs to.
pub fn find(conn: &Connection, token: &str) -> Result<Option<String>, StoreError> {
    if token.is_empty() {
        return Ok(None);
    }
    let row: Option<(String, String)> = conn
        .query_row(
            "SELECT agent_email, expires_at FROM invites WHERE token_hash = ?1 AND used_at IS NULL",
            [token_hash(token)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(email, expires)| {
        let expires: Timestamp = expires.parse().ok()?;
        (expires > Timestamp::now()).then_some(email)
    }))
}

/// Sets the password of the invitation's agent and uses the invitation up. False when the
/// token is not (or no longer) valid. Call with the connection held exclusively.
pub fn redeem(conn: &Connection, token: &str, email: &str, phc: &str) -> Result<bool, StoreError> {
    if find(conn, token)?.as_deref() != Some(email) {
        return Ok(false);
    }
    // Setting the password uses up this invitation (and any other still open).
    credentials::set_password(conn, email, phc, Timestamp::now())?;
    Ok(true)
}

/// Mails an invitation to every roster agent who has no password and was never invited.
/// Answers how many were queued.
pub fn invite_new_agents(
    conn: &Connection,
    roster: &Roster,
    out: &Outbound,
) -> Result<usize, StoreError> {
    let with_password = credentials::with_password(conn)?;
    let now = Timestamp::now();
    crate::store::atomically(conn, |tx| {
        let mut queued = 0;
        for agent in &roster.agents {
            let email = email_key(agent.email.as_str());
            if with_password.contains(&email) {
                continue;
            }
            let invited: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM invites WHERE agent_email = ?1)",
                [&email],
                |r| r.get(0),
            )?;
            if invited {
                continue;
            }
            let (token, hash) = new_token();
            let expires = now
                .saturating_add(LIFETIME)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO invites (token_hash, agent_email, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, email, now.to_string(), expires.to_string()],
            )?;
            let link = format!(
                "{}/set-password?token={token}",
                out.public_url.trim_end_matches('/')
            );
            let subject = "Your invitation to the live chat".to_string();
            let ctx = json!({
                "subject": subject,
                "public_url": out.public_url,
                "agent": { "name": agent.name, "role": if agent.role == Role::Admin { "admin" } else { "agent" } },
                "link": link,
                "expires_at": expires.to_string(),
            });
            let (text, html) = out
                .templates
                .render_pair("mail/invite", &ctx)
                .map_err(|e| StoreError::Corrupt(format!("the invite template: {e}")))?;
            outbox::enqueue(
                tx,
                &Item::Mail(Mail {
                    kind: "invite".into(),
                    to: vec![agent.email.as_str().to_string()],
                    reply_to: None,
                    subject,
                    text,
                    html,
                }),
                now,
            )?;
            queued += 1;
        }
        Ok(queued)
    })
}
