//! Ephemeral frames between replicas (typing, a call's signalling, queue positions): not
//! stored in the log, sent by `NOTIFY` on [`CHANNEL`] and heard by every replica's tailer on
//! its listening connection. Best effort, as within one server: a replica that is
//! reconnecting misses them, and the next frame of the same kind says the same thing anew.
//! A frame over [`MAX_PAYLOAD`] is written to `ephemeral_frames` and its notification
//! carries the row's id ([`publish_stored`]); rows live a minute ([`sweep`]).

use deadpool_postgres::GenericClient;

use super::PgError;

/// The channel of ephemeral frames.
pub const CHANNEL: &str = "livechat_frames";

/// The largest payload sent: PostgreSQL refuses a notification of 8,000 bytes or more.
pub const MAX_PAYLOAD: usize = 7_900;

/// How long a frame written to `ephemeral_frames` is kept for the replicas to read it.
pub const KEPT_SECONDS: i32 = 60;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("an ephemeral frame of {0} bytes is over the {MAX_PAYLOAD} a notification carries")]
    TooLarge(usize),
    #[error(transparent)]
    Store(#[from] PgError),
}

/// Sends `frame` (JSON, as the sockets get it) to every replica, this one included.
pub async fn publish(client: &impl GenericClient, frame: &str) -> Result<(), FrameError> {
    if frame.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(frame.len()));
    }
    client
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &frame])
        .await
        .map_err(PgError::from)?;
    Ok(())
}

/// Writes `frame`, of any size, to `ephemeral_frames` and notifies every replica of its row
/// in one statement: the payload is `{"o": origin, "r": id}`. The notification is sent when
/// the row is committed, so a replica that hears it finds the row. Answers the id.
pub async fn publish_stored(
    client: &impl GenericClient,
    origin: &str,
    frame: &str,
) -> Result<i64, PgError> {
    let row = client
        .query_one(
            "WITH f AS (INSERT INTO ephemeral_frames (payload) VALUES ($1) RETURNING id)
             SELECT f.id, pg_notify($2, json_build_object('o', $3::text, 'r', f.id)::text)
             FROM f",
            &[&frame, &CHANNEL, &origin],
        )
        .await?;
    Ok(row.get(0))
}

/// The frame of row `id` of `ephemeral_frames`; `None` once it was swept.
pub async fn read_stored(client: &impl GenericClient, id: i64) -> Result<Option<String>, PgError> {
    let row = client
        .query_opt("SELECT payload FROM ephemeral_frames WHERE id = $1", &[&id])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Deletes the rows of `ephemeral_frames` older than [`KEPT_SECONDS`]; answers how many.
pub async fn sweep(client: &impl GenericClient) -> Result<u64, PgError> {
    Ok(client
        .execute(
            "DELETE FROM ephemeral_frames WHERE at < now() - make_interval(secs => $1)",
            &[&f64::from(KEPT_SECONDS)],
        )
        .await?)
}
