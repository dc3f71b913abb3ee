//! Invitations on PostgreSQL (#17), for replicas: the rows and rules of `invites` (the
//! SQLite side), with what one writer made safe there made safe across replicas. Redeeming
//! locks the invitation's row, so a link used through two replicas at once sets one
//! password; inviting the roster's new agents holds an advisory lock, so replicas that
//! start or reload together mail each new agent once. Not used by `serve` yet.

use jiff::Timestamp;

use super::Outbound;
use super::invites::{FirstRun, invitation, new_invitation, setup_link};
use crate::auth::session::token_hash;
use crate::auth::{email_key, pg as auth};
use crate::config::Roster;
use crate::ids::new_id;
use crate::store::StoreError;
use crate::store::postgres::outbox::{self, NewItem};
use crate::store::postgres::{PgError, at_commit};

/// The advisory lock of inviting (and of the first-run link): "invites!" in ASCII.
const INVITE_LOCK: i64 = 0x696e_7669_7465_7321;

/// The agent an unused, unexpired invitation token belongs to (as `invites::find`).
pub async fn find(
    client: &impl deadpool_postgres::GenericClient,
    token: &str,
) -> Result<Option<String>, PgError> {
    if token.is_empty() {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT agent_email, expires_at FROM invites WHERE token_hash = $1 AND used_at IS NULL",
            &[&token_hash(token)],
        )
        .await?;
    Ok(row.and_then(|r| valid(r.get(0), r.get(1))))
}

fn valid(email: String, expires: String) -> Option<String> {
    let expires: Timestamp = expires.parse().ok()?;
    (expires > Timestamp::now()).then_some(email)
}

/// Sets the password of the invitation's agent and uses the invitation up, under the
/// invitation row's lock: of two redemptions at once, the second finds it used. False when
/// the token is not (or no longer) valid for `email`.
pub async fn redeem(
    client: &mut deadpool_postgres::Object,
    token: &str,
    email: &str,
    phc: &str,
) -> Result<bool, PgError> {
    if token.is_empty() {
        return Ok(false);
    }
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT agent_email, expires_at FROM invites
             WHERE token_hash = $1 AND used_at IS NULL FOR UPDATE",
            &[&token_hash(token)],
        )
        .await?;
    if row.and_then(|r| valid(r.get(0), r.get(1))).as_deref() != Some(email) {
        return Ok(false);
    }
    auth::set_password_in(&tx, email, phc, Timestamp::now()).await?;
    tx.commit().await.map_err(at_commit)?;
    Ok(true)
}

/// Mails an invitation to every roster agent who has no password and was never invited, as
/// `invites::invite_new_agents`, under the inviting lock. Answers how many were queued.
pub async fn invite_new_agents(
    client: &mut deadpool_postgres::Object,
    roster: &Roster,
    out: &Outbound,
) -> Result<usize, StoreError> {
    let now = Timestamp::now();
    let tx = client.transaction().await.map_err(PgError::from)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INVITE_LOCK])
        .await
        .map_err(PgError::from)?;
    let with_password = auth::with_password(&tx).await?;
    let mut queued = 0;
    for agent in &roster.agents {
        let email = email_key(agent.email.as_str());
        if with_password.contains(&email) {
            continue;
        }
        let invited: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM invites WHERE agent_email = $1)",
                &[&email],
            )
            .await
            .map_err(PgError::from)?
            .get(0);
        if invited {
            continue;
        }
        let (token, hash, expires) = new_invitation(now)?;
        tx.execute(
            "INSERT INTO invites (token_hash, agent_email, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
            &[&hash, &email, &now.to_string(), &expires.to_string()],
        )
        .await
        .map_err(PgError::from)?;
        let item = invitation(out, agent, &token, expires)?;
        let payload =
            serde_json::to_string(&item).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let item = NewItem {
            id: new_id("o"),
            kind: item.kind().to_string(),
            payload,
        };
        outbox::enqueue(&tx, &[&item]).await?;
        queued += 1;
    }
    tx.commit().await.map_err(at_commit)?;
    Ok(queued)
}

/// On start, as `invites::first_run`: a setup link for the roster's first admin while nobody
/// can sign in, decided and stored under the inviting lock. Replicas that start together on a
/// new database each print a link of their own (the tokens are stored hashed, so one replica
/// cannot print another's); any password set uses them all up.
pub async fn first_run(
    client: &mut deadpool_postgres::Object,
    roster: &Roster,
    public_url: &str,
    now: Timestamp,
) -> Result<FirstRun, StoreError> {
    let tx = client.transaction().await.map_err(PgError::from)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INVITE_LOCK])
        .await
        .map_err(PgError::from)?;
    let with_password = auth::with_password(&tx).await?;
    let link = match setup_link(roster, &with_password, public_url, now)? {
        Ok(link) => link,
        Err(answer) => return Ok(answer),
    };
    tx.execute(
        "INSERT INTO invites (token_hash, agent_email, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
        &[
            &link.hash,
            &link.email,
            &now.to_string(),
            &link.expires_at.to_string(),
        ],
    )
    .await
    .map_err(PgError::from)?;
    tx.commit().await.map_err(at_commit)?;
    Ok(link.answer)
}
