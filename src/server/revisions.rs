//! On PostgreSQL, every replica serves the database's newest revision (#17). Whoever records
//! one (a replica's reload of its bundle directory, the admin API, `livechat apply` or
//! `rollback`) announces its number on `livechat_config` after the commit
//! (`deploy::announce_pg`). Each replica keeps a session of its own that listens there and,
//! at each announcement, at each (re)connection and at a slow poll that covers a missed one,
//! reads the newest number; if it is above the replica's own, it takes that revision's files
//! from the database and makes them live through the path a reload takes
//! (`AppState::adopt`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use crate::http::AppState;
use crate::store::StoreError;
use crate::store::postgres::PgStore;
use crate::store::postgres::revisions::{self, CHANNEL};
use crate::store::revisions::Revision;

use super::Adopted;

/// How often the newest revision is read without an announcement: a notification lost with
/// a connection, or sent by a writer that failed to announce, is made up for within this.
pub const POLL: Duration = Duration::from_secs(15);

/// The pause before connecting again after the listening session failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// Follows the database's revisions for as long as the server runs.
pub async fn follow(state: AppState, pg: Arc<PgStore>) {
    loop {
        if let Err(e) = listen(&state, &pg).await {
            tracing::warn!(
                error = %e,
                "the config revisions' listener lost its connection; connecting again"
            );
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One session's life: listen, then read the newest revision at every wake-up. Returns
/// when the connection ends (`Ok`) or fails.
async fn listen(state: &AppState, pg: &PgStore) -> Result<(), StoreError> {
    let (client, mut connection) = pg.session(pg.config()).await?;
    let wake = Arc::new(Notify::new());
    let woken = Arc::clone(&wake);
    // The connection's messages: an announcement wakes the reader; the end of the stream
    // wakes it too, and its next query then fails.
    let messages = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    tracing::debug!(revision = n.payload(), "a new revision was announced");
                    woken.notify_one();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "the config listener's connection ended");
                    break;
                }
            }
        }
        woken.notify_one();
    });
    let result = async {
        // Listen first, then read: a revision recorded after the read is always heard.
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(crate::store::postgres::PgError::from)?;
        // A revision that does not validate here is not tried again until a newer one.
        let mut refused = None;
        loop {
            if client.is_closed() {
                tracing::warn!("the config revisions' listener lost its connection");
                return Ok(());
            }
            if let Some(revision) = newer(state, pg, refused).await? {
                let number = revision.number;
                let state = state.clone();
                let adopted = tokio::task::spawn_blocking(move || state.adopt(revision))
                    .await
                    .unwrap_or(Adopted::Invalid);
                if adopted == Adopted::Invalid {
                    refused = Some(number);
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
    .await;
    messages.abort();
    result
}

/// The database's newest revision when it is newer than the one `state` serves (and not
/// `refused`). Read through the pool: the listening session only listens.
async fn newer(
    state: &AppState,
    pg: &PgStore,
    refused: Option<i64>,
) -> Result<Option<Revision>, StoreError> {
    let reader = crate::store::handle::client(pg).await?;
    let Some(number) = revisions::latest_number(&reader).await? else {
        return Ok(None);
    };
    let own = state.live.load().revision.as_ref().map(|r| r.number);
    if own.is_some_and(|own| own >= number) || refused == Some(number) {
        return Ok(None);
    }
    revisions::get(&reader, number).await
}
