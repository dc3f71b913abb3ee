//! Bad input gets a clear 4xx with a stable code, and changes nothing: wrong types,
//! malformed and oversize bodies, missing and bad tokens, other people's conversations.
//! After every refusal the test compares everything a user could see (each visitor's log,
//! each conversation's details, the agents' list) with what it was before.

#[macro_use]
mod common;

use std::time::Duration;

use common::live::{Api, Console, Session, agent_email};
use common::{Bundle, TestServer, bot};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);
const BOSS: &str = "boss@acme.example";
const SELLER: &str = "seller@acme.example";

/// The server with: agent0 chatting with visitor `a` (support), agent1 online, visitor `b`
/// (support) with the bot, visitor `s` (sales) with the bot, the seller online.
struct World {
    _server: TestServer,
    api: Api,
    boss: String,
    agent0: Console,
    agent1: Console,
    seller: Console,
    a: Session,
    b: Session,
    s: Session,
}

async fn world() -> World {
    // Two bots: `support` (team `desk`: agent0, agent1) and `sales` (team `sales`: the seller).
    let server = Bundle::live(2)
        .team("sales", &["sales"])
        .agent("Seller", SELLER, "sales")
        .bot("sales", bot("Acme Sales", "Hi from sales"))
        .serve(&[&agent_email(0), &agent_email(1), SELLER, BOSS]);
    let api = Api::new(&server.url);
    let boss = api.login(BOSS).await;
    let agent0 = api.go_online(&agent_email(0)).await;
    let agent1 = api.go_online(&agent_email(1)).await;
    let seller = api.go_online(SELLER).await;
    let a = api.session("support").await;
    api.request_live_chat(&a.token).await;
    api.act_ok(&agent0.token, &a.conv, "accept", json!({}))
        .await;
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&a.token),
        json!({"client_id": "a-1", "text": "Hello from A"}),
    )
    .await;
    api.act_ok(
        &agent0.token,
        &a.conv,
        "messages",
        json!({"client_id": "g-1", "text": "Hello A, agent 0 here"}),
    )
    .await;
    let b = api.session("support").await;
    let s = api.session("sales").await;
    World {
        _server: server,
        api,
        boss,
        agent0,
        agent1,
        seller,
        a,
        b,
        s,
    }
}

impl World {
    /// Everything a user could see: each visitor's log, each conversation's details (as the
    /// admin sees them), the agents' list.
    async fn snapshot(&self) -> Value {
        let mut out = Vec::new();
        for v in [&self.a, &self.b, &self.s] {
            out.push(json!({
                "history": self.api.history(&v.token, 0).await,
                "details": self.api.details(&self.boss, &v.conv).await,
            }));
        }
        let (status, agents) = self.api.get("/api/v1/agents", Some(&self.boss)).await;
        assert_eq!(status, 200);
        out.push(agents);
        Value::Array(out)
    }

    /// Sends the call; expects `status` with error `code` and a message, and no change.
    async fn refused(
        &self,
        what: &str,
        (method, path): (&str, &str),
        token: Option<&str>,
        body: Option<&str>,
        (status, code): (u16, &str),
    ) {
        let before = self.snapshot().await;
        let (got, reply) = self.api.call(method, path, token, body).await;
        assert_error!((got, &reply), status, code, "{what}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: no message: {reply}"
        );
        assert_eq!(self.snapshot().await, before, "{what} changed something");
    }

    fn conv_path(&self, conv: &str, verb: &str) -> String {
        format!("/api/v1/conversations/{conv}/{verb}")
    }
}

const POST: &str = "POST";
const GET: &str = "GET";

// ---- malformed input ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_refused_with_a_stable_code_and_changes_nothing() {
    let w = world().await;
    let visitor_messages = (POST, "/api/v1/visitor/messages");
    let agent_messages_path = w.conv_path(&w.a.conv, "messages");
    let agent_messages = (POST, agent_messages_path.as_str());
    let too_long = "é".repeat(10_001);
    let way_too_big = "a".repeat(70 * 1024);
    let long_id = "c".repeat(129);
    let bodies: Vec<(&str, String, u16, &str)> = vec![
        (
            "a number for text",
            r#"{"text": 5}"#.into(),
            400,
            "invalid_body",
        ),
        ("null text", r#"{"text": null}"#.into(), 400, "invalid_body"),
        (
            "a number for client_id",
            r#"{"client_id": 7, "text": "hi"}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "malformed JSON",
            r#"{"client_id": "x", "text": "hi""#.into(),
            400,
            "invalid_json",
        ),
        ("not JSON at all", "hello".into(), 400, "invalid_json"),
        ("an empty body", String::new(), 400, "invalid_json"),
        ("a JSON array", "[]".into(), 400, "invalid_body"),
        ("a JSON string", r#""hi""#.into(), 400, "invalid_body"),
        ("no fields", "{}".into(), 400, "invalid_body"),
        (
            "no text",
            r#"{"client_id": "x"}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "an unknown field",
            r#"{"text": "hi", "colour": "red"}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "another conversation's id",
            json!({"text": "hi", "conversation_id": w.b.conv}).to_string(),
            400,
            "invalid_body",
        ),
        ("empty text", r#"{"text": ""}"#.into(), 400, "invalid_input"),
        (
            "blank text",
            json!({"text": " \n\t "}).to_string(),
            400,
            "invalid_input",
        ),
        (
            "10,001 characters",
            json!({"text": too_long}).to_string(),
            400,
            "invalid_input",
        ),
        (
            "an empty client_id",
            r#"{"client_id": "", "text": "hi"}"#.into(),
            400,
            "invalid_input",
        ),
        (
            "a 129-character client_id",
            json!({"client_id": long_id, "text": "hi"}).to_string(),
            400,
            "invalid_input",
        ),
        (
            "a client_id with a NUL in it",
            r#"{"client_id": "a\u0000b", "text": "hi"}"#.into(),
            400,
            "invalid_input",
        ),
        (
            "a body over 64 KiB",
            json!({"text": way_too_big}).to_string(),
            413,
            "too_large",
        ),
    ];
    for (what, body, status, code) in &bodies {
        w.refused(
            &format!("visitor message with {what}"),
            visitor_messages,
            Some(&w.a.token),
            Some(body),
            (*status, code),
        )
        .await;
        w.refused(
            &format!("agent message with {what}"),
            agent_messages,
            Some(&w.agent0.token),
            Some(body),
            (*status, code),
        )
        .await;
    }
    let notes = w.conv_path(&w.a.conv, "notes");
    for (what, body, status, code) in [
        (
            "an empty note",
            r#"{"text": ""}"#.to_string(),
            400,
            "invalid_input",
        ),
        (
            "a note of 10,001 characters",
            json!({"text": "n".repeat(10_001)}).to_string(),
            400,
            "invalid_input",
        ),
        ("a note without text", "{}".into(), 400, "invalid_body"),
    ] {
        w.refused(
            what,
            (POST, &notes),
            Some(&w.agent0.token),
            Some(&body),
            (status, code),
        )
        .await;
    }

    // A body that is not declared as JSON.
    let before = w.snapshot().await;
    assert_error!(
        w.api
            .request(POST, "/api/v1/visitor/messages")
            .bearer(&w.a.token)
            .header("content-type", "text/plain")
            .body(r#"{"text": "hi"}"#)
            .send()
            .await,
        415,
        "unsupported_media_type"
    );
    assert_eq!(w.snapshot().await, before);

    // Visitor actions: unknown types, wrong shapes, choices that do not exist.
    let actions = (POST, "/api/v1/visitor/actions");
    for (what, body, status, code) in [
        (
            "an unknown action type",
            r#"{"type": "dance"}"#,
            400,
            "invalid_body",
        ),
        (
            "an action without a type",
            r#"{"step": "start"}"#,
            400,
            "invalid_body",
        ),
        (
            "a type that is not a string",
            r#"{"type": 3}"#,
            400,
            "invalid_body",
        ),
        (
            "a choice without value or index",
            r#"{"type": "choice"}"#,
            400,
            "invalid_input",
        ),
        (
            "a choice with both",
            r#"{"type": "choice", "value": "x", "index": 0}"#,
            400,
            "invalid_input",
        ),
        (
            "a negative index",
            r#"{"type": "choice", "index": -1}"#,
            400,
            "invalid_body",
        ),
        (
            "an index past the choices",
            r#"{"type": "choice", "index": 99}"#,
            400,
            "invalid_input",
        ),
        (
            "a choice that is not offered",
            r#"{"type": "choice", "value": "Dance"}"#,
            400,
            "invalid_input",
        ),
        (
            "an unknown field on a choice",
            r#"{"type": "choice", "index": 0, "x": 1}"#,
            400,
            "invalid_body",
        ),
        (
            "a form that is not shown",
            r#"{"type": "form", "form": "contact", "values": {"email": "a@b.example", "message": "hi"}}"#,
            409,
            "invalid_state",
        ),
        (
            "form values that are not text",
            r#"{"type": "form", "form": "contact", "values": [1]}"#,
            400,
            "invalid_body",
        ),
        (
            "an unknown Live Chat action",
            r#"{"type": "request_live_chat", "action": "nope"}"#,
            400,
            "invalid_input",
        ),
    ] {
        w.refused(what, actions, Some(&w.b.token), Some(body), (status, code))
            .await;
    }
    // A visitor in a live chat cannot steer the bot.
    w.refused(
        "a choice during a live chat",
        actions,
        Some(&w.a.token),
        Some(r#"{"type": "choice", "index": 0}"#),
        (409, "invalid_state"),
    )
    .await;

    // Agent calls with bodies that do not fit.
    let transfer = w.conv_path(&w.a.conv, "transfer");
    let assign = w.conv_path(&w.a.conv, "assign");
    let resolve = w.conv_path(&w.a.conv, "resolve");
    let t0 = w.agent0.token.clone();
    for (what, call, body, status, code) in [
        (
            "transfer to nobody",
            (POST, transfer.as_str()),
            "{}",
            400,
            "invalid_input",
        ),
        (
            "transfer to an agent and a team",
            (POST, transfer.as_str()),
            r#"{"agent": "agent1@acme.example", "team": "desk"}"#,
            400,
            "invalid_input",
        ),
        (
            "transfer to an unknown agent",
            (POST, transfer.as_str()),
            r#"{"agent": "who@acme.example"}"#,
            400,
            "unknown_agent",
        ),
        (
            "transfer to an unknown team",
            (POST, transfer.as_str()),
            r#"{"team": "night"}"#,
            400,
            "invalid_input",
        ),
        (
            "transfer with a number",
            (POST, transfer.as_str()),
            r#"{"agent": 1}"#,
            400,
            "invalid_body",
        ),
        (
            "assign without an agent",
            (POST, assign.as_str()),
            "{}",
            400,
            "invalid_body",
        ),
        (
            "resolve with a number for a note",
            (POST, resolve.as_str()),
            r#"{"note": 5}"#,
            400,
            "invalid_body",
        ),
        (
            "resolve with malformed JSON",
            (POST, resolve.as_str()),
            r#"{"note": "#,
            400,
            "invalid_json",
        ),
        (
            "resolve with a body over 64 KiB",
            (POST, resolve.as_str()),
            &json!({"note": way_too_big}).to_string(),
            413,
            "too_large",
        ),
        (
            "availability as text",
            ("PUT", "/api/v1/me/availability"),
            r#"{"accepting": "yes"}"#,
            400,
            "invalid_body",
        ),
        (
            "availability without a value",
            ("PUT", "/api/v1/me/availability"),
            "{}",
            400,
            "invalid_body",
        ),
        (
            "an unknown status filter",
            (GET, "/api/v1/conversations?status=open"),
            "",
            400,
            "invalid_input",
        ),
        (
            "an unknown endpoint",
            (GET, "/api/v1/conversations/x/y/z"),
            "",
            404,
            "not_found",
        ),
    ] {
        let body = (!body.is_empty()).then_some(body);
        w.refused(what, call, Some(&t0), body, (status, code)).await;
    }
    // An unknown bot.
    w.refused(
        "a session of an unknown bot",
        (POST, "/api/v1/visitor/sessions"),
        None,
        Some(r#"{"bot": "nope"}"#),
        (404, "unknown_bot"),
    )
    .await;
    w.refused(
        "a session with a number for the bot",
        (POST, "/api/v1/visitor/sessions"),
        None,
        Some(r#"{"bot": 5}"#),
        (400, "invalid_body"),
    )
    .await;

    // The limit counts characters: 10,000 of them (20,000 bytes here) is a message.
    w.api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&w.a.token),
            json!({"text": "é".repeat(10_000)}),
        )
        .await;
}

// ---- tokens --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_refused() {
    let w = world().await;
    let message = r#"{"text": "hi"}"#;
    let details = format!("/api/v1/conversations/{}", w.a.conv);
    let accept = w.conv_path(&w.b.conv, "accept");
    for (what, call, token, body, code) in [
        (
            "visitor message without a token",
            (POST, "/api/v1/visitor/messages"),
            None,
            Some(message),
            "unauthorized",
        ),
        (
            "visitor message with a bad token",
            (POST, "/api/v1/visitor/messages"),
            Some("0123abcd"),
            Some(message),
            "invalid_token",
        ),
        (
            "history without a token",
            (GET, "/api/v1/visitor/history"),
            None,
            None,
            "unauthorized",
        ),
        (
            "history with a bad token",
            (GET, "/api/v1/visitor/history"),
            Some("nope"),
            None,
            "invalid_token",
        ),
        (
            "an action with an agent's token",
            (POST, "/api/v1/visitor/actions"),
            Some(w.agent0.token.as_str()),
            Some(r#"{"type": "end"}"#),
            "invalid_token",
        ),
        (
            "details without a token",
            (GET, details.as_str()),
            None,
            None,
            "unauthorized",
        ),
        (
            "details with a bad token",
            (GET, details.as_str()),
            Some("nope"),
            None,
            "unauthorized",
        ),
        (
            "details with a visitor's token",
            (GET, details.as_str()),
            Some(w.a.token.as_str()),
            None,
            "unauthorized",
        ),
        (
            "accept without a token",
            (POST, accept.as_str()),
            None,
            Some("{}"),
            "unauthorized",
        ),
        (
            "the agents without a token",
            (GET, "/api/v1/agents"),
            None,
            None,
            "unauthorized",
        ),
        (
            "the conversations export with a visitor's token",
            (GET, "/api/v1/conversations.csv"),
            Some(w.a.token.as_str()),
            None,
            "unauthorized",
        ),
        (
            "availability with a bad token",
            ("PUT", "/api/v1/me/availability"),
            Some("nope"),
            Some(r#"{"accepting": false}"#),
            "unauthorized",
        ),
    ] {
        w.refused(what, call, token, body, (401, code)).await;
    }
    // Not a bearer token at all.
    let before = w.snapshot().await;
    let reply = w
        .api
        .request(POST, "/api/v1/visitor/messages")
        .header("authorization", &format!("Basic {}", w.a.token))
        .json(message)
        .send()
        .await;
    assert_eq!(reply.status, 401);
    assert_eq!(w.snapshot().await, before);

    // Event sockets: the agent's needs a session; the visitor's first frame a valid token.
    let url = format!(
        "{}/api/v1/agent/events?after=0",
        w.api.url.replacen("http://", "ws://", 1)
    );
    assert!(
        tokio_tungstenite::connect_async(url).await.is_err(),
        "an agent socket opened without a session"
    );
    let url = format!(
        "{}/api/v1/visitor/events?after=0",
        w.api.url.replacen("http://", "ws://", 1)
    );
    for (first, code) in [
        (
            json!({"type": "auth", "token": "nope"}),
            Some("invalid_token"),
        ),
        (json!({"type": "auth"}), Some("invalid_auth")),
        (json!({"type": "typing"}), Some("invalid_auth")),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        ws.send(Message::Text(first.to_string().into()))
            .await
            .unwrap();
        let mut frames = Vec::new();
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(WAIT, ws.next()).await {
            match msg {
                Message::Text(t) => frames.push(serde_json::from_str::<Value>(&t).unwrap()),
                Message::Close(_) => break,
                _ => {}
            }
        }
        assert_eq!(frames.len(), 1, "{first}: {frames:?}");
        assert_eq!(frames[0]["type"], "error", "{first}: {frames:?}");
        assert_eq!(
            frames[0]["error"]["code"].as_str(),
            code,
            "{first}: {frames:?}"
        );
    }
}

// ---- visitors reach only their own --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_reaches_only_their_own_conversation() {
    let w = world().await;
    let api = &w.api;
    let mut a_stream = api.visitor_stream(&w.a.token, 0).await;
    // The others write; then `a` writes, and reads its socket up to its own message.
    for (token, text) in [(&w.b.token, "secret of B"), (&w.s.token, "secret of S")] {
        api.post_ok(
            "/api/v1/visitor/messages",
            Some(token),
            json!({"text": text}),
        )
        .await;
    }
    let body = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&w.a.token),
            json!({"text": "A's sentinel"}),
        )
        .await;
    assert_eq!(body["conversation_id"], w.a.conv.as_str());
    a_stream
        .wait_for(WAIT, "A's own message", |e| {
            e["data"]["text"] == "A's sentinel"
        })
        .await;
    for (who, v, events) in [
        ("a's socket", &w.a, a_stream.events()),
        ("a's history", &w.a, api.history(&w.a.token, 0).await),
        ("b's history", &w.b, api.history(&w.b.token, 0).await),
        ("s's history", &w.s, api.history(&w.s.token, 0).await),
    ] {
        assert!(!events.is_empty(), "{who}");
        for e in &events {
            assert_eq!(e["conversation_id"], v.conv.as_str(), "{who}: {e}");
        }
    }
    let text = serde_json::to_string(&a_stream.seen).unwrap();
    assert!(!text.contains("secret of"), "{text}");
    let text = serde_json::to_string(&api.history(&w.b.token, 0).await).unwrap();
    assert!(
        !text.contains("Hello from A") && !text.contains("secret of S"),
        "{text}"
    );

    // `a`'s token resumes `a` on its own bot…
    let resumed = api
        .post_ok(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "support", "token": w.a.token}),
        )
        .await;
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["conversation_id"], w.a.conv.as_str());
    // …and nothing of another bot: there it is a stranger, who starts afresh.
    let before = w.snapshot().await;
    let a_history = api.history(&w.a.token, 0).await;
    let (status, other) = api
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "sales", "token": w.a.token}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    assert_eq!(other["resumed"], false);
    assert_ne!(other["token"], w.a.token.as_str());
    assert_ne!(other["conversation_id"], w.a.conv.as_str());
    assert_ne!(other["conversation_id"], w.s.conv.as_str());
    assert_ne!(other["visitor_id"], resumed["visitor_id"]);
    let fresh: Vec<&Value> = other["events"].as_array().unwrap().iter().collect();
    assert!(
        fresh
            .iter()
            .all(|e| e["conversation_id"] == other["conversation_id"]),
        "{other}"
    );
    assert_eq!(api.history(&w.a.token, 0).await, a_history);
    assert_eq!(
        w.snapshot().await,
        before,
        "a new sales visitor changed the others"
    );
    // `a`'s token still writes to `a`'s conversation only.
    let body = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&w.a.token),
            json!({"text": "Still A"}),
        )
        .await;
    assert_eq!(body["conversation_id"], w.a.conv.as_str());
    let new_token = other["token"].as_str().unwrap();
    let theirs = api.history(new_token, 0).await;
    assert!(
        theirs
            .iter()
            .all(|e| e["conversation_id"] == other["conversation_id"]),
        "{theirs:#?}"
    );
}

// ---- agents reach only what they serve and hold ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reach_only_the_bots_they_serve_and_write_only_where_they_hold() {
    let mut w = world().await;
    let seller = w.seller.token.clone();
    let a_conv = w.a.conv.clone();
    let b_conv = w.b.conv.clone();

    // The boss sees the support conversation: the 404s below are about the seller.
    let details = format!("/api/v1/conversations/{a_conv}");
    w.api.get_ok(&details, Some(&w.boss)).await;
    let (status, _) = w
        .api
        .get(
            &format!("/api/v1/conversations/{}", w.s.conv),
            Some(&seller),
        )
        .await;
    assert_eq!(status, 200, "the seller sees their own bot's conversations");

    let transcript = w.conv_path(&a_conv, "transcript.csv");
    w.refused(
        "seller reads details",
        (GET, &details),
        Some(&seller),
        None,
        (404, "not_found"),
    )
    .await;
    w.refused(
        "seller reads the transcript",
        (GET, &transcript),
        Some(&seller),
        None,
        (404, "not_found"),
    )
    .await;
    for (conv, verb, body) in [
        (&a_conv, "messages", r#"{"text": "hi"}"#),
        (&a_conv, "notes", r#"{"text": "psst"}"#),
        (&a_conv, "resolve", "{}"),
        (&a_conv, "unassign", "{}"),
        (&a_conv, "transfer", r#"{"team": "sales"}"#),
        (&a_conv, "assign", r#"{"agent": "seller@acme.example"}"#),
        (&b_conv, "takeover", "{}"),
        (&b_conv, "close", "{}"),
    ] {
        let path = w.conv_path(conv, verb);
        w.refused(
            &format!("seller {verb}"),
            (POST, &path),
            Some(&seller),
            Some(body),
            (404, "not_found"),
        )
        .await;
    }
    // A request of the support bot: the seller can neither accept nor mute it.
    let c = w.api.session("support").await;
    w.api.request_live_chat(&c.token).await;
    for verb in ["accept", "mute"] {
        let path = w.conv_path(&c.conv, verb);
        w.refused(
            &format!("seller {verb}s"),
            (POST, &path),
            Some(&seller),
            Some("{}"),
            (404, "not_found"),
        )
        .await;
    }
    let (_, list) = w.api.get("/api/v1/conversations", Some(&seller)).await;
    let listed: Vec<&str> = list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bot"].as_str().unwrap())
        .collect();
    assert!(
        !listed.is_empty() && listed.iter().all(|b| *b == "sales"),
        "{list}"
    );
    let (_, list) = w
        .api
        .get("/api/v1/conversations?bot=support", Some(&seller))
        .await;
    assert_eq!(list["conversations"], json!([]), "{list}");
    // The seller's console never carried a support event: read it up to a sales sentinel.
    w.api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&w.s.token),
            json!({"text": "sales sentinel"}),
        )
        .await;
    w.seller
        .stream
        .wait_for(WAIT, "the sales sentinel", |e| {
            e["data"]["text"] == "sales sentinel"
        })
        .await;
    let support: Vec<&Value> = w
        .seller
        .stream
        .seen
        .iter()
        .filter(|e| e["conversation_id"].is_string() && e["conversation_id"] != w.s.conv.as_str())
        .collect();
    assert!(support.is_empty(), "the seller saw: {support:#?}");

    // Unknown conversations are 404 for everyone, admins too.
    let unknown = "c_00000000000000000000000000000000";
    for (who, token) in [
        ("agent 0", w.agent0.token.clone()),
        ("the boss", w.boss.clone()),
    ] {
        let path = format!("/api/v1/conversations/{unknown}");
        w.refused(
            &format!("{who} reads an unknown id"),
            (GET, &path),
            Some(&token),
            None,
            (404, "not_found"),
        )
        .await;
        for (verb, body) in [
            ("accept", "{}"),
            ("messages", r#"{"text": "hi"}"#),
            ("notes", r#"{"text": "hi"}"#),
            ("resolve", "{}"),
            ("transcript.csv", ""),
        ] {
            let path = w.conv_path(unknown, verb);
            let method = if body.is_empty() { GET } else { POST };
            let body = (!body.is_empty()).then_some(body);
            w.refused(
                &format!("{who} {verb} on an unknown id"),
                (method, &path),
                Some(&token),
                body,
                (404, "not_found"),
            )
            .await;
        }
    }

    // Agent 1 serves the bot but does not hold `a`: they may read it, not act as its holder.
    let t1 = w.agent1.token.clone();
    let (status, _) = w.api.get(&details, Some(&t1)).await;
    assert_eq!(status, 200);
    for (verb, body, status, code) in [
        (
            "messages",
            r#"{"text": "Let me butt in"}"#,
            403,
            "not_allowed",
        ),
        ("resolve", "{}", 403, "not_allowed"),
        ("unassign", "{}", 403, "not_allowed"),
        (
            "transfer",
            r#"{"agent": "agent1@acme.example"}"#,
            403,
            "not_allowed",
        ),
        (
            "assign",
            r#"{"agent": "agent0@acme.example"}"#,
            403,
            "not_allowed",
        ),
        ("accept", "{}", 409, "already_taken"),
        (
            "assign",
            r#"{"agent": "agent1@acme.example"}"#,
            409,
            "already_taken",
        ),
        ("takeover", "{}", 409, "invalid_state"),
        ("mute", "{}", 409, "invalid_state"),
        ("close", "{}", 409, "invalid_state"),
    ] {
        let path = w.conv_path(&a_conv, verb);
        w.refused(
            &format!("agent 1 {verb} on agent 0's chat"),
            (POST, &path),
            Some(&t1),
            Some(body),
            (status, code),
        )
        .await;
    }
    // Nobody writes to a conversation the bot still leads.
    let path = w.conv_path(&b_conv, "messages");
    w.refused(
        "agent 0 writes to the bot's chat",
        (POST, &path),
        Some(&w.agent0.token),
        Some(r#"{"text": "hi"}"#),
        (409, "invalid_state"),
    )
    .await;
}

// ---- scope of transfers -----------------------------------------------------------------------

/// What an agent may see follows the bots their teams serve, so a conversation may only be
/// handed to a team (or an agent of a team) that serves its bot; validation holds routes to
/// the same rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_never_goes_to_a_team_that_cannot_see_it() {
    let w = world().await;
    let before = w.api.details(&w.boss, &w.a.conv).await;
    // Sales does not serve this bot: its agents could neither open nor accept it.
    assert_error!(
        w.api
            .act(
                &w.agent0.token,
                &w.a.conv,
                "transfer",
                json!({"team": "sales"}),
            )
            .await,
        409,
        "not_available"
    );
    assert_error!(
        w.api
            .act(
                &w.agent0.token,
                &w.a.conv,
                "transfer",
                json!({"agent": SELLER}),
            )
            .await,
        409,
        "not_available"
    );
    let after = w.api.details(&w.boss, &w.a.conv).await;
    assert_eq!(after["status"], before["status"]);
    assert_eq!(after["assignee"], before["assignee"]);
    assert_eq!(after["team"], before["team"]);
}

// ---- every refusal is JSON with a code -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_outside_handlers_are_json_with_a_code_too() {
    let w = world().await;
    // A query string of the wrong type.
    assert_error!(
        w.api
            .get("/api/v1/visitor/history?after=abc", Some(&w.a.token))
            .await,
        400,
        "invalid_query"
    );
    // A method the endpoint does not take.
    assert_error!(
        w.api
            .get("/api/v1/visitor/messages", Some(&w.a.token))
            .await,
        405,
        "method_not_allowed"
    );
    // A WebSocket endpoint called as plain HTTP.
    let (status, body) = w.api.get("/api/v1/visitor/events", None).await;
    assert_eq!(
        body["error"]["code"].as_str(),
        Some("websocket_required"),
        "{status} {body}"
    );
    assert!((400..500).contains(&status));
    // A search with a NUL in it finds nothing rather than failing.
    let body = w
        .api
        .get_ok("/api/v1/conversations?q=x%00y", Some(&w.boss))
        .await;
    assert_eq!(body["conversations"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_may_call_the_visitor_api_from_another_site() {
    let w = world().await;
    let preflight = w
        .api
        .request("OPTIONS", "/api/v1/visitor/messages")
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await;
    assert!(
        (200..300).contains(&preflight.status),
        "preflight answered {}",
        preflight.status
    );
    let allow = |name: &str| preflight.header(name).unwrap_or("").to_ascii_lowercase();
    assert_eq!(allow("access-control-allow-origin"), "*");
    assert!(allow("access-control-allow-headers").contains("authorization"));
    assert!(
        allow("access-control-allow-credentials").is_empty(),
        "never with credentials"
    );
    // The real call then carries the header too.
    let call = w
        .api
        .request("GET", "/api/v1/visitor/history")
        .header("origin", "https://shop.example")
        .bearer(&w.a.token)
        .send()
        .await;
    assert_eq!(call.status, 200);
    assert_eq!(call.header("access-control-allow-origin"), Some("*"));
}

/// The offline-message endpoint is for pages of this server (the widget sends its offline
/// form through the visitor API): it answers no CORS, so a page elsewhere cannot make its
/// visitors' browsers post messages, while a same-site or non-browser call still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_endpoint_answers_no_cors() {
    let server = Bundle::live(1).serve(&[]);
    let api = Api::new(&server.url);
    let path = "/api/v1/bots/support/offline";
    let preflight = api
        .request("OPTIONS", path)
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await;
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    assert_eq!(preflight.header("access-control-allow-methods"), None);
    assert_error!(preflight, 405, "method_not_allowed");
    let values = json!({"values": {"email": "zoe@example.com", "message": "Call me back"}});
    let call = api
        .request("POST", path)
        .header("origin", "https://elsewhere.example")
        .json(&values)
        .send()
        .await;
    assert_eq!(call.status, 201, "{}", call.body);
    assert_eq!(call.header("access-control-allow-origin"), None);
    // The visitor API next to it still answers other sites.
    let session = api
        .request("OPTIONS", "/api/v1/visitor/sessions")
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "POST")
        .send()
        .await;
    assert_eq!(session.header("access-control-allow-origin"), Some("*"));
}

/// Issue #10: a waiting request routed to a team is that team's. An agent of another team
/// of the bot may read it, but not accept, transfer (to their own team, to accept it then)
/// or resolve it; an admin may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_outside_the_routed_team_may_read_a_waiting_request_but_not_take_it() {
    const BEA: &str = "bea@acme.example";
    let server = Bundle::live(1)
        .team("billing", &["support"])
        .agent("Bea", BEA, "billing")
        .live_chat(|d| d.route(r#"[{ team = "billing" }]"#))
        .serve(&[&agent_email(0), BEA, BOSS]);
    let api = Api::new(&server.url);
    let ana = api.go_online(&agent_email(0)).await; // team desk
    let _bea = api.go_online(BEA).await; // team billing
    let boss = api.login(BOSS).await;
    let visitor = api.session("support").await;
    api.request_live_chat(&visitor.token).await;
    let conv = &visitor.conv;
    let before = api.details(&ana.token, conv).await;
    assert_eq!(
        (&before["status"], &before["team"]),
        (&json!("new"), &json!("billing"))
    );

    let accept = api.act(&ana.token, conv, "accept", json!({})).await;
    assert_error!(accept, 409, "not_available", "accept");
    let transfer = api
        .act(&ana.token, conv, "transfer", json!({"team": "desk"}))
        .await;
    assert_error!(transfer, 403, "not_allowed", "transfer to her own team");
    let resolve = api.act(&ana.token, conv, "resolve", json!({})).await;
    assert_error!(resolve, 403, "not_allowed", "resolve");
    let after = api.details(&ana.token, conv).await;
    assert_eq!(
        (&after["status"], &after["team"], &after["assignee"]),
        (&json!("new"), &json!("billing"), &Value::Null)
    );

    // An admin may move it to her team; then it is hers to take.
    api.act_ok(&boss, conv, "transfer", json!({"team": "desk"}))
        .await;
    api.act_ok(&ana.token, conv, "accept", json!({})).await;
    let taken = api.details(&ana.token, conv).await;
    assert_eq!(taken["assignee"], json!(agent_email(0)));
}
