//! `startup`: from spawning `livechat serve` to its first `200` on `/healthz`, repeated; on a
//! fresh data directory (the database is created and migrated) and on an existing one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::Progress;
use super::machine;
use super::report::Section;
use super::server::{BundleSpec, listening_line, livechat};
use super::stats::Samples;

#[derive(Debug, Clone)]
pub struct StartupOpts {
    pub repeats: usize,
}

pub async fn run(bin: &Path, o: &StartupOpts, progress: &Progress) -> anyhow::Result<Section> {
    let size = machine::file_mib(bin);
    let bin = bin.to_path_buf();
    let repeats = o.repeats;
    progress.say(&format!(
        "startup: {repeats} cold starts, fresh and existing data"
    ));
    let load_start = machine::load_average();
    let (fresh, existing) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let dir = tempfile::Builder::new()
            .prefix("livechat-bench-startup-")
            .tempdir()?;
        let bots = dir.path().join("bots");
        BundleSpec {
            agents: 1,
            team_size: 1,
            max_chats: 1,
        }
        .write(&bots)?;
        let mut fresh = (Samples::default(), Samples::default());
        let mut existing = (Samples::default(), Samples::default());
        for i in 0..repeats {
            let (listening, healthy) =
                start_once(&bin, &bots, &dir.path().join(format!("data{i}")))?;
            fresh.0.push(listening);
            fresh.1.push(healthy);
        }
        // Starts on the database of the first run.
        for _ in 0..repeats {
            let (listening, healthy) = start_once(&bin, &bots, &dir.path().join("data0"))?;
            existing.0.push(listening);
            existing.1.push(healthy);
        }
        Ok((fresh, existing))
    })
    .await??;
    let mut s = Section::new(
        "startup",
        format!("{repeats} starts of `livechat serve` each, fresh and existing data directory"),
    );
    s.text(
        "load_start",
        "machine load (1/5/15 min) at start",
        load_start,
    );
    s.latency(
        "fresh_listening",
        "fresh data: spawn → listening line",
        fresh.0.summary(),
    );
    s.latency(
        "fresh_healthz",
        "fresh data: spawn → first 200 /healthz",
        fresh.1.summary(),
    );
    s.latency(
        "existing_listening",
        "existing data: spawn → listening line",
        existing.0.summary(),
    );
    s.latency(
        "existing_healthz",
        "existing data: spawn → first 200 /healthz",
        existing.1.summary(),
    );
    if let Some(size) = size {
        s.num("binary_mib", "server binary size", size, "MiB");
    }
    s.text(
        "load_end",
        "machine load (1/5/15 min) at end",
        machine::load_average(),
    );
    Ok(s)
}

/// One start: (spawn → listening line, spawn → first 200 from /healthz).
fn start_once(bin: &Path, bots: &Path, data: &Path) -> anyhow::Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let mut child = livechat(bin)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--bots-dir")
        .arg(bots)
        .arg("--data-dir")
        .arg(data)
        .env("LIVECHAT_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let result = (|| {
        let url = listening_line(stdout, Duration::from_secs(30))
            .ok_or_else(|| anyhow!("no listening line"))?;
        let listening = t0.elapsed();
        let addr = url.trim_start_matches("http://").to_string();
        loop {
            if healthz_ok(&addr) {
                return Ok((listening, t0.elapsed()));
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("no 200 from http://{addr}/healthz within 10 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// One plain HTTP/1.1 request on a fresh connection: is the answer a 200?
fn healthz_ok(addr: &str) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
