//! Ephemeral frames across replicas (#17): typing, a call's signalling, queue positions,
//! read marks, visitors online and the rest of the frames with no `seq` reach the sockets
//! of every replica on the database, not only those of the replica that made them.
//!
//! The hub delivers a frame to its own replica's sockets at once and hands it to the relay
//! ([`Hub::relay_to`]): a bounded queue (full: the frame is dropped for the other replicas
//! and counted, as a socket that falls behind drops them) into one task that holds a pooled
//! connection while frames wait and sends each frame by `NOTIFY` ([`frames::publish`]), or, over the
//! notification's limit, as a row of `ephemeral_frames` whose id the notification carries
//! ([`frames::publish_stored`]). Every replica's tailer hears the channel; the receiver
//! drops what its own replica sent (already delivered), reads a stored frame's row, and
//! [`Hub::deliver`]s the frame to its sockets, where the hub's scoping applies as to a
//! local one.
//!
//! The payload carries what the receiving hub filters on and the frame's texts as they
//! were encoded, unchanged: a header (JSON, one line) with the origin replica, the kind,
//! the conversation, bot, visitor, the agent it is for, and the lengths of the agents' and
//! the visitor's texts; then a newline and the texts, one after the other. A text both
//! sides get (an agent's typing) is sent once.
//!
//! Some frames change what the receiving engine holds, not only what its sockets see: an
//! erase (the erased conversations, the visitor's cached token). The receiver hands each frame to the engine ([`Heed`], [`Engine::heed`]) before
//! its sockets get it, so that a visitor told of their erase on this replica finds their
//! token refused here too.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Engine;
use super::privacy::{CONVERSATION_ERASED, VISITOR_ERASED, VISITOR_FORGOTTEN};
use crate::hub::{Frame, Hub, Text};
use crate::store::postgres::frames::{self, MAX_PAYLOAD};
use crate::store::postgres::{PgError, PgStore, tailer};

/// Frames waiting to be sent to the other replicas; more are dropped (and counted).
pub const QUEUE: usize = 1024;

/// How often each replica deletes the old rows of `ephemeral_frames`.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The most kinds a receiver learns from payloads (each kept for the process's life).
const KINDS_MAX: usize = 64;

/// Heeded (never delivered) for each stored `conversation.started` event, from any replica:
/// the visitor's current conversation is the new one.
pub const CONVERSATION_STARTED: &str = "conversation.started";

/// Heeded (never delivered) when notices from the other replicas may have been lost: the
/// tailer listens again after its connection failed, or dropped frames (its queue full).
const NOTICES_LOST: &str = "relay.notices_lost";

/// What the engine does with each frame another replica sent, before this replica's
/// sockets get it; set once the engine exists (frames heard before are only delivered).
pub type Heed = Arc<OnceLock<Box<dyn Fn(&Frame) + Send + Sync>>>;

impl Engine {
    /// A frame from another replica, before this replica's sockets get it: what it changes
    /// in this engine.
    pub(super) fn heed(&self, frame: &Frame) {
        match (frame.kind, &frame.conversation_id, &frame.visitor_id) {
            (Some(CONVERSATION_ERASED), Some(id), _) => self.erased_elsewhere(id),
            (Some(VISITOR_ERASED | VISITOR_FORGOTTEN), _, Some(visitor)) => {
                self.forget_visitor(visitor);
                self.leave_live(visitor);
            }
            (Some(NOTICES_LOST), _, _) => self.notices_lost(),
            (Some(CONVERSATION_STARTED), Some(id), Some(visitor)) => {
                // Only a visitor this replica remembers: the cache does not grow here.
                if let Some(current) = self.known().current.get_mut(visitor) {
                    current.clone_from(id);
                }
            }
            _ => {}
        }
    }

    /// Notices from the other replicas may have been lost (an erase's among them): the
    /// visitors' tokens and current conversations are looked up again, and every copy of a
    /// conversation is read again before its next command (an erased one is then gone).
    fn notices_lost(&self) {
        {
            let mut known = self.known();
            known.forgets += 1;
            known.tokens.clear();
            known.current.clear();
        }
        if let Some(r) = &self.inner.replicated {
            r.all_stale();
        }
        tracing::info!(
            "listening to the other servers again: cached visitors and conversations are read again"
        );
    }
}

/// What a receiver needs to put a frame back together, before its texts.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Header {
    /// The replica that published it.
    o: String,
    /// A frame kept in `ephemeral_frames`, by id: nothing else is in the notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    /// The length of the agents' text, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<usize>,
    /// The length of the visitor's text, when there is one and it is not the agents'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    w: Option<usize>,
    /// The visitor gets the agents' text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    s: bool,
}

/// The payload of `frame`, published by replica `origin`.
pub fn encode(origin: &str, frame: &Frame) -> String {
    let agent = frame.agent_json.as_deref();
    let visitor = frame.visitor_json.as_deref();
    let same = agent.is_some() && agent == visitor;
    let header = Header {
        o: origin.to_string(),
        r: None,
        k: frame.kind.map(str::to_string),
        c: frame.conversation_id.clone(),
        b: frame.bot.clone(),
        v: frame.visitor_id.clone(),
        t: frame.to_agent.clone(),
        a: agent.map(str::len),
        w: visitor.filter(|_| !same).map(str::len),
        s: same,
    };
    // A header of strings and numbers only: it cannot fail to encode.
    let mut out = serde_json::to_string(&header).unwrap_or_default();
    out.push('\n');
    out.push_str(agent.unwrap_or_default());
    if !same {
        out.push_str(visitor.unwrap_or_default());
    }
    out
}

/// A payload read back.
#[derive(Debug)]
pub enum Decoded {
    /// The frame itself, from replica `origin`.
    Frame { origin: String, frame: Frame },
    /// A frame kept in `ephemeral_frames` as row `id`.
    Stored { origin: String, id: i64 },
}

/// Reads a payload of [`encode`] (or of `frames::publish_stored`); `None` when it is not
/// one.
pub fn decode(payload: &str) -> Option<Decoded> {
    let (line, texts) = payload.split_once('\n').unwrap_or((payload, ""));
    let header: Header = serde_json::from_str(line).ok()?;
    if let Some(id) = header.r {
        return Some(Decoded::Stored {
            origin: header.o,
            id,
        });
    }
    let (agent, rest) = match header.a {
        Some(n) => {
            let (text, rest) = (texts.get(..n)?, texts.get(n..)?);
            (Some(text), rest)
        }
        None => (None, texts),
    };
    let visitor = match (header.s, header.w) {
        (true, None) if rest.is_empty() && agent.is_some() => agent,
        (false, Some(n)) if rest.len() == n => Some(rest),
        (false, None) if rest.is_empty() => None,
        _ => return None,
    };
    let agent_json: Option<Text> = agent.map(|t| t.to_string().into());
    let visitor_json = match (header.s, &agent_json) {
        (true, Some(text)) => Some(text.clone()),
        _ => visitor.map(|t| Text::from(t.to_string())),
    };
    let kind = match header.k.as_deref() {
        Some(k) => Some(intern(k)?),
        None => None,
    };
    Some(Decoded::Frame {
        origin: header.o,
        frame: Frame {
            seq: None,
            conversation_id: header.c,
            bot: header.b,
            visitor_id: header.v,
            agent_json,
            visitor_json,
            kind,
            to_agent: header.t,
        },
    })
}

/// The kind's name as the hub's frames hold it (`&'static str`): each name is made static
/// once, up to [`KINDS_MAX`] names (only this server's replicas write to the channel; more
/// kinds than that would be a fault, and such frames are dropped).
fn intern(kind: &str) -> Option<&'static str> {
    static KINDS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut kinds = KINDS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = kinds.iter().find(|k| **k == kind) {
        return Some(known);
    }
    if kinds.len() >= KINDS_MAX {
        return None;
    }
    let name: &'static str = Box::leak(kind.to_string().into_boxed_str());
    kinds.push(name);
    Some(name)
}

/// Starts relaying `hub`'s ephemeral frames to the other replicas as replica `origin`, and
/// delivering theirs, which the tailer hands to `heard`, to `hub`.
pub fn start(
    pg: Arc<PgStore>,
    hub: &Hub,
    origin: String,
    heard: mpsc::Receiver<String>,
    heed: Heed,
) {
    let (tx, outgoing) = mpsc::channel(QUEUE);
    hub.relay_to(tx);
    tokio::spawn(send(pg.clone(), origin.clone(), outgoing, hub.clone()));
    tokio::spawn(sweep(pg.clone()));
    tokio::spawn(receive(pg, origin, heard, hub.clone(), heed));
}

/// Every minute, the rows of `ephemeral_frames` older than a minute go (every replica does
/// it: any of them may be the last one running).
async fn sweep(pg: Arc<PgStore>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let swept = match pg.pool().get().await {
            Ok(client) => frames::sweep(&client).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = swept {
            tracing::warn!(error = %e, "deleting old ephemeral frames failed");
        }
    }
}

/// The one sender: each frame in turn, on a pooled connection it keeps while frames wait
/// (taken again after a failure). A frame that fails is dropped, as a notification lost
/// would be.
async fn send(
    pg: Arc<PgStore>,
    origin: String,
    mut outgoing: mpsc::Receiver<Arc<Frame>>,
    hub: Hub,
) {
    let mut client: Option<deadpool_postgres::Object> = None;
    // Said once when sending starts failing (the database away: every frame would fail)
    // and once when it works again; `/metrics` counts each frame lost.
    let mut failing = false;
    while let Some(frame) = outgoing.recv().await {
        let payload = encode(&origin, &frame);
        let sent = match client.take() {
            Some(c) => Ok(c),
            None => pg.pool().get().await.map_err(|e| e.to_string()),
        };
        let sent = match sent {
            Ok(c) => {
                let done = if payload.len() <= MAX_PAYLOAD {
                    frames::publish(&c, &payload)
                        .await
                        .map_err(|e| e.to_string())
                } else {
                    frames::publish_stored(&c, &origin, &payload)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                };
                // Kept while frames come one after another, given back to the pool when
                // none waits (a small `database_pool` is not short of one for good), and
                // dropped after a failure.
                if done.is_ok() && !outgoing.is_empty() {
                    client = Some(c);
                }
                done
            }
            Err(e) => Err(e),
        };
        match sent {
            Err(e) => {
                hub.relay_failed();
                if !failing {
                    failing = true;
                    tracing::warn!(error = %e, kind = ?frame.kind, bytes = payload.len(), "ephemeral frames are not reaching the other servers (counted in livechat_ephemeral_frames_dropped_total)");
                }
            }
            Ok(()) if failing => {
                failing = false;
                tracing::info!("ephemeral frames reach the other servers again");
            }
            Ok(()) => {}
        }
    }
}

/// The receiver: every payload the tailer heard, in order; what this replica sent itself
/// is skipped (the hub delivered it when it was published). The engine heeds each frame
/// before the sockets get it.
async fn receive(
    pg: Arc<PgStore>,
    origin: String,
    mut heard: mpsc::Receiver<String>,
    hub: Hub,
    heed: Heed,
) {
    let mut listened = false;
    while let Some(payload) = heard.recv().await {
        if payload == tailer::LISTENING || payload == tailer::FRAMES_LOST {
            // Listening again after its connection failed, or frames dropped: notices sent
            // meanwhile are lost, an erase's among them.
            let lost = payload == tailer::FRAMES_LOST || std::mem::replace(&mut listened, true);
            if lost && let Some(heed) = heed.get() {
                heed(&Frame {
                    kind: Some(NOTICES_LOST),
                    ..Frame::default()
                });
            }
            continue;
        }
        let frame = match decode(&payload) {
            Some(Decoded::Frame { origin: from, .. } | Decoded::Stored { origin: from, .. })
                if from == origin =>
            {
                continue;
            }
            Some(Decoded::Frame { frame, .. }) => frame,
            Some(Decoded::Stored { id, .. }) => match stored(&pg, id).await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    tracing::warn!(id, "a stored ephemeral frame was gone or unreadable");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, id, "reading a stored ephemeral frame failed");
                    continue;
                }
            },
            None => {
                tracing::warn!(
                    bytes = payload.len(),
                    "an ephemeral frame from another server was not understood"
                );
                continue;
            }
        };
        if let Some(heed) = heed.get() {
            heed(&frame);
        }
        hub.deliver(frame);
    }
}

/// The frame of row `id` of `ephemeral_frames`.
async fn stored(pg: &PgStore, id: i64) -> Result<Option<Frame>, PgError> {
    let client = pg.pool().get().await?;
    let payload = frames::read_stored(&client, id).await?;
    Ok(payload.and_then(|p| match decode(&p) {
        Some(Decoded::Frame { frame, .. }) => Some(frame),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(agent: Option<&str>, visitor: Option<&str>) -> Frame {
        Frame {
            seq: None,
            conversation_id: Some("c_1".into()),
            bot: Some("support".into()),
            visitor_id: Some("v_1".into()),
            agent_json: agent.map(|t| t.to_string().into()),
            visitor_json: visitor.map(|t| t.to_string().into()),
            kind: Some("typing"),
            to_agent: Some("ana@x".into()),
        }
    }

    fn back(payload: &str) -> (String, Frame) {
        match decode(payload) {
            Some(Decoded::Frame { origin, frame }) => (origin, frame),
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn a_frame_comes_back_as_it_was_with_its_texts_unchanged() {
        let texts = [
            (Some(r#"{"a":"é\n"}"#), None),
            (None, Some(r#"{"v":1}"#)),
            (Some(r#"{"x":1}"#), Some(r#"{"y":22}"#)),
            (Some(r#"{"same":true}"#), Some(r#"{"same":true}"#)),
            (None, None),
        ];
        for (agent, visitor) in texts {
            let sent = frame(agent, visitor);
            let payload = encode("r_a", &sent);
            let (origin, got) = back(&payload);
            assert_eq!(origin, "r_a");
            assert_eq!(got.agent_json.as_deref(), agent);
            assert_eq!(got.visitor_json.as_deref(), visitor);
            assert_eq!(got.seq, None);
            assert_eq!(got.conversation_id, sent.conversation_id);
            assert_eq!(got.bot, sent.bot);
            assert_eq!(got.visitor_id, sent.visitor_id);
            assert_eq!(got.kind, Some("typing"));
            assert_eq!(got.to_agent, sent.to_agent);
        }
        // A text both sides get is in the payload once.
        let both = r#"{"type":"typing","data":"xxxxxxxxxxxxxxxx"}"#;
        let payload = encode("r_a", &frame(Some(both), Some(both)));
        assert_eq!(payload.matches(both).count(), 1, "{payload}");
        // Frames about no bot or conversation (a visitor who left, a config error).
        let bare = Frame {
            agent_json: Some("{}".to_string().into()),
            kind: Some("config.error"),
            ..Frame::default()
        };
        let (_, got) = back(&encode("r_b", &bare));
        assert_eq!(
            (got.bot, got.conversation_id, got.to_agent),
            (None, None, None)
        );
    }

    #[test]
    fn a_stored_frames_notification_and_damaged_payloads() {
        // As `frames::publish_stored`'s `json_build_object` writes it.
        match decode(r#"{"o" : "r_b", "r" : 42}"#) {
            Some(Decoded::Stored { origin, id }) => assert_eq!((origin.as_str(), id), ("r_b", 42)),
            other => panic!("{other:?}"),
        }
        let good = encode("r_a", &frame(Some("{\"a\":1}"), Some("{\"b\":2}")));
        assert!(decode(&good).is_some());
        assert!(decode(&good[..good.len() - 1]).is_none(), "cut short");
        assert!(decode(&format!("{good}x")).is_none(), "too long");
        assert!(decode("not json\n{}").is_none());
        // A length that falls inside a character.
        let odd = encode("r_a", &frame(Some("\"é\""), None)).replace("\"a\":4", "\"a\":2");
        assert!(decode(&odd).is_none(), "{odd}");
    }

    #[test]
    fn kinds_are_made_static_once() {
        let first = intern("typing").unwrap();
        let again = intern(&String::from("typing")).unwrap();
        assert!(std::ptr::eq(first, again));
    }
}
