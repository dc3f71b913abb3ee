//! `livechat backup` and `livechat restore`, run as an operator runs them: the real binary
//! beside a real server. A backup taken while visitors and an agent write restores to a
//! server whose log replays from seq 1 without a gap; restore refuses while a server runs,
//! refuses what is not a livechat database; backup overwrites only when told to.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::live::{Api, Console, Session};
use common::{Bundle, TestServer, livechat};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const AGENT: &str = "agent0@acme.example";

/// One agent who takes up to four chats.
fn bundle() -> Bundle {
    Bundle::live(1).max_chats(4)
}

/// `livechat ARGS --data-dir DATA`, to its end.
fn run(args: &[&str], file: &Path, data_dir: &Path) -> Output {
    livechat()
        .args(args)
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The number after `last event seq ` in what backup and restore print.
fn printed_seq(stdout: &str) -> i64 {
    let rest = stdout
        .split("last event seq ")
        .nth(1)
        .unwrap_or_else(|| panic!("no last event seq in {stdout:?}"));
    rest.split(',').next().unwrap().trim().parse().unwrap()
}

fn seq(event: &Value) -> i64 {
    event["seq"].as_i64().unwrap()
}

/// The largest event seq in a database file, read with SQLite directly.
fn stored_last_seq(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .unwrap()
}

/// A message the server acknowledged: its conversation, id and seq, and when.
struct Acked {
    conv: String,
    id: String,
    seq: i64,
    at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_chat_load_restores_to_a_server_whose_log_replays_without_gaps() {
    // The visitors write as fast as they are answered, far faster than people: their
    // message limit (`tests/limits.rs`) is raised.
    let server = bundle().serve_with(&[AGENT], &[("LIVECHAT_MESSAGE_BURST", "1000000")]);
    let api = Api::new(&server.url);
    let Console {
        token: agent,
        stream: mut console,
        ..
    } = api.go_online(AGENT).await;
    let mut visitors: Vec<Session> = Vec::new();
    for _ in 0..3 {
        let v = api.session("support").await;
        api.request_live_chat(&v.token).await;
        console.event("livechat.ringing", Some(&v.conv)).await;
        api.act_ok(&agent, &v.conv, "accept", json!({})).await;
        visitors.push(v);
    }

    // Each visitor and the agent in each chat write as fast as they are answered.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut writers = Vec::new();
    for (n, v) in visitors.iter().enumerate() {
        for side in ["visitor", "agent"] {
            let (api, stop, acked) = (api.clone(), stop.clone(), acked.clone());
            let conv = v.conv.clone();
            let (path, token) = if side == "visitor" {
                ("/api/v1/visitor/messages".to_string(), v.token.clone())
            } else {
                (
                    format!("/api/v1/conversations/{conv}/messages"),
                    agent.clone(),
                )
            };
            writers.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let client_id = format!("{side}{n}-{i}");
                    let body =
                        json!({"client_id": client_id, "text": format!("message {client_id}")});
                    let (status, reply) = api.post(&path, Some(&token), body).await;
                    assert_eq!(status, 200, "{side} {n}: {reply}");
                    acked.lock().unwrap().push(Acked {
                        conv: conv.clone(),
                        id: reply["message_id"].as_str().unwrap().to_string(),
                        seq: reply["seq"].as_i64().unwrap(),
                        at: Instant::now(),
                    });
                    i += 1;
                }
            }));
        }
    }
    console.close().await;
    let deadline = Instant::now() + WAIT;
    // Enough for the copy to take several steps (256 pages of 2 KiB each).
    while acked.lock().unwrap().len() < 2000 {
        assert!(Instant::now() < deadline, "traffic did not flow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The backup, as an operator runs it: another process beside the busy server.
    let backups = tempfile::tempdir().unwrap();
    let file = backups.path().join("livechat-backup.db");
    let started = Instant::now();
    let before: Vec<(String, String, i64)> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.conv.clone(), a.id.clone(), a.seq))
        .collect();
    let out = {
        let (file, data_dir) = (file.clone(), server.data_dir.clone());
        tokio::task::spawn_blocking(move || run(&["backup"], &file, &data_dir))
            .await
            .unwrap()
    };
    let ended = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    let printed = text(&out.stdout);
    println!("{}", printed.trim_end());
    let last_seq = printed_seq(&printed);
    let while_it_ran = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.at > started && a.at < ended)
        .count();
    println!(
        "{} writes acknowledged before the backup started, {while_it_ran} while it ran ({:?})",
        before.len(),
        ended - started
    );
    assert!(
        while_it_ran > 0,
        "the server acknowledged writes while the backup ran"
    );
    let acked_before = before.iter().map(|a| a.2).max().unwrap();
    assert!(
        last_seq >= acked_before,
        "the backup holds every acknowledged write: last seq {last_seq} < {acked_before}"
    );
    drop(server);

    // Restored into a fresh data directory, beside the same bundle.
    let dir = tempfile::tempdir().unwrap();
    let (bots_dir, data_dir) = (dir.path().join("bots"), dir.path().join("data"));
    bundle().write(&bots_dir);
    let out = run(&["restore"], &file, &data_dir);
    assert!(out.status.success(), "restore: {}", text(&out.stderr));
    let printed = text(&out.stdout);
    println!("{}", printed.trim_end());
    assert_eq!(printed_seq(&printed), last_seq);
    let restored = TestServer::start_in(dir, bots_dir, data_dir, &[]);
    let api = Api::new(&restored.url);
    let agent = api.login(AGENT).await;

    // The whole log replays: every seq from 1 to the last, once each, in order.
    let mut log = api.agent_stream(&agent, 0).await;
    log.until_seq(WAIT, last_seq).await;
    let events = log.events();
    let seqs: Vec<i64> = events.iter().map(seq).collect();
    let last = *seqs.last().unwrap();
    assert!(last >= last_seq);
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "the restored log has a gap or a repeat"
    );
    println!("replayed {} events of the restored database", seqs.len());

    // Every message acknowledged before the backup started is there, with its seq.
    let mut stored: HashMap<String, i64> = HashMap::new();
    for v in &visitors {
        let details = api.details(&agent, &v.conv).await;
        assert_eq!(details["status"], "chatting", "{details}");
        for m in details["messages"].as_array().unwrap() {
            stored.insert(
                m["id"].as_str().unwrap().to_string(),
                m["seq"].as_i64().unwrap(),
            );
        }
    }
    for (conv, id, s) in &before {
        assert_eq!(
            stored.get(id),
            Some(s),
            "message {id} of {conv} (seq {s}) acknowledged before the backup is missing"
        );
    }

    // Each visitor's history replays the same after any point, and as their socket does.
    let by_seq: HashMap<i64, &Value> = events.iter().map(|e| (seq(e), e)).collect();
    for v in &visitors {
        let full = api.history(&v.token, 0).await;
        assert!(full.len() > 20, "{} events in {}", full.len(), v.conv);
        for e in &full {
            let logged = by_seq[&seq(e)];
            assert_eq!(
                (&logged["type"], &logged["conversation_id"]),
                (&e["type"], &json!(v.conv)),
                "history event {e} against the log's {logged}"
            );
        }
        let middle = seq(&full[full.len() / 2]);
        let tail: Vec<Value> = full.iter().filter(|e| seq(e) > middle).cloned().collect();
        assert_eq!(api.history(&v.token, middle).await, tail, "after={middle}");
        let mut widget = api.visitor_stream(&v.token, 0).await;
        widget.until_seq(WAIT, seq(full.last().unwrap())).await;
        assert_eq!(
            widget.events(),
            full,
            "the socket replays what history answers"
        );
        widget.close().await;
    }

    // And the chats go on, numbered after the restored log.
    let next = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&visitors[0].token),
            json!({"client_id": "after-restore", "text": "still there?"}),
        )
        .await;
    assert!(seq(&next) > last, "{next}");
}

#[test]
fn restore_refuses_while_a_server_runs_on_the_data_dir_and_works_once_it_stopped() {
    let mut server = bundle().serve(&[]);
    let file = server.dir.path().join("backup.db");
    let out = run(&["backup"], &file, &server.data_dir);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    let backed_up = printed_seq(&text(&out.stdout));
    // More happens after the backup: a visitor arrives.
    let visitor = server
        .api()
        .post("/api/v1/visitor/sessions", None, json!({"bot": "support"}));
    assert_eq!(visitor.0, 201, "{}", visitor.1);

    let out = run(&["restore"], &file, &server.data_dir);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "restore while serving: {stderr}"
    );
    assert!(
        stderr.contains("is running on the data directory") && stderr.contains("stop it first"),
        "{stderr}"
    );
    // A second server on the same directory is refused the same way.
    let out = livechat()
        .args(["serve", "--listen", "127.0.0.1:0", "--bots-dir"])
        .arg(&server.bots_dir)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is running on the data directory"));
    // The running server noticed nothing.
    assert_eq!(server.health()["status"], "ok");

    // Killed (the lock goes with the process), its last commits only in the WAL: now the
    // restore goes through and keeps what it replaced, those commits included.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let data_dir = server.data_dir.clone();
    let db = data_dir.join("livechat.db");
    let out = run(&["restore"], &file, &data_dir);
    assert!(out.status.success(), "restore: {}", text(&out.stderr));
    let printed = text(&out.stdout);
    println!("{}", printed.trim_end());
    let kept = PathBuf::from(
        printed
            .lines()
            .find_map(|l| l.strip_prefix("the database it replaced is kept as "))
            .unwrap_or_else(|| panic!("no kept file in {printed:?}")),
    );
    assert!(
        kept.starts_with(&data_dir)
            && kept
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("livechat.db.before-restore-"),
        "{}",
        kept.display()
    );
    assert!(
        stored_last_seq(&kept) > backed_up,
        "the kept database has the visitor who came after the backup"
    );
    for stale in ["livechat.db-wal", "livechat.db-shm"] {
        assert!(
            !data_dir.join(stale).exists(),
            "{stale} left beside the restored file"
        );
    }
    assert_eq!(stored_last_seq(&db), backed_up);

    // The server starts on the restored database.
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let bots_dir = server.bots_dir.clone();
    drop(server);
    let server = TestServer::start_in(dir, bots_dir, data_dir, &[]);
    assert_eq!(server.health()["status"], "ok");
}

#[test]
fn backup_refuses_to_overwrite_a_file_without_force() {
    let server = bundle().serve(&[]);
    let file = server.dir.path().join("precious.db");
    std::fs::write(&file, "an earlier backup, or something else entirely").unwrap();

    let out = run(&["backup"], &file, &server.data_dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exists; pass --force to overwrite it"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "an earlier backup, or something else entirely"
    );

    let out = run(&["backup", "--force"], &file, &server.data_dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    println!("{}", text(&out.stdout).trim_end());
    assert!(
        std::fs::read(&file)
            .unwrap()
            .starts_with(b"SQLite format 3\0")
    );
    assert_eq!(stored_last_seq(&file), printed_seq(&text(&out.stdout)));
    // Nothing but the file is left beside it (no temporary file, no journal).
    let mut names: Vec<String> = std::fs::read_dir(server.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["bots", "data", "precious.db"]);

    // Where there is no database, there is nothing to back up (and none is created).
    let empty = tempfile::tempdir().unwrap();
    let out = run(&["backup"], &empty.path().join("b.db"), empty.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("there is no database"));
    assert!(!empty.path().join("livechat.db").exists());
}

#[test]
fn restore_refuses_a_file_that_is_not_a_livechat_database() {
    let dir = tempfile::tempdir().unwrap();
    let (bots_dir, data_dir) = (dir.path().join("bots"), dir.path().join("data"));
    // A data directory with a database: a bundle applied.
    let bundle_dir = dir.path().join("bundle");
    bundle().write(&bundle_dir);
    let out = livechat()
        .arg("apply")
        .arg(&bundle_dir)
        .arg("--bots-dir")
        .arg(&bots_dir)
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "apply: {}", text(&out.stderr));
    let db = data_dir.join("livechat.db");
    let original = std::fs::read(&db).unwrap();

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "Dear diary,\n".repeat(100)).unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE revisions (number INTEGER); PRAGMA user_version = 1;")
        .unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    for (file, why) in [
        (&notes, "file is not a database"),
        (&foreign, "no table of config revisions"),
        (&empty, "no schema version"),
    ] {
        let out = run(&["restore"], file, &data_dir);
        let stderr = text(&out.stderr);
        println!("{}", stderr.trim_end());
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
        assert!(
            stderr.contains("is not a livechat database") && stderr.contains(why),
            "{stderr}"
        );
    }
    // The database stayed as it was, and nothing was set aside or left staged.
    assert_eq!(std::fs::read(&db).unwrap(), original);
    let mut names: Vec<String> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".serve.lock", "livechat.db"]);
}

/// Uploads `bytes` as the visitor; answers the attachment.
async fn upload(url: &str, token: &str, name: &str, bytes: &[u8]) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/v1/visitor/attachments?name={name}"))
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    resp.json().await.unwrap()
}

async fn download(url: &str, token: &str, path: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

/// The files under a directory, two levels down (`ab/<name>`).
fn files_under(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(sub.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            names.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_carries_the_attachment_files_and_restore_puts_them_back() {
    let mut server = bundle().serve_with(&[], &[("LIVECHAT_ATTACHMENT_RESERVE", "1MB")]);
    let api = Api::new(&server.url);
    let visitor = api.session("support").await;
    let pdf = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n".to_vec();
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(40, 30, image::Rgb([1, 2, 3]))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let png = png.into_inner();
    let a_pdf = upload(&server.url, &visitor.token, "a.pdf", &pdf).await;
    let a_png = upload(&server.url, &visitor.token, "b.png", &png).await;
    assert!(a_png["preview_url"].is_string(), "{a_png}");

    let file = server.dir.path().join("backup.db");
    let out = run(&["backup"], &file, &server.data_dir);
    let printed = text(&out.stdout);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    // The PDF, the picture and its preview.
    assert!(printed.contains("3 attachment files (3 new)"), "{printed}");
    let files_dir = server.dir.path().join("backup.db.files");
    assert_eq!(files_under(&files_dir).len(), 3);
    // Again with --force: nothing new is copied.
    let out = run(&["backup", "--force"], &file, &server.data_dir);
    assert!(
        text(&out.stdout).contains("3 attachment files (0 new)"),
        "{}",
        text(&out.stdout)
    );

    // The server's disk loses its files; the restore brings them back.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let data_dir = server.data_dir.clone();
    std::fs::remove_dir_all(data_dir.join("files")).unwrap();
    let out = run(&["restore"], &file, &data_dir);
    let printed = text(&out.stdout);
    assert!(out.status.success(), "restore: {}", text(&out.stderr));
    assert!(printed.contains("3 attachment files (3 new)"), "{printed}");
    assert_eq!(
        files_under(&data_dir.join("files")),
        files_under(&files_dir)
    );

    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let bots_dir = server.bots_dir.clone();
    drop(server);
    let server = TestServer::start_in(dir, bots_dir, data_dir, &[]);
    for (a, bytes) in [(&a_pdf, &pdf), (&a_png, &png)] {
        let path = a["url"].as_str().unwrap();
        let (status, got) = download(&server.url, &visitor.token, path).await;
        assert_eq!((status, &got), (200, bytes), "{a}");
    }
    let (status, _) = download(
        &server.url,
        &visitor.token,
        a_png["preview_url"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}
