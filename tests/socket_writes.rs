//! Messages and notes written over the event sockets (#15): the same writes as
//! `POST /api/v1/visitor/messages` and `POST /api/v1/conversations/{id}/{messages,notes}`,
//! answered by an `ack` frame after the commit. Every body that HTTP refuses is refused on
//! the socket with the same status and code; a `client_id` sent twice (on the socket, by
//! HTTP, or both) is stored once; each socket writes only where its owner may.

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::live::{Api, Stream, agent_email};
use common::{Bundle, bot};

const WAIT: Duration = Duration::from_secs(10);
const OLGA: &str = "olga@acme.example";

/// Sends `frame` and waits for the ack that carries its `client_id`.
async fn write(stream: &mut Stream, frame: Value) -> Value {
    let id = frame["client_id"].clone();
    stream
        .ws
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    stream
        .wait_for(WAIT, "the ack", |f| {
            f["type"] == "ack" && f["client_id"] == id
        })
        .await
}

/// `frame` with `client_id` set (a fresh one per call site).
fn with_id(mut frame: Value, id: &str) -> Value {
    frame["client_id"] = json!(id);
    frame
}

/// The status and code HTTP gives `body`, and those the socket's ack gives the same body.
async fn both_ways(
    api: &Api,
    stream: &mut Stream,
    path: &str,
    token: &str,
    frame: Value,
) -> ((u16, Value), (u16, Value)) {
    let mut body = frame.clone();
    let map = body.as_object_mut().unwrap();
    map.remove("type");
    map.remove("conversation_id");
    let (status, answer) = api.post(path, Some(token), body).await;
    let ack = write(stream, frame).await;
    (
        (status, answer["error"]["code"].clone()),
        (
            ack["status"].as_u64().unwrap_or(200) as u16,
            ack["error"]["code"].clone(),
        ),
    )
}

/// The visitor messages of a conversation with `text`, as its agent sees them.
async fn messages_with(api: &Api, agent: &str, conv: &str, text: &str) -> usize {
    api.details(agent, conv).await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["text"] == text)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_socket_match_http_and_are_stored_once() {
    let server = Bundle::live(1)
        .team("other", &["other"])
        .agent("Olga", OLGA, "other")
        .bot("other", bot("Other", "Hi from the other bot"))
        // The visitor writes more at once than a person would (each refusal both ways, then
        // twenty together): their message limit (`tests/limits.rs`) is raised.
        .serve_with(
            &[&agent_email(0), OLGA],
            &[("LIVECHAT_MESSAGE_BURST", "1000")],
        );
    let api = Api::new(&server.url);
    let mut ana = api.go_online(&agent_email(0)).await;
    let visitor = api.session("support").await;
    let mut widget = api.visitor_stream(&visitor.token, 0).await;
    api.request_live_chat(&visitor.token).await;
    let conv = visitor.conv.clone();
    api.act_ok(&ana.token, &conv, "accept", json!({})).await;

    // The visitor writes on the socket: an ack after the commit, with what HTTP answers,
    // and the message's event to both sides.
    let ack = write(
        &mut widget,
        json!({"type": "message", "client_id": "w1", "text": "over the socket"}),
    )
    .await;
    assert_eq!(ack["conversation_id"], conv.as_str(), "{ack}");
    assert_eq!(ack["duplicate"], false, "{ack}");
    let seq = ack["seq"].as_i64().expect("a seq");
    let created = ana
        .stream
        .wait_for(WAIT, "the visitor's message", |f| {
            f["type"] == "message.created" && f["data"]["text"] == "over the socket"
        })
        .await;
    assert_eq!(created["data"]["message_id"], ack["message_id"]);
    assert_eq!(created["seq"], seq);

    // The same client_id again, on the socket and by HTTP: the same message, stored once.
    let again = write(
        &mut widget,
        json!({"type": "message", "client_id": "w1", "text": "over the socket"}),
    )
    .await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["message_id"], ack["message_id"]);
    let http = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            json!({"client_id": "w1", "text": "over the socket"}),
        )
        .await;
    assert_eq!(http["duplicate"], true, "{http}");
    assert_eq!(http["message_id"], ack["message_id"]);
    // And the other way: by HTTP first, then on the socket.
    let first = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            json!({"client_id": "w2", "text": "by HTTP first"}),
        )
        .await;
    let retried = write(
        &mut widget,
        json!({"type": "message", "client_id": "w2", "text": "by HTTP first"}),
    )
    .await;
    assert_eq!(retried["message_id"], first["message_id"], "{retried}");
    assert_eq!(
        messages_with(&api, &ana.token, &conv, "over the socket").await,
        1
    );
    assert_eq!(
        messages_with(&api, &ana.token, &conv, "by HTTP first").await,
        1
    );

    // Every refusal: the socket says what HTTP says, and stays open.
    let long = "x".repeat(10_001);
    let refused = [
        json!({"type": "message", "text": ""}),
        json!({"type": "message", "text": "   "}),
        json!({"type": "message", "text": long}),
        json!({"type": "message", "text": null}),
        json!({"type": "message", "text": 42}),
        json!({"type": "message"}),
        json!({"type": "message", "text": "hi", "colour": "red"}),
        json!({"type": "message", "text": "hi", "attachments": ["a_nothere"]}),
    ];
    for (i, frame) in refused.into_iter().enumerate() {
        let frame = with_id(frame, &format!("bad{i}"));
        let (http, socket) = both_ways(
            &api,
            &mut widget,
            "/api/v1/visitor/messages",
            &visitor.token,
            frame.clone(),
        )
        .await;
        assert!(http.0 >= 400 && http.0 < 500, "{frame}: HTTP said {http:?}");
        assert_eq!(socket, http, "{frame}");
    }
    // The client_id is what an ack is matched by: a write without one is refused.
    let (status, _) = api
        .post(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            json!({"text": "no id"}),
        )
        .await;
    assert_eq!(status, 200, "HTTP takes a message without a client_id");
    widget
        .ws
        .send(Message::Text(
            json!({"type": "message", "text": "no id"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let nack = widget
        .wait_for(WAIT, "the refusal", |f| {
            f["type"] == "ack" && f["client_id"].is_null()
        })
        .await;
    assert_eq!(nack["status"], 400, "{nack}");
    assert_eq!(nack["error"]["code"], "invalid_input", "{nack}");
    // A visitor writes no notes, and names no conversation: theirs is the only one.
    let nack = write(
        &mut widget,
        json!({"type": "note", "client_id": "n1", "text": "sneaky"}),
    )
    .await;
    assert_eq!(nack["error"]["code"], "invalid_input", "{nack}");
    let other_visitor = api.session("support").await;
    let ack = write(
        &mut widget,
        json!({"type": "message", "client_id": "w3", "text": "only mine",
               "conversation_id": other_visitor.conv}),
    )
    .await;
    assert_eq!(ack["conversation_id"], conv.as_str(), "{ack}");

    // The agent writes a message and a note on their socket.
    let ack = write(
        &mut ana.stream,
        json!({"type": "message", "client_id": "a1", "conversation_id": conv,
               "text": "hello from the console"}),
    )
    .await;
    assert!(ack["seq"].as_i64().unwrap() > seq, "{ack}");
    let seen = widget
        .wait_for(WAIT, "the agent's message", |f| {
            f["type"] == "message.created" && f["data"]["text"] == "hello from the console"
        })
        .await;
    assert_eq!(seen["data"]["author"], "agent", "{seen}");
    let note = write(
        &mut ana.stream,
        json!({"type": "note", "client_id": "a1", "conversation_id": conv,
               "text": "a note, same client_id as the message"}),
    )
    .await;
    assert_eq!(
        note["duplicate"], false,
        "a note and a message keep their own ids"
    );
    let details = api.details(&ana.token, &conv).await;
    assert!(
        details["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["kind"] == "note" && m["text"] == "a note, same client_id as the message"),
        "{details}"
    );
    // Its refusals are HTTP's too.
    let agent_refused = [
        json!({"type": "message", "conversation_id": conv, "text": ""}),
        json!({"type": "message", "conversation_id": conv, "text": "hi", "extra": 1}),
        json!({"type": "note", "conversation_id": conv, "text": "hi", "attachments": ["a_x"]}),
        json!({"type": "message", "conversation_id": "c_doesnotexist", "text": "hi"}),
    ];
    for (i, frame) in agent_refused.into_iter().enumerate() {
        let frame = with_id(frame, &format!("abad{i}"));
        let path = if frame["type"] == "note" {
            format!(
                "/api/v1/conversations/{}/notes",
                frame["conversation_id"].as_str().unwrap()
            )
        } else {
            format!(
                "/api/v1/conversations/{}/messages",
                frame["conversation_id"].as_str().unwrap()
            )
        };
        let (http, socket) =
            both_ways(&api, &mut ana.stream, &path, &ana.token, frame.clone()).await;
        assert!(http.0 >= 400 && http.0 < 500, "{frame}: HTTP said {http:?}");
        assert_eq!(socket, http, "{frame}");
    }
    let nack = write(
        &mut ana.stream,
        json!({"type": "message", "client_id": "a9", "text": "where to?"}),
    )
    .await;
    assert_eq!(nack["error"]["code"], "invalid_input", "{nack}");
    // A field of the wrong shape still gets its answer.
    let nack = write(
        &mut ana.stream,
        json!({"type": "note", "client_id": "a10", "conversation_id": 42, "text": "hm"}),
    )
    .await;
    assert_eq!(nack["error"]["code"], "invalid_input", "{nack}");

    // Scoping: Olga (another team's bot) may not write in Ana's conversation, on the
    // socket as by HTTP.
    let mut olga = api.go_online(OLGA).await;
    let (http, socket) = both_ways(
        &api,
        &mut olga.stream,
        &format!("/api/v1/conversations/{conv}/messages"),
        &olga.token,
        json!({"type": "message", "client_id": "o1", "conversation_id": conv,
               "text": "not my chat"}),
    )
    .await;
    assert_eq!(http.0, 404, "{http:?}");
    assert_eq!(socket, http);
    assert_eq!(
        messages_with(&api, &ana.token, &conv, "not my chat").await,
        0
    );

    // Twenty writes sent at once, no ack awaited: each acked once, stored in the order
    // sent, and the socket still passes the agent's frames while they are written.
    for i in 0..20 {
        widget
            .ws
            .send(Message::Text(
                json!({"type": "message", "client_id": format!("burst{i}"),
                       "text": format!("burst {i}")})
                .to_string()
                .into(),
            ))
            .await
            .unwrap();
    }
    api.post_ok(
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(&ana.token),
        json!({"text": "meanwhile"}),
    )
    .await;
    let is_burst_ack = |f: &Value| {
        f["type"] == "ack"
            && f["client_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("burst"))
    };
    widget
        .wait_for(WAIT, "twenty acks", |f| {
            is_burst_ack(f) && f["client_id"] == "burst19"
        })
        .await;
    let acks: Vec<(String, i64)> = widget
        .seen
        .iter()
        .filter(|f| is_burst_ack(f))
        .map(|f| {
            (
                f["client_id"].as_str().unwrap().to_string(),
                f["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let sent: Vec<String> = (0..20).map(|i| format!("burst{i}")).collect();
    assert_eq!(acks.iter().map(|a| a.0.clone()).collect::<Vec<_>>(), sent);
    assert!(acks.windows(2).all(|w| w[0].1 < w[1].1), "{acks:?}");
    assert!(
        widget
            .events()
            .iter()
            .any(|e| e["data"]["text"] == "meanwhile"),
        "the agent's message reached the widget"
    );
    let stored: Vec<String> = api.details(&ana.token, &conv).await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            m["text"]
                .as_str()
                .filter(|t| t.starts_with("burst "))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        stored,
        (0..20).map(|i| format!("burst {i}")).collect::<Vec<_>>()
    );

    // Limits: a frame over 16 KiB closes that socket only; the others go on.
    let huge = "y".repeat(20 * 1024);
    widget
        .ws
        .send(Message::Text(
            json!({"type": "message", "client_id": "big", "text": huge})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    while widget.next_frame(WAIT).await.is_some() {
        assert!(
            start.elapsed() < WAIT,
            "the oversized frame left the socket open"
        );
    }
    let ack = write(
        &mut ana.stream,
        json!({"type": "message", "client_id": "a2", "conversation_id": conv,
               "text": "still here"}),
    )
    .await;
    assert_eq!(ack["duplicate"], false, "{ack}");
    assert_eq!(
        messages_with(&api, &ana.token, &conv, &"y".repeat(20 * 1024)).await,
        0
    );
}
