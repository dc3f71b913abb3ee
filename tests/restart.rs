//! Crash safety and reload under load: `kill -9` loses nothing acknowledged and timers still
//! fire after a restart; a config reload drops no connection.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Bundle;
use common::live::{Api, Console};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_traffic_loses_nothing_acknowledged_and_timers_still_fire() {
    // Visitor A writes as fast as the server answers, far faster than a person: their
    // message limit (`tests/limits.rs`) is raised.
    let server = Bundle::live(1)
        .live_chat(|d| d.accept_timeout("4s"))
        .serve_with(
            &["agent0@acme.example"],
            &[("LIVECHAT_MESSAGE_BURST", "1000000")],
        );
    let api = Api::new(&server.url);
    let Console {
        token: agent,
        stream: mut console,
        ..
    } = api.go_online("agent0@acme.example").await;

    // Visitor A is chatting with the agent.
    let a = api.visitor("support").await;
    let a_token = a["token"].as_str().unwrap().to_string();
    let a_conv = a["conversation_id"].as_str().unwrap().to_string();
    api.post(
        "/api/v1/visitor/actions",
        Some(&a_token),
        json!({"type": "request_live_chat"}),
    )
    .await;
    console.event("livechat.ringing", Some(&a_conv)).await;
    let (status, body) = api
        .post(
            &format!("/api/v1/conversations/{a_conv}/accept"),
            Some(&agent),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Visitor B waits for an agent; nobody will accept, so the accept timer must fire — after
    // the crash, from the deadline stored before it.
    let b = api.visitor("support").await;
    let b_token = b["token"].as_str().unwrap().to_string();
    let b_conv = b["conversation_id"].as_str().unwrap().to_string();
    api.post(
        "/api/v1/visitor/actions",
        Some(&b_token),
        json!({"type": "request_live_chat"}),
    )
    .await;
    console.event("livechat.ringing", Some(&b_conv)).await;
    let b_deadline = tokio::time::Instant::now() + Duration::from_secs(4);

    // Both sides write as fast as they can; every answered write is recorded.
    let acked: Arc<Mutex<Vec<(String, i64, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for side in 0..2 {
        let (api, acked) = (api.clone(), acked.clone());
        let (a_token, agent, a_conv) = (a_token.clone(), agent.clone(), a_conv.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let client_id = format!("s{side}-{i}");
                let (path, token) = if side == 0 {
                    ("/api/v1/visitor/messages".to_string(), a_token.as_str())
                } else {
                    (
                        format!("/api/v1/conversations/{a_conv}/messages"),
                        agent.as_str(),
                    )
                };
                let body = json!({"client_id": client_id, "text": format!("message {client_id}")});
                let sent = api.request("POST", &path).bearer(token).json(body);
                let Ok(reply) = sent.try_send().await else {
                    break;
                };
                if reply.status != 200 {
                    break;
                }
                let Ok(v) = serde_json::from_str::<Value>(&reply.text) else {
                    break;
                };
                acked.lock().unwrap().push((
                    v["message_id"].as_str().unwrap().to_string(),
                    v["seq"].as_i64().unwrap(),
                    client_id,
                ));
            }
        }));
    }
    // Let some traffic through, then pull the plug mid-flight.
    let deadline = tokio::time::Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "traffic did not flow"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = tokio::task::spawn_blocking(move || server.kill_and_restart())
        .await
        .unwrap();
    assert!(
        tokio::time::Instant::now() < b_deadline,
        "the restart took so long that B's timer was due before it; the test proves nothing"
    );
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    println!("{} writes acknowledged before the kill", acked.len());

    // Every acknowledged message is back, with the seq it was acknowledged with.
    let api = Api::new(&server.url);
    let (status, details) = api
        .get(&format!("/api/v1/conversations/{a_conv}"), Some(&agent))
        .await;
    assert_eq!(status, 200, "the session survived the restart: {details}");
    let stored: std::collections::HashMap<String, i64> = details["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    for (id, seq, _) in &acked {
        assert_eq!(
            stored.get(id),
            Some(seq),
            "acknowledged message {id} (seq {seq}) was lost"
        );
    }
    assert_eq!(details["status"], "chatting");

    // The accept timer of B fires after the restart: B hears the timeout.
    let mut widget = api.visitor_stream(&b_token, 0).await;
    widget.event("livechat.timeout", None).await;
    assert!(
        widget
            .seen
            .iter()
            .any(|v| v["data"]["text"] == "Sorry, nobody is free right now."),
        "the visitor was shown the timeout message"
    );

    // And the conversation goes on.
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&a_token),
        json!({"client_id": "after", "text": "still there?"}),
    )
    .await;

    // A retry of an acknowledged write, sent again after the restart, gets the first answer
    // and writes nothing (the writer knows client ids from the log, not from memory); so
    // does one after the chat ended.
    let retry = |client_id: String| {
        let (api, a_token, agent) = (api.clone(), a_token.clone(), agent.clone());
        let a_conv = a_conv.clone();
        async move {
            let (path, token) = if client_id.starts_with("s0-") {
                ("/api/v1/visitor/messages".to_string(), a_token)
            } else {
                (format!("/api/v1/conversations/{a_conv}/messages"), agent)
            };
            let body = json!({"client_id": client_id, "text": format!("message {client_id}")});
            let (status, v) = api.post(&path, Some(&token), body).await;
            assert_eq!(status, 200, "{v}");
            (
                v["message_id"].as_str().unwrap().to_string(),
                v["seq"].as_i64().unwrap(),
            )
        }
    };
    let count = || {
        let (api, agent, a_conv) = (api.clone(), agent.clone(), a_conv.clone());
        async move {
            let (_, details) = api
                .get(&format!("/api/v1/conversations/{a_conv}"), Some(&agent))
                .await;
            details["messages"].as_array().unwrap().len()
        }
    };
    let before = count().await;
    let mut retried: Vec<&(String, i64, String)> = acked.iter().take(3).collect();
    retried.extend(acked.iter().rev().take(3));
    for (id, seq, client_id) in &retried {
        assert_eq!(
            &retry(client_id.clone()).await,
            &(id.clone(), *seq),
            "{client_id}"
        );
    }
    assert_eq!(count().await, before, "a retry wrote nothing");
    api.post_ok(
        "/api/v1/visitor/actions",
        Some(&a_token),
        json!({"type": "end"}),
    )
    .await;
    let (id, seq, client_id) = acked.iter().find(|a| a.2.starts_with("s1-")).unwrap();
    assert_eq!(retry(client_id.clone()).await, (id.clone(), *seq));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_keeps_every_socket_open_and_tells_agents() {
    let server = Bundle::live(1).serve(&["agent0@acme.example"]);
    let api = Api::new(&server.url);
    let agent = api.login("agent0@acme.example").await;
    let mut console = api.agent_stream(&agent, 0).await;
    api.wait_agent(&agent, "agent0@acme.example", |a| a["online"] == true)
        .await;
    let session = api.visitor("support").await;
    let token = session["token"].as_str().unwrap().to_string();
    let mut widget = api.visitor_stream(&token, 0).await;
    widget.event("flow.step", None).await;

    // Edit the bot's greeting; the server reloads while both sockets are open.
    let path = server.bots_dir.join("support.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    common::save_atomically(
        &path,
        &text.replace("Thanks for visiting.", "See you soon."),
    );
    let reloaded = console.event("config.reloaded", None).await;
    assert_eq!(reloaded["data"]["revision"], 2, "{reloaded}");

    // Both sockets still carry events.
    api.post(
        "/api/v1/visitor/messages",
        Some(&token),
        json!({"text": "hello after reload"}),
    )
    .await;
    console
        .wait_for(WAIT, "the message after the reload", |v| {
            v["data"]["text"] == "hello after reload"
        })
        .await;
    widget
        .wait_for(WAIT, "its own message after the reload", |v| {
            v["data"]["text"] == "hello after reload"
        })
        .await;

    // A broken edit is refused; consoles hear why, with the place to fix.
    common::save_atomically(&path, "name = \"Acme Support\"\n[[step]]\nid = 7\n");
    let refused = console.event("config.error", None).await;
    assert_eq!(refused["data"]["revision"], 2, "{refused}");
    assert_eq!(refused["data"]["errors"][0]["file"], "support.toml");
    assert_eq!(refused["data"]["errors"][0]["line"], 3);
    // Putting the live text back ends the refusal: the banner can go.
    common::save_atomically(
        &path,
        &text.replace("Thanks for visiting.", "See you soon."),
    );
    let cleared = console
        .wait_for(WAIT, "the refusal to end", |v| {
            v["type"] == "config.error" && v["data"]["errors"] == serde_json::json!([])
        })
        .await;
    assert_eq!(cleared["data"]["revision"], 2);
}

/// The hub gives each console only the frames of the bots its agent serves, chosen when
/// they are published: a reload that moves the agent into or out of a team changes what
/// their open console hears from the next frame on, without reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rescopes_an_open_console_both_ways() {
    const OLGA: &str = "olga@acme.example";
    let bundle = Bundle::live(1)
        .team("other", &["other"])
        .agent("Olga", OLGA, "other")
        .bot("other", common::bot("Other", "Hi from the other bot"));
    let server = bundle.serve(&[OLGA]);
    let api = Api::new(&server.url);
    let olga = api.login(OLGA).await;
    let mut console = api.agent_stream(&olga, 0).await;
    let say = |token: String, text: &'static str| {
        let api = Api::new(&server.url);
        async move {
            api.post_ok(
                "/api/v1/visitor/messages",
                Some(&token),
                json!({"text": text}),
            )
            .await;
        }
    };
    let token = |v: Value| v["token"].as_str().unwrap().to_string();
    let support = token(api.visitor("support").await);
    let other = token(api.visitor("other").await);
    // Olga's own bot is a marker: what she hears before it, she heard in order.
    let heard_before_marker = |console: &mut common::live::Stream, marker: &'static str| {
        let events = console.events();
        let at = events
            .iter()
            .position(|e| e["data"]["text"] == marker)
            .expect("the marker arrived");
        events[..at]
            .iter()
            .filter_map(|e| e["data"]["text"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };

    say(support.clone(), "support before").await;
    say(other.clone(), "marker 1").await;
    console
        .wait_for(WAIT, "marker 1", |e| e["data"]["text"] == "marker 1")
        .await;
    assert!(
        !heard_before_marker(&mut console, "marker 1").contains(&"support before".to_string()),
        "Olga does not serve support yet"
    );

    // Olga joins the team that serves support.
    let path = server.bots_dir.join("agents.toml");
    let roster = std::fs::read_to_string(&path).unwrap();
    let joined = roster.replace("bots = [\"other\"]", "bots = [\"other\", \"support\"]");
    assert_ne!(joined, roster);
    common::save_atomically(&path, &joined);
    console.event("config.reloaded", None).await;
    say(support.clone(), "support while in").await;
    console
        .wait_for(WAIT, "the support message", |e| {
            e["data"]["text"] == "support while in"
        })
        .await;

    // And leaves it again.
    common::save_atomically(&path, &roster);
    console
        .wait_for(WAIT, "the second reload", |e| {
            e["type"] == "config.reloaded" && e["data"]["revision"] == 3
        })
        .await;
    say(support, "support after").await;
    say(other, "marker 2").await;
    console
        .wait_for(WAIT, "marker 2", |e| e["data"]["text"] == "marker 2")
        .await;
    let heard = heard_before_marker(&mut console, "marker 2");
    assert!(heard.contains(&"support while in".to_string()), "{heard:?}");
    assert!(!heard.contains(&"support after".to_string()), "{heard:?}");
}
