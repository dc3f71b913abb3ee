//! A full disk under the data directory, for real: a size-limited tmpfs (mounted as root)
//! holds the database and a filler file. Writes answer `503 storage_unavailable` with
//! `Retry-After`, `/healthz` says `degraded`, reads and open sockets keep working, and once
//! the filler is deleted writes succeed again without a restart, with nothing acknowledged
//! lost (also after `kill -9`).

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::live::{Api, PASSWORD, set_password};
use common::{Bundle, TestServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// A tmpfs of `size` mounted on a fresh directory; unmounted when dropped (after the server
/// that used it has been dropped: declare it first).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root for it (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.dir.path()).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Still busy (a process of a failed test holds a file): detach it anyway.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Writes zeros into `path` until the file system is full; answers the bytes written.
fn fill(path: &Path, leave: u64) -> u64 {
    use std::io::Write;
    let free = livechat_free_bytes(path.parent().unwrap());
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    while written + (chunk.len() as u64) + leave <= free {
        match file.write_all(&chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(_) => break,
        }
    }
    file.sync_all().unwrap();
    written
}

/// Free bytes of the file system holding `dir`, as `df` reports them.
fn livechat_free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

fn message(i: usize, size: usize) -> Value {
    json!({"client_id": format!("m{i}"), "text": format!("m{i} {}", "x".repeat(size))})
}

/// The client ids of the visitor's messages, as `history` replays them.
async fn stored_messages(api: &Api, token: &str) -> Vec<String> {
    api.history(token, 0)
        .await
        .iter()
        .filter(|e| e["type"] == "message.created" && e["data"]["author"] == "visitor")
        .filter_map(|e| e["data"]["text"].as_str())
        .map(|t| t.split(' ').next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_keeps_reads_and_resumes_with_nothing_acknowledged_lost() {
    let tmpfs = Tmpfs::mount("8m");
    let dir = tempfile::tempdir().unwrap();
    let bots_dir = dir.path().join("bots");
    let data_dir: PathBuf = tmpfs.path().join("data");
    Bundle::live(1).write(&bots_dir);
    // The filler first, so that the database soon hits the end of the disk and deleting the
    // filler makes room at once. 1.5 MB are left: below the warning threshold of 2 MB.
    let filler = tmpfs.path().join("filler");
    let filled = fill(&filler, 1_500_000);
    println!("filler: {filled} bytes");
    // One visitor writes until the disk is full, far faster than a person: their message
    // limit (`tests/limits.rs`) is raised.
    let env = [
        ("LIVECHAT_LOW_SPACE_WARNING", "2MB"),
        ("LIVECHAT_MESSAGE_BURST", "1000000"),
    ];
    let server = tokio::task::spawn_blocking(move || {
        let server = TestServer::start_in(dir, bots_dir.clone(), data_dir.clone(), &env);
        set_password(&bots_dir, &data_dir, "agent0@acme.example");
        server
    })
    .await
    .unwrap();
    // Warned before it runs out: the free space is measured at the start.
    let warning = server
        .logged("low disk space", WAIT)
        .expect("a low-space warning in the log");
    println!("logged: {warning}");
    assert!(server.health()["store"]["low_space"] == true);

    let api = Api::new(&server.url);
    let agent = api
        .post_ok(
            "/api/v1/auth/login",
            None,
            json!({"email": "agent0@acme.example", "password": PASSWORD}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let visitor = api.session("support").await;
    let mut socket = api.visitor_stream(&visitor.token, 0).await;

    // Write until the disk is full, with smaller messages once large ones no longer fit;
    // every acknowledged write is remembered.
    let mut acked = Vec::new();
    let mut size = 4000;
    let refused = loop {
        let i = acked.len();
        assert!(i < 5000, "the disk never filled");
        let reply = api
            .request("POST", "/api/v1/visitor/messages")
            .bearer(&visitor.token)
            .json(message(i, size))
            .send()
            .await;
        match reply.status {
            200 | 201 => acked.push(format!("m{i}")),
            _ if size > 10 => size /= 10,
            _ => break reply,
        }
    };
    println!(
        "acknowledged before the disk was full: {} messages; then {} {} (Retry-After: {:?})",
        acked.len(),
        refused.status,
        refused.text,
        refused.header("retry-after")
    );
    assert_error!(
        refused,
        503,
        "storage_unavailable",
        "the write on a full disk"
    );
    assert_eq!(refused.header("retry-after"), Some("10"));
    assert!(
        acked.len() > 10,
        "the disk filled too soon: {}",
        acked.len()
    );
    let failed_id = format!("m{}", acked.len());

    // Other writes are refused the same way: a new visitor, an agent's note.
    let (status, body) = api
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "support", "page_url": "https://acme.example/"}),
        )
        .await;
    assert_error!((status, body), 503, "storage_unavailable", "a new session");

    // Health and metrics say so.
    let health = server.health();
    println!("/healthz during the fault: {health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["writable"], false, "{health}");
    assert!(
        health["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("full")),
        "{health}"
    );
    let metrics = api.request("GET", "/metrics").send().await;
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    assert!(
        metrics.text.contains("\nlivechat_store_writable 0\n"),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("\nlivechat_data_dir_low_space 1\n"));
    assert!(
        server
            .logged("the database cannot be written", WAIT)
            .is_some()
    );

    // Reads go on: the visitor's history, the agent's list, a new socket.
    assert_eq!(stored_messages(&api, &visitor.token).await, acked);
    let list = api.get_ok("/api/v1/conversations", Some(&agent)).await;
    assert!(
        list.to_string().contains(&visitor.conv),
        "the agent's list: {list}"
    );
    let details = api.details(&agent, &visitor.conv).await;
    assert_eq!(details["id"], visitor.conv.as_str(), "{details}");
    api.visitor_stream(&visitor.token, 0).await.close().await;

    // Room again: the health turns back by itself (the server tries a write now and then)…
    std::fs::remove_file(&filler).unwrap();
    let (health, took) = tokio::task::block_in_place(|| {
        server.wait_for(WAIT, "the store writable again", |h| h["status"] == "ok")
    });
    println!("/healthz {took:?} after the filler was deleted: {health}");
    assert_eq!(health["store"]["writable"], true);

    // …and writes succeed again, the refused one retried with its client id included.
    let retried = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            message(acked.len(), 4000),
        )
        .await;
    assert_eq!(
        retried["duplicate"], false,
        "the refused write was not stored"
    );
    acked.push(failed_id);
    for _ in 0..3 {
        api.post_ok(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            message(acked.len(), 4000),
        )
        .await;
        acked.push(format!("m{}", acked.len()));
    }
    api.session("support").await;
    // The socket open through the fault hears the new messages.
    let last = acked.last().unwrap().clone();
    socket
        .wait_for(WAIT, "the last message on the socket", |v| {
            v["type"] == "message.created"
                && v["data"]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("{last} ")))
        })
        .await;
    assert_eq!(stored_messages(&api, &visitor.token).await, acked);

    // Nothing acknowledged is lost through a kill -9 either.
    let server = tokio::task::spawn_blocking(move || server.kill_and_restart())
        .await
        .unwrap();
    let api = Api::new(&server.url);
    assert_eq!(stored_messages(&api, &visitor.token).await, acked);
    println!(
        "after kill -9 and a restart: all {} acknowledged messages are there",
        acked.len()
    );
    drop(server);
    drop(tmpfs);
}
