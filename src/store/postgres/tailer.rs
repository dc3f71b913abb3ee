//! A replica's tailer: the one reader of the shared event log that publishes stored events
//! to this replica, and the listener of the ephemeral frames other replicas send. It reads `seq > last` in order, in pages, whenever a `NOTIFY` on
//! [`CHANNEL`](super::log::CHANNEL) wakes it, and at a slow poll besides (a notification is
//! best effort). Its connection is its own, outside the pool: `LISTEN` belongs to a session,
//! and behind a pooler in transaction mode it would hear nothing. When that connection
//! fails the tailer connects again, listens again, and then reads from where it stopped, so
//! what was committed while it was away is read, not lost.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use super::PgError;
use super::frames::CHANNEL as FRAMES;
use super::log::{CHANNEL, COLUMNS, StoredEvent, from_row};

/// Events read by one query.
const PAGE: i64 = 1000;

/// The wait before connecting again after the connection failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// A running tailer: where it is (the newest `seq` it has handed over), and its task.
pub struct Tailer {
    position: watch::Receiver<i64>,
    task: JoinHandle<()>,
}

impl Tailer {
    /// Starts tailing the log of the database `config` names after `after`, handing each page
    /// of events, in `seq` order, to `out`; it stops when `out` is closed. `poll` is the
    /// fallback period when no notification comes.
    ///
    /// With `frames`, it also hands over the ephemeral frames other replicas publish
    /// (`frames::publish`), as they come, dropping one when `frames` is full (best effort).
    pub fn start(
        config: tokio_postgres::Config,
        after: i64,
        poll: Duration,
        out: mpsc::Sender<Vec<StoredEvent>>,
        frames: Option<mpsc::Sender<String>>,
    ) -> Tailer {
        let mut config = config;
        // Named, so that an operator sees it in pg_stat_activity (and a test can end it).
        config.application_name("livechat tailer");
        let (position, watch) = watch::channel(after);
        let task = tokio::spawn(async move {
            let mut last = after;
            loop {
                match tail(&config, &mut last, poll, &out, frames.as_ref(), &position).await {
                    Ok(()) => return, // `out` closed: nobody listens any more
                    Err(e) => {
                        tracing::warn!(error = %e, after = last, "the log's tailer lost its connection; connecting again");
                        tokio::time::sleep(RECONNECT).await;
                    }
                }
            }
        });
        Tailer {
            position: watch,
            task,
        }
    }

    /// The newest `seq` handed over so far.
    pub fn position(&self) -> i64 {
        *self.position.borrow()
    }

    /// Waits until the tailer has handed over `seq` (a local commit waits so for its own
    /// events, which reach this replica's sockets through the tailer like any other).
    pub async fn caught_up(&self, seq: i64) {
        let mut position = self.position.clone();
        let _ = position.wait_for(|p| *p >= seq).await;
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// One connection's life: listen, then read whatever is above `last` at every wake-up.
/// `Ok` when `out` is closed, an error when the connection fails.
async fn tail(
    config: &tokio_postgres::Config,
    last: &mut i64,
    poll: Duration,
    out: &mpsc::Sender<Vec<StoredEvent>>,
    frames: Option<&mpsc::Sender<String>>,
    position: &watch::Sender<i64>,
) -> Result<(), PgError> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let wake = Arc::new(Notify::new());
    let woken = Arc::clone(&wake);
    let frames = frames.cloned();
    // The connection's messages: a notification wakes the reader; the end of the stream
    // (the connection closed or failed) makes the client's next query fail.
    let messages = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == FRAMES => {
                    if let Some(frames) = &frames {
                        let _ = frames.try_send(n.payload().to_owned());
                    }
                }
                Ok(AsyncMessage::Notification(_)) => woken.notify_one(),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "the tailer's connection ended");
                    break;
                }
            }
        }
        woken.notify_one();
    });
    let result = async {
        // Listen first, then read: a commit after the read is then always heard.
        client
            .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {FRAMES}"))
            .await?;
        let statement = client
            .prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT {PAGE}"
            ))
            .await?;
        loop {
            loop {
                let rows = client.query(&statement, &[&*last]).await?;
                let full = rows.len() as i64 == PAGE;
                if rows.is_empty() {
                    break;
                }
                let page: Vec<StoredEvent> = rows.iter().map(from_row).collect();
                let first = page[0].seq;
                let newest = page[page.len() - 1].seq;
                if first != *last + 1 || newest - first + 1 != page.len() as i64 {
                    // Every appending commit takes its numbers from the counter row and
                    // nothing deletes from the log, so this is a fault, not a race: say so.
                    tracing::error!(
                        after = *last,
                        first,
                        newest,
                        read = page.len(),
                        "the event log has a gap"
                    );
                }
                if out.send(page).await.is_err() {
                    return Ok(());
                }
                *last = newest;
                position.send_replace(newest);
                if !full {
                    break;
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = out.closed() => return Ok(()),
            }
        }
    }
    .await;
    messages.abort();
    result
}
