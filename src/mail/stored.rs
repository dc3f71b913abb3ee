//! Invitations through the store interface (`store::Store`): the SQLite arm is `invites` on
//! a reader or in the writer, the PostgreSQL arm `mail::pg`.

use jiff::Timestamp;

use super::invites::{self, FirstRun};
use super::{Outbound, pg};
use crate::config::Roster;
use crate::store::handle::client;
use crate::store::{Store, StoreError};

impl Store {
    /// The agent an unused, unexpired invitation token belongs to.
    pub async fn find_invitation(&self, token: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let token = token.to_string();
                db.read(move |c| invites::find(c, &token)).await
            }
            Store::Postgres(pg) => Ok(pg::find(&client(pg).await?, token).await?),
        }
    }

    /// Sets the password of the invitation's agent and uses the invitation up; false when
    /// the token is not (or no longer) valid for `email`. Of two at once, one succeeds.
    pub async fn redeem_invitation(
        &self,
        token: &str,
        email: &str,
        phc: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (token, email, phc) = (token.to_string(), email.to_string(), phc.to_string());
                // In the writer, where no other write can pass between the look-up and
                // the redemption.
                db.write(move |c| invites::redeem(c, &token, &email, &phc))
                    .await
            }
            Store::Postgres(pg) => Ok(pg::redeem(&mut client(pg).await?, token, email, phc).await?),
        }
    }

    /// Mails an invitation to every agent of `roster` who has no password and was never
    /// invited; answers how many were queued (the caller rings the outbox's doorbell).
    pub async fn invite_new_agents(
        &self,
        roster: &Roster,
        out: &Outbound,
    ) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (roster, out) = (roster.clone(), out.clone());
                db.write(move |c| invites::invite_new_agents(c, &roster, &out))
                    .await
            }
            Store::Postgres(pg) => pg::invite_new_agents(&mut client(pg).await?, roster, out).await,
        }
    }

    /// While nobody of `roster` can sign in: a one-time setup link for its first admin.
    pub async fn first_run(
        &self,
        roster: &Roster,
        public_url: &str,
        now: Timestamp,
    ) -> Result<FirstRun, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (roster, url) = (roster.clone(), public_url.to_string());
                db.write(move |c| invites::first_run(c, &roster, &url, now))
                    .await
            }
            Store::Postgres(pg) => {
                pg::first_run(&mut client(pg).await?, roster, public_url, now).await
            }
        }
    }
}
