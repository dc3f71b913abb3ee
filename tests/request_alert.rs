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
use common::Bundle;
use common::live::{Api, Console};
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
modes = ["text", "video"]
route = [{ when = { language = ["es", "pt"] }, team = "desk" }]

[webhook.crm]
kind = "generic"
url = "${CRM_HOOK}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_waits_for_the_collected_name_routing_sees_the_asked_language_typed_handoff() {
    let (hook, seen) = receiver().await;
    let server = Bundle::new()
        .team("desk", &["support"])
        .agent("Ana Lima", "ana@acme.example", "desk")
        .bot("support", SUPPORT)
        .serve_with(&["ana@acme.example"], &[("CRM_HOOK", hook.as_str())]);
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
    assert_eq!(body["video"], false, "{body}");

    // A request for a video call says so in its alert.
    let caller = api.session("support").await;
    api.post_ok(
        "/api/v1/visitor/actions",
        Some(&caller.token),
        json!({"type": "request_video"}),
    )
    .await;
    for (id, text) in [("vn", "Fox Mulder"), ("ve", "fox@example.com")] {
        api.post_ok(
            "/api/v1/visitor/messages",
            Some(&caller.token),
            json!({"client_id": id, "text": text}),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let video = loop {
        let found = seen
            .lock()
            .unwrap()
            .iter()
            .find(|b| b["conversation_id"] == caller.conv.as_str())
            .cloned();
        if let Some(body) = found {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert for the video request"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(video["video"], true, "{video}");
    assert_eq!(video["visitor"]["name"], "Fox Mulder", "{video}");

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

const SHOP: &str = r#"name = "Acme Shop"

[[contact_field]]
name = "company"
label = "Company"

[[contact_field]]
name = "plan"
label = "Plan"
type = "select"
options = ["Free", "Pro"]

[[step]]
id = "start"
say = "What is it about?"
choices = [
  { label = "Billing", set = { topic = "billing", "contact.plan" = "Pro" } },
]

[[step]]
id = "company"
say = "Your company?"
ask = { var = "contact.company" }

[[step]]
id = "human"
live_chat = "desk"

[live_chat.desk]
collect = ["name"]
notify = ["crm"]
notify_email = ["sales@acme.example"]

[webhook.crm]
kind = "generic"
url = "${CRM_HOOK}"
"#;

/// The new-request alert and mail tell who (the collected name), where (page, language),
/// what about (the flow's topic, the contact fields) and link to the request; the mail
/// goes through the outbox to a real SMTP server with the visitor's text escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_and_the_mail_carry_page_language_topic_contact_fields_and_the_deep_link() {
    let (hook, seen) = receiver().await;
    let smtp = common::smtp::SmtpServer::start();
    let conf_dir = tempfile::tempdir().unwrap().keep();
    let conf = smtp.settings(
        &conf_dir,
        "outbox_retry = \"200ms\"\npublic_url = \"http://chat.acme.example\"",
    );
    let server = Bundle::new()
        .team("desk", &["shop"])
        .agent("Ana Lima", "ana@acme.example", "desk")
        .bot("shop", SHOP)
        .serve_with(
            &["ana@acme.example"],
            &[
                ("CRM_HOOK", hook.as_str()),
                ("LIVECHAT_CONFIG", conf.to_str().unwrap()),
            ],
        );
    let api = Api::new(&server.url);
    let Console {
        stream: mut console,
        ..
    } = api.go_online("ana@acme.example").await;
    let reply = api
        .request("POST", "/api/v1/visitor/sessions")
        .header("Accept-Language", "de-CH, en;q=0.5")
        .json(json!({"bot": "shop", "page_url": "https://acme.example/pricing?x=1"}))
        .send()
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let token = reply.body["token"].as_str().unwrap().to_string();
    let conv = reply.body["conversation_id"].as_str().unwrap().to_string();
    api.post_ok(
        "/api/v1/visitor/actions",
        Some(&token),
        json!({"type": "choice", "value": "Billing"}),
    )
    .await;
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&token),
        json!({"client_id": "c", "text": "<b>Acme</b> & Co"}),
    )
    .await;
    api.request_live_chat(&token).await;
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&token),
        json!({"client_id": "n", "text": "Dana <Scully>"}),
    )
    .await;
    console.event("livechat.ringing", Some(&conv)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no alert");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let body = seen.lock().unwrap()[0].clone();
    assert_eq!(body["event"], "livechat.requested", "{body}");
    assert_eq!(body["visitor"]["name"], "Dana <Scully>", "{body}");
    assert_eq!(body["page_url"], "https://acme.example/pricing?x=1");
    assert_eq!(body["language"], "de-CH", "{body}");
    // No `country_header` is set: the server has no source for a country.
    assert_eq!(body["country"], Value::Null);
    assert_eq!(body["variables"]["topic"], "billing", "{body}");
    assert_eq!(
        body["contact"],
        json!({"company": "<b>Acme</b> & Co", "plan": "Pro"}),
        "{body}"
    );
    assert!(
        body["fields"]
            .as_array()
            .unwrap()
            .contains(&json!({"label": "Company", "value": "<b>Acme</b> & Co"})),
        "{body}"
    );
    assert_eq!(
        body["console_url"],
        format!("http://chat.acme.example/console#/conversations/{conv}")
    );

    let mails = tokio::task::spawn_blocking(move || {
        smtp.wait_for_kind("new_request", 1, Duration::from_secs(15))
    })
    .await
    .unwrap();
    let mail = &mails[0];
    let header = |name: &str| common::smtp::header(mail, name);
    assert_eq!(header("To").as_deref(), Some("sales@acme.example"));
    assert_eq!(
        header("Subject").as_deref(),
        Some("New chat request: Dana <Scully>")
    );
    let text = common::smtp::decode_qp(mail);
    for needle in [
        "https://acme.example/pricing?x=1",
        "Language: de-CH",
        "Company: <b>Acme</b> & Co",
        "topic: billing",
        &format!("http://chat.acme.example/console#/conversations/{conv}"),
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    // The HTML part escapes what the visitor typed.
    assert!(
        text.contains("&lt;b&gt;Acme&lt;&#x2f;b&gt; &amp; Co"),
        "{text}"
    );
    assert!(!text.contains("<b>Acme</b> & Co</td>"), "{text}");
    assert!(text.contains("Dana &lt;Scully&gt;"), "{text}");
}
