//! The outbox shared by replicas: what a transition leaves to deliver (mail, webhook calls)
//! is a row written in its transaction; any replica claims due rows for a lease and records
//! how each delivery went. Still at least once: a replica that dies between the server's
//! "accepted" and its record leaves the row to be claimed and sent again once its lease
//! has run out. Every time here is the database's clock, so replicas whose clocks differ
//! agree on what is due.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::{PgError, millis};

/// An item to deliver: its id, kind (`mail`, `webhook`) and payload (the SQLite outbox's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub id: String,
    pub kind: String,
    pub payload: String,
}

/// A claimed item: deliver it, then record how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub id: String,
    pub kind: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// The database's clock in milliseconds since the epoch, as SQL.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Queues `items`, due now; part of the caller's transaction.
pub async fn enqueue(tx: &impl GenericClient, items: &[&NewItem]) -> Result<(), PgError> {
    if items.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
    let payloads: Vec<&str> = items.iter().map(|i| i.payload.as_str()).collect();
    tx.execute(
        &format!(
            "INSERT INTO outbox (id, kind, payload, next_attempt_ms, created_at)
             SELECT id, kind, payload, {NOW_MS}, now()
             FROM unnest($1::text[], $2::text[], $3::text[]) AS i (id, kind, payload)"
        ),
        &[&ids, &kinds, &payloads],
    )
    .await?;
    Ok(())
}

/// Claims for `replica` at most `limit` pending items that are due and not leased (or whose
/// lease has run out), for `lease`; rows another replica is claiming are skipped.
pub async fn claim(
    client: &impl GenericClient,
    replica: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Due>, PgError> {
    let lease_ms = millis(lease);
    let rows = client
        .query(
            &format!(
                "UPDATE outbox o
                 SET leased_by = $1, lease_until = now() + $2::bigint * interval '1 millisecond'
                 FROM (
                     SELECT id FROM outbox
                     WHERE status = 'pending' AND next_attempt_ms <= {NOW_MS}
                       AND (lease_until IS NULL OR lease_until < now())
                     ORDER BY next_attempt_ms
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED
                 ) due
                 WHERE o.id = due.id
                 RETURNING o.id, o.kind, o.payload, o.attempts"
            ),
            &[&replica, &lease_ms, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Due {
            id: r.get(0),
            kind: r.get(1),
            payload: r.get(2),
            attempts: r.get(3),
        })
        .collect())
}

/// How a delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Failed; try again after the wait.
    Retry {
        error: String,
        after: Duration,
    },
    /// Failed for good (a dead letter).
    Dead {
        error: String,
    },
}

/// Records how the delivery of `id` claimed by `replica` went; `false` when the claim was no
/// longer this replica's (its lease ran out and another replica claimed the item), in which
/// case nothing is changed and that replica's record stands.
pub async fn record(
    client: &impl GenericClient,
    id: &str,
    replica: &str,
    outcome: &Outcome,
) -> Result<bool, PgError> {
    let n =
        match outcome {
            Outcome::Sent => client
                .execute(
                    "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = now(),
                         last_error = NULL, leased_by = NULL, lease_until = NULL
                     WHERE id = $1 AND leased_by = $2 AND status = 'pending'",
                    &[&id, &replica],
                )
                .await?,
            Outcome::Retry { error, after } => {
                let after_ms = millis(*after);
                client
                    .execute(
                        &format!(
                            "UPDATE outbox SET attempts = attempts + 1, last_error = $3,
                             next_attempt_ms = {NOW_MS} + $4, leased_by = NULL, lease_until = NULL
                         WHERE id = $1 AND leased_by = $2 AND status = 'pending'"
                        ),
                        &[&id, &replica, error, &after_ms],
                    )
                    .await?
            }
            Outcome::Dead { error } => client
                .execute(
                    "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = $3,
                         leased_by = NULL, lease_until = NULL
                     WHERE id = $1 AND leased_by = $2 AND status = 'pending'",
                    &[&id, &replica, error],
                )
                .await?,
        };
    Ok(n == 1)
}
