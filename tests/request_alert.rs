//! The new-request alert goes out when the request starts ringing: after the name and
//! email the Live Chat action collects, so the team-chat card names the visitor. And
//! routing by language sees the language the visitor's browser asked for first, not the
//! one the (English-only) bot answers in; and a typed hand-off phrase asks for a person.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::live::{Api, Console, set_password_with};
use common::{Bundle, TestServer};
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<Value>>>;

/// A receiver that keeps every body it is sent.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(|State(seen): State<Seen>, body: Bytes| async move {
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push(body);
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

const SUPPORT: &str = r#"name = "Acme Support"
handoff_phrases = ["live agent", "a person"]

[[step]]
id = "start"
say = "Hi!"
live_chat = "desk"

[live_chat.desk]
collect = ["name", "email"]
notify = ["crm"]
route = [{ when = { language = ["es", "pt"] }, team = "desk" }]

[webhook.crm]
kind = "generic"
url = "${CRM_HOOK}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_waits_for_the_collected_name_routing_sees_the_asked_language_typed_handoff() {
    let (hook, seen) = receiver().await;
    let server = TestServer::start(
        |dir| {
            Bundle::new()
                .team("desk", &["support"])
                .agent("Ana Lima", "ana@acme.example", "desk")
                .bot("support", SUPPORT)
                .write(dir)
        },
        &[("CRM_HOOK", hook.as_str())],
    );
    set_password_with(
        &server.bots_dir,
        &server.data_dir,
        "ana@acme.example",
        &server.env,
    );
    let api = Api::new(&server.url);
    let Console {
        stream: mut console,
        ..
    } = api.go_online("ana@acme.example").await;
    let visitor = api.session("support").await;
    api.request_live_chat(&visitor.token).await;
    // Asked for a name: not ringing yet, and no alert names an anonymous visitor.
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&visitor.token),
        json!({"client_id": "n", "text": "Dana Scully"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        0,
        "an alert went out before the request rang"
    );
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&visitor.token),
        json!({"client_id": "e", "text": "dana@example.com"}),
    )
    .await;
    console.event("livechat.ringing", Some(&visitor.conv)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert once it rang"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one alert per request: {calls:?}");
    let body = &calls[0];
    assert_eq!(body["event"], "livechat.requested");
    assert_eq!(body["conversation_id"], visitor.conv.as_str());
    assert_eq!(
        body["visitor"],
        json!({"name": "Dana Scully", "email": "dana@example.com"})
    );
    assert!(
        body["console_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/console#/conversations/{}", visitor.conv)),
        "{body}"
    );

    // That visitor's browser asked for nothing: no language rule matched.
    assert_eq!(
        api.details(&token_of(&api).await, &visitor.conv).await["team"],
        Value::Null
    );

    // A browser that asks for Spanish first, on a bot that speaks only English.
    let reply = api
        .request("POST", "/api/v1/visitor/sessions")
        .header("Accept-Language", "es-MX, en;q=0.5")
        .json(json!({"bot": "support"}))
        .send()
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let token = reply.body["token"].as_str().unwrap().to_string();
    let conv = reply.body["conversation_id"].as_str().unwrap().to_string();
    api.request_live_chat(&token).await;
    let details = api.details(&token_of(&api).await, &conv).await;
    assert_eq!(details["language"], "en", "the bot answers in English");
    assert_eq!(
        details["team"], "desk",
        "routed by the Spanish it was asked for"
    );

    // A visitor who types a hand-off phrase at a bot step asks for a person.
    let typed = api.session("support").await;
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&typed.token),
        json!({"client_id": "h", "text": "I want to speak with a live agent"}),
    )
    .await;
    let details = api.details(&token_of(&api).await, &typed.conv).await;
    assert_eq!(details["status"], "collecting", "{details}");
    assert_eq!(details["live_chat"], "desk");
}

async fn token_of(api: &Api) -> String {
    api.login("ana@acme.example").await
}
