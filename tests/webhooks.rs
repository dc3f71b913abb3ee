//! Webhook delivery against a real HTTP receiver: an axum server on a free loopback port
//! that records every request and answers as its path says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use livechat::config::schema::WebhookKind;
use livechat::webhooks::{self, Notification, NotifyEvent, deliver, payload};
use serde_json::Value;
use sha2::Sha256;

const KINDS: [WebhookKind; 4] = [
    WebhookKind::Slack,
    WebhookKind::GoogleChat,
    WebhookKind::Teams,
    WebhookKind::Generic,
];
/// What a webhook URL's secret part looks like; it must never appear in a message.
const TOKEN: &str = "T0001/B0002/SecretToken0123456789";
const SECRET: &str = "whsec_3kS9vLq2";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    flaky: Arc<AtomicUsize>,
}

/// Records the request, then answers by its first path segment.
async fn answer(
    State(rec): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    rec.seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        headers,
        body: body.to_vec(),
    });
    let mut parts = path.trim_start_matches('/').split('/');
    match parts.next().unwrap_or("") {
        "ok" => (StatusCode::OK, "ok").into_response(),
        "accepted" => StatusCode::ACCEPTED.into_response(),
        "status" => {
            let code: u16 = parts.next().unwrap().parse().unwrap();
            let status = StatusCode::from_u16(code).unwrap();
            // A chatty receiver: echoes the path, where webhook tokens live.
            let body = format!("invalid_payload (no such hook {path})");
            let mut response = (status, body).into_response();
            if code == 429 {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, "7".parse().unwrap());
            }
            response
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        "flaky" => {
            if rec.flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                (StatusCode::INTERNAL_SERVER_ERROR, "try later").into_response()
            } else {
                (StatusCode::OK, "ok").into_response()
            }
        }
        "teams-throttled" => (
            StatusCode::OK,
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned \
             HTTP error 429 with ContextId tcid=0,server=msgapi-canary",
        )
            .into_response(),
        "redirect" => (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The receiver, running on its own runtime while the test thread makes blocking calls.
struct Receiver {
    base: String,
    rec: Recorder,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rec = Recorder::default();
        let app = Router::new().fallback(answer).with_state(rec.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            base: format!("http://{addr}"),
            rec,
            _runtime: runtime,
        }
    }

    /// A webhook URL: `behaviour` then a secret-looking token.
    fn url(&self, behaviour: &str) -> String {
        format!("{}/{behaviour}/{TOKEN}", self.base)
    }

    fn seen(&self) -> Vec<Seen> {
        self.rec.seen.lock().unwrap().clone()
    }
}

fn request() -> Notification {
    Notification {
        event: NotifyEvent::NewRequest,
        bot_id: "support".into(),
        bot_name: "Support".into(),
        conversation_id: Some("c_01HZX4Q7".into()),
        visitor_name: Some("Jane Doe".into()),
        visitor_email: Some("jane@example.com".into()),
        page_url: Some("https://acme.example/pricing".into()),
        language: Some("en-US".into()),
        country: None,
        variables: [("topic".to_string(), "billing".to_string())].into(),
        contact: [("company".to_string(), "Acme".to_string())].into(),
        video: false,
        lines: vec![
            "Billing question".into(),
            "I was charged twice for March".into(),
        ],
        // A new request tells the contact fields (by label) and the flow's variables.
        fields: vec![
            ("Company".into(), "Acme".into()),
            ("topic".into(), "billing".into()),
        ],
        console_url: "https://chat.acme.example/console#/conversations/c_01HZX4Q7".into(),
        at: "2026-04-20T14:03:05Z".parse().unwrap(),
    }
}

fn offline_form() -> Notification {
    Notification {
        event: NotifyEvent::OfflineFormSubmitted,
        conversation_id: Some("c_01HZX9K2".into()),
        lines: vec![],
        fields: vec![
            ("Your name".into(), "Jane Doe".into()),
            ("Email".into(), "jane@example.com".into()),
            (
                "Message".into(),
                "Please call me back about my invoice.".into(),
            ),
        ],
        console_url: "https://chat.acme.example/console#/conversations/c_01HZX9K2".into(),
        language: None,
        variables: Default::default(),
        contact: Default::default(),
        ..request()
    }
}

fn body(kind: WebhookKind, n: &Notification) -> Vec<u8> {
    serde_json::to_vec(&payload(kind, n)).unwrap()
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn each_kind_arrives_as_json_in_its_own_format() {
    let receiver = Receiver::start();
    for kind in KINDS {
        let sent = body(kind, &request());
        let status = deliver(&receiver.url("ok"), kind, Some(SECRET), &sent, TIMEOUT);
        assert_eq!(status, Ok(200), "{kind:?}");
    }
    let seen = receiver.seen();
    assert_eq!(seen.len(), 4);
    for (kind, got) in KINDS.into_iter().zip(&seen) {
        assert_eq!(got.method, Method::POST);
        assert_eq!(got.path, format!("/ok/{TOKEN}"));
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert!(got.header("user-agent").unwrap().starts_with("livechat/"));
        assert_eq!(
            got.body,
            body(kind, &request()),
            "{kind:?}: the exact bytes"
        );
        let signed = got.header("x-livechat-signature").is_some();
        assert_eq!(signed, kind == WebhookKind::Generic, "{kind:?}");
    }
    let [slack, chat, teams, generic] = [0, 1, 2, 3].map(|i| seen[i].json());
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert!(slack["text"].as_str().unwrap().contains("Jane Doe"));
    assert_eq!(
        chat["cardsV2"][0]["card"]["header"]["title"],
        "New live chat request"
    );
    assert_eq!(teams["type"], "message");
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
    assert_eq!(generic["event"], "livechat.requested");
    assert_eq!(generic["visitor"]["email"], "jane@example.com");
}

#[test]
fn a_generic_request_is_signed_over_its_timestamp_and_body() {
    let receiver = Receiver::start();
    let sent = body(WebhookKind::Generic, &offline_form());
    let before = jiff::Timestamp::now().as_second();
    let status = deliver(
        &receiver.url("accepted"),
        WebhookKind::Generic,
        Some(SECRET),
        &sent,
        TIMEOUT,
    );
    assert_eq!(status, Ok(202));
    let after = jiff::Timestamp::now().as_second();

    let got = &receiver.seen()[0];
    assert_eq!(got.header("x-livechat-event"), Some("form.submitted"));
    let timestamp = got.header("x-livechat-timestamp").unwrap();
    let ts: i64 = timestamp.parse().unwrap();
    assert!(
        (before..=after).contains(&ts),
        "{ts} not in {before}..={after}"
    );

    // Verified the way an integrator would, independently of livechat's own code.
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(&got.body);
    let signature = got.header("x-livechat-signature").unwrap();
    assert_eq!(signature, format!("sha256={}", hmac_hex(SECRET, &message)));
    assert!(webhooks::verify(
        SECRET.as_bytes(),
        timestamp,
        &got.body,
        signature
    ));
    // The same signature does not fit another body, timestamp or secret.
    assert!(!webhooks::verify(
        SECRET.as_bytes(),
        timestamp,
        b"{}",
        signature
    ));
    assert!(!webhooks::verify(
        SECRET.as_bytes(),
        &(ts + 1).to_string(),
        &got.body,
        signature
    ));
    assert!(!webhooks::verify(
        b"another secret",
        timestamp,
        &got.body,
        signature
    ));
    assert_eq!(got.json()["fields"][2]["label"], "Message");
}

#[test]
fn a_generic_webhook_without_a_secret_is_sent_unsigned() {
    let receiver = Receiver::start();
    let sent = body(WebhookKind::Generic, &request());
    for secret in [None, Some("")] {
        let status = deliver(
            &receiver.url("ok"),
            WebhookKind::Generic,
            secret,
            &sent,
            TIMEOUT,
        );
        assert_eq!(status, Ok(200));
    }
    for got in receiver.seen() {
        assert_eq!(got.header("x-livechat-event"), Some("livechat.requested"));
        assert!(got.header("x-livechat-timestamp").is_some());
        assert_eq!(got.header("x-livechat-signature"), None);
    }
}

#[test]
fn server_errors_and_rate_limits_are_retryable() {
    let receiver = Receiver::start();
    let sent = body(WebhookKind::Slack, &request());
    for code in [500, 502, 503, 408, 429] {
        let url = receiver.url(&format!("status/{code}"));
        let err = deliver(&url, WebhookKind::Slack, None, &sent, TIMEOUT).unwrap_err();
        assert!(err.retryable, "{code}: {err:?}");
        assert_eq!(err.status, Some(code));
        assert!(
            err.message
                .starts_with(&format!("the Slack webhook answered {code}")),
            "{}",
            err.message
        );
        assert!(err.message.contains("invalid_payload"), "{}", err.message);
        assert!(!err.message.contains(&url), "{}", err.message);
        assert!(!err.message.contains("SecretToken"), "{}", err.message);
        let expected = (code == 429).then(|| Duration::from_secs(7));
        assert_eq!(err.retry_after, expected, "{code}");
    }
}

#[test]
fn a_retry_after_a_500_gets_through() {
    let receiver = Receiver::start();
    let sent = body(WebhookKind::Generic, &request());
    let url = receiver.url("flaky");
    let first = deliver(&url, WebhookKind::Generic, Some(SECRET), &sent, TIMEOUT);
    assert!(first.as_ref().unwrap_err().retryable, "{first:?}");
    let second = deliver(&url, WebhookKind::Generic, Some(SECRET), &sent, TIMEOUT);
    assert_eq!(second, Ok(200));
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, seen[1].body, "the same payload, tried again");
    for got in &seen {
        assert!(webhooks::verify(
            SECRET.as_bytes(),
            got.header("x-livechat-timestamp").unwrap(),
            &got.body,
            got.header("x-livechat-signature").unwrap()
        ));
    }
}

#[test]
fn client_errors_are_not_retryable_and_name_the_webhook_not_its_url() {
    let receiver = Receiver::start();
    for (kind, name) in [
        (WebhookKind::Slack, "Slack"),
        (WebhookKind::GoogleChat, "Google Chat"),
        (WebhookKind::Teams, "Teams"),
        (WebhookKind::Generic, "generic"),
    ] {
        for code in [400, 403, 404, 410] {
            let url = receiver.url(&format!("status/{code}"));
            let err =
                deliver(&url, kind, Some(SECRET), &body(kind, &request()), TIMEOUT).unwrap_err();
            assert!(!err.retryable, "{kind:?} {code}: {err:?}");
            assert_eq!(err.status, Some(code));
            assert!(
                err.message
                    .starts_with(&format!("the {name} webhook answered {code}")),
                "{}",
                err.message
            );
            assert!(!err.message.contains(&receiver.base), "{}", err.message);
            assert!(!err.message.contains("SecretToken"), "{}", err.message);
            assert!(err.message.contains("[redacted]"), "{}", err.message);
        }
    }
}

#[test]
fn a_redirect_is_not_followed() {
    let receiver = Receiver::start();
    let sent = body(WebhookKind::Slack, &request());
    let err = deliver(
        &receiver.url("redirect"),
        WebhookKind::Slack,
        None,
        &sent,
        TIMEOUT,
    )
    .unwrap_err();
    assert!(!err.retryable, "{err:?}");
    assert_eq!(err.status, Some(302));
    assert_eq!(receiver.seen().len(), 1, "the Location was not followed");
}

#[test]
fn teams_throttling_reported_inside_a_200_is_retryable() {
    let receiver = Receiver::start();
    let sent = body(WebhookKind::Teams, &request());
    let err = deliver(
        &receiver.url("teams-throttled"),
        WebhookKind::Teams,
        None,
        &sent,
        TIMEOUT,
    )
    .unwrap_err();
    assert!(err.retryable, "{err:?}");
    assert_eq!(err.status, Some(200));
    assert!(err.message.contains("rate limited"), "{}", err.message);
}

#[test]
fn a_closed_port_is_retryable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/{TOKEN}");
    let sent = body(WebhookKind::GoogleChat, &request());
    let err = deliver(&url, WebhookKind::GoogleChat, None, &sent, TIMEOUT).unwrap_err();
    assert!(err.retryable, "{err:?}");
    assert_eq!(err.status, None);
    assert!(
        err.message
            .starts_with("the Google Chat webhook could not be reached"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("SecretToken"), "{}", err.message);
}

#[test]
fn a_receiver_that_does_not_answer_is_given_up_on_after_the_timeout() {
    let receiver = Receiver::start();
    let sent = body(WebhookKind::Generic, &request());
    let started = Instant::now();
    let err = deliver(
        &receiver.url("slow"),
        WebhookKind::Generic,
        Some(SECRET),
        &sent,
        Duration::from_millis(300),
    )
    .unwrap_err();
    let took = started.elapsed();
    assert!(err.retryable, "{err:?}");
    assert_eq!(err.status, None);
    assert_eq!(
        err.message,
        "the generic webhook did not answer within 300ms"
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(receiver.seen().len(), 1, "the request did arrive");
}

#[test]
fn a_listener_that_never_accepts_is_given_up_on_after_the_timeout() {
    // Connected by the kernel's backlog, never read: the request is never answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/{TOKEN}", listener.local_addr().unwrap());
    let started = Instant::now();
    let err = deliver(
        &url,
        WebhookKind::Teams,
        None,
        &body(WebhookKind::Teams, &request()),
        Duration::from_millis(400),
    )
    .unwrap_err();
    assert!(err.retryable, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}

/// The examples in `docs/webhooks.md` are this exact output: when a format changes, this
/// test prints the new example to paste.
#[test]
fn the_docs_show_the_real_payloads() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/webhooks.md")).unwrap();
    let examples = [
        ("Slack", payload(WebhookKind::Slack, &request())),
        ("Google Chat", payload(WebhookKind::GoogleChat, &request())),
        ("Teams", payload(WebhookKind::Teams, &request())),
        ("generic", payload(WebhookKind::Generic, &offline_form())),
    ];
    let mut stale = Vec::new();
    for (name, example) in examples {
        let block = format!(
            "```json\n{}\n```",
            serde_json::to_string_pretty(&example).unwrap()
        );
        if !docs.contains(&block) {
            stale.push(format!("{name}:\n{block}"));
        }
    }
    assert!(
        stale.is_empty(),
        "docs/webhooks.md lacks these examples:\n\n{}",
        stale.join("\n\n")
    );
}
