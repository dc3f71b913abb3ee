//! Issue #13 over the API: a video request rings like a text request and accepting it
//! starts the call; the call's signalling reaches only the conversation's visitor and the
//! agent who has it, bounded in size and rate; ICE servers go only to the two sides; and
//! the call's end is stored with its length.

#[macro_use]
mod common;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::Bundle;
use common::live::{Api, Stream, agent_email};

const WAIT: Duration = Duration::from_secs(10);

async fn signal(stream: &mut Stream, conversation: Option<&str>, data: Value) {
    let mut frame = json!({"type": "signal", "data": data});
    if let Some(c) = conversation {
        frame["conversation_id"] = json!(c);
    }
    stream
        .ws
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

fn signals(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f["type"] == "signal").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_call_is_signalled_between_its_two_sides_only() {
    let server = Bundle::live(2)
        .live_chat(|d| d.set("modes", r#"["text", "video"]"#))
        .serve(&[&agent_email(0), &agent_email(1)]);
    let api = Api::new(&server.url);
    let mut ana = api.go_online(&agent_email(0)).await;
    let mut bea = api.go_online(&agent_email(1)).await;
    // Bea takes no video calls: the video request rings Ana only.
    let (status, reply) = api
        .call(
            "PUT",
            "/api/v1/me/availability",
            Some(&bea.token),
            Some(&json!({"video": false}).to_string()),
        )
        .await;
    assert_eq!((status, &reply["video"]), (200, &json!(false)), "{reply}");

    let caller = api.session("support").await;
    let other = api.session("support").await;
    let mut caller_ws = api.visitor_stream(&caller.token, 0).await;
    let mut other_ws = api.visitor_stream(&other.token, 0).await;
    let (status, reply) = api
        .post(
            "/api/v1/visitor/actions",
            Some(&caller.token),
            json!({"type": "request_video"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let ringing = ana
        .stream
        .event("livechat.ringing", Some(&caller.conv))
        .await;
    assert_eq!(
        ringing["data"]["agents"],
        json!([agent_email(0)]),
        "{ringing}"
    );
    api.act_ok(&ana.token, &caller.conv, "accept", json!({}))
        .await;
    caller_ws.event("video.started", Some(&caller.conv)).await;
    ana.stream.event("video.started", Some(&caller.conv)).await;

    // No ICE servers for someone who is not a side of a call.
    let (status, ice) = api.get("/api/v1/visitor/webrtc", Some(&caller.token)).await;
    assert_eq!((status, &ice["ice_servers"]), (200, &json!([])), "{ice}");
    assert_error!(
        api.get("/api/v1/visitor/webrtc", Some(&other.token)).await,
        409,
        "no_call"
    );
    let path = format!("/api/v1/conversations/{}/webrtc", caller.conv);
    assert_eq!(api.get(&path, Some(&ana.token)).await.0, 200);
    assert_error!(api.get(&path, Some(&bea.token)).await, 403, "not_allowed");

    // The agent's offer reaches the caller, and only the caller.
    signal(
        &mut ana.stream,
        Some(&caller.conv),
        json!({"sdp": "offer-1"}),
    )
    .await;
    let got = caller_ws
        .wait_for(WAIT, "the agent's signal", |f| f["type"] == "signal")
        .await;
    assert_eq!(
        got["data"],
        json!({"from": "agent", "signal": {"sdp": "offer-1"}})
    );
    // The caller's answer reaches Ana, and only Ana.
    signal(&mut caller_ws, None, json!({"sdp": "answer-1"})).await;
    let got = ana
        .stream
        .wait_for(WAIT, "the visitor's signal", |f| f["type"] == "signal")
        .await;
    assert_eq!(got["data"]["signal"], json!({"sdp": "answer-1"}));
    // Bea, not assigned, sends for the conversation (it reaches nobody) and another
    // visitor with no call sends too (nobody).
    signal(&mut bea.stream, Some(&caller.conv), json!({"sdp": "bea"})).await;
    signal(&mut other_ws, None, json!({"sdp": "other"})).await;
    let quiet = Duration::from_millis(600);
    assert!(
        signals(&bea.stream.quiet(quiet).await).is_empty(),
        "Bea heard the call"
    );
    assert!(
        signals(&other_ws.quiet(quiet).await).is_empty(),
        "another visitor heard it"
    );
    assert!(
        signals(&caller_ws.quiet(quiet).await).is_empty(),
        "Bea reached the caller"
    );
    assert!(
        signals(&ana.stream.quiet(quiet).await).is_empty(),
        "another visitor reached Ana"
    );

    // An oversized frame closes that socket only; a flood of signalling closes that one.
    let big = json!({"type": "signal", "data": {"sdp": "x".repeat(20_000)}});
    other_ws
        .ws
        .send(Message::Text(big.to_string().into()))
        .await
        .unwrap();
    assert!(
        other_ws.quiet(Duration::from_secs(3)).await.is_empty()
            && other_ws.next_frame(quiet).await.is_none(),
        "the oversized frame's socket is closed"
    );
    for i in 0..300 {
        if bea
            .stream
            .ws
            .send(Message::Text(
                json!({"type": "signal", "conversation_id": caller.conv, "data": {"n": i}})
                    .to_string()
                    .into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let refused = bea
        .stream
        .wait_for(WAIT, "the flood's refusal", |f| f["type"] == "error")
        .await;
    assert_eq!(refused["error"]["code"], "too_many_signals", "{refused}");
    assert!(
        bea.stream
            .next_frame(Duration::from_secs(3))
            .await
            .is_none()
    );
    // The two sides go on.
    signal(
        &mut ana.stream,
        Some(&caller.conv),
        json!({"candidate": "c-1"}),
    )
    .await;
    caller_ws
        .wait_for(WAIT, "a signal after the floods", |f| {
            f["type"] == "signal" && f["data"]["signal"]["candidate"] == "c-1"
        })
        .await;

    // The caller hangs up: stored with its length, counted in the stats.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, reply) = api
        .post(
            "/api/v1/visitor/actions",
            Some(&caller.token),
            json!({"type": "end_video"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let ended = ana.stream.event("video.ended", Some(&caller.conv)).await;
    assert_eq!(ended["data"]["by"], "visitor");
    assert_eq!(ended["data"]["reason"], "hangup");
    assert!(
        ended["data"]["duration_secs"].as_i64().unwrap() >= 1,
        "{ended}"
    );
    // Signalling after the call reaches nobody.
    signal(&mut caller_ws, None, json!({"sdp": "late"})).await;
    assert!(signals(&ana.stream.quiet(quiet).await).is_empty());
    let (status, stats) = api.get("/api/v1/stats", Some(&ana.token)).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["total"]["video_calls"], 1, "{stats}");
    let csv = api
        .request("GET", "/api/v1/conversations.csv")
        .bearer(&ana.token)
        .send()
        .await;
    let row = csv
        .text
        .lines()
        .find(|l| l.starts_with(&caller.conv))
        .unwrap_or_else(|| panic!("{}", csv.text));
    let secs = ended["data"]["duration_secs"].as_i64().unwrap();
    assert!(
        row.ends_with(&format!(",1,{secs},")),
        "one call of {secs} s: {row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_offers_a_call_in_a_text_chat_and_a_decline_keeps_the_chat() {
    let server = Bundle::live(1)
        .live_chat(|d| d.set("modes", r#"["text", "video"]"#))
        .serve(&[&agent_email(0)]);
    let api = Api::new(&server.url);
    let ana = api.go_online(&agent_email(0)).await;
    let visitor = api.session("support").await;
    let mut ws = api.visitor_stream(&visitor.token, 0).await;
    api.request_live_chat(&visitor.token).await;
    api.act_ok(&ana.token, &visitor.conv, "accept", json!({}))
        .await;
    api.act_ok(&ana.token, &visitor.conv, "video", json!({}))
        .await;
    let offer = ws.event("video.requested", Some(&visitor.conv)).await;
    assert_eq!(
        offer["data"],
        json!({"action": "desk"}),
        "the visitor sees no email: {offer}"
    );
    let (status, reply) = api
        .post(
            "/api/v1/visitor/actions",
            Some(&visitor.token),
            json!({"type": "decline_video"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let ended = ws.event("video.ended", Some(&visitor.conv)).await;
    assert_eq!(ended["data"]["reason"], "declined");
    // The chat goes on in text.
    api.act_ok(
        &ana.token,
        &visitor.conv,
        "messages",
        json!({"text": "No problem, here in text then."}),
    )
    .await;
    ws.wait_for(WAIT, "the text after the decline", |f| {
        f["type"] == "message.created" && f["data"]["text"] == "No problem, here in text then."
    })
    .await;
}

/// "Take video calls" is stored beside "Accept chats": an agent who switched it off is
/// still off after a crash and restart (and on PostgreSQL, on every replica).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_toggle_outlives_a_restart() {
    let server = Bundle::live(1)
        .live_chat(|d| d.set("modes", r#"["text", "video"]"#))
        .serve(&[&agent_email(0)]);
    let api = Api::new(&server.url);
    let token = api.login(&agent_email(0)).await;
    let before = api.agent_view(&token, &agent_email(0)).await;
    assert_eq!(before["video"], true, "{before}");
    let (status, reply) = api
        .call(
            "PUT",
            "/api/v1/me/availability",
            Some(&token),
            Some(&json!({"video": false}).to_string()),
        )
        .await;
    assert_eq!((status, &reply["video"]), (200, &json!(false)), "{reply}");

    let server = tokio::task::spawn_blocking(move || server.kill_and_restart())
        .await
        .unwrap();
    let api = Api::new(&server.url);
    let view = api.agent_view(&token, &agent_email(0)).await;
    assert_eq!(view["video"], false, "after the restart: {view}");
    assert_eq!(
        view["accepting"], before["accepting"],
        "the other toggle: {view}"
    );
}
