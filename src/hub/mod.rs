//! Fan-out of events to the WebSockets that may see them.
//!
//! Every frame is encoded once per audience (the agents' view, the visitor's view), when it
//! is published, and shared by reference with every subscriber: a socket writes the same
//! bytes, never a copy. Each subscriber has its own bounded queue, and a frame is put only
//! in the queues of the sockets that may see it — a message wakes the conversation's
//! visitor and the consoles of the agents who serve its bot, not every open console. A
//! subscriber that falls behind is not waited for: it notices the gap and replays what it
//! missed from the event log (see `http::stream`). The interface is narrow (publish,
//! subscribe).
//!
//! Across replicas (PostgreSQL), stored events come to each replica's hub through its own
//! tailer; an ephemeral frame (`seq: None`) is delivered here at once and also handed to a
//! relay ([`Hub::relay_to`]) that sends it to the other replicas, whose receivers
//! [`Hub::deliver`] it to their own sockets. Kinds that each replica makes for itself
//! ([`PER_REPLICA`]) are not relayed, so that no socket gets one twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

/// Text encoded once and shared: cloning it copies a pointer, not the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(Bytes);

impl Text {
    pub fn as_str(&self) -> &str {
        // Only ever made from a `String` or a `&'static str`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The bytes, for a writer that takes them without a copy.
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

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
    pub agent_json: Option<Text>,
    /// The JSON the conversation's visitor receives; `None`: not for the visitor.
    pub visitor_json: Option<Text>,
    /// The type of an ephemeral frame (`typing`, `agent.presence`, `config.reloaded`).
    pub kind: Option<&'static str>,
    /// Only this agent's consoles get `agent_json` (a call's signalling, a
    /// `conversation.read`); `None`: every agent who serves the bot.
    pub to_agent: Option<String>,
}

/// How many frames one console may fall behind before it must replay from the log.
const AGENT_CAPACITY: usize = 1024;

/// How many frames one visitor's socket may fall behind before it replays from the log.
const VISITOR_CAPACITY: usize = 16;

/// What a console may see: the agent, and the bots they serve (`None`: an admin, all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub email: String,
    pub bots: Option<BTreeSet<String>>,
}

impl Scope {
    fn sees(&self, frame: &Frame) -> bool {
        frame.agent_json.is_some()
            && frame.to_agent.as_ref().is_none_or(|to| *to == self.email)
            && match (&self.bots, &frame.bot) {
                (None, _) | (_, None) => true,
                (Some(bots), Some(bot)) => bots.contains(bot),
            }
    }
}

struct Console {
    scope: Scope,
    tx: broadcast::Sender<Arc<Frame>>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    consoles: HashMap<u64, Console>,
    /// Each visitor's own queue, shared by their sockets, by visitor id.
    visitors: HashMap<String, broadcast::Sender<Arc<Frame>>>,
}

/// Ephemeral kinds every replica makes itself and that so never cross replicas:
/// `agent.presence` comes from each replica's reading of the shared presence (every second,
/// and at once for its own sockets), `config.reloaded` from each replica making the new
/// revision live when the database announces it.
pub const PER_REPLICA: &[&str] = &["agent.presence", "config.reloaded"];

#[derive(Clone, Default)]
pub struct Hub {
    registry: Arc<Mutex<Registry>>,
    /// Where ephemeral frames go to reach the other replicas (PostgreSQL only).
    relay: Arc<OnceLock<mpsc::Sender<Arc<Frame>>>>,
    /// Ephemeral frames not relayed because the relay's queue was full or gone.
    relay_dropped: Arc<AtomicU64>,
}

enum Key {
    Console(u64),
    Visitor(String),
}

/// A subscription; it leaves the hub when dropped.
pub struct Subscription {
    rx: Option<broadcast::Receiver<Arc<Frame>>>,
    registry: Arc<Mutex<Registry>>,
    key: Key,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Arc<Frame>, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }

    /// The next frame if one is already waiting (to write a burst together).
    pub fn try_recv(&mut self) -> Result<Arc<Frame>, broadcast::error::TryRecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.try_recv(),
            None => Err(broadcast::error::TryRecvError::Closed),
        }
    }

    /// A console's new scope (the roster changed): frames published from now on are chosen
    /// by it. Made under the hub's lock (from the roster in force then: a reload's
    /// `rescope_all` cannot come between making it and setting it). Returns it.
    pub fn rescope_with(&self, scope: impl FnOnce() -> Scope) -> Option<Scope> {
        let Key::Console(id) = self.key else {
            return None;
        };
        let mut registry = lock(&self.registry);
        let console = registry.consoles.get_mut(&id)?;
        let scope = scope();
        if console.scope != scope {
            console.scope = scope.clone();
        }
        Some(scope)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut registry = lock(&self.registry);
        drop(self.rx.take());
        match &self.key {
            Key::Console(id) => {
                registry.consoles.remove(id);
            }
            Key::Visitor(id) => {
                if registry
                    .visitors
                    .get(id)
                    .is_some_and(|tx| tx.receiver_count() == 0)
                {
                    registry.visitors.remove(id);
                }
            }
        }
    }
}

fn lock(registry: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    /// Puts a frame in the queue of every current subscriber that may see it and, when it
    /// is ephemeral and other replicas share the database, in the relay's queue; never
    /// blocks (a full relay queue drops the frame for the other replicas, counted).
    pub fn publish(&self, frame: Frame) {
        let frame = Arc::new(frame);
        self.fan_out(&frame);
        if let Some(relay) = self.relay.get()
            && frame.seq.is_none()
            && !frame.kind.is_some_and(|k| PER_REPLICA.contains(&k))
            && relay.try_send(frame).is_err()
        {
            self.relay_failed();
        }
    }

    /// Puts a frame in the queues of this replica's subscribers only: a frame another
    /// replica relayed.
    pub fn deliver(&self, frame: Frame) {
        self.fan_out(&Arc::new(frame));
    }

    /// From now on, every ephemeral frame published (but the [`PER_REPLICA`] kinds) is
    /// also sent to `relay`. Set once; a second call changes nothing and answers false.
    pub fn relay_to(&self, relay: mpsc::Sender<Arc<Frame>>) -> bool {
        self.relay.set(relay).is_ok()
    }

    /// Ephemeral frames not sent to the other replicas: the relay's queue was full (or
    /// closed), or sending failed (for `/metrics`).
    pub fn relay_dropped(&self) -> u64 {
        self.relay_dropped.load(Ordering::Relaxed)
    }

    /// The relay could not send a frame.
    pub fn relay_failed(&self) {
        self.relay_dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn fan_out(&self, frame: &Arc<Frame>) {
        let registry = lock(&self.registry);
        if let (Some(visitor), Some(_)) = (&frame.visitor_id, &frame.visitor_json)
            && let Some(tx) = registry.visitors.get(visitor)
        {
            let _ = tx.send(frame.clone());
        }
        if frame.agent_json.is_some() {
            for console in registry.consoles.values() {
                if console.scope.sees(frame) {
                    let _ = console.tx.send(frame.clone());
                }
            }
        }
    }

    /// The frames a console with this scope may see.
    pub fn subscribe(&self, scope: Scope) -> Subscription {
        let (tx, rx) = broadcast::channel(AGENT_CAPACITY);
        let mut registry = lock(&self.registry);
        registry.next += 1;
        let id = registry.next;
        registry.consoles.insert(id, Console { scope, tx });
        Subscription {
            rx: Some(rx),
            registry: self.registry.clone(),
            key: Key::Console(id),
        }
    }

    /// Every console's new scope, from the roster now in force, before anything published
    /// under it: called when a new config revision goes live.
    pub fn rescope_all(&self, scope_of: impl Fn(&Scope) -> Scope) {
        for console in lock(&self.registry).consoles.values_mut() {
            console.scope = scope_of(&console.scope);
        }
    }

    /// The frames of one visitor (their widget).
    pub fn subscribe_visitor(&self, visitor_id: &str) -> Subscription {
        let mut registry = lock(&self.registry);
        let rx = registry
            .visitors
            .entry(visitor_id.to_string())
            .or_insert_with(|| broadcast::channel(VISITOR_CAPACITY).0)
            .subscribe();
        Subscription {
            rx: Some(rx),
            registry: self.registry.clone(),
            key: Key::Visitor(visitor_id.to_string()),
        }
    }

    /// How many sockets are subscribed (for `/metrics`).
    pub fn subscribers(&self) -> usize {
        let registry = lock(&self.registry);
        let visitors: usize = registry
            .visitors
            .values()
            .map(|tx| tx.receiver_count())
            .sum();
        registry.consoles.len() + visitors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(email: &str, bots: Option<&[&str]>) -> Scope {
        Scope {
            email: email.into(),
            bots: bots.map(|b| b.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn for_agents(seq: i64, bot: Option<&str>, to: Option<&str>) -> Frame {
        Frame {
            seq: Some(seq),
            bot: bot.map(str::to_string),
            agent_json: Some(format!("{seq}").into()),
            to_agent: to.map(str::to_string),
            ..Frame::default()
        }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_much_it_missed() {
        let hub = Hub::new();
        let mut slow = hub.subscribe(scope("a@x", None));
        for seq in 0..(AGENT_CAPACITY as i64 + 10) {
            hub.publish(for_agents(seq, None, None));
        }
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(slow.recv().await.unwrap().seq, Some(10));
    }

    #[tokio::test]
    async fn a_console_is_given_only_what_its_scope_sees_in_order() {
        let hub = Hub::new();
        let mut sales = hub.subscribe(scope("ana@x", Some(&["sales", "web"])));
        let mut admin = hub.subscribe(scope("root@x", None));
        let mut support = hub.subscribe(scope("bea@x", Some(&["support"])));
        hub.publish(for_agents(1, Some("sales"), None));
        hub.publish(for_agents(2, Some("support"), None));
        hub.publish(for_agents(3, Some("web"), None));
        hub.publish(for_agents(4, None, None)); // about no bot: presence, a reload
        hub.publish(for_agents(5, Some("sales"), Some("bea@x"))); // to another agent
        hub.publish(for_agents(6, Some("support"), Some("bea@x")));
        let seqs = |sub: &mut Subscription| {
            std::iter::from_fn(|| sub.try_recv().ok().and_then(|f| f.seq)).collect::<Vec<_>>()
        };
        assert_eq!(seqs(&mut sales), [1, 3, 4]);
        assert_eq!(seqs(&mut admin), [1, 2, 3, 4]);
        assert_eq!(seqs(&mut support), [2, 4, 6]);
        // The roster changed: what is published from now on follows the new scope.
        support.rescope_with(|| scope("bea@x", Some(&["sales"])));
        hub.rescope_all(|s| {
            if s.email == "ana@x" {
                scope("ana@x", Some(&[]))
            } else {
                s.clone()
            }
        });
        hub.publish(for_agents(7, Some("sales"), None));
        assert_eq!(seqs(&mut sales), Vec::<i64>::new());
        assert_eq!(seqs(&mut support), [7]);
        assert_eq!(hub.subscribers(), 3);
        drop(admin);
        assert_eq!(hub.subscribers(), 2);
    }

    #[tokio::test]
    async fn a_visitor_hears_only_their_own_frames_and_the_channel_goes_with_them() {
        let hub = Hub::new();
        let mut ana = hub.subscribe_visitor("v_ana");
        let bea = hub.subscribe_visitor("v_bea");
        let mut console = hub.subscribe(scope("a@x", None));
        let frame = |visitor: &str| Frame {
            seq: Some(1),
            visitor_id: Some(visitor.into()),
            visitor_json: Some(format!("for {visitor}").into()),
            ..Frame::default()
        };
        hub.publish(frame("v_bea"));
        hub.publish(frame("v_ana"));
        assert_eq!(
            ana.recv().await.unwrap().visitor_json.as_deref(),
            Some("for v_ana")
        );
        // Nothing in them for agents: no console is woken.
        assert!(console.try_recv().is_err());
        assert_eq!(hub.subscribers(), 3);
        drop(bea);
        assert!(!lock(&hub.registry).visitors.contains_key("v_bea"));
        assert_eq!(hub.subscribers(), 2);
    }

    #[tokio::test]
    async fn ephemeral_frames_are_relayed_but_stored_per_replica_and_delivered_ones_not() {
        let hub = Hub::new();
        let mut console = hub.subscribe(scope("a@x", None));
        let ephemeral = |kind: &'static str| Frame {
            agent_json: Some(kind.to_string().into()),
            kind: Some(kind),
            ..Frame::default()
        };
        // No relay (SQLite): published here, counted nowhere.
        hub.publish(ephemeral("typing"));
        assert_eq!(hub.relay_dropped(), 0);
        let (tx, mut relayed) = mpsc::channel(2);
        assert!(hub.relay_to(tx.clone()));
        assert!(!hub.relay_to(tx), "set once");
        hub.publish(for_agents(1, None, None)); // stored: the tailers carry it
        hub.publish(ephemeral("agent.presence")); // each replica makes its own
        hub.publish(ephemeral("config.reloaded"));
        hub.deliver(ephemeral("signal")); // came from another replica
        hub.publish(ephemeral("typing"));
        hub.publish(ephemeral("queue.position"));
        hub.publish(ephemeral("conversation.read")); // the queue (2) is full
        let kinds: Vec<_> = std::iter::from_fn(|| relayed.try_recv().ok())
            .map(|f| f.kind.unwrap())
            .collect();
        assert_eq!(kinds, ["typing", "queue.position"]);
        assert_eq!(hub.relay_dropped(), 1);
        // Every one of them reached this replica's console, once.
        let here: Vec<_> = std::iter::from_fn(|| console.try_recv().ok())
            .map(|f| f.agent_json.as_deref().unwrap().to_string())
            .collect();
        assert_eq!(
            here,
            [
                "typing",
                "1",
                "agent.presence",
                "config.reloaded",
                "signal",
                "typing",
                "queue.position",
                "conversation.read"
            ]
        );
    }
}
