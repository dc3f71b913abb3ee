//! The comparison: the same chat and idle load against a minimal Socket.IO relay on Node.js
//! (`bench/socketio/relay.js`), started by the bench beside livechat on the same machine.
//!
//! The client speaks Socket.IO 4 (Engine.IO 4) over a plain WebSocket: the server opens with
//! `0{…}`, the client joins the default namespace with `40`, events are `42["message",{…}]`,
//! an event with an acknowledgement `42<id>[…]` is answered `43<id>[…]`, and the server's
//! ping `2` is answered `3`. Each socket names itself (`v12`, `a3`) in the handshake; a
//! message `{to, text}` goes to the socket of that name. The texts and the ledger are the
//! chat scenario's, so loss, duplicates and latency are counted the same way.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::Progress;
use super::chat::{
    AGENT_TO_VISITOR, ChatOpts, FILLER, Ledger, VISITOR_TO_AGENT, memory_figures, parse_marker,
};
use super::client::{CALL_TIMEOUT, is_loopback, ws_config};
use super::machine::{self, CpuMeter};
use super::report::Section;

/// `node relay.js`, running.
pub struct Relay {
    child: Child,
    pub url: String,
    pub pid: u32,
}

impl Relay {
    /// Starts the relay in `dir` (which holds `relay.js` and, after `npm ci`, its
    /// `node_modules`).
    pub fn start(dir: &Path) -> anyhow::Result<Relay> {
        if !dir.join("node_modules/socket.io").is_dir() {
            bail!(
                "no socket.io in {}: run `npm ci` there first",
                dir.join("node_modules").display()
            );
        }
        let mut child = std::process::Command::new("node")
            .arg("relay.js")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start `node relay.js` (is Node.js installed?)")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        // The relay prints `relay listening on http://127.0.0.1:PORT` once it listens.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let (Some(url), Some(tx)) = (line.strip_prefix("relay listening on "), tx.take())
                {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) if is_loopback(&url) => url,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the relay did not print `relay listening on http://127.0.0.1:…`");
            }
        };
        let pid = child.id();
        Ok(Relay { child, url, pid })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Visitor(usize),
    Agent(usize),
}

struct Shared {
    t0: Instant,
    ledger: Mutex<Ledger>,
    agents: usize,
    dropped: AtomicUsize,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_text(&self, who: Who, text: &str) {
        let now = self.now_us();
        let Some((dir, chat, n, sent)) = parse_marker(text) else {
            return;
        };
        let mine = match who {
            Who::Visitor(i) => dir == AGENT_TO_VISITOR && chat as usize == i,
            Who::Agent(a) => dir == VISITOR_TO_AGENT && chat as usize % self.agents.max(1) == a,
        };
        if !mine {
            return;
        }
        let mut ledger = self.ledger();
        let count = ledger.received.entry((chat, dir, n)).or_insert(0);
        *count += 1;
        if *count == 1 {
            ledger.delivery[dir as usize].push_us(now.saturating_sub(sent));
        }
    }
}

/// One Socket.IO connection: frames go out through a writer task; acknowledgements come
/// back through `pending`.
#[derive(Clone)]
struct Socket {
    out: mpsc::UnboundedSender<String>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
    next_id: Arc<AtomicU64>,
}

impl Socket {
    /// Emits `message {to, text}` and waits for its acknowledgement.
    async fn emit(&self, to: &str, text: &str) -> anyhow::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let payload = json!(["message", {"to": to, "text": text}]);
        self.out
            .send(format!("42{id}{payload}"))
            .map_err(|_| anyhow!("the socket is closed"))?;
        tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .map_err(|_| anyhow!("no acknowledgement within {CALL_TIMEOUT:?}"))?
            .map_err(|_| anyhow!("the socket closed before the acknowledgement"))
    }
}

/// Connects as `name`, completes the Socket.IO handshake and starts reading.
async fn connect(
    url: &str,
    name: &str,
    who: Who,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(Socket, JoinHandle<()>)> {
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket&name={name}",
        url.replacen("http://", "ws://", 1)
    );
    let handshake = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(ws_url, Some(ws_config()), true).await?;
        let mut joined = false;
        while let Some(frame) = ws.next().await {
            let Message::Text(t) = frame? else { continue };
            if t.starts_with("0{") && !joined {
                ws.send(Message::Text("40".into())).await?;
                joined = true;
            } else if t.starts_with("40") && joined {
                return Ok(ws);
            } else if t.starts_with("44") {
                bail!("the relay refused the connection: {t}");
            }
        }
        bail!("the relay closed during the handshake")
    };
    let ws = tokio::time::timeout(CALL_TIMEOUT, handshake)
        .await
        .map_err(|_| anyhow!("no Socket.IO handshake within {CALL_TIMEOUT:?}"))??;
    let (mut sink, mut frames) = ws.split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
    let socket = Socket {
        out: out.clone(),
        pending: Arc::new(Mutex::new(HashMap::new())),
        next_id: Arc::new(AtomicU64::new(1)),
    };
    let pending = socket.pending.clone();
    let reader = tokio::spawn(async move {
        let writer = async {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        };
        let reader = async {
            loop {
                let frame = tokio::select! {
                    _ = stop.changed() => return,
                    frame = frames.next() => frame,
                };
                match frame {
                    Some(Ok(Message::Text(t))) => {
                        if t.as_str() == "2" {
                            let _ = out.send("3".into());
                        } else if let Some(rest) = t.strip_prefix("43") {
                            let id: u64 = rest
                                .split('[')
                                .next()
                                .and_then(|d| d.parse().ok())
                                .unwrap_or(0);
                            let waiter = pending
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&id);
                            if let Some(w) = waiter {
                                let _ = w.send(());
                            }
                        } else if let Some(rest) = t.strip_prefix("42")
                            && let Ok(Value::Array(event)) = serde_json::from_str::<Value>(rest)
                            && event.first().and_then(Value::as_str) == Some("message")
                            && let Some(text) = event.get(1).and_then(|m| m["text"].as_str())
                        {
                            shared.on_text(who, text);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        if !*stop.borrow() {
                            shared.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                }
            }
        };
        // The reader decides when the socket is done; the writer ends with it.
        tokio::select! {
            _ = reader => {}
            _ = writer => {}
        }
    });
    Ok((socket, reader))
}

/// The relay's sockets for a chat load: agents and visitors connected and read.
pub(super) struct Conns {
    shared: Arc<Shared>,
    agents: Vec<Socket>,
    visitors: Vec<Socket>,
    readers: Vec<JoinHandle<()>>,
    stop_tx: watch::Sender<bool>,
}

impl Conns {
    /// `o.agents` agents and `o.visitors` visitors connect.
    pub(super) async fn connect(
        relay: &Relay,
        o: &ChatOpts,
        progress: &Progress,
    ) -> anyhow::Result<Conns> {
        let shared = Arc::new(Shared {
            t0: Instant::now(),
            ledger: Mutex::new(Ledger::default()),
            agents: o.agents.max(1),
            dropped: AtomicUsize::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        progress.say(&format!(
            "socket.io relay: {} agents and {} visitors connect",
            o.agents, o.visitors
        ));
        let mut readers = Vec::new();
        let mut agents = Vec::new();
        for a in 0..o.agents.max(1) {
            let (s, r) = connect(
                &relay.url,
                &format!("a{a}"),
                Who::Agent(a),
                shared.clone(),
                stop_rx.clone(),
            )
            .await?;
            agents.push(s);
            readers.push(r);
        }
        let connected: Vec<(Socket, JoinHandle<()>)> =
            stream::iter(0..o.visitors)
                .map(|i| {
                    let shared = shared.clone();
                    let stop = stop_rx.clone();
                    async move {
                        connect(&relay.url, &format!("v{i}"), Who::Visitor(i), shared, stop).await
                    }
                })
                .buffered(o.concurrency.max(1))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()?;
        let mut visitors = Vec::new();
        for (s, r) in connected {
            visitors.push(s);
            readers.push(r);
        }
        Ok(Conns {
            shared,
            agents,
            visitors,
            readers,
            stop_tx,
        })
    }

    pub(super) fn senders(&self) -> usize {
        2 * self.visitors.len()
    }

    pub(super) fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.shared.ledger()
    }

    /// As `chat::Live::spawn_senders`: each side of each chat, a message every `interval`.
    pub(super) fn spawn_senders(
        &self,
        first: tokio::time::Instant,
        interval: Duration,
        end: tokio::time::Instant,
        n0: u32,
    ) -> Vec<JoinHandle<()>> {
        let total = self.senders().max(1) as u32;
        let mut senders = Vec::new();
        for (i, visitor) in self.visitors.iter().enumerate() {
            let agent = i % self.agents.len();
            for dir in [VISITOR_TO_AGENT, AGENT_TO_VISITOR] {
                let (socket, to) = if dir == VISITOR_TO_AGENT {
                    (visitor.clone(), format!("a{agent}"))
                } else {
                    (self.agents[agent].clone(), format!("v{i}"))
                };
                let phase = interval * (2 * i as u32 + dir as u32) / total;
                senders.push(tokio::spawn(send_loop(
                    self.shared.clone(),
                    socket,
                    to,
                    dir,
                    i as u32,
                    first + phase,
                    interval,
                    end,
                    n0,
                )));
            }
        }
        senders
    }

    /// Waits until every acknowledged message arrived, at most `limit`.
    pub(super) async fn drain(&self, limit: Duration) {
        super::chat::until_delivered(|| self.shared.ledger().undelivered(), limit).await;
    }

    /// Closes every socket and waits for their tasks.
    pub(super) async fn close(&mut self) {
        let _ = self.stop_tx.send(true);
        self.agents.clear();
        self.visitors.clear();
        for r in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
        }
    }

    pub(super) fn dropped(&self) -> usize {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The chat load of `o` (steady phase only: the relay has no handoff, no accept, no replay).
pub async fn chat(relay: &Relay, o: &ChatOpts, progress: &Progress) -> anyhow::Result<Section> {
    let load_start = machine::load_average();
    let rss_before = machine::rss_kib(relay.pid);
    let mut conns = Conns::connect(relay, o, progress).await?;
    let shared = conns.shared.clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = machine::rss_kib(relay.pid);

    progress.say(&format!(
        "socket.io relay: steady, a message each way every {:?}, for {:?}",
        o.interval, o.duration
    ));
    let server_cpu = CpuMeter::start(relay.pid);
    let bench_cpu = CpuMeter::start(std::process::id());
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let end = start + o.duration;
    let senders = conns.spawn_senders(start, o.interval, end, 0);
    for s in senders {
        let _ = s.await;
    }
    let steady = start.elapsed();
    let server_cores = server_cpu.cores();
    let bench_cores = bench_cpu.cores();
    let rss_end = machine::rss_kib(relay.pid);
    let rss_peak = machine::peak_rss_kib(relay.pid);
    conns.drain(o.drain).await;
    conns.close().await;

    let ledger = shared.ledger();
    let acked = ledger.sent.values().filter(|a| **a).count();
    let lost = ledger.undelivered();
    let duplicated = ledger.received.values().filter(|n| **n > 1).count();
    let dropped = shared.dropped.load(Ordering::Relaxed);
    let sockets = o.visitors + o.agents.max(1);
    let mut s = Section::new(
        "chat-socketio",
        format!(
            "the same load on a Socket.IO relay (Node.js {}): {} visitors, {} agents, a message each way every {:?} for {:?}",
            node_version(),
            o.visitors,
            o.agents,
            o.interval,
            o.duration
        ),
    );
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
        "visitor send acknowledged (emit → ack)",
        ledger.ack[0].summary(),
    );
    s.latency(
        "ack_agent",
        "agent send acknowledged (emit → ack)",
        ledger.ack[1].summary(),
    );
    s.int("messages_acked", "messages acknowledged", acked as u64, "");
    s.num(
        "messages_acked_per_s",
        "messages acknowledged per second",
        acked as f64 / steady.as_secs_f64(),
        "msg/s",
    );
    s.int("errors", "errors", ledger.errors as u64, "");
    s.int("lost", "acknowledged but never delivered", lost as u64, "");
    s.int(
        "duplicated",
        "delivered more than once",
        duplicated as u64,
        "",
    );
    s.int(
        "dropped_sockets",
        "sockets the relay closed",
        dropped as u64,
        "",
    );
    memory_figures(
        &mut s,
        rss_before,
        rss_connected,
        rss_end,
        rss_peak,
        sockets,
    );
    s.num(
        "server_cpu_cores",
        "relay CPU during steady phase",
        server_cores,
        "cores",
    );
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
    s.check(
        "zero_loss",
        "zero loss",
        lost == 0,
        format!("{lost} of {acked} never arrived"),
    );
    s.check(
        "zero_errors",
        "zero errors",
        ledger.errors == 0 && dropped == 0,
        ledger
            .first_errors
            .first()
            .cloned()
            .unwrap_or_else(|| format!("{dropped} dropped")),
    );
    Ok(s)
}

#[allow(clippy::too_many_arguments)]
async fn send_loop(
    shared: Arc<Shared>,
    socket: Socket,
    to: String,
    dir: u8,
    chat: u32,
    first: tokio::time::Instant,
    interval: Duration,
    end: tokio::time::Instant,
    n0: u32,
) {
    let letter = if dir == VISITOR_TO_AGENT { "v" } else { "a" };
    let mut next = first;
    let mut n: u32 = n0;
    while next < end {
        tokio::time::sleep_until(next).await;
        let t = shared.now_us();
        let text = format!("lcb:{letter}:{chat}:{n}:{t} {FILLER}");
        shared.ledger().sent.insert((chat, dir, n), false);
        let sent = Instant::now();
        let answer = socket.emit(&to, &text).await;
        let took = sent.elapsed();
        {
            let mut ledger = shared.ledger();
            match answer {
                Ok(()) => {
                    ledger.sent.insert((chat, dir, n), true);
                    ledger.ack[dir as usize].push(took);
                }
                Err(e) => ledger.error(format!("emit: {e}")),
            }
        }
        n += 1;
        next += interval;
        let now = tokio::time::Instant::now();
        if next < now {
            let behind = (now - next).as_nanos() / interval.as_nanos().max(1) + 1;
            shared.ledger().late_ticks += super::chat::skipped(next, end, interval, behind);
            next += interval * behind as u32;
        }
    }
}

/// K idle sockets on the relay: memory per socket.
pub async fn idle(
    relay: &Relay,
    sockets: usize,
    hold: Duration,
    progress: &Progress,
) -> anyhow::Result<Section> {
    let load_start = machine::load_average();
    let rss_before = machine::rss_kib(relay.pid);
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        ledger: Mutex::new(Ledger::default()),
        agents: 1,
        dropped: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    progress.say(&format!("socket.io relay: opening {sockets} idle sockets"));
    let opened = Instant::now();
    let held: Vec<(Socket, JoinHandle<()>)> = stream::iter(0..sockets)
        .map(|i| {
            let shared = shared.clone();
            let stop = stop_rx.clone();
            async move {
                connect(
                    &relay.url,
                    &format!("v{i}"),
                    Who::Visitor(i),
                    shared,
                    stop,
                )
                .await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let open_time = opened.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_open = machine::rss_kib(relay.pid);
    tokio::time::sleep(hold).await;
    let rss_held = machine::rss_kib(relay.pid);
    let rss_peak = machine::peak_rss_kib(relay.pid);
    let dropped = shared.dropped.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for (socket, reader) in held {
        drop(socket);
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    let mut s = Section::new(
        "idle-socketio",
        format!("{sockets} idle sockets on the Socket.IO relay, held {hold:?}"),
    );
    s.text(
        "load_start",
        "machine load (1/5/15 min) at start",
        load_start,
    );
    s.num(
        "open_s",
        "time to open the sockets",
        open_time.as_secs_f64(),
        "s",
    );
    s.int("sockets", "sockets open", sockets as u64, "");
    memory_figures(&mut s, rss_before, rss_open, rss_held, rss_peak, sockets);
    s.int(
        "dropped_sockets",
        "sockets the relay closed",
        dropped as u64,
        "",
    );
    s.check(
        "zero_dropped_sockets",
        "no socket dropped",
        dropped == 0,
        format!("{dropped} dropped"),
    );
    Ok(s)
}

pub(super) fn node_version() -> String {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "?".into())
}
