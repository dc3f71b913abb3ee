//! `idle`: K widget sockets open with no traffic, held for a while; what each costs the
//! server in resident memory, and whether any is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::{StreamExt, stream};
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::Progress;
use super::chat::memory_figures;
use super::machine;
use super::report::Section;
use super::server::{BundleSpec, Target};

#[derive(Debug, Clone)]
pub struct IdleOpts {
    pub sockets: usize,
    pub hold: Duration,
    pub concurrency: usize,
}

pub async fn run(
    target: &mut Target,
    o: &IdleOpts,
    progress: &Progress,
) -> anyhow::Result<Section> {
    let api = target.api.clone();
    let pid = target.pid;
    let load_start = machine::load_average();
    let rss_before = pid.and_then(machine::rss_kib);
    let started = Instant::now();
    progress.say(&format!("idle: {} visitor sessions", o.sockets));
    let tokens: Vec<String> = stream::iter(0..o.sockets)
        .map(|i| {
            let api = api.clone();
            let bot = BundleSpec::bot(i % target.spec.teams());
            async move {
                let s = api
                    .post_ok("/api/v1/visitor/sessions", None, &json!({"bot": bot}))
                    .await?;
                s["token"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("no token in {s}"))
            }
        })
        .buffer_unordered(o.concurrency.max(1))
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let sessions_time = started.elapsed();
    let rss_sessions = pid.and_then(machine::rss_kib);

    progress.say(&format!("idle: opening {} visitor sockets", o.sockets));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let opened = Instant::now();
    let readers: Vec<_> = stream::iter(tokens)
        .map(|token| {
            let api = api.clone();
            async move { api.visitor_socket(&token, 0).await }
        })
        .buffer_unordered(o.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|mut ws| {
            let dropped = dropped.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        frame = ws.next() => match frame {
                            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                                dropped.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            Some(Ok(_)) => {}
                        },
                    }
                }
            })
        })
        .collect();
    let open_time = opened.elapsed();
    // The sockets replay the greeting first; let that settle before reading memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_open = pid.and_then(machine::rss_kib);
    progress.say(&format!(
        "idle: holding {} sockets for {:?}",
        readers.len(),
        o.hold
    ));
    tokio::time::sleep(o.hold).await;
    let rss_held = pid.and_then(machine::rss_kib);
    let rss_peak = pid.and_then(machine::peak_rss_kib);
    let dropped_n = dropped.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    let alive = target.alive();

    let mut s = Section::new(
        "idle",
        format!(
            "{} widget sockets, no traffic, held {:?}",
            o.sockets, o.hold
        ),
    );
    s.text(
        "load_start",
        "machine load (1/5/15 min) at start",
        load_start,
    );
    s.num(
        "sessions_s",
        "time to start the sessions",
        sessions_time.as_secs_f64(),
        "s",
    );
    s.num(
        "open_s",
        "time to open the sockets",
        open_time.as_secs_f64(),
        "s",
    );
    s.int("sockets", "sockets open", o.sockets as u64, "");
    memory_figures(&mut s, rss_before, rss_open, rss_held, rss_peak, o.sockets);
    let mib = |k: u64| k as f64 / 1024.0;
    if let Some(r) = rss_sessions {
        s.num(
            "rss_sessions_mib",
            "server RSS after the sessions, before sockets",
            mib(r),
            "MiB",
        );
    }
    if let (Some(a), Some(b)) = (rss_sessions, rss_open)
        && o.sockets > 0
    {
        s.num(
            "rss_per_socket_only_kib",
            "server RSS per socket (socket alone)",
            b.saturating_sub(a) as f64 / o.sockets as f64,
            "KiB",
        );
    }
    s.int(
        "dropped_sockets",
        "sockets the server closed",
        dropped_n as u64,
        "",
    );
    s.text(
        "load_end",
        "machine load (1/5/15 min) at end",
        machine::load_average(),
    );
    s.check(
        "zero_dropped_sockets",
        "no socket dropped",
        dropped_n == 0 && alive,
        if alive {
            format!("{dropped_n} dropped")
        } else {
            "the server exited".into()
        },
    );
    Ok(s)
}
