//! Events stored by an earlier release still read: `tests/fixtures/db/v0.1.db` was written
//! by livechat 0.1.0 (before events were typed), and the server of today serves its history.
//!
//! The fixture is made by `make_fixture_db` below, run on the release it stands for:
//! `cargo test --test stored_events -- --ignored make_fixture_db`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestServer;
use common::live::{Api, set_password};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/db/v0.1.db")
}

/// What 0.1.0 answered from that database: visitors' histories (with their tokens) and the
/// stats.
fn answers_file() -> PathBuf {
    fixture().with_extension("json")
}

/// The stats over every event of the fixture, as Diego sees them (the `sales` bot).
const STATS: &str = "/api/v1/stats?from=2000-01-01";

/// Copies `from` into `to`, file by file (the example bundle has no subdirectories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Stops the server the way an operator does (SIGTERM) and waits for it to exit; answers
/// its directory, which outlives it.
fn stop(mut server: TestServer) -> tempfile::TempDir {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "livechat serve exited with {exit}");
    std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/fixtures/db/v0.1.db; run by hand on the release it stands for"]
async fn make_fixture_db() {
    let dir = tempfile::tempdir().unwrap();
    let bots_dir = dir.path().join("bots");
    let data_dir = dir.path().join("data");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots"),
        &bots_dir,
    );
    // Short enough to see a request time out while the fixture is made.
    let sales = bots_dir.join("sales.toml");
    let text = std::fs::read_to_string(&sales).unwrap();
    std::fs::write(
        &sales,
        text.replace("accept_timeout = \"90s\"", "accept_timeout = \"3s\""),
    )
    .unwrap();
    let server = TestServer::start_in(dir, bots_dir, data_dir, &[]);
    let (diego, emma, ana) = (
        "diego.ramos@example.com",
        "emma.rossi@example.com",
        "ana.lima@example.com",
    );
    for email in [diego, emma, ana] {
        set_password(&server.bots_dir, &server.data_dir, email);
    }
    let api = Api::new(&server.url);
    let visitor_action = |token: String, body: Value| {
        let api = api.clone();
        async move {
            let (status, answer) = api
                .post("/api/v1/visitor/actions", Some(&token), body.clone())
                .await;
            assert_eq!(status, 200, "{body}: {answer}");
            answer
        }
    };
    let say = |token: String, text: &'static str| {
        let api = api.clone();
        async move {
            let (status, answer) = api
                .post(
                    "/api/v1/visitor/messages",
                    Some(&token),
                    json!({ "text": text }),
                )
                .await;
            assert_eq!(status, 200, "{text}: {answer}");
        }
    };
    let act = |token: String, conv: String, verb: &'static str, body: Value| {
        let api = api.clone();
        async move {
            let (status, answer) = api.act(&token, &conv, verb, body).await;
            assert_eq!(status, 200, "{verb} {conv}: {answer}");
        }
    };

    // Nobody online: the request goes offline and the visitor leaves a message instead.
    let offline = api.session("sales").await;
    let t = offline.token.clone();
    visitor_action(t.clone(), json!({"type": "choice", "index": 2})).await;
    visitor_action(t.clone(), json!({"type": "request_live_chat"})).await;
    visitor_action(
        t.clone(),
        json!({"type": "form", "form": "callback", "values": {
            "name": "Oskar Offline", "email": "oskar@example.org", "seats": "11–50",
            "message": "Please call me back."
        }}),
    )
    .await;

    let mut d = api.go_online(diego).await;
    let mut e = api.go_online(emma).await;
    let a = api.login(ana).await;

    // A whole live chat: collect name and email, ring, accept, talk, note, transfer to an
    // agent and to a team, unassign, assign, resolve, reopen, resolve, rate, close.
    let chat = api.session("sales").await;
    let (t, c) = (chat.token.clone(), chat.conv.clone());
    visitor_action(t.clone(), json!({"type": "choice", "index": 1})).await;
    visitor_action(
        t.clone(),
        json!({"type": "choice", "value": "I'd like to ask someone"}),
    )
    .await;
    visitor_action(t.clone(), json!({"type": "back"})).await;
    visitor_action(t.clone(), json!({"type": "choice", "index": 0})).await;
    visitor_action(t.clone(), json!({"type": "request_live_chat"})).await;
    say(t.clone(), "Jane Doe").await;
    say(t.clone(), "not an address").await;
    say(t.clone(), "jane@example.com").await;
    d.stream.event("livechat.ringing", Some(&c)).await;
    act(d.token.clone(), c.clone(), "accept", json!({})).await;
    say(t.clone(), "Hello, how much for 20 seats?").await;
    act(
        d.token.clone(),
        c.clone(),
        "messages",
        json!({"text": "Let me check."}),
    )
    .await;
    act(
        d.token.clone(),
        c.clone(),
        "notes",
        json!({"text": "Hot lead."}),
    )
    .await;
    act(
        d.token.clone(),
        c.clone(),
        "transfer",
        json!({"agent": emma}),
    )
    .await;
    act(
        e.token.clone(),
        c.clone(),
        "messages",
        json!({"text": "Emma here."}),
    )
    .await;
    act(
        e.token.clone(),
        c.clone(),
        "transfer",
        json!({"team": "sales-americas"}),
    )
    .await;
    d.stream.event("livechat.ringing", Some(&c)).await;
    act(d.token.clone(), c.clone(), "accept", json!({})).await;
    act(d.token.clone(), c.clone(), "unassign", json!({})).await;
    act(a.clone(), c.clone(), "assign", json!({"agent": diego})).await;
    act(
        d.token.clone(),
        c.clone(),
        "resolve",
        json!({"note": "Sent the quote."}),
    )
    .await;
    say(t.clone(), "One more question!").await;
    act(d.token.clone(), c.clone(), "resolve", json!({})).await;
    visitor_action(
        t.clone(),
        json!({"type": "rate", "rating": "good", "comment": "Quick and kind."}),
    )
    .await;
    act(a.clone(), c.clone(), "close", json!({})).await;

    // An agent takes over from the bot; the visitor ends the chat.
    let taken = api.session("sales").await;
    act(e.token.clone(), taken.conv.clone(), "takeover", json!({})).await;
    say(taken.token.clone(), "Oh, hi!").await;
    visitor_action(taken.token.clone(), json!({"type": "end"})).await;

    // Nobody accepts in time: the request times out to the offline form, which the visitor
    // dismisses, and the flow ends.
    let missed = api.session("sales").await;
    let t = missed.token.clone();
    visitor_action(t.clone(), json!({"type": "choice", "index": 2})).await;
    visitor_action(t.clone(), json!({"type": "request_live_chat"})).await;
    say(t.clone(), "Mia Missed").await;
    say(t.clone(), "mia@example.org").await;
    e.stream.event("livechat.timeout", Some(&missed.conv)).await;
    visitor_action(t.clone(), json!({"type": "skip"})).await;

    // What the visitor saw is in the log; wait for the last of it before stopping.
    let history = api.history(&t, 0).await;
    assert!(
        history.iter().any(|e| e["data"]["end"] == true),
        "{history:?}"
    );

    // What this release answers from the log, for the next one to answer the same: each
    // visitor's history (their token is only stored hashed), and the stats.
    let mut visitors = Vec::new();
    for session in [&offline, &chat, &taken, &missed] {
        visitors.push(json!({
            "token": session.token,
            "history": api.history(&session.token, 0).await,
        }));
    }
    let (status, stats) = api.get(STATS, Some(&d.token)).await;
    assert_eq!(status, 200, "{stats}");
    let answers = json!({ "visitors": visitors, "stats": stats });
    std::fs::write(
        answers_file(),
        serde_json::to_string_pretty(&answers).unwrap() + "\n",
    )
    .unwrap();
    d.stream.close().await;
    e.stream.close().await;
    let data_dir = server.data_dir.clone();
    let _dir = stop(server);

    // `VACUUM INTO`: one self-contained file, nothing left in a WAL, no free pages.
    let out = fixture();
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let db = rusqlite::Connection::open(data_dir.join("livechat.db")).unwrap();
    db.execute("VACUUM INTO ?1", [out.to_str().unwrap()])
        .unwrap();
}

/// The server of today, started on a copy of the 0.1.0 database: agents replay every event
/// as it was stored, each visitor's history and the stats are what 0.1.0 answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_0_1_is_served_as_it_was() {
    let answers: Value =
        serde_json::from_str(&std::fs::read_to_string(answers_file()).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bots_dir = dir.path().join("bots");
    let data_dir = dir.path().join("data");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots"),
        &bots_dir,
    );
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::copy(fixture(), data_dir.join("livechat.db")).unwrap();
    // The fixture's conversations left with the bot are as old as the fixture: a day after
    // it was made, the default `bot_expiry` would end them at start and add events.
    let server = TestServer::start_in(
        dir,
        bots_dir,
        data_dir,
        &[("LIVECHAT_BOT_EXPIRY", "10years")],
    );
    let api = Api::new(&server.url);
    // Diego's password is in the database (the fixture's agents were given `PASSWORD`).
    let diego = api.login("diego.ramos@example.com").await;

    let mut replay = api.agent_stream(&diego, 0).await;
    replay
        .wait_until(Duration::from_secs(10), "the whole log", |seen| {
            seen.iter().any(|v| v["seq"] == 92)
        })
        .await;
    let events = replay.events();
    assert_eq!(events.len(), 92);
    let kinds: BTreeSet<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "conversation.assigned",
            "conversation.closed",
            "conversation.ended",
            "conversation.rated",
            "conversation.reopened",
            "conversation.resolved",
            "conversation.started",
            "conversation.transferred",
            "flow.step",
            "form.submitted",
            "livechat.accepted",
            "livechat.offline",
            "livechat.requested",
            "livechat.ringing",
            "livechat.timeout",
            "message.created",
            "note.created",
        ]
    );

    let mut visible = 0;
    for visitor in answers["visitors"].as_array().unwrap() {
        let token = visitor["token"].as_str().unwrap();
        let history = api.history(token, 0).await;
        assert_eq!(Value::from(history.clone()), visitor["history"]);
        visible += history.len();
    }
    // Every event but the four `livechat.ringing` and the note.
    assert_eq!(visible, 87);

    let (status, stats) = api.get(STATS, Some(&diego)).await;
    assert_eq!(status, 200, "{stats}");
    // The figures 0.1 gave stay the same; figures added since (the video calls) may join.
    for figures in ["total", "bots", "agents"] {
        assert_eq!(
            known_of(&stats[figures], &answers["stats"][figures]),
            answers["stats"][figures],
            "{figures}"
        );
    }
    assert_eq!(stats["total"]["conversations"], 4);

    // Its messages and notes were rows of their own in 0.1; now they are read from the log
    // (`messages` a view over the events, migration 11): every one of them comes back with
    // its id, seq, kind, agent, text and time, and the search index finds them again.
    let old: Vec<(String, Value)> = {
        let db = rusqlite::Connection::open_with_flags(
            fixture(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = db
            .prepare(
                "SELECT conversation_id, id, seq, kind, author, text, at FROM messages
                 ORDER BY seq",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                json!({
                    "id": r.get::<_, String>(1)?,
                    "seq": r.get::<_, i64>(2)?,
                    "kind": r.get::<_, String>(3)?,
                    "agent": r.get::<_, Option<String>>(4)?,
                    "text": r.get::<_, String>(5)?,
                    "at": r.get::<_, String>(6)?,
                }),
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(old.len(), 43);
    let convs: BTreeSet<&str> = old.iter().map(|(c, _)| c.as_str()).collect();
    let mut read_back = 0;
    for conv in convs {
        let (status, details) = api
            .get(&format!("/api/v1/conversations/{conv}"), Some(&diego))
            .await;
        assert_eq!(status, 200, "{details}");
        let mut now: Vec<Value> = details["messages"].as_array().unwrap().clone();
        now.extend(details["notes"].as_array().unwrap().iter().cloned());
        now.sort_by_key(|m| m["seq"].as_i64());
        let then: Vec<Value> = old
            .iter()
            .filter(|(c, _)| c == conv)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(now, then, "{conv}");
        read_back += now.len();
    }
    assert_eq!(read_back, old.len());
    let (status, found) = api
        .get("/api/v1/conversations?q=question", Some(&diego))
        .await;
    assert_eq!(status, 200, "{found}");
    let found: BTreeSet<&str> = found["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = old
        .iter()
        .filter(|(_, m)| {
            m["text"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("question")
        })
        .map(|(c, _)| c.as_str())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(found, want);
}

/// `new` with only the object keys `old` has, at every depth.
fn known_of(new: &Value, old: &Value) -> Value {
    match (new, old) {
        (Value::Object(n), Value::Object(o)) => Value::Object(
            o.keys()
                .filter_map(|k| n.get(k).map(|v| (k.clone(), known_of(v, &o[k]))))
                .collect(),
        ),
        (Value::Array(n), Value::Array(o)) if n.len() == o.len() => {
            Value::Array(n.iter().zip(o).map(|(n, o)| known_of(n, o)).collect())
        }
        _ => new.clone(),
    }
}
