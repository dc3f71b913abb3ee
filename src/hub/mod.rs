//! Fan-out of events to the WebSockets that may see them.
//!
//! Every frame is encoded once, when it is published, and shared by reference with every
//! subscriber. The channel is bounded: a subscriber that falls behind is not waited for — it
//! notices the gap and replays what it missed from the event log (see `http::stream`).
//! The interface is narrow (publish, subscribe) so that a cross-replica fan-out can replace
//! it later.

use std::sync::Arc;

use tokio::sync::broadcast;

/// One frame as sent on the wire, encoded once, with what a subscriber needs to filter it.
#[derive(Debug, Default)]
pub struct Frame {
    /// The event's sequence number; `None` for ephemeral frames (typing, presence).
    pub seq: Option<i64>,
    pub conversation_id: Option<String>,
    /// The bot the conversation belongs to; `None` for frames about no bot (presence).
    pub bot: Option<String>,
    /// The conversation's visitor.
    pub visitor_id: Option<String>,
    /// The JSON agents who serve the bot receive; `None`: not for agents.
    pub agent_json: Option<String>,
    /// The JSON the conversation's visitor receives; `None`: not for the visitor.
    pub visitor_json: Option<String>,
    /// The type of an ephemeral frame (`typing`, `agent.presence`, `config.reloaded`).
    pub kind: Option<&'static str>,
}

/// How many frames a subscriber may fall behind before it must replay from the log.
const CAPACITY: usize = 4096;

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Frame>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (tx, _) = broadcast::channel(CAPACITY);
        Hub { tx }
    }

    /// Sends a frame to every current subscriber; never blocks.
    pub fn publish(&self, frame: Frame) {
        let _ = self.tx.send(Arc::new(frame));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.tx.subscribe()
    }

    /// How many sockets are subscribed (for `/metrics`).
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_much_it_missed() {
        let hub = Hub::new();
        let mut slow = hub.subscribe();
        for seq in 0..(CAPACITY as i64 + 10) {
            hub.publish(Frame {
                seq: Some(seq),
                ..Frame::default()
            });
        }
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(slow.recv().await.unwrap().seq, Some(10));
    }
}
