//! Fan-out of events to the WebSockets that may see them.
//!
//! Every frame is encoded once, when it is published, and shared by reference with every
//! subscriber. The channel is bounded: a subscriber that falls behind is not waited for — it
//! notices the gap and replays what it missed from the event log (see `http::stream`).
//! The interface is narrow (publish, subscribe) so that a cross-replica fan-out can replace
//! it later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
    /// Only this agent's consoles get `agent_json` (a call's signalling, a
    /// `conversation.read`); `None`: every agent who serves the bot.
    pub to_agent: Option<String>,
}

/// How many frames a subscriber may fall behind before it must replay from the log.
const CAPACITY: usize = 4096;

/// Each visitor's own channel, by visitor id.
type VisitorChannels = Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Frame>>>>>;

/// How many frames one visitor's socket may fall behind before it replays from the log.
const VISITOR_CAPACITY: usize = 16;

#[derive(Clone)]
pub struct Hub {
    /// Every frame: the agents' consoles filter by bot.
    tx: broadcast::Sender<Arc<Frame>>,
    /// Frames for one visitor go only to that visitor's sockets, so a message wakes two
    /// sockets and the consoles, not every open widget.
    visitors: VisitorChannels,
}

/// A subscription; a visitor's removes its channel when the visitor's last socket goes.
pub struct Subscription {
    rx: Option<broadcast::Receiver<Arc<Frame>>>,
    visitor: Option<(VisitorChannels, String)>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Arc<Frame>, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((map, id)) = &self.visitor {
            let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
            drop(self.rx.take());
            if map.get(id).is_some_and(|tx| tx.receiver_count() == 0) {
                map.remove(id);
            }
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (tx, _) = broadcast::channel(CAPACITY);
        Hub {
            tx,
            visitors: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Sends a frame to every current subscriber that may see it; never blocks.
    pub fn publish(&self, frame: Frame) {
        let frame = Arc::new(frame);
        if let (Some(visitor), Some(_)) = (&frame.visitor_id, &frame.visitor_json) {
            let map = self.visitors.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(tx) = map.get(visitor) {
                let _ = tx.send(frame.clone());
            }
        }
        let _ = self.tx.send(frame);
    }

    /// Every frame (the consoles).
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: Some(self.tx.subscribe()),
            visitor: None,
        }
    }

    /// The frames of one visitor (their widget).
    pub fn subscribe_visitor(&self, visitor_id: &str) -> Subscription {
        let mut map = self.visitors.lock().unwrap_or_else(|p| p.into_inner());
        let rx = map
            .entry(visitor_id.to_string())
            .or_insert_with(|| broadcast::channel(VISITOR_CAPACITY).0)
            .subscribe();
        Subscription {
            rx: Some(rx),
            visitor: Some((self.visitors.clone(), visitor_id.to_string())),
        }
    }

    /// How many sockets are subscribed (for `/metrics`).
    pub fn subscribers(&self) -> usize {
        let visitors: usize = self
            .visitors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|tx| tx.receiver_count())
            .sum();
        self.tx.receiver_count() + visitors
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

    #[tokio::test]
    async fn a_visitor_hears_only_their_own_frames_and_the_channel_goes_with_them() {
        let hub = Hub::new();
        let mut ana = hub.subscribe_visitor("v_ana");
        let bea = hub.subscribe_visitor("v_bea");
        let frame = |visitor: &str| Frame {
            seq: Some(1),
            visitor_id: Some(visitor.into()),
            visitor_json: Some(format!("for {visitor}")),
            ..Frame::default()
        };
        hub.publish(frame("v_bea"));
        hub.publish(frame("v_ana"));
        assert_eq!(
            ana.recv().await.unwrap().visitor_json.as_deref(),
            Some("for v_ana")
        );
        assert_eq!(hub.subscribers(), 2);
        drop(bea);
        assert!(!hub.visitors.lock().unwrap().contains_key("v_bea"));
        assert_eq!(hub.subscribers(), 1);
    }
}
