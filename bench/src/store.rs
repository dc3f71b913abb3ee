//! `store`: how many messages per second the server stores durably. W visitors in accepted
//! chats each write as fast as the server answers (one message in flight each, with a
//! `client_id` as the widget sends): a frame on the visitor's widget socket answered by its
//! `ack` (`--send ws`), or a `POST` (`--send http`). The server answers only after the group
//! commit, so an answered message is a stored one; at the end the bench reads every chat
//! back and counts. Bytes written per message come from `wchar` of the server's writer and
//! checkpointer threads (`/proc/PID/task/TID/io`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

use super::Progress;
use super::chat::memory_figures;
use super::client::{Api, CALL_TIMEOUT, Envelope, SendPath, Ws};
use super::machine::{self, CHECKPOINT_THREAD, CpuMeter, WRITER_THREAD};
use super::report::Section;
use super::server::{BundleSpec, Target};
use super::stats::Samples;

#[derive(Debug, Clone)]
pub struct StoreOpts {
    pub writers: usize,
    pub agents: usize,
    pub duration: Duration,
    pub concurrency: usize,
    pub send: SendPath,
    pub synchronous: Synchronous,
}

/// SQLite's `synchronous` for the server the bench starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    /// The server's default: the WAL is synced at checkpoints.
    Normal,
    /// Every group commit synced (`LIVECHAT_SYNCHRONOUS=full`).
    Full,
}

impl Synchronous {
    /// The variable that sets it on the server; none for the default.
    pub fn env(self) -> Option<(String, String)> {
        match self {
            Synchronous::Normal => None,
            Synchronous::Full => Some(("LIVECHAT_SYNCHRONOUS".into(), "full".into())),
        }
    }

    fn durability(self) -> &'static str {
        match self {
            Synchronous::Normal => "WAL, synchronous=NORMAL (server default)",
            Synchronous::Full => {
                "WAL, synchronous=FULL (--synchronous full: every group commit fsynced)"
            }
        }
    }
}

/// `wchar` of the server process and of its writer and checkpointer threads.
#[derive(Debug, Clone, Copy)]
struct Written {
    process: Option<u64>,
    writer: Option<u64>,
    checkpointer: Option<u64>,
}

impl Written {
    fn now(pid: u32) -> Written {
        Written {
            process: machine::written_bytes(pid),
            writer: machine::thread_written_bytes(pid, WRITER_THREAD),
            checkpointer: machine::thread_written_bytes(pid, CHECKPOINT_THREAD),
        }
    }

    fn since(self, before: Written) -> Written {
        let d = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b?));
        Written {
            process: d(self.process, before.process),
            writer: d(self.writer, before.writer),
            checkpointer: d(self.checkpointer, before.checkpointer),
        }
    }
}

#[derive(Default)]
struct Tally {
    acked: u64,
    errors: u64,
    first_errors: Vec<String>,
    ack: Samples,
}

pub async fn run(
    target: &mut Target,
    o: &StoreOpts,
    progress: &Progress,
) -> anyhow::Result<Section> {
    let api = target.api.clone();
    let pid = target.pid;
    let spec = target.spec;
    let load_start = machine::load_average();
    let rss_before = pid.and_then(machine::rss_kib);

    // Agents online and accepting, so the requests ring; they leave once every chat is theirs.
    let mut tokens = Vec::new();
    for a in 0..o.agents {
        tokens.push(api.login(&BundleSpec::email(a), &target.password).await?);
    }
    let mut consoles = Vec::new();
    for t in &tokens {
        consoles.push(api.agent_socket(t, 0).await?);
        api.set_accepting(t, true).await?;
    }
    super::chat::wait_for_agents(&api, &tokens, o.agents).await?;
    progress.say(&format!("store: {} chats", o.writers));
    let chats: Vec<(String, String, usize)> = stream::iter(0..o.writers)
        .map(|i| {
            let api = api.clone();
            let tokens = &tokens;
            async move {
                let team = i % spec.teams();
                let s = api
                    .post_ok(
                        "/api/v1/visitor/sessions",
                        None,
                        &json!({"bot": BundleSpec::bot(team)}),
                    )
                    .await?;
                let token = s["token"]
                    .as_str()
                    .ok_or_else(|| anyhow!("no token"))?
                    .to_string();
                let conv = s["conversation_id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("no conversation"))?
                    .to_string();
                let actions = "/api/v1/visitor/actions";
                api.post_ok(
                    actions,
                    Some(&token),
                    &json!({"type": "choice", "index": 0}),
                )
                .await?;
                api.post_ok(actions, Some(&token), &json!({"type": "request_live_chat"}))
                    .await?;
                let members: Vec<usize> = spec.members(team).collect();
                let agent = *members
                    .get(i % members.len().max(1))
                    .ok_or_else(|| anyhow!("team {team} has no agents"))?;
                api.post_ok(
                    &format!("/api/v1/conversations/{conv}/accept"),
                    Some(&tokens[agent]),
                    &json!({}),
                )
                .await?;
                anyhow::Ok((token, conv, agent))
            }
        })
        .buffer_unordered(o.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    drop(consoles);

    // With `--send ws` each writer writes on its own widget socket, opened before the clock.
    let mut sockets: Vec<Option<Ws>> = Vec::new();
    for (token, _, _) in &chats {
        sockets.push(match o.send {
            SendPath::Ws => Some(api.visitor_socket(token, 0).await?),
            SendPath::Http => None,
        });
    }
    progress.say(&format!(
        "store: {} writers, as fast as answered, for {:?}, {}",
        o.writers,
        o.duration,
        o.send.describe()
    ));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let server_cpu = pid.map(CpuMeter::start);
    let writer_cpu = pid.and_then(|p| CpuMeter::thread(p, WRITER_THREAD));
    let bench_cpu = CpuMeter::start(std::process::id());
    let commits_before = group_commits(&api).await;
    let written_before = pid.map(Written::now);
    let start = Instant::now();
    let end = start + o.duration;
    let writers: Vec<_> = chats
        .iter()
        .zip(sockets)
        .enumerate()
        .map(|(w, ((token, _, _), socket))| {
            let api = api.clone();
            let token = token.clone();
            let tally = tally.clone();
            tokio::spawn(async move {
                let local = write_until(&api, &token, socket, w, end).await;
                let mut all = tally.lock().await;
                all.acked += local.acked;
                all.errors += local.errors;
                all.first_errors.extend(local.first_errors);
                all.ack.extend(&local.ack);
                local.acked
            })
        })
        .collect();
    let mut per_writer = Vec::new();
    for w in writers {
        per_writer.push(w.await.map_err(|e| anyhow!("a writer failed: {e}"))?);
    }
    let elapsed = start.elapsed();
    let written = match (written_before, pid) {
        (Some(before), Some(pid)) => Some(Written::now(pid).since(before)),
        _ => None,
    };
    let commits = match (commits_before, group_commits(&api).await) {
        (Some((g0, w0)), Some((g1, w1))) if g1 > g0 => Some((g1 - g0, w1 - w0)),
        _ => None,
    };
    let server_cores = server_cpu.map(|c| c.cores());
    let writer_cores = writer_cpu.map(|c| c.cores());
    let bench_cores = bench_cpu.cores();
    let rss_end = pid.and_then(machine::rss_kib);
    let rss_peak = pid.and_then(machine::peak_rss_kib);

    // Read every chat back: the stored messages must be exactly the acknowledged ones.
    progress.say("store: reading the chats back");
    let mut stored = 0u64;
    let mut mismatched = 0usize;
    for ((_, conv, agent), acked) in chats.iter().zip(&per_writer) {
        let (status, details) = api
            .get(
                &format!("/api/v1/conversations/{conv}"),
                Some(&tokens[*agent]),
            )
            .await?;
        if status != 200 {
            bail!("details of {conv}: {status} {details}");
        }
        let n = details["messages"].as_array().map_or(0, |m| {
            m.iter()
                .filter(|m| m["text"].as_str().is_some_and(|t| t.starts_with("lcb:s:")))
                .count()
        }) as u64;
        stored += n;
        if n != *acked {
            mismatched += 1;
        }
    }
    let alive = target.alive();

    let t = tally.lock().await;
    let mut s = Section::new(
        "store",
        format!(
            "{} concurrent writers (visitors in accepted chats), one message in flight each, {:?}, {}",
            o.writers,
            o.duration,
            o.send.describe()
        ),
    );
    s.text(
        "load_start",
        "machine load (1/5/15 min) at start",
        load_start,
    );
    s.int(
        "messages_acked",
        "messages acknowledged (after commit)",
        t.acked,
        "",
    );
    s.num(
        "stored_per_s",
        "durably stored messages per second",
        t.acked as f64 / elapsed.as_secs_f64(),
        "msg/s",
    );
    s.latency(
        "ack",
        &format!("message acknowledged ({})", o.send.ack_label()),
        t.ack.summary(),
    );
    if let Some((groups, writes)) = commits {
        s.num(
            "group_commits_per_s",
            "group commits per second",
            groups as f64 / elapsed.as_secs_f64(),
            "commits/s",
        );
        s.num(
            "writes_per_group_commit",
            "writes per group commit (mean)",
            writes as f64 / groups as f64,
            "",
        );
    }
    written_figures(&mut s, written, t.acked);
    s.int("errors", "errors", t.errors, "");
    s.int(
        "stored_read_back",
        "messages read back from the chats",
        stored,
        "",
    );
    memory_figures(&mut s, rss_before, None, rss_end, rss_peak, 0);
    if let Some(c) = server_cores {
        s.num("server_cpu_cores", "server CPU while writing", c, "cores");
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
        "bench CPU while writing",
        bench_cores,
        "cores",
    );
    match api.store_kind().await.as_deref() {
        Some("postgres") => s.text(
            "fsync",
            "store",
            "PostgreSQL (durability as the database is set: fsync, synchronous_commit)",
        ),
        _ => s.text("fsync", "SQLite durability", o.synchronous.durability()),
    }
    s.text(
        "load_end",
        "machine load (1/5/15 min) at end",
        machine::load_average(),
    );
    s.check(
        "stored_equals_acked",
        "every acknowledged message stored, once",
        mismatched == 0 && stored == t.acked,
        format!(
            "{stored} read back, {} acknowledged, {mismatched} chats differ",
            t.acked
        ),
    );
    s.check(
        "zero_errors",
        "zero errors",
        t.errors == 0 && alive,
        if alive {
            t.first_errors
                .first()
                .cloned()
                .unwrap_or_else(|| "none".into())
        } else {
            "the server exited".into()
        },
    );
    Ok(s)
}

/// The writer's counters from `/metrics`: (group commits, writes in them).
async fn group_commits(api: &super::client::Api) -> Option<(u64, u64)> {
    let groups = api.metric("livechat_group_commits_total").await?;
    let writes = api.metric("livechat_group_commit_writes_total").await?;
    Some((groups as u64, writes as u64))
}

/// One writer: as fast as answered until `end`, on its socket or by HTTP.
async fn write_until(
    api: &Api,
    token: &str,
    mut socket: Option<Ws>,
    w: usize,
    end: Instant,
) -> Tally {
    let mut n = 0u64;
    let mut local = Tally::default();
    while Instant::now() < end {
        let client_id = format!("s{w}-{n}");
        let text = format!("lcb:s:{w}:{n} Stored message number {n} of writer {w}.");
        let t = Instant::now();
        let answer = match socket.as_mut() {
            Some(ws) => write_frame(ws, &client_id, &text).await,
            None => match api
                .post(
                    "/api/v1/visitor/messages",
                    Some(token),
                    &json!({"client_id": client_id, "text": text}),
                )
                .await
            {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("{status} {body}")),
                Err(e) => Err(e.to_string()),
            },
        };
        match answer {
            Ok(()) => {
                local.acked += 1;
                local.ack.push(t.elapsed());
            }
            Err(e) => {
                local.errors += 1;
                if local.first_errors.is_empty() {
                    local.first_errors.push(e);
                }
                // A socket that failed is not written on again: the writer stops.
                if socket.is_some() {
                    break;
                }
            }
        }
        n += 1;
    }
    local
}

/// A `message` frame on a widget socket, then its frames until the `ack` of this `client_id`
/// (the message's own event comes back on the same socket too).
async fn write_frame(ws: &mut Ws, client_id: &str, text: &str) -> Result<(), String> {
    let frame = json!({"type": "message", "client_id": client_id, "text": text});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .map_err(|e| format!("socket: {e}"))?;
    let acked = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(env) = serde_json::from_str::<Envelope>(&t)
                        && let Some((id, outcome)) = env.ack()
                        && id == client_id
                    {
                        return outcome;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("socket: {e}")),
                None => return Err("the server closed the socket before the ack".into()),
            }
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, acked)
        .await
        .map_err(|_| format!("no ack within {CALL_TIMEOUT:?}"))?
}

/// Bytes written per acknowledged message: the writer and checkpointer threads (the
/// database's writes) and the whole process (every thread's `write`-like calls; socket
/// writes made with `send` are not among them).
fn written_figures(s: &mut Section, written: Option<Written>, acked: u64) {
    const BY_THREADS: &str = "bytes written per message: writer + checkpointer threads";
    let Some(w) = written else {
        s.text(
            "written_per_message_db",
            BY_THREADS,
            "not measurable: the server's pid is unknown (--url without --server-pid)",
        );
        return;
    };
    if acked == 0 {
        s.text(
            "written_per_message_db",
            BY_THREADS,
            "not measurable: no message acknowledged",
        );
        return;
    }
    let per = |bytes: u64| bytes as f64 / acked as f64 / 1024.0;
    match (w.writer, w.checkpointer) {
        (Some(writer), Some(checkpointer)) => {
            s.num(
                "written_per_message_writer",
                &format!("bytes written per message: writer thread ({WRITER_THREAD})"),
                per(writer),
                "KiB",
            );
            s.num(
                "written_per_message_checkpointer",
                &format!("bytes written per message: checkpointer thread ({CHECKPOINT_THREAD})"),
                per(checkpointer),
                "KiB",
            );
            s.num(
                "written_per_message_db",
                BY_THREADS,
                per(writer + checkpointer),
                "KiB",
            );
        }
        _ => s.text(
            "written_per_message_db",
            BY_THREADS,
            format!(
                "not measurable: no thread named {WRITER_THREAD} and {CHECKPOINT_THREAD} in the server"
            ),
        ),
    }
    if let Some(process) = w.process {
        s.num(
            "written_per_message",
            "bytes written per message: whole server process (wchar, all threads)",
            per(process),
            "KiB",
        );
    }
}
