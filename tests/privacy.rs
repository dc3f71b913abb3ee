//! Personal data end to end, on the real server: an admin exports a visitor and erases
//! them, and afterwards their words are nowhere (the database and WAL files' bytes, the
//! search, the mail directory) while another visitor's are untouched and the event log
//! replays without a gap, the erased conversations' events left as tombstones; agents are
//! refused both. Retention erases a settled conversation once it is older than the setting;
//! the command line exports while a server runs and erases only once it stopped.

#[macro_use]
mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::live::{Api, Console, set_password};
use common::{Bundle, TestServer};
use serde_json::{Value, json};

const AGENT: &str = "agent0@acme.example";
const BOSS: &str = "boss@acme.example";
const WAIT: Duration = Duration::from_secs(20);

/// Whether the server's store holds `text`. On SQLite: anywhere in the bytes of the
/// database and its WAL, as they are on disk (freed pages too: `secure_delete`). On
/// PostgreSQL: in any row (a deleted row's bytes stay in dead tuples until VACUUM, as
/// docs/privacy.md says).
fn stored(server: &TestServer, text: &str) -> bool {
    if server.database_url().is_some() {
        return server.everything_stored().iter().any(|v| v.contains(text));
    }
    let data_dir = &server.data_dir;
    let mut bytes = std::fs::read(data_dir.join("livechat.db")).unwrap();
    if let Ok(wal) = std::fs::read(data_dir.join("livechat.db-wal")) {
        bytes.extend(wal);
    }
    holds(&bytes, text)
}

/// How many stored attachment files hold `needle`: files under `DATA_DIR/files` and, on
/// PostgreSQL, contents and previews in `file_contents` (one that holds it in any piece).
fn files_with(server: &TestServer, needle: &str) -> usize {
    let mut found = 0;
    let mut dirs = vec![server.data_dir.join("files")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if holds(&std::fs::read(&path).unwrap_or_default(), needle) {
                found += 1;
            }
        }
    }
    if server.database_url().is_some() {
        let needle = needle.replace('\'', "''");
        let holding = format!(
            "SELECT count(*) FROM (SELECT DISTINCT sha256, preview FROM file_contents \
             WHERE position(convert_to('{needle}', 'UTF8') IN data) > 0) f"
        );
        found += usize::try_from(server.count(&holding)).unwrap();
    }
    found
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Mail files (quoted-printable soft line breaks joined) that mention `needle`.
fn mails_with(data_dir: &Path, needle: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(data_dir.join("mail")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let path = e.ok()?.path();
        let text = std::fs::read_to_string(&path).ok()?;
        let joined = text.replace("=\r\n", "").replace("=\n", "");
        joined
            .contains(needle)
            .then(|| path.file_name().unwrap().to_string_lossy().into_owned())
    })
    .collect()
}

async fn search(api: &Api, token: &str, word: &str) -> Vec<String> {
    let body = api
        .get_ok(&format!("/api/v1/conversations?q={word}"), Some(token))
        .await;
    body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

async fn say(api: &Api, token: &str, text: &str) -> Value {
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(token),
        json!({ "text": text }),
    )
    .await
}

/// The whole log as an admin's console replays it, up to `last`; asserts it has no gap.
async fn replay(api: &Api, admin: &str, last: i64) -> Vec<Value> {
    let mut log = api.agent_stream(admin, 0).await;
    log.until_seq(WAIT, last).await;
    let events = log.events();
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=*seqs.last().unwrap()).collect::<Vec<_>>(),
        "the log replays with a gap or a repeat"
    );
    log.close().await;
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_visitor_is_gone_from_the_database_search_and_mail_and_the_log_stays_whole() {
    let alpha = "zqxalphamarker";
    let beta = "zqxbetamarker";
    let server = Bundle::live(1)
        .live_chat(|d| d.accept_timeout("2s"))
        .serve(&[AGENT, BOSS]);
    let api = Api::new(&server.url);
    let Console {
        token: agent,
        stream: mut console,
        ..
    } = api.go_online(AGENT).await;
    let boss = api.login(BOSS).await;

    // Visitor A: a message, a request nobody takes (a missed-request mail quoting them),
    // the offline form (a stored form and its mail), then a chat with the agent.
    let started = api.visitor("support").await;
    let a_token = started["token"].as_str().unwrap().to_string();
    let a_conv = started["conversation_id"].as_str().unwrap().to_string();
    let a_id = started["visitor_id"].as_str().unwrap().to_string();
    let mut widget = api.visitor_stream(&a_token, 0).await;
    say(&api, &a_token, &format!("my parcel {alpha} is late")).await;
    api.request_live_chat(&a_token).await;
    widget.event("livechat.timeout", None).await;
    let values = json!({"email": "alpha@example.com", "message": format!("call me about {alpha}")});
    api.post_ok(
        "/api/v1/visitor/actions",
        Some(&a_token),
        json!({"type": "form", "form": "contact", "values": values}),
    )
    .await;
    api.request_live_chat(&a_token).await;
    api.act_ok(&agent, &a_conv, "accept", json!({})).await;
    say(&api, &a_token, &format!("{alpha} again")).await;
    api.post_ok(
        &format!("/api/v1/conversations/{a_conv}/messages"),
        Some(&agent),
        json!({"text": format!("noted, {alpha}")}),
    )
    .await;

    // A picture with the marker in its name and its bytes, sent in the chat.
    let mut picture = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0".to_vec();
    picture.extend_from_slice(format!("tEXt comment {alpha}").as_bytes());
    let upload: Value = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/visitor/attachments?name=parcel-{alpha}.png",
            server.url
        ))
        .bearer_auth(&a_token)
        .header("content-type", "image/png")
        .body(picture)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let file_id = upload["id"].as_str().unwrap_or_else(|| panic!("{upload}"));
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&a_token),
        // Its client id is the visitor's text too: the erase takes it from the log.
        json!({"client_id": format!("cid-{alpha}"), "attachments": [file_id]}),
    )
    .await;
    assert_eq!(files_with(&server, alpha), 1);

    // Visitor B, who stays.
    let b = api.session("support").await;
    say(&api, &b.token, &format!("hello {beta}")).await;

    // Before: A is found everywhere.
    assert_eq!(search(&api, &boss, alpha).await, vec![a_conv.clone()]);
    let deadline = tokio::time::Instant::now() + WAIT;
    while mails_with(&server.data_dir, alpha).len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the missed-request and offline-form mails were not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stored(&server, alpha));

    // Agents may neither export nor erase; admins may.
    let export = format!("/api/v1/visitors/{a_id}/export");
    let erase = format!("/api/v1/visitors/{a_id}");
    assert_error!(api.get(&export, Some(&agent)).await, 403, "not_allowed");
    assert_error!(
        api.call("DELETE", &erase, Some(&agent), None).await,
        403,
        "not_allowed"
    );
    let reply = api.request("GET", &export).bearer(&boss).send().await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .header("content-disposition")
            .is_some_and(|d| d.contains(&format!("visitor-{a_id}.json"))),
        "{:?}",
        reply.header("content-disposition")
    );
    let exported = reply.body;
    assert_eq!(exported["visitor"]["id"], json!(a_id));
    assert_eq!(exported["visitor"]["email"], "alpha@example.com");
    assert_eq!(exported["conversations"][0]["id"], json!(a_conv));
    let texts: Vec<&str> = exported["conversations"][0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        texts.contains(&format!("my parcel {alpha} is late").as_str())
            && texts.contains(&format!("noted, {alpha}").as_str()),
        "{texts:?}"
    );
    assert_eq!(
        exported["forms"][0]["values"]["message"],
        json!(format!("call me about {alpha}"))
    );
    assert_eq!(
        exported["attachments"][0]["name"],
        json!(format!("parcel-{alpha}.png")),
        "{exported}"
    );

    // The erase.
    let (status, body) = api.call("DELETE", &erase, Some(&boss), None).await;
    assert_eq!(status, 200, "{body}");
    println!("erase answered {body}");
    assert_eq!(body["erased"]["conversations"], 1, "{body}");
    assert_eq!(body["erased"]["forms"], 1, "{body}");
    assert!(body["erased"]["messages"].as_u64().unwrap() >= 3, "{body}");
    assert!(
        body["erased"]["mail_files"].as_u64().unwrap() >= 2,
        "{body}"
    );

    // A's widget is told and closed; their token opens nothing any more.
    let told = widget
        .wait_for(WAIT, "the erased frame", |f| f["type"] == "error")
        .await;
    assert_eq!(told["error"]["code"], "visitor_erased", "{told}");
    assert_eq!(widget.next_frame(Duration::from_secs(5)).await, None);
    assert_error!(
        api.get("/api/v1/visitor/history", Some(&a_token)).await,
        401,
        "invalid_token"
    );
    assert_error!(
        say_status(&api, &a_token, "still here?").await,
        401,
        "invalid_token"
    );
    // The console heard of it, and the agent's load is back to nothing.
    console
        .event("conversation.erased", Some(a_conv.as_str()))
        .await;
    assert_eq!(api.agent_view(&boss, AGENT).await["active_chats"], 0);

    // Nowhere to be found: API, search, export, database files, mail directory.
    assert_error!(
        api.get(&format!("/api/v1/conversations/{a_conv}"), Some(&boss))
            .await,
        404,
        "not_found"
    );
    assert_eq!(search(&api, &boss, alpha).await, Vec::<String>::new());
    assert_error!(api.get(&export, Some(&boss)).await, 404, "not_found");
    assert_error!(
        api.call("DELETE", &erase, Some(&boss), None).await,
        404,
        "not_found"
    );
    assert_eq!(
        files_with(&server, alpha),
        0,
        "the erased visitor's file is still stored"
    );
    assert!(
        !stored(&server, alpha),
        "the erased text is still in the database or WAL file"
    );
    assert!(
        !stored(&server, "alpha@example.com"),
        "the erased address is still in the database or WAL file"
    );
    assert_eq!(mails_with(&server.data_dir, alpha), Vec::<String>::new());

    // B is untouched.
    assert_eq!(search(&api, &boss, beta).await, vec![b.conv.clone()]);
    assert!(stored(&server, beta));
    let after = say(&api, &b.token, "B goes on").await;
    let last = after["seq"].as_i64().unwrap();
    let b_history = api.history(&b.token, 0).await;
    assert!(
        b_history
            .iter()
            .any(|e| e["data"]["text"] == format!("hello {beta}")),
        "{b_history:?}"
    );

    // The log replays from 1 without a gap; A's events are tombstones without text.
    let events = replay(&api, &boss, last).await;
    let tombstones: Vec<&Value> = events
        .iter()
        .filter(|e| e["conversation_id"] == json!(a_conv))
        .collect();
    assert!(tombstones.len() > 10, "{} tombstones", tombstones.len());
    for t in &tombstones {
        assert_eq!(t["type"], "redacted", "{t}");
        assert_eq!(t["data"], json!({}), "{t}");
    }
    assert!(
        events.iter().all(|e| !e.to_string().contains(alpha)),
        "a replayed event still holds the erased text"
    );
    assert!(
        events.iter().any(|e| e["conversation_id"] == json!(b.conv)
            && e["type"] == "message.created"
            && e["data"]["text"] == format!("hello {beta}")),
        "B's events replay as they were"
    );
    // A replay from the middle of the erased stretch goes on from there.
    let middle = tombstones[tombstones.len() / 2]["seq"].as_i64().unwrap();
    let mut tail = api.agent_stream(&boss, middle).await;
    let first = tail.until_seq(WAIT, middle + 1).await;
    assert_eq!(first["seq"], json!(middle + 1), "{first}");
    tail.close().await;
}

async fn say_status(api: &Api, token: &str, text: &str) -> (u16, Value) {
    api.post(
        "/api/v1/visitor/messages",
        Some(token),
        json!({ "text": text }),
    )
    .await
}

fn cli(server: &TestServer, args: &[&str]) -> Output {
    server
        .livechat()
        .args(args)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .arg("--bots-dir")
        .arg(&server.bots_dir)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_settled_chats_and_the_command_line_erases_once_the_server_stopped() {
    let gamma = "zqxgammamarker";
    let delta = "zqxdeltamarker";
    let mut server = TestServer::start(
        |dir| Bundle::live(1).write(dir),
        &[("LIVECHAT_RETENTION", "2s")],
    );
    set_password(&server.bots_dir, &server.data_dir, AGENT);
    set_password(&server.bots_dir, &server.data_dir, BOSS);
    let api = Api::new(&server.url);
    let agent = api.login(AGENT).await;
    let boss = api.login(BOSS).await;

    // C's chat is closed; D's stays open (with the bot).
    let c = api.session("support").await;
    say(&api, &c.token, &format!("old news {gamma}")).await;
    api.act_ok(&agent, &c.conv, "close", json!({})).await;
    let d = api.visitor("support").await;
    let d_token = d["token"].as_str().unwrap();
    let d_conv = d["conversation_id"].as_str().unwrap();
    let d_id = d["visitor_id"].as_str().unwrap();
    say(&api, d_token, &format!("still talking {delta}")).await;

    // Within a few sweeps after it is 2 s old, C's conversation and profile are gone.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = api
            .get(&format!("/api/v1/conversations/{}", c.conv), Some(&boss))
            .await;
        if status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not erase the closed conversation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_error!(
        api.get("/api/v1/visitor/history", Some(&c.token)).await,
        401,
        "invalid_token"
    );
    assert_eq!(search(&api, &boss, gamma).await, Vec::<String>::new());
    // The sweep cuts the WAL back just after its commit, which the 404 above may precede.
    let deadline = tokio::time::Instant::now() + WAIT;
    while stored(&server, gamma) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the swept text stays in the database or WAL file"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // D's open conversation is kept, and the log is whole, C's part as tombstones.
    assert_eq!(api.details(&boss, d_conv).await["status"], "bot");
    let last = say(&api, d_token, "later").await["seq"].as_i64().unwrap();
    let events = replay(&api, &boss, last).await;
    let c_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["conversation_id"] == json!(c.conv))
        .collect();
    assert!(!c_events.is_empty());
    assert!(
        c_events
            .iter()
            .all(|e| e["type"] == "redacted" && e["data"] == json!({})),
        "{c_events:?}"
    );

    // D sends a file: the command-line erase removes it from DATA_DIR/files too.
    let upload = api
        .request("POST", "/api/v1/visitor/attachments?name=notes.pdf")
        .bearer(d_token)
        .header("Content-Type", "application/pdf")
        .body(format!("%PDF-1.4 {delta} file"))
        .send()
        .await;
    assert_eq!(upload.status, 201, "{}", upload.body);
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(d_token),
        json!({"attachments": [upload.body["id"]]}),
    )
    .await;
    assert_eq!(files_with(&server, delta), 1);

    // The command line: export works beside the server, erase refuses while it runs…
    let out = cli(&server, &["visitor", "export", d_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(exported["visitor"]["id"], json!(d_id));
    assert!(String::from_utf8_lossy(&out.stdout).contains(delta));
    let out = cli(&server, &["visitor", "erase", d_id]);
    assert_eq!(out.status.code(), Some(3));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("DELETE /api/v1/visitors/"), "{said}");
    assert!(stored(&server, delta));

    // …and works once it stopped (on PostgreSQL once no replica was heard from for 15 s:
    // one killed leaves its heartbeat behind).
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let stopped = Instant::now();
    let out = loop {
        let out = cli(&server, &["visitor", "erase", d_id]);
        if out.status.code() != Some(3) || server.database_url().is_none() {
            break out;
        }
        assert!(stopped.elapsed() < Duration::from_secs(25), "still refused");
        std::thread::sleep(Duration::from_millis(500));
    };
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", printed.trim_end());
    assert!(
        printed.starts_with(&format!("erased visitor {d_id}: 1 conversations")),
        "{printed}"
    );
    assert!(!stored(&server, delta));
    assert!(printed.contains(", 1 attachment files"), "{printed}");
    assert_eq!(files_with(&server, delta), 0, "the file is still stored");
    let out = cli(&server, &["visitor", "export", d_id]);
    assert_eq!(out.status.code(), Some(1));
}
