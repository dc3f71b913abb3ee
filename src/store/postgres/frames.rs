//! Ephemeral frames between replicas (typing, presence, queue positions): not stored, sent
//! by `NOTIFY` on [`CHANNEL`] and heard by every replica's tailer on its listening
//! connection. Best effort, as within one server: a replica that is reconnecting misses
//! them, and the next frame of the same kind says the same thing anew.

use deadpool_postgres::GenericClient;

use super::PgError;

/// The channel of ephemeral frames.
pub const CHANNEL: &str = "livechat_frames";

/// The largest payload sent: PostgreSQL refuses a notification of 8,000 bytes or more.
pub const MAX_PAYLOAD: usize = 7_900;

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
