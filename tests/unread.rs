//! Read state over the real API: per agent and conversation, `POST …/read` marks what the
//! agent has read, lists and details count the visitor messages after it, `unread=true`
//! filters on it, and `conversation.read` reaches the agent's other consoles only. Also: a
//! transfer to a team that would ring nobody is refused (`409 nobody_to_ring`).

#[macro_use]
mod common;

use std::time::Duration;

use common::live::{Api, Stream, agent_email};
use common::{Bundle, TestServer, bot};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const OLGA: &str = "olga@acme.example";

/// The summary of `conv` in the caller's list (`query` after `?`), if listed.
async fn listed(api: &Api, token: &str, query: &str, conv: &str) -> Option<Value> {
    let (status, body) = api
        .get(&format!("/api/v1/conversations?{query}"), Some(token))
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conv)
        .cloned()
}

async fn unread_of(api: &Api, token: &str, conv: &str) -> i64 {
    let summary = listed(api, token, "status=new,assigned,chatting", conv)
        .await
        .unwrap_or_else(|| panic!("{conv} is not listed"));
    summary["unread"].as_i64().expect("a count")
}

/// Visitor messages of the conversation, and the newest message's seq.
async fn visitor_messages(api: &Api, token: &str, conv: &str) -> (i64, i64) {
    let d = api.details(token, conv).await;
    let messages = d["messages"].as_array().unwrap();
    let from_visitor = messages.iter().filter(|m| m["kind"] == "visitor").count() as i64;
    let newest = messages
        .iter()
        .filter_map(|m| m["seq"].as_i64())
        .max()
        .unwrap();
    (from_visitor, newest)
}

fn read_frames(stream: &Stream) -> usize {
    stream
        .seen
        .iter()
        .filter(|f| f["type"] == "conversation.read")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_marks_count_filter_sync_to_the_agent_only_and_survive_a_restart() {
    let server: TestServer = Bundle::live(2)
        .team("other", &["other"])
        .agent("Olga", OLGA, "other")
        .bot("other", bot("Other", "Hi from the other bot"))
        .serve(&[&agent_email(0), &agent_email(1), OLGA]);
    let api = Api::new(&server.url);
    let mut ana = api.go_online(&agent_email(0)).await;
    let mut bea = api.go_online(&agent_email(1)).await;
    // Ana's second tab: another socket of the same session.
    let mut ana_tab = api.agent_stream(&ana.token, 0).await;
    let visitor = api.session("support").await;
    let mut widget = api.visitor_stream(&visitor.token, 0).await;
    for (id, text) in [("m1", "hello"), ("m2", "my order is late")] {
        api.post_ok(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            json!({"client_id": id, "text": text}),
        )
        .await;
    }
    api.request_live_chat(&visitor.token).await;
    let conv = visitor.conv.clone();

    // Nobody has read anything: every visitor message counts, for everyone.
    let (from_visitor, newest) = visitor_messages(&api, &ana.token, &conv).await;
    assert!(from_visitor >= 2, "{from_visitor}");
    assert_eq!(unread_of(&api, &ana.token, &conv).await, from_visitor);
    assert_eq!(unread_of(&api, &bea.token, &conv).await, from_visitor);
    assert_eq!(api.details(&ana.token, &conv).await["unread"], from_visitor);
    assert!(
        listed(&api, &ana.token, "unread=true", &conv)
            .await
            .is_some()
    );
    api.act_ok(&ana.token, &conv, "accept", json!({})).await;

    // Ana reads up to the newest message: 0 for her, still all for Bea.
    let mark = api
        .act_ok(&ana.token, &conv, "read", json!({"seq": newest}))
        .await;
    assert_eq!(
        mark,
        json!({"conversation_id": conv, "seq": newest, "unread": 0})
    );
    assert_eq!(unread_of(&api, &ana.token, &conv).await, 0);
    assert_eq!(api.details(&ana.token, &conv).await["unread"], 0);
    assert!(
        listed(&api, &ana.token, "unread=true", &conv)
            .await
            .is_none()
    );
    assert_eq!(unread_of(&api, &bea.token, &conv).await, from_visitor);
    assert!(
        listed(&api, &bea.token, "unread=true", &conv)
            .await
            .is_some()
    );

    // Both of Ana's consoles hear it; it has no seq (it is not a stored event).
    for stream in [&mut ana.stream, &mut ana_tab] {
        let frame = stream
            .wait_for(WAIT, "conversation.read", |f| {
                f["type"] == "conversation.read"
            })
            .await;
        assert_eq!(frame["conversation_id"], conv.as_str());
        assert_eq!(frame["data"]["agent"], agent_email(0));
        assert_eq!(frame["data"]["seq"], newest);
        assert_eq!(frame["data"]["unread"], 0);
        assert!(frame.get("seq").is_none(), "{frame}");
    }

    // The visitor writes again: one unread for Ana.
    let said = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&visitor.token),
            json!({"client_id": "m3", "text": "are you there?"}),
        )
        .await;
    let seq = said["seq"].as_i64().unwrap();
    assert_eq!(unread_of(&api, &ana.token, &conv).await, 1);
    assert_eq!(api.details(&ana.token, &conv).await["unread"], 1);
    assert_eq!(
        listed(&api, &ana.token, "unread=true", &conv)
            .await
            .unwrap()["unread"],
        1
    );
    // Bea's console and the widget had every event up to that message, and no read mark.
    bea.stream.until_seq(WAIT, seq).await;
    widget.until_seq(WAIT, seq).await;
    assert_eq!(read_frames(&bea.stream), 0, "another agent's mark");
    assert_eq!(read_frames(&widget), 0, "the visitor never hears of marks");

    // A mark past the newest event is held at it: what comes next is still unread.
    let mark = api
        .act_ok(&ana.token, &conv, "read", json!({"seq": 1_000_000_000_i64}))
        .await;
    let top = mark["seq"].as_i64().unwrap();
    assert!(top >= seq && top < 1_000_000_000, "{mark}");
    assert_eq!(mark["unread"], 0);
    // And it never moves back (another tab may have read further).
    let mark = api
        .act_ok(&ana.token, &conv, "read", json!({"seq": 1}))
        .await;
    assert_eq!(mark["seq"], top);

    // Refusals.
    for (body, code) in [
        (json!({"seq": -1}), "invalid_input"),
        (json!({}), "invalid_body"),
        (json!({"seq": "3"}), "invalid_body"),
        (json!({"seq": 3, "upto": 4}), "invalid_body"),
    ] {
        let reply = api.act(&ana.token, &conv, "read", body.clone()).await;
        assert_error!(reply, 400, code, "{body}");
    }
    let reply = api
        .act(&ana.token, "c_nope", "read", json!({"seq": 1}))
        .await;
    assert_error!(reply, 404, "not_found");
    // Olga serves another bot only: this conversation does not exist for her.
    let olga = api.login(OLGA).await;
    let reply = api.act(&olga, &conv, "read", json!({"seq": 1})).await;
    assert_error!(reply, 404, "not_found");
    let reply = api
        .post(
            &format!("/api/v1/conversations/{conv}/read"),
            None,
            json!({"seq": 1}),
        )
        .await;
    assert_eq!(reply.0, 401, "{}", reply.1);
    let reply = api
        .get("/api/v1/conversations?unread=maybe", Some(&ana.token))
        .await;
    assert_error!(reply, 400, "invalid_query");

    // A transfer to a team of which nobody could take it now is refused, not left unheard:
    // Ana gives it away (it does not ring her), and Bea does not accept chats.
    api.set_accepting(&bea.token, false).await;
    let reply = api
        .act(&ana.token, &conv, "transfer", json!({"team": "desk"}))
        .await;
    assert_error!(reply, 409, "nobody_to_ring");
    assert_eq!(
        api.details(&ana.token, &conv).await["assignee"],
        agent_email(0)
    );
    api.set_accepting(&bea.token, true).await;
    api.act_ok(&ana.token, &conv, "transfer", json!({"team": "desk"}))
        .await;
    let moved = api.details(&ana.token, &conv).await;
    assert_eq!(moved["status"], "new");
    assert_eq!(moved["ringing"], json!([agent_email(1)]));

    // Marks are stored: after a crash and restart the counts are the same.
    let bea_before = unread_of(&api, &bea.token, &conv).await;
    let (ana_token, bea_token) = (ana.token.clone(), bea.token.clone());
    drop((ana, bea, ana_tab, widget));
    let server = server.kill_and_restart();
    let api = Api::new(&server.url);
    assert_eq!(unread_of(&api, &ana_token, &conv).await, 0);
    assert_eq!(unread_of(&api, &bea_token, &conv).await, bea_before);
}
