//! `chat` (and `reload`, which is `chat` with bundle saves during the steady phase).
//!
//! Setup: agents log in, open their consoles and turn "Accept chats" on. Each visitor starts a
//! session, opens the widget's socket, picks "Talk to a person" and requests live chat;
//! `accepters` agents of the bot's team then accept it at the same moment, and exactly one
//! must win. Steady phase: on each side of each chat a message every `interval`, spread
//! evenly over the interval. Each text carries its direction, chat, number and send time
//! (`lcb:v:12:3:123456 …`), so the other side's socket can time it and the ledger can tell
//! lost, duplicated and out-of-order deliveries. Halfway, some sockets drop and come back
//! with `after=N`; everything sent meanwhile must arrive once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::Progress;
use super::client::{Api, Envelope, SendPath, Ws};
use super::machine::{self, CpuMeter, WRITER_THREAD};
use super::report::Section;
use super::server::{BundleSpec, Target, save_atomically};
use super::stats::Samples;
use super::uploads::{self, UploadOpts};

#[derive(Debug, Clone)]
pub struct ChatOpts {
    pub visitors: usize,
    pub agents: usize,
    pub team_size: usize,
    pub accepters: usize,
    pub interval: Duration,
    pub duration: Duration,
    pub reconnects: usize,
    pub reconnect_gap: Duration,
    pub concurrency: usize,
    pub drain: Duration,
    /// Visitors uploading files during the steady phase (`uploads.rs`).
    pub uploads: Option<UploadOpts>,
    /// How the messages go: frames on the open sockets, or HTTP `POST`.
    pub send: SendPath,
    /// A replica behind the URL to `kill -9` halfway; sockets it closes come back through
    /// the URL, and failed writes are sent again.
    pub kill_replica: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct ReloadOpts {
    pub reloads: usize,
    pub every: Duration,
}

/// What the message texts say after their marker: a sentence of a plausible length.
pub(super) const FILLER: &str =
    "Hello, I have a question about my last invoice and the delivery date.";

pub(super) const VISITOR_TO_AGENT: u8 = 0;
pub(super) const AGENT_TO_VISITOR: u8 = 1;
const NO_AGENT: usize = usize::MAX;

/// One message: (chat, direction, number).
pub(super) type Key = (u32, u8, u32);

#[derive(Default)]
pub(super) struct Ledger {
    /// Every message sent, and whether the server acknowledged it.
    pub(super) sent: HashMap<Key, bool>,
    /// How many times each message arrived on the other side's socket.
    pub(super) received: HashMap<Key, u32>,
    pub(super) delivery: [Samples; 2],
    /// Each timed delivery: (sent at, microseconds it took), to tell those sent during the
    /// uploads from the rest.
    pub(super) timed: Vec<(u64, u64)>,
    pub(super) ack: [Samples; 2],
    pub(super) errors: usize,
    pub(super) first_errors: Vec<String>,
    /// Ticks a sender skipped because its previous message was still unanswered.
    pub(super) late_ticks: usize,
    /// Socket sends that went by HTTP instead, with the same `client_id`: the socket was
    /// away (a reconnect) or closed before the ack, as the widget and console fall back.
    pub(super) fell_back: usize,
    /// HTTP sends tried again with the same `client_id` after a 502/503/504 or a failed
    /// connection (a replica killed under them).
    pub(super) retried: usize,
    /// Deliveries (timed as `delivery`) whose sender's socket and receiver's socket were
    /// on different replicas, and on the same one; empty unless a proxy names them.
    pub(super) cross_replica: Samples,
    pub(super) same_replica: Samples,
}

impl Ledger {
    pub(super) fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(what);
        }
    }

    pub(super) fn undelivered(&self) -> usize {
        self.sent
            .iter()
            .filter(|(k, acked)| **acked && !self.received.contains_key(*k))
            .count()
    }
}

struct Shared {
    t0: Instant,
    ledger: Mutex<Ledger>,
    /// The agent who won each chat's accept race.
    assignee: Vec<AtomicUsize>,
    /// Sockets that ended before the bench closed them.
    dropped: AtomicUsize,
    dropped_why: Mutex<Vec<String>>,
    out_of_order: AtomicUsize,
    reconnected: AtomicUsize,
    reconnect_failed: AtomicUsize,
    /// Messages delivered by the replay after a reconnect.
    replayed: AtomicUsize,
    /// `config.reloaded` on agent 0's console: (revision, when, µs since t0).
    reloads_seen: Mutex<Vec<(i64, u64)>>,
    /// Whether sockets the server closes come back (`--kill-replica`), and writes retry.
    resume: bool,
    /// Sockets that came back after the server closed them, and those that could not.
    resumed: AtomicUsize,
    resume_failed: AtomicUsize,
    /// The replicas named by the proxy (`X-Livechat-Upstream`), and the one each visitor's
    /// and agent's socket is on now (an index into `replicas`, or `NO_REPLICA`).
    replicas: Mutex<Vec<String>>,
    visitor_on: Vec<AtomicUsize>,
    agent_on: Vec<AtomicUsize>,
    /// Sockets the server closed, by the replica they were on (`--kill-replica`).
    closed_on: Mutex<HashMap<String, usize>>,
}

const NO_REPLICA: usize = usize::MAX;

/// How long a socket closed under the bench, or a write failed by a dead replica, keeps
/// trying through the proxy.
const RESUME_WITHIN: Duration = Duration::from_secs(30);

/// Waits until every acknowledged message arrived (`undelivered` says none is left), at
/// most `limit`.
pub(super) async fn until_delivered(undelivered: impl Fn() -> usize, limit: Duration) {
    let started = Instant::now();
    while undelivered() > 0 && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes the replica `who`'s socket is on now.
    fn placed(&self, who: Who, replica: Option<&str>) {
        let index = replica.map_or(NO_REPLICA, |name| {
            let mut list = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
            list.iter().position(|r| r == name).unwrap_or_else(|| {
                list.push(name.to_string());
                list.len() - 1
            })
        });
        let slot = match who {
            Who::Visitor(i) => self.visitor_on.get(i),
            Who::Agent(a) => self.agent_on.get(a),
        };
        if let Some(slot) = slot {
            slot.store(index, Ordering::Relaxed);
        }
    }

    /// The replica `who`'s socket is on (None: unknown).
    fn on(&self, who: Who) -> Option<usize> {
        let slot = match who {
            Who::Visitor(i) => self.visitor_on.get(i),
            Who::Agent(a) => self.agent_on.get(a),
        };
        slot.map(|s| s.load(Ordering::Relaxed))
            .filter(|r| *r != NO_REPLICA)
    }

    /// Whether the sockets of `a` and `b` are on different replicas (None: unknown).
    fn across(&self, a: Who, b: Who) -> Option<bool> {
        Some(self.on(a)? != self.on(b)?)
    }

    fn replica_name(&self, index: Option<usize>) -> String {
        let list = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        index
            .and_then(|i| list.get(i).cloned())
            .unwrap_or_else(|| "unknown".to_string())
    }

    /// How many sockets each replica holds now.
    fn sockets_per_replica(&self) -> Vec<(String, usize)> {
        let mut counts: HashMap<Option<usize>, usize> = HashMap::new();
        for slot in self.visitor_on.iter().chain(&self.agent_on) {
            let r = slot.load(Ordering::Relaxed);
            *counts.entry((r != NO_REPLICA).then_some(r)).or_default() += 1;
        }
        let mut named: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(r, n)| (self.replica_name(r), n))
            .collect();
        named.sort();
        named
    }

    fn dropped(&self, why: String) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        let mut list = self.dropped_why.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() < 5 {
            list.push(why);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Who {
    /// The widget of chat `i`.
    Visitor(usize),
    /// The console of agent `i`.
    Agent(usize),
}

/// Parses `lcb:D:CHAT:N:MICROS …`.
pub(super) fn parse_marker(text: &str) -> Option<(u8, u32, u32, u64)> {
    let rest = text.strip_prefix("lcb:")?;
    let head = rest.split(' ').next()?;
    let mut parts = head.split(':');
    let dir = match parts.next()? {
        "v" => VISITOR_TO_AGENT,
        "a" => AGENT_TO_VISITOR,
        _ => return None,
    };
    let chat = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    let t = parts.next()?.parse().ok()?;
    Some((dir, chat, n, t))
}

impl Shared {
    /// One frame on a socket: answers an `ack` (its `client_id` and outcome); else checks the
    /// order of `seq`, and counts and times bench messages meant for this side.
    fn on_frame(
        &self,
        text: &str,
        who: Who,
        last_seq: &mut i64,
        away: Option<(u64, u64)>,
    ) -> Option<(String, Result<(), String>)> {
        let Ok(env) = serde_json::from_str::<Envelope>(text) else {
            return None;
        };
        // An ack carries its message's `seq`, which its event may have brought already: it
        // is no event of the stream, and neither orders it nor moves `after=`.
        if let Some(ack) = env.ack() {
            return Some(ack);
        }
        let now = self.now_us();
        if let Some(seq) = env.seq {
            if seq <= *last_seq {
                self.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            *last_seq = (*last_seq).max(seq);
        }
        match env.kind.as_str() {
            "message.created" => {}
            "config.reloaded" => {
                if let (Who::Agent(0), Some(rev)) =
                    (who, env.data.as_ref().and_then(|d| d.revision))
                {
                    self.reloads_seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((rev, now));
                }
                return None;
            }
            _ => return None,
        }
        let data = env.data?;
        let (dir, chat, n, sent) = data.text.as_deref().and_then(parse_marker)?;
        let mine = match who {
            Who::Visitor(i) => dir == AGENT_TO_VISITOR && chat as usize == i,
            Who::Agent(a) => {
                dir == VISITOR_TO_AGENT
                    && self
                        .assignee
                        .get(chat as usize)
                        .is_some_and(|x| x.load(Ordering::Relaxed) == a)
            }
        };
        let author_ok = match dir {
            VISITOR_TO_AGENT => data.author.as_deref() == Some("visitor"),
            _ => data.author.as_deref() == Some("agent"),
        };
        if !mine || !author_ok {
            return None;
        }
        // Sent before this socket came back (and not seen before it went): it came by
        // replay, and its wait is mostly the gap's.
        let replayed = away.is_some_and(|(_, back)| sent <= back);
        if replayed {
            self.replayed.fetch_add(1, Ordering::Relaxed);
        }
        let sender = match who {
            Who::Visitor(_) => self
                .assignee
                .get(chat as usize)
                .map(|a| a.load(Ordering::Relaxed))
                .filter(|a| *a != NO_AGENT)
                .map(Who::Agent),
            Who::Agent(_) => Some(Who::Visitor(chat as usize)),
        };
        let across = sender.and_then(|from| self.across(from, who));
        let mut ledger = self.ledger();
        let count = ledger.received.entry((chat, dir, n)).or_insert(0);
        *count += 1;
        if *count == 1 && !replayed {
            ledger.delivery[dir as usize].push_us(now.saturating_sub(sent));
            match across {
                Some(true) => ledger.cross_replica.push_us(now.saturating_sub(sent)),
                Some(false) => ledger.same_replica.push_us(now.saturating_sub(sent)),
                None => {}
            }
            ledger.timed.push((sent, now.saturating_sub(sent)));
        }
        None
    }
}

/// How long a socket write may wait for its ack before the sender falls back to HTTP, as
/// the widget and the console do.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A write handed to a socket's task: the frame, and where its ack goes.
pub(super) struct Outgoing {
    client_id: String,
    frame: String,
    reply: oneshot::Sender<Acked>,
}

/// What became of a socket write.
enum Acked {
    Ok,
    Refused(String),
    /// The socket was away or closed before the ack.
    Lost,
}

/// Writes to one socket, through the task that reads it.
type Writes = mpsc::UnboundedSender<Outgoing>;

/// Reads one socket until told to stop, and writes the frames handed to it on `outgoing`,
/// answering each at its ack. With a drop signal it closes the socket abruptly when the
/// signal comes, waits the given gap and reconnects with `after=` the last `seq` it saw;
/// writes meanwhile, and those not yet acknowledged when it dropped, are answered `Lost`.
/// With `resume` (a replica killed under the bench), a socket the server closes comes back
/// the same way, through the proxy, trying for up to `RESUME_WITHIN`.
#[allow(clippy::too_many_arguments)]
async fn read_socket(
    shared: Arc<Shared>,
    api: Api,
    who: Who,
    token: String,
    mut ws: Ws,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    mut drop_signal: Option<oneshot::Receiver<Duration>>,
    mut stop: watch::Receiver<bool>,
) {
    enum Next {
        Stop,
        Drop(Duration),
        Write(Outgoing),
        Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    }
    let mut last_seq = 0i64;
    let mut away: Option<(u64, u64)> = None;
    let mut pending: HashMap<String, oneshot::Sender<Acked>> = HashMap::new();
    loop {
        if *stop.borrow() {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            return;
        }
        let next = tokio::select! {
            _ = stop.changed() => Next::Stop,
            gap = async {
                match drop_signal.as_mut() {
                    Some(rx) => rx.await.ok(),
                    None => std::future::pending().await,
                }
            } => match gap {
                Some(gap) => Next::Drop(gap),
                None => { drop_signal = None; continue; }
            },
            Some(out) = outgoing.recv() => Next::Write(out),
            frame = ws.next() => Next::Frame(frame),
        };
        let closed = match next {
            // The flag only ever turns true (or its sender is gone, which means the same).
            Next::Stop => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return;
            }
            Next::Write(out) => {
                match ws.send(Message::Text(out.frame.into())).await {
                    Ok(()) => {
                        pending.insert(out.client_id, out.reply);
                    }
                    Err(_) => {
                        let _ = out.reply.send(Acked::Lost);
                    }
                }
                continue;
            }
            Next::Drop(gap) => {
                drop_signal = None;
                drop(ws);
                for (_, reply) in pending.drain() {
                    let _ = reply.send(Acked::Lost);
                }
                let from = shared.now_us();
                refuse_writes(&mut outgoing, gap).await;
                match reopen(&shared, &api, who, &token, last_seq).await {
                    Ok(w) => {
                        ws = w;
                        away = Some((from, shared.now_us()));
                        shared.reconnected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        shared.reconnect_failed.fetch_add(1, Ordering::Relaxed);
                        shared.dropped(format!("{who:?}: reconnect failed: {e}"));
                        return;
                    }
                }
                continue;
            }
            Next::Frame(Some(Ok(Message::Text(t)))) => {
                if let Some((client_id, outcome)) = shared.on_frame(&t, who, &mut last_seq, away)
                    && let Some(reply) = pending.remove(&client_id)
                {
                    let _ = reply.send(match outcome {
                        Ok(()) => Acked::Ok,
                        Err(e) => Acked::Refused(e),
                    });
                }
                continue;
            }
            Next::Frame(Some(Ok(Message::Close(_))) | None) => "closed by the server".to_string(),
            Next::Frame(Some(Err(e))) => e.to_string(),
            Next::Frame(Some(Ok(_))) => continue,
        };
        if *stop.borrow() {
            return;
        }
        if !shared.resume {
            shared.dropped(format!("{who:?}: {closed}"));
            return;
        }
        // The replica under this socket is gone: come back through the proxy, to another.
        let was_on = shared.replica_name(shared.on(who));
        *shared
            .closed_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(was_on)
            .or_default() += 1;
        for (_, reply) in pending.drain() {
            let _ = reply.send(Acked::Lost);
        }
        let from = shared.now_us();
        let deadline = Instant::now() + RESUME_WITHIN;
        loop {
            refuse_writes(&mut outgoing, Duration::from_millis(250)).await;
            match reopen(&shared, &api, who, &token, last_seq).await {
                Ok(w) => {
                    ws = w;
                    away = Some((from, shared.now_us()));
                    shared.resumed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(_) if Instant::now() < deadline && !*stop.borrow() => {}
                Err(e) => {
                    shared.resume_failed.fetch_add(1, Ordering::Relaxed);
                    shared.dropped(format!("{who:?}: {closed}; not back: {e}"));
                    return;
                }
            }
        }
    }
}

/// What `--kill-replica` showed: where the sockets were, which the kill closed and whether
/// each came back, cross-replica delivery, and the checks.
fn kill_figures(
    s: &mut Section,
    shared: &Shared,
    ledger: &Ledger,
    victim: u32,
    killed: Option<&(bool, Vec<(String, usize)>)>,
) {
    let (done, on) = killed.map_or((false, &[][..]), |(k, on)| (*k, &on[..]));
    let list = |pairs: &[(String, usize)]| {
        pairs
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    s.text(
        "sockets_per_replica",
        "sockets per replica when one was killed",
        list(on),
    );
    let mut closed: Vec<(String, usize)> = shared
        .closed_on
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(r, n)| (r.clone(), *n))
        .collect();
    closed.sort();
    s.text(
        "sockets_closed_by_kill",
        "sockets the server closed, by the replica they were on",
        list(&closed),
    );
    let resumed = shared.resumed.load(Ordering::Relaxed);
    let failed = shared.resume_failed.load(Ordering::Relaxed);
    s.int(
        "resumed",
        "closed sockets back through the proxy with after=N",
        resumed as u64,
        "",
    );
    s.int(
        "http_retries",
        "sends tried again with the same client_id (502 or no connection)",
        ledger.retried as u64,
        "",
    );
    s.latency(
        "delivery_cross_replica",
        "delivery, sender and receiver on different replicas",
        ledger.cross_replica.summary(),
    );
    s.latency(
        "delivery_same_replica",
        "delivery, sender and receiver on one replica",
        ledger.same_replica.summary(),
    );
    s.check(
        "replica_killed",
        "kill -9 of the replica halfway",
        done,
        format!("kill -9 {victim}"),
    );
    // Every socket the kill closed was on one replica, all of that replica's sockets closed,
    // and each came back.
    let whole_replica = match &closed[..] {
        [(r, n)] => on.iter().any(|(x, m)| x == r && m == n),
        _ => false,
    };
    s.check(
        "every_socket_resumed",
        "every socket of the killed replica resumed with after=N",
        whole_replica && failed == 0 && resumed == closed.iter().map(|(_, n)| n).sum::<usize>(),
        format!(
            "closed: {}; held then: {}; {resumed} resumed, {failed} not",
            list(&closed),
            list(on)
        ),
    );
}

/// Answers every write handed to a socket that is away `Lost`, for `wait`.
async fn refuse_writes(outgoing: &mut mpsc::UnboundedReceiver<Outgoing>, wait: Duration) {
    let back = tokio::time::sleep(wait);
    tokio::pin!(back);
    loop {
        tokio::select! {
            _ = &mut back => return,
            Some(out) = outgoing.recv() => {
                let _ = out.reply.send(Acked::Lost);
            }
        }
    }
}

/// Opens `who`'s socket again with `after=last_seq`, noting the replica that took it.
async fn reopen(
    shared: &Shared,
    api: &Api,
    who: Who,
    token: &str,
    last_seq: i64,
) -> anyhow::Result<Ws> {
    let (ws, replica) = match who {
        Who::Visitor(_) => api.visitor_socket_via(token, last_seq).await?,
        Who::Agent(_) => api.agent_socket_via(token, last_seq).await?,
    };
    shared.placed(who, replica.as_deref());
    Ok(ws)
}

/// One visitor after setup: its number, the handoff, its socket's reader and the signal
/// that will drop that socket halfway (for the visitors chosen to reconnect).
type SetUp = (
    usize,
    anyhow::Result<Handoff>,
    Option<JoinHandle<()>>,
    Option<oneshot::Sender<Duration>>,
);

struct Chat {
    conversation_id: String,
    token: String,
    /// The visitor's widget socket.
    writes: Writes,
}

/// The result of setting one visitor up, through the accept race.
struct Handoff {
    chat: Option<Chat>,
    winners: usize,
    losers_taken: usize,
    other_answers: Vec<String>,
    accept_calls: Samples,
    request_to_accepted: Option<Duration>,
}

/// A chat load set up: agents' consoles and visitors' widgets open, every chat accepted,
/// the sockets read by their tasks. `run` drives it at a steady rate, `ramp` in steps.
pub(super) struct Live {
    shared: Arc<Shared>,
    api: Api,
    tokens: Vec<String>,
    /// Each agent's console socket.
    agent_writes: Vec<Writes>,
    chats: Vec<Option<Chat>>,
    readers: Vec<JoinHandle<()>>,
    /// The signals that drop sockets halfway (for the reconnects).
    drops: Vec<oneshot::Sender<Duration>>,
    stop_tx: watch::Sender<bool>,
    setup: SetupFigures,
}

/// What the setup measured.
struct SetupFigures {
    load_start: String,
    rss_before: Option<u64>,
    rss_agents: Option<u64>,
    time: Duration,
    errors: Vec<String>,
    races: usize,
    one_winner: usize,
    taken_answers: usize,
    other_answers: Vec<String>,
    accept_calls: Samples,
    handoff_times: Samples,
}

/// Agents log in, open their consoles and accept chats; visitors start, open their widget
/// sockets, request a person, and `accepters` agents race to accept each.
pub(super) async fn set_up(
    target: &Target,
    o: &ChatOpts,
    progress: &Progress,
) -> anyhow::Result<Live> {
    let spec = target.spec;
    let api = target.api.clone();
    let pid = target.pid;
    let load_start = machine::load_average();
    let rss_before = pid.and_then(machine::rss_kib);
    let setup_started = Instant::now();

    // Agents: log in, open the console, accept chats.
    progress.say(&format!("logging in {} agents", o.agents));
    let tokens: Vec<String> = stream::iter(0..o.agents)
        .map(|a| {
            let api = api.clone();
            let pw = target.password.clone();
            async move { api.login(&BundleSpec::email(a), &pw).await }
        })
        // The server brakes more than ten logins in flight from one address.
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        ledger: Mutex::new(Ledger::default()),
        assignee: (0..o.visitors)
            .map(|_| AtomicUsize::new(NO_AGENT))
            .collect(),
        dropped: AtomicUsize::new(0),
        dropped_why: Mutex::new(Vec::new()),
        out_of_order: AtomicUsize::new(0),
        reconnected: AtomicUsize::new(0),
        reconnect_failed: AtomicUsize::new(0),
        replayed: AtomicUsize::new(0),
        reloads_seen: Mutex::new(Vec::new()),
        resume: o.kill_replica.is_some(),
        resumed: AtomicUsize::new(0),
        resume_failed: AtomicUsize::new(0),
        replicas: Mutex::new(Vec::new()),
        visitor_on: (0..o.visitors)
            .map(|_| AtomicUsize::new(NO_REPLICA))
            .collect(),
        agent_on: (0..o.agents)
            .map(|_| AtomicUsize::new(NO_REPLICA))
            .collect(),
        closed_on: Mutex::new(HashMap::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let mut drops: Vec<oneshot::Sender<Duration>> = Vec::new();
    let mut agent_writes = Vec::new();
    for (a, token) in tokens.iter().enumerate() {
        let (ws, replica) = api.agent_socket_via(token, 0).await?;
        shared.placed(Who::Agent(a), replica.as_deref());
        let signal = if a == 0 && o.reconnects > 0 {
            let (tx, rx) = oneshot::channel();
            drops.push(tx);
            Some(rx)
        } else {
            None
        };
        let (writes, outgoing) = mpsc::unbounded_channel();
        agent_writes.push(writes);
        readers.push(tokio::spawn(read_socket(
            shared.clone(),
            api.clone(),
            Who::Agent(a),
            token.clone(),
            ws,
            outgoing,
            signal,
            stop_rx.clone(),
        )));
    }
    for token in &tokens {
        api.set_accepting(token, true).await?;
    }
    wait_for_agents(&api, &tokens, o.agents).await?;
    // Password checks leave their memory with the allocator: measure sockets from here.
    let rss_agents = pid.and_then(machine::rss_kib);

    // Visitors: session, socket, the bot step, the request, the accept race.
    progress.say(&format!(
        "{} visitors: session, socket, choice, request, accept race",
        o.visitors
    ));
    let reconnect_every = o
        .visitors
        .checked_div(o.reconnects)
        .map_or(usize::MAX, |n| n.max(1));
    let handoffs: Vec<SetUp> = stream::iter(0..o.visitors)
        .map(|i| {
            let api = api.clone();
            let shared = shared.clone();
            let tokens = &tokens;
            let stop = stop_rx.clone();
            let reconnects = i % reconnect_every == 0 && i / reconnect_every < o.reconnects;
            async move {
                let (signal_tx, signal_rx) = if reconnects {
                    let (tx, rx) = oneshot::channel();
                    (Some(tx), Some(rx))
                } else {
                    (None, None)
                };
                let mut reader = None;
                let result = handoff(
                    &api,
                    &shared,
                    tokens,
                    spec,
                    o.accepters,
                    i,
                    signal_rx,
                    stop,
                    &mut reader,
                )
                .await;
                (i, result, reader, signal_tx)
            }
        })
        .buffer_unordered(o.concurrency.max(1))
        .collect()
        .await;
    let mut chats: Vec<Option<Chat>> = (0..o.visitors).map(|_| None).collect();
    let mut setup_errors = Vec::new();
    let (mut races, mut one_winner, mut taken_answers) = (0usize, 0usize, 0usize);
    let mut other_answers = Vec::new();
    let mut accept_calls = Samples::default();
    let mut handoff_times = Samples::default();
    for (i, result, reader, signal) in handoffs {
        readers.extend(reader);
        match result {
            Ok(h) => {
                races += 1;
                if h.winners == 1 {
                    one_winner += 1;
                }
                taken_answers += h.losers_taken;
                other_answers.extend(h.other_answers);
                accept_calls.extend(&h.accept_calls);
                if let Some(t) = h.request_to_accepted {
                    handoff_times.push(t);
                }
                if h.chat.is_some() {
                    drops.extend(signal);
                }
                chats[i] = h.chat;
            }
            Err(e) => setup_errors.push(format!("visitor {i}: {e:#}")),
        }
    }
    Ok(Live {
        shared,
        api,
        tokens,
        agent_writes,
        chats,
        readers,
        drops,
        stop_tx,
        setup: SetupFigures {
            load_start,
            rss_before,
            rss_agents,
            time: setup_started.elapsed(),
            errors: setup_errors,
            races,
            one_winner,
            taken_answers,
            other_answers,
            accept_calls,
            handoff_times,
        },
    })
}

impl Live {
    /// Chats set up and accepted.
    pub(super) fn chats(&self) -> usize {
        self.chats.iter().flatten().count()
    }

    /// Senders: each side of each chat.
    pub(super) fn senders(&self) -> usize {
        2 * self.chats.len()
    }

    pub(super) fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.shared.ledger()
    }

    /// On each side of each chat, a message every `interval` from `first` (spread evenly
    /// over the interval) until `end`, numbered from `n0`.
    pub(super) fn spawn_senders(
        &self,
        send: SendPath,
        first: tokio::time::Instant,
        interval: Duration,
        end: tokio::time::Instant,
        n0: u32,
    ) -> Vec<JoinHandle<()>> {
        let senders_total = self.senders().max(1) as u32;
        let mut senders = Vec::new();
        for (i, chat) in self.chats.iter().enumerate() {
            let Some(chat) = chat else { continue };
            let agent = self.shared.assignee[i].load(Ordering::Relaxed);
            for dir in [VISITOR_TO_AGENT, AGENT_TO_VISITOR] {
                let (token, writes) = if dir == VISITOR_TO_AGENT {
                    (chat.token.clone(), chat.writes.clone())
                } else {
                    (self.tokens[agent].clone(), self.agent_writes[agent].clone())
                };
                let phase = interval * (2 * i as u32 + dir as u32) / senders_total;
                let sender = Sender {
                    shared: self.shared.clone(),
                    api: self.api.clone(),
                    dir,
                    chat: i as u32,
                    conversation_id: chat.conversation_id.clone(),
                    token,
                    socket: (send == SendPath::Ws).then_some(writes),
                };
                senders.push(tokio::spawn(sender.run(first + phase, interval, end, n0)));
            }
        }
        senders
    }

    /// Waits until every acknowledged message arrived, at most `limit`.
    pub(super) async fn drain(&self, limit: Duration) {
        until_delivered(|| self.shared.ledger().undelivered(), limit).await;
    }

    /// Closes every socket and waits for their tasks.
    pub(super) async fn close(&mut self) {
        let _ = self.stop_tx.send(true);
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
    }

    /// Sockets the server closed, and why (the first few).
    pub(super) fn dropped(&self) -> (usize, String) {
        let why = self
            .shared
            .dropped_why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("; ");
        (self.shared.dropped.load(Ordering::Relaxed), why)
    }

    /// The setup's errors (failed visitors, unexpected accept answers), the first few.
    pub(super) fn setup_errors(&self) -> Vec<String> {
        let mut errors = self.setup.errors.clone();
        errors.extend(self.setup.other_answers.iter().take(3).cloned());
        errors
    }
}

pub async fn run(
    target: &mut Target,
    o: &ChatOpts,
    reload: Option<&ReloadOpts>,
    progress: &Progress,
) -> anyhow::Result<Vec<Section>> {
    if reload.is_some() && target.bots_dir.is_none() {
        bail!("reload needs the server's bundle directory: pass --bots-dir with --url");
    }
    let spec = target.spec;
    let pid = target.pid;
    let mut live = set_up(target, o, progress).await?;
    let api = live.api.clone();
    let shared = live.shared.clone();
    let SetupFigures {
        load_start,
        rss_before,
        rss_agents,
        time: setup_time,
        errors: setup_errors,
        races,
        one_winner,
        taken_answers,
        other_answers,
        accept_calls,
        handoff_times,
    } = std::mem::replace(
        &mut live.setup,
        SetupFigures {
            load_start: String::new(),
            rss_before: None,
            rss_agents: None,
            time: Duration::ZERO,
            errors: Vec::new(),
            races: 0,
            one_winner: 0,
            taken_answers: 0,
            other_answers: Vec::new(),
            accept_calls: Samples::default(),
            handoff_times: Samples::default(),
        },
    );
    let mut drops = std::mem::take(&mut live.drops);
    let sockets = o.agents + o.visitors - setup_errors.len();
    // Let the last handshakes and replays settle before measuring memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = pid.and_then(machine::rss_kib);

    // Steady phase.
    let duration = match reload {
        Some(r) => o
            .duration
            .max(r.every * (r.reloads as u32 + 1) + Duration::from_secs(1)),
        None => o.duration,
    };
    progress.say(&format!(
        "steady: {} chats, a message each way every {:?}, for {:?}, {}",
        live.chats(),
        o.interval,
        duration,
        o.send.describe()
    ));
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let end = start + duration;
    let server_cpu = pid.map(CpuMeter::start);
    let writer_cpu = pid.and_then(|p| CpuMeter::thread(p, WRITER_THREAD));
    let bench_cpu = CpuMeter::start(std::process::id());
    let senders = live.spawn_senders(o.send, start, o.interval, end, 0);
    // Uploads from a third into the steady phase; the rest of the run is the baseline.
    let uploader = o.uploads.map(|u| {
        let visitors: Vec<String> = live
            .chats
            .iter()
            .flatten()
            .take(u.uploaders)
            .map(|c| c.token.clone())
            .collect();
        let (api, shared) = (api.clone(), shared.clone());
        progress.say(&format!(
            "{} visitors will upload {} file(s) of {} bytes each",
            visitors.len(),
            u.each,
            u.size
        ));
        tokio::spawn(async move {
            tokio::time::sleep_until(start + duration / 3).await;
            uploads::run(&api, visitors, u, pid, || shared.now_us()).await
        })
    });
    let reloader = reload.map(|r| {
        let api = api.clone();
        let dir = target.bots_dir.clone().unwrap_or_default();
        let r = r.clone();
        tokio::spawn(async move { reload_loop(api, dir, r, start).await })
    });
    let killer = o.kill_replica.map(|victim| {
        let shared = shared.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(start + duration / 2).await;
            let on = shared.sockets_per_replica();
            progress.say(&format!(
                "kill -9 {victim}, sockets per replica: {}",
                on.iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let killed = std::process::Command::new("kill")
                .args(["-9", &victim.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            (killed, on)
        })
    });
    if !drops.is_empty() {
        tokio::time::sleep_until(start + duration / 2).await;
        progress.say(&format!(
            "dropping {} socket(s) for {:?}, then reconnecting with after=N",
            drops.len(),
            o.reconnect_gap
        ));
        for d in drops.drain(..) {
            let _ = d.send(o.reconnect_gap);
        }
    }
    for s in senders {
        let _ = s.await;
    }
    let killed = match killer {
        Some(k) => Some(k.await.map_err(|e| anyhow!("the kill task failed: {e}"))?),
        None => None,
    };
    let uploaded = match uploader {
        Some(u) => Some(
            u.await
                .map_err(|e| anyhow!("the upload task failed: {e}"))?,
        ),
        None => None,
    };
    let reload_results = match reloader {
        Some(r) => Some(
            r.await
                .map_err(|e| anyhow!("the reload task failed: {e}"))?,
        ),
        None => None,
    };
    let steady_time = start.elapsed();
    let server_cores = server_cpu.map(|c| c.cores());
    let writer_cores = writer_cpu.map(|c| c.cores());
    let bench_cores = bench_cpu.cores();
    let rss_end = pid.and_then(machine::rss_kib);
    let rss_peak = pid.and_then(machine::peak_rss_kib);

    // Drain: every acknowledged message gets `drain` to arrive.
    live.drain(o.drain).await;
    live.close().await;
    let server_alive = target.alive();

    // Figures.
    let ledger = shared.ledger();
    let acked = ledger.sent.values().filter(|a| **a).count();
    let lost = ledger.undelivered();
    let duplicated = ledger.received.values().filter(|n| **n > 1).count();
    let unacked_delivered = ledger
        .received
        .keys()
        .filter(|k| ledger.sent.get(*k) != Some(&true))
        .count();
    let dropped = shared.dropped.load(Ordering::Relaxed);
    let out_of_order = shared.out_of_order.load(Ordering::Relaxed);
    let title = format!(
        "{} visitors, {} agents in {} team(s) of up to {}, {} accepter(s) per request, a message each way every {:?} for {:?}, {}",
        o.visitors,
        o.agents,
        spec.teams(),
        spec.team_size,
        o.accepters.min(spec.team_size),
        o.interval,
        duration,
        o.send.describe()
    );
    let mut s = Section::new("chat", title);
    s.text(
        "load_start",
        "machine load (1/5/15 min) at start",
        load_start,
    );
    s.int(
        "sockets",
        "WebSockets open (visitors + agents)",
        sockets as u64,
        "",
    );
    s.num(
        "setup_s",
        "setup time (logins, sessions, handoffs)",
        setup_time.as_secs_f64(),
        "s",
    );
    s.int("accept_races", "accept races", races as u64, "");
    s.int(
        "accept_one_winner",
        "races with exactly one winner",
        one_winner as u64,
        "",
    );
    s.int(
        "accept_409_already_taken",
        "losing accepts answered 409 already_taken",
        taken_answers as u64,
        "",
    );
    s.latency(
        "accept_call",
        "accept call (HTTP round trip)",
        accept_calls.summary(),
    );
    s.latency(
        "request_to_accepted",
        "request → accepted (HTTP)",
        handoff_times.summary(),
    );
    s.latency(
        "delivery_visitor_to_agent",
        "delivery visitor → agent",
        ledger.delivery[0].summary(),
    );
    s.latency(
        "delivery_agent_to_visitor",
        "delivery agent → visitor",
        ledger.delivery[1].summary(),
    );
    s.latency(
        "ack_visitor",
        &format!("visitor send acknowledged ({})", o.send.ack_label()),
        ledger.ack[0].summary(),
    );
    s.latency(
        "ack_agent",
        &format!("agent send acknowledged ({})", o.send.ack_label()),
        ledger.ack[1].summary(),
    );
    if o.send == SendPath::Ws {
        s.int(
            "fell_back_to_http",
            "sends that fell back to HTTP (socket away)",
            ledger.fell_back as u64,
            "",
        );
    }
    s.int("messages_acked", "messages acknowledged", acked as u64, "");
    s.num(
        "messages_acked_per_s",
        "messages acknowledged per second",
        acked as f64 / steady_time.as_secs_f64(),
        "msg/s",
    );
    s.int(
        "errors",
        "errors (refusals, failed calls, missing acks)",
        (ledger.errors + setup_errors.len()) as u64,
        "",
    );
    s.int(
        "late_ticks",
        "send ticks skipped (previous send unanswered)",
        ledger.late_ticks as u64,
        "",
    );
    s.int("lost", "acknowledged but never delivered", lost as u64, "");
    s.int(
        "duplicated",
        "delivered more than once",
        duplicated as u64,
        "",
    );
    s.int(
        "delivered_unacknowledged",
        "delivered without an acknowledgement",
        unacked_delivered as u64,
        "",
    );
    s.int(
        "out_of_order",
        "frames with seq not above the last",
        out_of_order as u64,
        "",
    );
    s.int(
        "reconnects",
        "sockets dropped and reconnected with after=N",
        shared.reconnected.load(Ordering::Relaxed) as u64,
        "",
    );
    s.int(
        "replayed",
        "messages delivered by replay after reconnect",
        shared.replayed.load(Ordering::Relaxed) as u64,
        "",
    );
    s.int(
        "dropped_sockets",
        "sockets the server closed",
        dropped as u64,
        "",
    );
    memory_figures(&mut s, rss_before, rss_connected, rss_end, rss_peak, 0);
    let mib = |k: u64| k as f64 / 1024.0;
    if let Some(a) = rss_agents {
        s.num(
            "rss_agents_mib",
            "server RSS after agents logged in",
            mib(a),
            "MiB",
        );
    }
    let visitor_sockets = o.visitors - setup_errors.len();
    match (rss_agents, rss_connected) {
        (Some(a), Some(c)) if visitor_sockets > 0 && c > a => s.num(
            "rss_per_chat_kib",
            "server RSS per visitor socket and its chat",
            (c - a) as f64 / visitor_sockets as f64,
            "KiB",
        ),
        (Some(_), Some(_)) => s.text(
            "rss_per_chat_kib",
            "server RSS per visitor socket and its chat",
            "not measurable: RSS fell after the logins (freed password-hash memory)",
        ),
        _ => {}
    }
    if let Some(c) = server_cores {
        s.num(
            "server_cpu_cores",
            "server CPU during steady phase",
            c,
            "cores",
        );
    }
    if let Some(w) = writer_cores {
        s.num(
            "writer_thread_cores",
            "server's writer thread busy (group commit)",
            w,
            "cores",
        );
    }
    s.num(
        "bench_cpu_cores",
        "bench CPU during steady phase",
        bench_cores,
        "cores",
    );
    s.text(
        "load_end",
        "machine load (1/5/15 min) at end",
        machine::load_average(),
    );

    if let Some(victim) = o.kill_replica {
        kill_figures(&mut s, &shared, &ledger, victim, killed.as_ref());
    }
    let mut errors = setup_errors.clone();
    errors.extend(ledger.first_errors.iter().cloned());
    errors.extend(other_answers.iter().take(3).cloned());
    s.check(
        "zero_loss",
        "zero loss",
        lost == 0,
        format!("{lost} of {acked} acknowledged messages never arrived"),
    );
    s.check(
        "zero_duplicates",
        "zero duplicates",
        duplicated == 0,
        format!("{duplicated} delivered more than once"),
    );
    s.check(
        "in_order",
        "seq strictly increasing on every socket",
        out_of_order == 0,
        format!("{out_of_order} out of order"),
    );
    s.check(
        "one_accept_winner",
        "exactly one accept winner per request",
        races > 0 && one_winner == races,
        format!("{one_winner} of {races} races"),
    );
    s.check(
        "reconnect",
        "reconnect with after=N",
        shared.reconnect_failed.load(Ordering::Relaxed) == 0
            && shared.reconnected.load(Ordering::Relaxed)
                == o.reconnects.min(o.visitors) + usize::from(o.reconnects > 0 && o.agents > 0),
        format!(
            "{} reconnected, {} failed",
            shared.reconnected.load(Ordering::Relaxed),
            shared.reconnect_failed.load(Ordering::Relaxed)
        ),
    );
    s.check(
        "zero_errors",
        "zero errors",
        errors.is_empty() && ledger.errors == 0,
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join("; ")
        },
    );
    let why = shared
        .dropped_why
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .join("; ");
    s.check(
        "zero_dropped_sockets",
        "no socket dropped by the server",
        dropped == 0 && server_alive,
        if server_alive {
            if why.is_empty() {
                format!("{dropped} dropped")
            } else {
                format!("{dropped} dropped: {why}")
            }
        } else {
            "the server exited".to_string()
        },
    );
    let mut sections = vec![s];
    if let (Some(o), Some(u)) = (o.uploads, &uploaded) {
        let (mut during, mut without) = (Samples::default(), Samples::default());
        for &(sent, took) in &ledger.timed {
            if (u.window_us.0..=u.window_us.1).contains(&sent) {
                during.push_us(took);
            } else {
                without.push_us(took);
            }
        }
        sections.push(uploads::section(o, u, &during, &without, rss_end));
    }
    if let Some(results) = reload_results {
        let seen = shared
            .reloads_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        sections.push(reload_section(
            o,
            reload.cloned(),
            results,
            &seen,
            &shared,
            dropped,
            lost,
        ));
    }
    Ok(sections)
}

pub fn memory_figures(
    s: &mut Section,
    before: Option<u64>,
    connected: Option<u64>,
    end: Option<u64>,
    peak: Option<u64>,
    sockets: usize,
) {
    let mib = |k: u64| k as f64 / 1024.0;
    if let Some(b) = before {
        s.num("rss_before_mib", "server RSS before clients", mib(b), "MiB");
    }
    if let Some(c) = connected {
        s.num(
            "rss_connected_mib",
            "server RSS with every socket open",
            mib(c),
            "MiB",
        );
    }
    if let Some(e) = end {
        s.num(
            "rss_end_mib",
            "server RSS at the end of the load",
            mib(e),
            "MiB",
        );
    }
    if let Some(p) = peak {
        s.num("rss_peak_mib", "server peak RSS (VmHWM)", mib(p), "MiB");
    }
    if let (Some(b), Some(c)) = (before, connected)
        && sockets > 0
    {
        s.num(
            "rss_per_socket_kib",
            "server RSS per open socket",
            c.saturating_sub(b) as f64 / sockets as f64,
            "KiB",
        );
    }
}

/// Waits until the roster shows every agent online and accepting.
pub(super) async fn wait_for_agents(
    api: &Api,
    tokens: &[String],
    agents: usize,
) -> anyhow::Result<()> {
    let Some(token) = tokens.first() else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut agreeing = 0;
    loop {
        let (_, body) = api.get("/api/v1/agents", Some(token)).await?;
        let ready = body["agents"].as_array().map_or(0, |list| {
            list.iter()
                .filter(|a| a["online"] == true && a["accepting"] == true)
                .count()
        });
        agreeing = if ready >= agents { agreeing + 1 } else { 0 };
        if agreeing == AGREEING_ANSWERS {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {agents} agents are online and accepting: {body}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers in a row that must see every agent ready: behind a proxy they come from each
/// replica in turn, and a replica learns of the agents on the others within a second.
const AGREEING_ANSWERS: usize = 8;

#[allow(clippy::too_many_arguments)]
async fn handoff(
    api: &Api,
    shared: &Arc<Shared>,
    tokens: &[String],
    spec: BundleSpec,
    accepters: usize,
    i: usize,
    drop_signal: Option<oneshot::Receiver<Duration>>,
    stop: watch::Receiver<bool>,
    reader: &mut Option<JoinHandle<()>>,
) -> anyhow::Result<Handoff> {
    let team = i % spec.teams();
    let session = api
        .post_ok(
            "/api/v1/visitor/sessions",
            None,
            &json!({"bot": BundleSpec::bot(team), "page_url": "https://bench.example/pricing"}),
        )
        .await?;
    let token = session["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no token in {session}"))?
        .to_string();
    let conversation_id = session["conversation_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no conversation_id in {session}"))?
        .to_string();
    let (ws, replica) = api.visitor_socket_via(&token, 0).await?;
    shared.placed(Who::Visitor(i), replica.as_deref());
    let (writes, outgoing) = mpsc::unbounded_channel();
    *reader = Some(tokio::spawn(read_socket(
        shared.clone(),
        api.clone(),
        Who::Visitor(i),
        token.clone(),
        ws,
        outgoing,
        drop_signal,
        stop,
    )));
    let actions = "/api/v1/visitor/actions";
    api.post_ok(
        actions,
        Some(&token),
        &json!({"type": "choice", "index": 0}),
    )
    .await?;
    let requested = Instant::now();
    api.post_ok(actions, Some(&token), &json!({"type": "request_live_chat"}))
        .await?;

    // The race: several agents of the team accept at once.
    let members: Vec<usize> = spec.members(team).collect();
    if members.is_empty() {
        bail!("team {team} has no agents");
    }
    let k = accepters.clamp(1, members.len());
    let chosen: Vec<usize> = (0..k).map(|j| members[(i + j) % members.len()]).collect();
    let path = format!("/api/v1/conversations/{conversation_id}/accept");
    let answers = futures_util::future::join_all(chosen.iter().map(|&a| {
        let path = &path;
        async move {
            let t = Instant::now();
            let answer = api.post(path, Some(&tokens[a]), &json!({})).await;
            (a, t.elapsed(), answer)
        }
    }))
    .await;
    let mut h = Handoff {
        chat: None,
        winners: 0,
        losers_taken: 0,
        other_answers: Vec::new(),
        accept_calls: Samples::default(),
        request_to_accepted: None,
    };
    let mut winner = None;
    for (a, took, answer) in answers {
        h.accept_calls.push(took);
        match answer {
            Ok((200, _)) => {
                h.winners += 1;
                winner = Some(a);
            }
            Ok((409, body)) if body["error"]["code"] == "already_taken" => h.losers_taken += 1,
            Ok((status, body)) => h.other_answers.push(format!("accept: {status} {body}")),
            Err(e) => h.other_answers.push(format!("accept: {e}")),
        }
    }
    if let (1, Some(a)) = (h.winners, winner) {
        h.request_to_accepted = Some(requested.elapsed());
        shared.assignee[i].store(a, Ordering::Relaxed);
        h.chat = Some(Chat {
            conversation_id,
            token,
            writes,
        });
    }
    Ok(h)
}

/// One side of one chat, sending.
struct Sender {
    shared: Arc<Shared>,
    api: Api,
    dir: u8,
    chat: u32,
    conversation_id: String,
    token: String,
    /// The sender's open socket (`--send ws`), or none (`--send http`).
    socket: Option<Writes>,
}

impl Sender {
    /// A message every `interval` from `first` until `end`, numbered from `n0`; a tick is
    /// skipped (and counted) while the previous message is still unanswered.
    async fn run(
        self,
        first: tokio::time::Instant,
        interval: Duration,
        end: tokio::time::Instant,
        n0: u32,
    ) {
        let letter = if self.dir == VISITOR_TO_AGENT {
            "v"
        } else {
            "a"
        };
        let (chat, dir) = (self.chat, self.dir);
        let mut next = first;
        let mut n: u32 = n0;
        while next < end {
            tokio::time::sleep_until(next).await;
            let t = self.shared.now_us();
            let client_id = format!("{letter}{chat}-{n}");
            let text = format!("lcb:{letter}:{chat}:{n}:{t} {FILLER}");
            self.shared.ledger().sent.insert((chat, dir, n), false);
            let sent = Instant::now();
            let answer = self.send(client_id, text).await;
            let took = sent.elapsed();
            {
                let mut ledger = self.shared.ledger();
                match answer {
                    Ok(()) => {
                        ledger.sent.insert((chat, dir, n), true);
                        ledger.ack[dir as usize].push(took);
                    }
                    Err(e) => ledger.error(e),
                }
            }
            n += 1;
            next += interval;
            let now = tokio::time::Instant::now();
            if next < now {
                let behind = (now - next).as_nanos() / interval.as_nanos().max(1) + 1;
                self.shared.ledger().late_ticks += skipped(next, end, interval, behind);
                next += interval * behind as u32;
            }
        }
    }

    /// One message: a frame on the socket, answered by its ack; by HTTP without a socket, or
    /// when the socket is away, closes before the ack or gives none within `ACK_TIMEOUT`
    /// (the same `client_id`, so the server stores it once whichever way it came).
    async fn send(&self, client_id: String, text: String) -> Result<(), String> {
        let body = json!({"client_id": client_id, "text": text});
        if let Some(socket) = &self.socket {
            let mut frame = body.clone();
            frame["type"] = "message".into();
            if self.dir == AGENT_TO_VISITOR {
                frame["conversation_id"] = self.conversation_id.clone().into();
            }
            let (reply, acked) = oneshot::channel();
            let queued = socket
                .send(Outgoing {
                    client_id,
                    frame: frame.to_string(),
                    reply,
                })
                .is_ok();
            if queued {
                match tokio::time::timeout(ACK_TIMEOUT, acked).await {
                    Ok(Ok(Acked::Ok)) => return Ok(()),
                    Ok(Ok(Acked::Refused(e))) => return Err(e),
                    Ok(Ok(Acked::Lost) | Err(_)) => {}
                    Err(_) => self
                        .shared
                        .ledger()
                        .error(format!("no ack within {ACK_TIMEOUT:?}")),
                }
            }
            self.shared.ledger().fell_back += 1;
        }
        let path = if self.dir == VISITOR_TO_AGENT {
            "/api/v1/visitor/messages".to_string()
        } else {
            format!("/api/v1/conversations/{}/messages", self.conversation_id)
        };
        // A replica killed under the bench fails the calls it held (the proxy answers 502)
        // until the proxy sees it gone: the same `client_id` again is stored once.
        let deadline = Instant::now() + RESUME_WITHIN;
        loop {
            let answer = self.api.post(&path, Some(&self.token), &body).await;
            let failed_by_replica = matches!(answer, Ok((502..=504, _)) | Err(_));
            if self.shared.resume && failed_by_replica && Instant::now() < deadline {
                self.shared.ledger().retried += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            return match answer {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("send: {status} {}", error_code(&body))),
                Err(e) => Err(format!("send: {e}")),
            };
        }
    }
}

/// Of `behind` ticks from `next` on that a sender missed, those that were due before `end`
/// (a late answer to the last message of a phase skips nothing).
pub(super) fn skipped(
    next: tokio::time::Instant,
    end: tokio::time::Instant,
    interval: Duration,
    behind: u128,
) -> usize {
    let due = end
        .saturating_duration_since(next)
        .as_nanos()
        .div_ceil(interval.as_nanos().max(1));
    behind.min(due) as usize
}

fn error_code(body: &Value) -> String {
    body["error"]["code"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_string)
}

/// One reload: when the file was saved and when `/healthz` showed the new revision.
pub struct ReloadResult {
    saved_at: Instant,
    revision: Option<i64>,
    live_after: Option<Duration>,
}

/// Saves bot `bench0` with a new greeting every `every`, each time polling `/healthz` until
/// the revision changes (at most 10 s).
async fn reload_loop(
    api: Api,
    bots_dir: std::path::PathBuf,
    r: ReloadOpts,
    start: tokio::time::Instant,
) -> Vec<ReloadResult> {
    let mut results = Vec::new();
    let mut revision = api.revision().await.unwrap_or(0);
    for k in 1..=r.reloads {
        tokio::time::sleep_until(start + r.every * k as u32).await;
        let path = bots_dir.join(format!("{}.toml", BundleSpec::bot(0)));
        let saved_at = Instant::now();
        let mut result = ReloadResult {
            saved_at,
            revision: None,
            live_after: None,
        };
        if save_atomically(&path, &BundleSpec::bot_toml(0, k as u64)).is_ok() {
            while saved_at.elapsed() < Duration::from_secs(10) {
                if let Some(now) = api.revision().await
                    && now > revision
                {
                    result.live_after = Some(saved_at.elapsed());
                    result.revision = Some(now);
                    revision = now;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        results.push(result);
    }
    results
}

fn reload_section(
    o: &ChatOpts,
    r: Option<ReloadOpts>,
    results: Vec<ReloadResult>,
    seen: &[(i64, u64)],
    shared: &Shared,
    dropped: usize,
    lost: usize,
) -> Section {
    let r = r.unwrap_or(ReloadOpts {
        reloads: 0,
        every: Duration::ZERO,
    });
    let mut s = Section::new(
        "reload",
        format!(
            "{} saves of a bot file, one every {:?}, while a chat load as above runs ({} visitors)",
            r.reloads, r.every, o.visitors
        ),
    );
    let mut live = Samples::default();
    let mut notified = Samples::default();
    let mut missed = 0;
    for res in &results {
        match (res.live_after, res.revision) {
            (Some(d), Some(rev)) => {
                live.push(d);
                let saved = res.saved_at.duration_since(shared.t0).as_micros() as u64;
                if let Some((_, at)) = seen.iter().find(|(r, at)| *r == rev && *at >= saved) {
                    notified.push_us(at - saved);
                }
            }
            _ => missed += 1,
        }
    }
    s.int("reloads", "bundle saves", results.len() as u64, "");
    s.latency(
        "save_to_healthz",
        "save → new revision on /healthz",
        live.summary(),
    );
    s.latency(
        "save_to_console",
        "save → config.reloaded on a console",
        notified.summary(),
    );
    s.int("not_live", "saves not live within 10 s", missed as u64, "");
    s.int(
        "dropped_sockets",
        "sockets dropped during the run",
        dropped as u64,
        "",
    );
    s.int("lost", "messages lost during the run", lost as u64, "");
    s.check(
        "all_live",
        "every save became live",
        missed == 0 && !results.is_empty(),
        format!("{missed} not live"),
    );
    s.check(
        "zero_dropped_sockets",
        "no socket dropped by a reload",
        dropped == 0,
        format!("{dropped} dropped"),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ticks_due_before_the_end_count_as_skipped() {
        let t = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        // Ticks at 100, 200, 300 ms are due before the end at 350 ms.
        assert_eq!(skipped(t + ms(100), t + ms(350), ms(100), 5), 3);
        assert_eq!(skipped(t + ms(100), t + ms(350), ms(100), 2), 2);
        // The last message's late answer: its next tick is past the end.
        assert_eq!(skipped(t + ms(400), t + ms(350), ms(100), 1), 0);
    }

    #[test]
    fn markers_parse() {
        assert_eq!(
            parse_marker("lcb:v:12:3:123456 Hello"),
            Some((VISITOR_TO_AGENT, 12, 3, 123456))
        );
        assert_eq!(
            parse_marker("lcb:a:0:0:1"),
            Some((AGENT_TO_VISITOR, 0, 0, 1))
        );
        assert_eq!(parse_marker("lcb:x:0:0:1"), None);
        assert_eq!(parse_marker("hello"), None);
    }
}
