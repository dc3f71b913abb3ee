//! Timers shared by replicas: a row per conversation with its earliest deadline, written by
//! each transition (`conversations::write`). Any replica claims the due ones for a lease and
//! fires each as an ordinary guarded transition, which sets the conversation's next deadline
//! or removes the row. Firing twice does no harm: the second firing reads the conversation
//! again, finds nothing due, and writes nothing of it. A replica that dies holding claims
//! only delays them by the rest of the lease.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::{PgError, millis};

/// Claims for `replica` at most `limit` timers due now whose lease (if any) has run out, for
/// `lease`, and returns their conversations, the longest due first. Rows another replica is
/// claiming at the same moment are skipped, not waited for.
pub async fn claim(
    client: &impl GenericClient,
    replica: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<String>, PgError> {
    let lease_ms = millis(lease);
    let rows = client
        .query(
            "UPDATE timers t
             SET leased_by = $1, lease_until = now() + $2::bigint * interval '1 millisecond'
             FROM (
                 SELECT conversation_id, due_at FROM timers
                 WHERE due_at <= now() AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY due_at
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ) due
             WHERE t.conversation_id = due.conversation_id
             RETURNING t.conversation_id, due.due_at",
            &[&replica, &lease_ms, &limit],
        )
        .await?;
    let mut claimed: Vec<(String, std::time::SystemTime)> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    claimed.sort_by_key(|(_, due)| *due);
    Ok(claimed.into_iter().map(|(id, _)| id).collect())
}

/// How long until the next timer that could be claimed is due (zero: one is due now), or
/// `None` when there is none.
pub async fn next_due(client: &impl GenericClient) -> Result<Option<Duration>, PgError> {
    let row = client
        .query_one(
            "SELECT extract(epoch FROM min(greatest(due_at, coalesce(lease_until, due_at))) - now())::float8
             FROM timers",
            &[],
        )
        .await?;
    let seconds: Option<f64> = row.get(0);
    Ok(seconds.map(|s| Duration::from_secs_f64(s.max(0.0))))
}
