//! A replica's tailer: the one reader of the shared event log that publishes stored events
//! to this replica, and the listener of the ephemeral frames other replicas send. It reads `seq > last` in order, in pages, whenever a `NOTIFY` on
//! [`CHANNEL`](super::log::CHANNEL) wakes it, and at a slow poll besides (a notification is
//! best effort). Its connection is its own, outside the pool: `LISTEN` belongs to a session,
//! and behind a pooler in transaction mode it would hear nothing. When that connection
//! fails the tailer connects again, listens again, and then reads from where it stopped, so
//! what was committed while it was away is read, not lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::frames::CHANNEL as FRAMES;
use super::log::{CHANNEL, COLUMNS, StoredEvent, from_row};
use super::{PgError, PgStore};

/// Events read by one query.
const PAGE: i64 = 1000;

/// The wait before connecting again after the connection failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// How long the tailer waits for a gap in `seq` (the next event after `last` missing while a
/// later one is there) to close, reading again from `last`, before it hands over what comes
/// after the gap and says so loudly.
pub const GAP_WAIT: Duration = Duration::from_secs(5);

/// Handed over with the ephemeral frames each time the tailer has started listening, on its
/// first connection and after each reconnect: notifications sent while it was not
/// listening are lost (the events it reads again; the frames are gone). No frame's payload
/// is this (theirs start with a JSON header).
pub const LISTENING: &str = "listening";

/// Handed over before the next frame after frames were dropped because the receiver's queue
/// was full.
pub const FRAMES_LOST: &str = "frames lost";

/// The first pause before reading again past a gap; each pause doubles, up to a quarter of a
/// second.
const GAP_PAUSE: Duration = Duration::from_millis(10);
const GAP_PAUSE_MAX: Duration = Duration::from_millis(250);

/// A running tailer: where it is (the newest `seq` it has handed over), and its task.
pub struct Tailer {
    position: watch::Receiver<i64>,
    task: JoinHandle<()>,
}

impl Tailer {
    /// Starts tailing the log of `store`'s database after `after` (on a connection of its
    /// own, with the store's settings and TLS), handing each page of events, in `seq`
    /// order, to `out`; it stops when `out` is closed. `poll` is the fallback period when
    /// no notification comes.
    ///
    /// With `frames`, it also hands over the payloads of the ephemeral frames every
    /// replica publishes (`frames::publish`, its own included: the receiver tells them
    /// apart), as they come, dropping one when `frames` is full (best effort).
    pub fn start(
        store: PgStore,
        after: i64,
        poll: Duration,
        out: mpsc::Sender<Vec<StoredEvent>>,
        frames: Option<mpsc::Sender<String>>,
    ) -> Tailer {
        let mut config = store.config().clone();
        // Named, so that an operator sees it in pg_stat_activity (and a test can end it).
        config.application_name("livechat tailer");
        let (position, watch) = watch::channel(after);
        let task = tokio::spawn(async move {
            let mut last = after;
            loop {
                match tail(
                    &store,
                    &config,
                    &mut last,
                    poll,
                    &out,
                    frames.as_ref(),
                    &position,
                )
                .await
                {
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
    /// [`PgError::TailerGone`] when the tailer has stopped short of it (its receiver closed,
    /// or its task ended): the events will not come, and the caller must not answer as if
    /// they had. While its database is away the tailer keeps trying, and this waits.
    pub async fn caught_up(&self, seq: i64) -> Result<(), PgError> {
        let mut position = self.position.clone();
        let reached = position.wait_for(|p| *p >= seq).await.is_ok();
        if reached {
            return Ok(());
        }
        Err(PgError::TailerGone {
            position: *position.borrow(),
        })
    }

    pub fn stop(self) {
        self.task.abort();
    }

    /// Stops the tailer, where it is owned by something that cannot give it up (a `Drop`).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// One connection's life: listen, then read whatever is above `last` at every wake-up.
/// `Ok` when `out` is closed, an error when the connection fails.
async fn tail(
    store: &PgStore,
    config: &tokio_postgres::Config,
    last: &mut i64,
    poll: Duration,
    out: &mpsc::Sender<Vec<StoredEvent>>,
    frames: Option<&mpsc::Sender<String>>,
    position: &watch::Sender<i64>,
) -> Result<(), PgError> {
    // Through the store's TLS settings, as every connection of the pool.
    let (client, mut connection) = store.session(config).await?;
    let wake = Arc::new(Notify::new());
    let woken = Arc::clone(&wake);
    let listening = frames.cloned();
    let frames = frames.cloned();
    // The connection's messages: a notification wakes the reader; the end of the stream
    // (the connection closed or failed) makes the client's next query fail.
    let messages = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        // Frames were dropped (the queue full): the receiver is told before the next one.
        let mut lost = false;
        while let Some(message) = stream.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == FRAMES => {
                    if let Some(frames) = &frames {
                        if lost && frames.try_send(FRAMES_LOST.to_owned()).is_ok() {
                            lost = false;
                        }
                        lost |= frames.try_send(n.payload().to_owned()).is_err();
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
        if let Some(listening) = &listening {
            let _ = listening.send(LISTENING.to_owned()).await;
        }
        let statement = client
            .prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT {PAGE}"
            ))
            .await?;
        loop {
            // When the gap after `last` was first seen, and the pause before reading again.
            let mut gap: Option<Instant> = None;
            let mut pause = GAP_PAUSE;
            loop {
                let rows = client.query(&statement, &[&*last]).await?;
                if rows.is_empty() {
                    break;
                }
                let mut page: Vec<StoredEvent> = rows.iter().map(from_row).collect();
                let full = page.len() as i64 == PAGE;
                let mut next = in_order(&page, *last);
                if next == 0 {
                    // The event after `last` is missing while a later one is there. Every
                    // appending commit takes its numbers from the counter row, which makes
                    // commits visible in `seq` order, and nothing deletes from the log: so a
                    // gap should not be, and is a commit not yet visible (that order broken)
                    // or a fault. Read again from `last` until it closes: handing over what
                    // follows would skip the missing event for good.
                    let since = *gap.get_or_insert_with(Instant::now);
                    if since.elapsed() < GAP_WAIT {
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = out.closed() => return Ok(()),
                        }
                        pause = (pause * 2).min(GAP_PAUSE_MAX);
                        continue;
                    }
                    tracing::error!(
                        after = *last,
                        next = page[0].seq,
                        waited = ?since.elapsed(),
                        "the event log has a gap that did not close: events skipped for good"
                    );
                    next = 1 + in_order(&page[1..], page[0].seq);
                }
                gap = None;
                pause = GAP_PAUSE;
                // Up to the first gap within the page: the next read starts there.
                let cut = next < page.len();
                page.truncate(next);
                let newest = page[page.len() - 1].seq;
                if out.send(page).await.is_err() {
                    return Ok(());
                }
                *last = newest;
                position.send_replace(newest);
                if !full && !cut {
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

/// How many of `page`'s first events follow `last` without a gap.
fn in_order(page: &[StoredEvent], last: i64) -> usize {
    page.iter()
        .zip(last + 1..)
        .take_while(|(event, seq)| event.seq == *seq)
        .count()
}
