//! Webhooks through the whole path: a visitor's request goes to the outbox with its
//! transaction, the worker calls a real local receiver, a 500 is retried, and the generic
//! call is signed with the secret from the environment.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::Bundle;
use common::live::{Api, Console};
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver whose first answer is a 500 and every later one a 200.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                    let mut seen = seen.lock().unwrap();
                    seen.push((headers, body.to_vec()));
                    if seen.len() == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

const SUPPORT: &str = r#"name = "Acme Support"

[[step]]
id = "start"
say = "Hi!"
live_chat = "desk"

[live_chat.desk]
notify = ["crm", "slack-off"]

[webhook.crm]
kind = "generic"
url = "${CRM_HOOK}"
secret = "${CRM_SECRET}"

[webhook.slack-off]
kind = "slack"
url = "${SLACK_HOOK:-}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_request_calls_the_webhook_signed_and_retries_after_a_500() {
    let (hook, seen) = receiver().await;
    let conf = tempfile::tempdir().unwrap();
    let conf_path = conf.path().join("livechat.toml");
    std::fs::write(
        &conf_path,
        "outbox_retry = \"200ms\"\npublic_url = \"https://chat.acme.example\"\n",
    )
    .unwrap();
    let server = Bundle::new()
        .team("desk", &["support"])
        .agent("Ana Lima", "ana@acme.example", "desk")
        .bot("support", SUPPORT)
        .serve_with(
            &["ana@acme.example"],
            &[
                ("CRM_HOOK", hook.as_str()),
                ("CRM_SECRET", "s3cret"),
                ("LIVECHAT_CONFIG", conf_path.to_str().unwrap()),
            ],
        );
    let api = Api::new(&server.url);
    let Console {
        stream: mut console,
        ..
    } = api.go_online("ana@acme.example").await;
    let session = api.visitor("support").await;
    let token = session["token"].as_str().unwrap().to_string();
    let conv = session["conversation_id"].as_str().unwrap().to_string();
    api.post(
        "/api/v1/visitor/messages",
        Some(&token),
        json!({"text": "<@U123> my card was charged twice"}),
    )
    .await;
    api.post(
        "/api/v1/visitor/actions",
        Some(&token),
        json!({"type": "request_live_chat"}),
    )
    .await;
    console.event("livechat.ringing", Some(&conv)).await;

    // The first call gets a 500; the outbox tries again and the second gets a 200.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the webhook was not retried"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one failure, one success, no more");
    assert_eq!(calls[0].1, calls[1].1, "the same body both times");
    let (headers, body) = &calls[1];
    assert_eq!(headers["x-livechat-event"], "livechat.requested");
    let signature = headers["x-livechat-signature"].to_str().unwrap();
    let timestamp = headers["x-livechat-timestamp"].to_str().unwrap();
    assert!(livechat::webhooks::verify(
        b"s3cret", timestamp, body, signature
    ));
    assert!(!livechat::webhooks::verify(
        b"wrong", timestamp, body, signature
    ));
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["bot"]["id"], "support");
    assert_eq!(payload["conversation_id"], conv.as_str());
    assert_eq!(
        payload["console_url"],
        format!("https://chat.acme.example/console#/conversations/{conv}")
    );
    assert!(
        payload["lines"]
            .to_string()
            .contains("my card was charged twice"),
        "{payload}"
    );
    // The switched-off Slack webhook (`${SLACK_HOOK:-}` unset) was never queued.
    let metrics = api.request("GET", "/metrics").send().await.text;
    assert!(
        metrics.contains("livechat_outbox{kind=\"webhook\",status=\"sent\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("livechat_outbox{kind=\"webhook\",status=\"pending\"} 0"));
}
