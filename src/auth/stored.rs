//! Passwords and sessions through the store interface (`store::Store`): the SQLite arm is
//! `credentials` and `session` on a reader or in the writer, the PostgreSQL arm `auth::pg`.

use std::collections::HashSet;

use jiff::Timestamp;

use super::session::{NewSession, Session};
use super::{credentials, pg, session};
use crate::store::handle::client;
use crate::store::{Store, StoreError};

impl Store {
    /// The stored PHC string of `email_key`, if the agent has a password.
    pub async fn password_hash(&self, email_key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let key = email_key.to_string();
                db.read(move |c| credentials::password_hash(c, &key)).await
            }
            Store::Postgres(pg) => Ok(pg::password_hash(&client(pg).await?, email_key).await?),
        }
    }

    /// The email keys that have a password.
    pub async fn with_password(&self) -> Result<HashSet<String>, StoreError> {
        match self {
            Store::Sqlite(db) => db.read(credentials::with_password).await,
            Store::Postgres(pg) => Ok(pg::with_password(&client(pg).await?).await?),
        }
    }

    /// Stores `phc` as the password of `email_key`, ends the agent's sessions and uses up
    /// their open invitations, all or nothing; answers how many sessions were ended.
    pub async fn set_password(
        &self,
        email_key: &str,
        phc: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (key, phc) = (email_key.to_string(), phc.to_string());
                let ended = db
                    .write(move |c| credentials::set_password(c, &key, &phc, now))
                    .await?;
                Ok(ended as u64)
            }
            Store::Postgres(pg) => {
                Ok(pg::set_password(&mut client(pg).await?, email_key, phc, now).await?)
            }
        }
    }

    /// Starts a session for `email_key` and clears that agent's expired ones.
    pub async fn create_session(
        &self,
        email_key: &str,
        now: Timestamp,
    ) -> Result<NewSession, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let key = email_key.to_string();
                db.write(move |c| session::create(c, &key, now)).await
            }
            Store::Postgres(pg) => {
                Ok(pg::create_session(&mut client(pg).await?, email_key, now).await?)
            }
        }
    }

    /// The session whose token hashes to `token_hash`, expired or not.
    pub async fn find_session(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let hash = token_hash.to_string();
                db.read(move |c| session::find(c, &hash)).await
            }
            Store::Postgres(pg) => Ok(pg::find_session(&client(pg).await?, token_hash).await?),
        }
    }

    /// Ends one session; whether there was one.
    pub async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let hash = token_hash.to_string();
                db.write(move |c| session::delete(c, &hash)).await
            }
            Store::Postgres(pg) => Ok(pg::delete_session(&client(pg).await?, token_hash).await?),
        }
    }
}
