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
    /// Sent, and what the row keeps of it is `payload` rather than what was sent (an
    /// invitation's set-password link must not stay in the database once mailed).
    SentKeeping {
        payload: String,
    },
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
            Outcome::SentKeeping { payload } => client
                .execute(
                    "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = now(),
                         last_error = NULL, leased_by = NULL, lease_until = NULL, payload = $3
                     WHERE id = $1 AND leased_by = $2 AND status = 'pending'",
                    &[&id, &replica, payload],
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

/// Gives back the claims `replica` holds on `ids` without a delivery (a batch it stopped
/// short of, so that its rest need not wait for the lease); answers how many it held.
pub async fn release(
    client: &impl GenericClient,
    ids: &[String],
    replica: &str,
) -> Result<u64, PgError> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(client
        .execute(
            "UPDATE outbox SET leased_by = NULL, lease_until = NULL
             WHERE id = ANY($1) AND leased_by = $2 AND status = 'pending'",
            &[&ids, &replica],
        )
        .await?)
}

/// How long until some pending item can be claimed: its next attempt is due and no lease
/// holds it (zero when one can be now); `None` when nothing is pending. On the database's
/// clock, as `claim`.
pub async fn next_due_in(client: &impl GenericClient) -> Result<Option<Duration>, PgError> {
    let row = client
        .query_one(
            &format!(
                "SELECT min(greatest(
                     next_attempt_ms,
                     coalesce((extract(epoch FROM lease_until) * 1000)::bigint, 0)
                 )) - {NOW_MS}
                 FROM outbox WHERE status = 'pending'"
            ),
            &[],
        )
        .await?;
    let ms: Option<i64> = row.get(0);
    Ok(ms.map(|ms| Duration::from_millis(ms.max(0) as u64)))
}

/// How many items there are of each kind and status, as `(kind, status, count)`.
pub async fn counts(client: &impl GenericClient) -> Result<Vec<(String, String, i64)>, PgError> {
    let rows = client
        .query(
            "SELECT kind, status, count(*) FROM outbox GROUP BY kind, status",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// An item as the admin API lists it, read from either store (times as `Timestamp`'s
/// `Display` writes them, as SQLite stores them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

/// At most `limit` items of `status`, newest first.
pub async fn list(
    client: &impl GenericClient,
    status: &str,
    limit: i64,
) -> Result<Vec<Listed>, PgError> {
    let rows = client
        .query(
            "SELECT id, kind, payload, status, attempts::bigint, last_error,
                    (extract(epoch FROM created_at) * 1000000)::bigint,
                    (extract(epoch FROM sent_at) * 1000000)::bigint
             FROM outbox WHERE status = $1 ORDER BY created_at DESC LIMIT $2",
            &[&status, &limit],
        )
        .await?;
    let time = |us: i64| {
        jiff::Timestamp::from_microsecond(us)
            .unwrap_or_default()
            .to_string()
    };
    Ok(rows
        .iter()
        .map(|r| Listed {
            id: r.get(0),
            kind: r.get(1),
            payload: r.get(2),
            status: r.get(3),
            attempts: r.get(4),
            last_error: r.get(5),
            created_at: time(r.get(6)),
            sent_at: r.get::<_, Option<i64>>(7).map(time),
        })
        .collect())
}

/// Puts the dead letter `id` back in the queue, due now, its attempts counted from zero;
/// false when there is no dead letter of that id.
pub async fn retry(client: &impl GenericClient, id: &str) -> Result<bool, PgError> {
    let n = client
        .execute(
            &format!(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_ms = {NOW_MS},
                     leased_by = NULL, lease_until = NULL
                 WHERE id = $1 AND status = 'dead'"
            ),
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Deletes every item about the given conversations (a body that names one of their ids)
/// and every mail to `email`, as `mail::outbox::forget`; answers their ids. Part of an
/// erase's transaction. An item a replica holds claimed is deleted too: its worker's record
/// then finds no row, and the mail it may be sending is the last copy (its file is removed
/// by the erase, as on SQLite).
pub async fn forget(
    tx: &impl GenericClient,
    conversation_ids: &[String],
    email: Option<&str>,
) -> Result<Vec<String>, PgError> {
    let mut ids: Vec<String> = Vec::new();
    if !conversation_ids.is_empty() {
        let rows = tx
            .query(
                "DELETE FROM outbox WHERE EXISTS
                   (SELECT 1 FROM unnest($1::text[]) AS c (id) WHERE strpos(payload, c.id) > 0)
                 RETURNING id",
                &[&conversation_ids],
            )
            .await?;
        ids.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        let rows = tx
            .query(
                "DELETE FROM outbox WHERE kind = 'mail' AND EXISTS
                   (SELECT 1 FROM json_array_elements_text(payload::json -> 'to') AS t (value)
                    WHERE lower(t.value) = lower($1))
                 RETURNING id",
                &[&email],
            )
            .await?;
        ids.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    Ok(ids)
}

/// Deletes the items delivered (or given up on) that were queued before `cutoff`, as
/// `mail::outbox::forget_settled_before`; answers their ids.
pub async fn forget_settled_before(
    tx: &impl GenericClient,
    cutoff: jiff::Timestamp,
) -> Result<Vec<String>, PgError> {
    let rows = tx
        .query(
            "DELETE FROM outbox WHERE status IN ('sent', 'dead')
               AND created_at < to_timestamp($1::bigint / 1000.0)
             RETURNING id",
            &[&cutoff.as_millisecond()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
