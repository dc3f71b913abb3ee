//! Config revisions on PostgreSQL (#17): the rows of `store::revisions`, in the database the
//! replicas share, so that every replica serves the same revision. Numbers are given under
//! the revisions' advisory lock, which the caller holds for the whole of its read, decide
//! and insert (`deploy::record_loaded_pg`): replicas that load one bundle at the same moment
//! record it once. A new revision is announced to every replica by `NOTIFY` on [`CHANNEL`]
//! ([`announce`]), after the commit that recorded it; each replica listens
//! (`server::revisions`) and makes the newest revision live.

use deadpool_postgres::GenericClient;

use super::PgError;
use crate::config::Sources;
use crate::store::StoreError;
use crate::store::revisions::{Revision, RevisionSummary, SOURCES};

/// The advisory lock of recording a revision: "revision" in ASCII.
pub const LOCK_KEY: i64 = 0x7265_7669_7369_6f6e;

/// Takes the revisions' lock until the end of the transaction `tx`.
pub async fn lock(tx: &impl GenericClient) -> Result<(), PgError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    Ok(())
}

/// The channel on which a new revision's number is announced.
pub const CHANNEL: &str = "livechat_config";

/// Tells every listening replica that revision `number` is recorded: `NOTIFY
/// livechat_config, '<number>'` as a statement of its own. Call it after the commit that
/// recorded the revision (a notification sent inside the transaction would be heard only at
/// its commit anyway, but one sent after cannot name a revision that was rolled back).
/// Best effort: a replica that misses it finds the revision at its next poll.
pub async fn announce(client: &impl GenericClient, number: i64) -> Result<(), PgError> {
    client
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &number.to_string()])
        .await?;
    Ok(())
}

/// The number of the newest revision, if any: what a listener compares with its own.
pub async fn latest_number(client: &impl GenericClient) -> Result<Option<i64>, StoreError> {
    let row = client
        .query_one("SELECT max(number) FROM revisions", &[])
        .await
        .map_err(PgError::from)?;
    Ok(row.get(0))
}

fn summary(r: &tokio_postgres::Row) -> RevisionSummary {
    RevisionSummary {
        number: r.get(0),
        hash: r.get(1),
        created_at: r.get(2),
        source: r.get(3),
        summary: r.get(4),
    }
}

fn revision(r: &tokio_postgres::Row) -> Result<Revision, StoreError> {
    crate::store::revisions::with_bundle((summary(r), r.get(5)))
}

const COLUMNS: &str = "number, hash, created_at, source, summary, bundle";

/// The newest revision: the one that is live.
pub async fn latest(client: &impl GenericClient) -> Result<Option<Revision>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM revisions ORDER BY number DESC LIMIT 1"),
            &[],
        )
        .await
        .map_err(PgError::from)?;
    row.as_ref().map(revision).transpose()
}

/// Revision `number`, if there is one.
pub async fn get(client: &impl GenericClient, number: i64) -> Result<Option<Revision>, StoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM revisions WHERE number = $1"),
            &[&number],
        )
        .await
        .map_err(PgError::from)?;
    row.as_ref().map(revision).transpose()
}

/// The number of the newest revision whose bundle has `hash`, if any.
pub async fn numbered(client: &impl GenericClient, hash: &str) -> Result<Option<i64>, StoreError> {
    let row = client
        .query_one(
            "SELECT max(number) FROM revisions WHERE hash = $1",
            &[&hash],
        )
        .await
        .map_err(PgError::from)?;
    Ok(row.get(0))
}

/// Every revision, newest first.
pub async fn list(client: &impl GenericClient) -> Result<Vec<RevisionSummary>, StoreError> {
    let rows = client
        .query(
            "SELECT number, hash, created_at, source, summary FROM revisions ORDER BY number DESC",
            &[],
        )
        .await
        .map_err(PgError::from)?;
    Ok(rows.iter().map(summary).collect())
}

/// Records a new revision, numbered after every earlier one. Call it holding [`lock`] in
/// the same transaction.
pub async fn insert(
    tx: &impl GenericClient,
    hash: &str,
    source: &str,
    summary: &str,
    sources: &Sources,
) -> Result<Revision, StoreError> {
    if !SOURCES.contains(&source) {
        return Err(StoreError::UnknownSource(source.to_string()));
    }
    let created_at = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let bundle = serde_json::to_string(sources).expect("a map of strings always serializes");
    let number: i64 = tx
        .query_one(
            "INSERT INTO revisions (number, hash, created_at, source, summary, bundle)
             SELECT coalesce(max(number), 0) + 1, $1, $2, $3, $4, $5 FROM revisions
             RETURNING number",
            &[&hash, &created_at, &source, &summary, &bundle],
        )
        .await
        .map_err(PgError::from)?
        .get(0);
    Ok(Revision {
        number,
        hash: hash.to_string(),
        created_at,
        source: source.to_string(),
        summary: summary.to_string(),
        bundle: sources.clone(),
    })
}
