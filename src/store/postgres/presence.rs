//! Who is online, across replicas: each replica heartbeats its row in `replicas` and keeps,
//! per agent, how many of the agent's sockets it holds (`agent_sockets`). An agent is online
//! while any live replica holds a socket of theirs. A replica that stops heartbeating (killed,
//! cut off) is swept by the others: its rows go, and the agents it alone held are offline,
//! so that their requests can ring someone else.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::{PgError, millis};

/// How often a replica heartbeats and sweeps.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// A replica silent for this long is gone. With [`HEARTBEAT`]: an agent whose replica dies
/// is offline within `SILENT + HEARTBEAT` (20 s) of its last heartbeat.
pub const SILENT: Duration = Duration::from_secs(15);

/// The advisory lock of a sweep, so that replicas sweeping at the same moment report each
/// agent gone once.
const SWEEP_KEY: i64 = 0x6c69_7665_7377_6570;

/// Says that `replica` is alive. True when its row was made by this call: the first
/// heartbeat, or the first after a pause long enough for another replica to sweep it away
/// with its sockets. Either way the replica must then write the count of every agent's
/// sockets it holds ([`set_sockets`]), or its agents stay offline.
pub async fn heartbeat(client: &impl GenericClient, replica: &str) -> Result<bool, PgError> {
    let row = client
        .query_one(
            "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ($1, now(), now())
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
             RETURNING xmax = 0",
            &[&replica],
        )
        .await?;
    Ok(row.get(0))
}

/// Records that `replica` holds `sockets` sockets of `email` (0: none). Refused (a foreign
/// key) when the replica has no row: before its first heartbeat, or once swept.
pub async fn set_sockets(
    client: &impl GenericClient,
    replica: &str,
    email: &str,
    sockets: i32,
) -> Result<(), PgError> {
    if sockets <= 0 {
        client
            .execute(
                "DELETE FROM agent_sockets WHERE replica = $1 AND email = $2",
                &[&replica, &email],
            )
            .await?;
    } else {
        client
            .execute(
                "INSERT INTO agent_sockets (replica, email, sockets) VALUES ($1, $2, $3)
                 ON CONFLICT (replica, email) DO UPDATE SET sockets = excluded.sockets",
                &[&replica, &email, &sockets],
            )
            .await?;
    }
    Ok(())
}

/// The agents online: a socket on a replica heard from within [`SILENT`] (`silent`).
pub async fn online(client: &impl GenericClient, silent: Duration) -> Result<Vec<String>, PgError> {
    let rows = client
        .query(
            "SELECT DISTINCT s.email FROM agent_sockets s JOIN replicas r ON r.id = s.replica
             WHERE r.heartbeat_at > now() - $1::bigint * interval '1 millisecond'
             ORDER BY s.email",
            &[&millis(silent)],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How many replicas were heard from within `silent`: those running, and for a moment
/// after one dies (a stopped replica leaves its row for the next sweep).
pub async fn running(client: &impl GenericClient, silent: Duration) -> Result<i64, PgError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM replicas
             WHERE heartbeat_at > now() - $1::bigint * interval '1 millisecond'",
            &[&millis(silent)],
        )
        .await?;
    Ok(row.get(0))
}

/// Removes the replicas silent for `silent` and their sockets, and returns the agents who
/// are offline because of it (no socket left on any other replica), once: a sweep that runs
/// while another replica's does returns nothing.
pub async fn sweep(
    client: &mut deadpool_postgres::Object,
    silent: Duration,
) -> Result<Vec<String>, PgError> {
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_KEY])
        .await?
        .get(0);
    if !locked {
        return Ok(Vec::new());
    }
    // Every part of the statement sees the rows as they were before it: `kept` is what the
    // live replicas hold.
    let rows = tx
        .query(
            "WITH gone AS (
                 DELETE FROM replicas
                 WHERE heartbeat_at < now() - $1::bigint * interval '1 millisecond'
                 RETURNING id
             ), lost AS (
                 DELETE FROM agent_sockets WHERE replica IN (SELECT id FROM gone)
                 RETURNING email
             ), kept AS (
                 SELECT email FROM agent_sockets WHERE replica NOT IN (SELECT id FROM gone)
             )
             SELECT DISTINCT email FROM lost WHERE email NOT IN (SELECT email FROM kept)
             ORDER BY email",
            &[&millis(silent)],
        )
        .await?;
    tx.commit().await.map_err(super::at_commit)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
