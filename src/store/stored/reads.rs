//! Read marks through the store interface: `store::reads` on SQLite,
//! `store::postgres::reads` on PostgreSQL.

use crate::store::handle::client;
use crate::store::postgres::reads as pg;
use crate::store::reads::{self, Mark};
use crate::store::{Store, StoreError};

impl Store {
    /// Marks the conversation read by `agent` up to `seq` at `at` (a stored time): never
    /// back, never past its newest event (`reads::set_mark`). Answers the mark and what is
    /// still unread.
    pub async fn set_mark(
        &self,
        agent: &str,
        conversation_id: &str,
        seq: i64,
        at: &str,
    ) -> Result<Mark, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (agent, id, at) = (
                    agent.to_string(),
                    conversation_id.to_string(),
                    at.to_string(),
                );
                db.write(move |c| reads::set_mark(c, &agent, &id, seq, &at))
                    .await
            }
            Store::Postgres(pg) => {
                pg::set_mark(&client(pg).await?, agent, conversation_id, seq, at).await
            }
        }
    }

    /// The visitor messages of the conversation after `agent`'s mark (0 for no such
    /// conversation).
    pub async fn unread(&self, agent: &str, conversation_id: &str) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (agent, id) = (agent.to_string(), conversation_id.to_string());
                db.read(move |c| reads::unread(c, &agent, &id)).await
            }
            Store::Postgres(pg) => pg::unread(&client(pg).await?, agent, conversation_id).await,
        }
    }
}
