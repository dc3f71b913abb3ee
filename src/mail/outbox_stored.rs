//! The outbox through the store interface (`store::Store`): the SQLite arm is `outbox` on a
//! reader or in the writer, the PostgreSQL arm `store::postgres::outbox`, where replicas
//! share the queue and take items by claiming them for a lease.
//!
//! Queuing as part of another operation (a transition's mail, an invitation) stays in that
//! operation's transaction, on each store; forgetting items (privacy) stays with the erase.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::outbox::{self, Claimed, Item, Outcome};
use crate::ids::new_id;
use crate::store::handle::client;
use crate::store::postgres::outbox as pg;
use crate::store::{Store, StoreError};

impl Store {
    /// Queues `item` on its own, due now; answers its id. The caller rings the doorbell.
    pub async fn enqueue_outbox(&self, item: &Item) -> Result<String, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let item = item.clone();
                db.write(move |c| outbox::enqueue(c, &item, Timestamp::now()))
                    .await
            }
            Store::Postgres(store) => {
                let new = pg::NewItem {
                    id: new_id("o"),
                    kind: item.kind().to_string(),
                    payload: serde_json::to_string(item)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                };
                pg::enqueue(&client(store).await?, &[&new]).await?;
                Ok(new.id)
            }
        }
    }

    /// Counts by kind and status (`{"mail": {"sent": 3}}`), for `/metrics` and the admin API.
    pub async fn outbox_counts(&self) -> Result<Value, StoreError> {
        match self {
            Store::Sqlite(db) => db.read(outbox::counts).await,
            Store::Postgres(store) => Ok(outbox::counts_value(
                pg::counts(&client(store).await?).await?,
            )),
        }
    }

    /// At most `limit` items of `status` (`pending`, `sent`, `dead`), newest first, as the
    /// admin API lists them.
    pub async fn outbox_list(&self, status: &str, limit: i64) -> Result<Vec<Value>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let status = status.to_string();
                db.read(move |c| outbox::list(c, &status, limit)).await
            }
            Store::Postgres(store) => {
                let rows = pg::list(&client(store).await?, status, limit).await?;
                Ok(rows.into_iter().map(outbox::listing_value).collect())
            }
        }
    }

    /// Puts the dead letter `id` back in the queue, due now; false when there is none of
    /// that id. The caller rings the doorbell.
    pub async fn retry_outbox(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = id.to_string();
                db.write(move |c| outbox::retry(c, &id, Timestamp::now()))
                    .await
            }
            Store::Postgres(store) => Ok(pg::retry(&client(store).await?, id).await?),
        }
    }

    /// Takes at most `limit` due items to deliver, the longest due first. On SQLite the one
    /// worker reads them (`claimant` and `lease` mean nothing there); on PostgreSQL they are
    /// claimed for `claimant` for `lease`, and no other replica's worker takes them before
    /// they are recorded, given back, or the lease runs out.
    pub async fn claim_outbox(
        &self,
        claimant: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let now = Timestamp::now().as_millisecond();
                db.read(move |c| outbox::due(c, now, limit)).await
            }
            Store::Postgres(store) => {
                let claimed = pg::claim(&client(store).await?, claimant, lease, limit).await?;
                Ok(claimed
                    .into_iter()
                    .map(|d| Claimed::decode(d.id, d.attempts.into(), &d.payload))
                    .collect())
            }
        }
    }

    /// Records how the delivery of `due` went. False when nothing was recorded: the item was
    /// erased meanwhile, or (PostgreSQL) `claimant`'s claim ran out and another replica
    /// claimed it, whose record then stands.
    pub async fn record_outbox(
        &self,
        claimant: &str,
        due: &Claimed,
        outcome: &Outcome,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (id, attempts, outcome) = (due.id.clone(), due.attempts + 1, outcome.clone());
                db.write(move |c| outbox::record(c, &id, attempts, &outcome, Timestamp::now()))
                    .await
            }
            Store::Postgres(store) => {
                let outcome = match outcome.clone() {
                    Outcome::Sent { kept: None } => pg::Outcome::Sent,
                    Outcome::Sent {
                        kept: Some(payload),
                    } => pg::Outcome::SentKeeping { payload },
                    Outcome::Retry { error, wait } => pg::Outcome::Retry { error, after: wait },
                    Outcome::Dead { error } => pg::Outcome::Dead { error },
                };
                Ok(pg::record(&client(store).await?, &due.id, claimant, &outcome).await?)
            }
        }
    }

    /// Gives back `claimant`'s claims on `ids`, taken but not delivered, so that any worker
    /// may take them now rather than after the lease. Nothing to give back on SQLite.
    pub async fn release_outbox(&self, claimant: &str, ids: &[String]) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(store) => {
                pg::release(&client(store).await?, ids, claimant).await?;
                Ok(())
            }
        }
    }

    /// How long until an item is due (zero when one is now), `None` when nothing is pending:
    /// on SQLite by the server's clock; on PostgreSQL by the database's, and an item another
    /// replica holds counts as due when its claim runs out.
    pub async fn outbox_next_due(&self) -> Result<Option<Duration>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let next = db.read(outbox::next_attempt_ms).await?;
                let now = Timestamp::now().as_millisecond();
                Ok(next.map(|n| Duration::from_millis((n - now).max(0) as u64)))
            }
            Store::Postgres(store) => Ok(pg::next_due_in(&client(store).await?).await?),
        }
    }
}
