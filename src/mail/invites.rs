//! Invitations: an agent who appears in an applied bundle without a password is mailed a
//! link to choose one. Each link works once and for a week; only its hash is stored.

use std::collections::HashSet;

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

/// The outbox's `kind` of an invitation mail.
pub const KIND: &str = "invite";

pub const LIFETIME: SignedDuration = SignedDuration::from_hours(7 * 24);

/// How long the first-run setup link that `serve` prints stays valid: it is on a screen or
/// in a log, not in one person's mailbox, so it lives an hour, not a week.
pub const SETUP_LIFETIME: SignedDuration = SignedDuration::from_hours(1);

/// What `serve` says on start about getting into the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstRun {
    /// An agent of the bundle has a password already: nothing to print.
    SomeoneCanSignIn,
    /// Nobody can sign in and the roster names no admin.
    NoAdmin,
    /// A one-time link for the first admin of the roster to choose a password.
    SetupLink {
        email: String,
        link: String,
        expires_at: Timestamp,
    },
}

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

/// On start: when no agent of `roster` can sign in (nobody has a password), a new
/// invitation for the roster's first admin, valid once and for [`SETUP_LIFETIME`], whose
/// link `serve` prints. It is an invitation like the mailed ones (hashed, used up by any
/// password set), so `/set-password` takes it unchanged.
pub fn first_run(
    conn: &Connection,
    roster: &Roster,
    public_url: &str,
    now: Timestamp,
) -> Result<FirstRun, StoreError> {
    let link = match setup_link(roster, &credentials::with_password(conn)?, public_url, now)? {
        Ok(link) => link,
        Err(answer) => return Ok(answer),
    };
    conn.execute(
        "INSERT INTO invites (token_hash, agent_email, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            link.hash,
            link.email,
            now.to_string(),
            link.expires_at.to_string()
        ],
    )?;
    Ok(link.answer)
}

/// A first-run setup link to store (its invitation row) and print.
pub struct SetupLink {
    pub hash: String,
    pub email: String,
    pub expires_at: Timestamp,
    pub answer: FirstRun,
}

/// What `first_run` decides, on either store, from the email keys that have a password: a
/// new link for the roster's first admin, or the answer that needs none.
pub fn setup_link(
    roster: &Roster,
    with_password: &HashSet<String>,
    public_url: &str,
    now: Timestamp,
) -> Result<Result<SetupLink, FirstRun>, StoreError> {
    if roster
        .agents
        .iter()
        .any(|a| with_password.contains(&email_key(a.email.as_str())))
    {
        return Ok(Err(FirstRun::SomeoneCanSignIn));
    }
    let Some(admin) = roster.agents.iter().find(|a| a.role == Role::Admin) else {
        return Ok(Err(FirstRun::NoAdmin));
    };
    let email = email_key(admin.email.as_str());
    let (token, hash) = new_token();
    let expires_at = now
        .saturating_add(SETUP_LIFETIME)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Ok(SetupLink {
        hash,
        answer: FirstRun::SetupLink {
            link: format!(
                "{}/set-password?token={token}",
                public_url.trim_end_matches('/')
            ),
            email: email.clone(),
            expires_at,
        },
        email,
        expires_at,
    }))
}

/// A new invitation's token (mailed), its hash (stored) and its expiry.
pub fn new_invitation(now: Timestamp) -> Result<(String, String, Timestamp), StoreError> {
    let (token, hash) = new_token();
    let expires = now
        .saturating_add(LIFETIME)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((token, hash, expires))
}

/// The invitation mail of `agent`, with the link of `token`, valid until `expires`.
pub fn invitation(
    out: &Outbound,
    agent: &crate::config::schema::Agent,
    token: &str,
    expires: Timestamp,
) -> Result<Item, StoreError> {
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
    Ok(Item::Mail(Mail {
        kind: KIND.into(),
        to: vec![agent.email.as_str().to_string()],
        reply_to: None,
        subject,
        text,
        html,
    }))
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
            let (token, hash, expires) = new_invitation(now)?;
            tx.execute(
                "INSERT INTO invites (token_hash, agent_email, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, email, now.to_string(), expires.to_string()],
            )?;
            outbox::enqueue(tx, &invitation(out, agent, &token, expires)?, now)?;
            queued += 1;
        }
        Ok(queued)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::MIGRATIONS.to_latest(&mut conn).unwrap();
        conn
    }

    fn roster(agents: &[(&str, Role)]) -> Roster {
        let text: String = agents
            .iter()
            .map(|(email, role)| {
                let role = if *role == Role::Admin { "admin" } else { "agent" };
                format!("[[agent]]\nname = \"{email}\"\nemail = \"{email}\"\nrole = \"{role}\"\nteams = []\n")
            })
            .collect();
        toml::from_str(&text).unwrap()
    }

    fn token_of(link: &str) -> &str {
        link.split_once("token=").unwrap().1
    }

    #[test]
    fn the_first_admin_gets_a_one_hour_link_until_someone_can_sign_in() {
        let conn = db();
        let now = Timestamp::now();
        let r = roster(&[
            ("bo@x.example", Role::Agent),
            ("Ana@X.example", Role::Admin),
        ]);
        let FirstRun::SetupLink {
            email,
            link,
            expires_at,
        } = first_run(&conn, &r, "http://chat.x.example/", now).unwrap()
        else {
            panic!("no setup link");
        };
        assert_eq!(email, "ana@x.example");
        assert!(
            link.starts_with("http://chat.x.example/set-password?token="),
            "{link}"
        );
        assert_eq!(expires_at, now.saturating_add(SETUP_LIFETIME).unwrap());
        // Only its hash is stored; it is an invitation of the admin.
        let stored: String = conn
            .query_row("SELECT token_hash FROM invites", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, token_hash(token_of(&link)));
        assert_ne!(stored, token_of(&link));
        // Used once, it is gone, and nothing is printed any more.
        assert!(redeem(&conn, token_of(&link), "ana@x.example", "$phc").unwrap());
        assert!(!redeem(&conn, token_of(&link), "ana@x.example", "$other").unwrap());
        assert_eq!(
            first_run(&conn, &r, "http://x", now).unwrap(),
            FirstRun::SomeoneCanSignIn
        );
    }

    #[test]
    fn without_an_admin_there_is_no_link_and_a_password_elsewhere_does_not_count() {
        let conn = db();
        let now = Timestamp::now();
        let r = roster(&[("bo@x.example", Role::Agent)]);
        assert_eq!(
            first_run(&conn, &r, "http://x", now).unwrap(),
            FirstRun::NoAdmin
        );
        // A password of someone no longer in the roster signs nobody in.
        credentials::set_password(&conn, "gone@x.example", "$phc", now).unwrap();
        assert_eq!(
            first_run(&conn, &r, "http://x", now).unwrap(),
            FirstRun::NoAdmin
        );
        assert_eq!(
            first_run(&conn, &Roster::default(), "http://x", now).unwrap(),
            FirstRun::NoAdmin
        );
    }

    #[test]
    fn an_expired_setup_link_is_refused() {
        let conn = db();
        let r = roster(&[("ana@x.example", Role::Admin)]);
        let long_ago: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
        let FirstRun::SetupLink { link, .. } = first_run(&conn, &r, "http://x", long_ago).unwrap()
        else {
            panic!("no setup link");
        };
        assert_eq!(find(&conn, token_of(&link)).unwrap(), None);
    }
}
