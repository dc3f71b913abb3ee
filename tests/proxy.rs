//! The server behind a real nginx, configured with `packaging/nginx.conf`'s own upstream,
//! map and locations: the widget's and the console's WebSockets pass through both ways, the
//! console socket's Origin check still knows its own site, and the client address the
//! server sees comes from X-Forwarded-For only when nginx is one of `trusted_proxies`.
//!
//! nginx runs unprivileged in a temporary prefix, in the foreground, on a free loopback
//! port; it connects to the server from 127.0.0.2 (`proxy_bind`), and the test's clients
//! connect from other loopback addresses, so every hop has an address of its own.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::Bundle;
use common::TestServer;
use common::live::{PASSWORD, agent_email, set_password};
use common::nginx::Nginx;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The server (the `support` bot with a contact form, one agent with a password) with
/// `env`, and nginx in front of it.
async fn proxied(env: &'static [(&'static str, &'static str)]) -> (TestServer, Nginx) {
    tokio::task::spawn_blocking(move || {
        let server = TestServer::start(|dir| Bundle::live(1).write(dir), env);
        set_password(&server.bots_dir, &server.data_dir, &agent_email(0));
        let upstream = server.url.trim_start_matches("http://").to_string();
        let nginx = Nginx::start(&[&upstream]);
        (server, nginx)
    })
    .await
    .unwrap()
}

/// An HTTP client whose connections come from `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// One contact-form message through the API; answers the status.
async fn offline(client: &reqwest::Client, url: &str, forwarded_for: Option<&str>) -> u16 {
    let mut req = client
        .post(format!("{url}/api/v1/bots/support/offline"))
        .json(&json!({"values": {"email": "vera@example.com", "message": "Call me back"}}));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap().status().as_u16()
}

/// The contact form's per-address limit (5 in 10 minutes) is what shows which address the
/// server sees.
const LIMIT: usize = 5;

#[tokio::test]
async fn a_trusted_nginx_names_each_client_and_clients_cannot_name_themselves() {
    let (server, nginx) = proxied(&[("LIVECHAT_TRUSTED_PROXIES", "127.0.0.2/32")]).await;
    let (a, b) = (client_from("127.0.0.3"), client_from("127.0.0.4"));
    // Each message claims another address; nginx appends the real one, and that counts.
    for i in 0..LIMIT {
        let claimed = format!("198.51.100.{i}");
        assert_eq!(offline(&a, &nginx.url, Some(&claimed)).await, 201, "{i}");
    }
    assert_eq!(offline(&a, &nginx.url, Some("198.51.100.99")).await, 429);
    // The server's TCP peer was nginx every time, yet 127.0.0.4 is a client of its own.
    assert_eq!(offline(&b, &nginx.url, None).await, 201);
    // Straight to the server, 127.0.0.3 is the same client, and its header is ignored.
    assert_eq!(offline(&a, &server.url, Some("198.51.100.98")).await, 429);
}

#[tokio::test]
async fn behind_an_untrusted_nginx_every_client_is_nginx() {
    let (_server, nginx) = proxied(&[]).await;
    let (a, b) = (client_from("127.0.0.3"), client_from("127.0.0.4"));
    for i in 0..LIMIT {
        assert_eq!(offline(&a, &nginx.url, None).await, 201, "{i}");
    }
    // Another client, another claimed address: all one address to the server, nginx's.
    assert_eq!(offline(&b, &nginx.url, Some("198.51.100.7")).await, 429);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame as JSON, or the pong answering a ping (as `{"pong": …}`).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Pong(p) => return json!({ "pong": String::from_utf8_lossy(&p) }),
            _ => {}
        }
    }
}

async fn until(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut seen = Vec::new();
    loop {
        let frame = next(ws).await;
        if pred(&frame) {
            return frame;
        }
        seen.push(frame);
        assert!(seen.len() < 100, "no {what}: {seen:?}");
    }
}

/// The console's socket as a browser opens it: the session cookie and the page's origin.
async fn console_socket(nginx: &str, cookie: &str, origin: &str) -> Result<Ws, WsError> {
    let url = format!(
        "{}/api/v1/agent/events",
        nginx.replacen("http://", "ws://", 1)
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut().insert("origin", origin.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test]
async fn the_widget_and_console_sockets_work_through_nginx() {
    let (_server, nginx) = proxied(&[("LIVECHAT_TRUSTED_PROXIES", "127.0.0.2/32")]).await;
    let http = reqwest::Client::new();

    // The agent signs in through nginx, as the console does, and keeps the cookie.
    let login = http
        .post(format!("{}/api/v1/auth/login", nginx.url))
        .json(&json!({"email": agent_email(0), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // The console's own page, through the proxy: its origin is nginx's address, which
    // reaches the server in the Host header nginx passes on.
    let mut console = console_socket(&nginx.url, &cookie, &nginx.url)
        .await
        .expect("the console socket from the site's own page");
    // A page of another site with the same cookie is refused at the handshake.
    match console_socket(&nginx.url, &cookie, "https://evil.example").await {
        Err(WsError::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("a foreign origin's socket: {:?}", other.map(|_| "open")),
    }

    // The widget: a session, then its socket, authenticated by its first frame.
    let session: Value = http
        .post(format!("{}/api/v1/visitor/sessions", nginx.url))
        .json(&json!({"bot": "support"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap().to_string();
    let conversation = session["conversation_id"].as_str().unwrap().to_string();
    let ws_url = format!(
        "{}/api/v1/visitor/events",
        nginx.url.replacen("http://", "ws://", 1)
    );
    let (mut widget, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    widget
        .send(Message::Text(
            json!({"type": "auth", "token": token}).to_string().into(),
        ))
        .await
        .unwrap();
    let ready = next(&mut widget).await;
    assert_eq!(ready["type"], "ready", "{ready}");

    // A visitor's message reaches the console's socket, and the widget's own.
    let text = "Does this pass the proxy?";
    let (status, body) = {
        let res = http
            .post(format!("{}/api/v1/visitor/messages", nginx.url))
            .bearer_auth(&token)
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    };
    assert!(status.is_success(), "{status}: {body}");
    let is_text =
        |f: &Value| f["conversation_id"] == conversation.as_str() && f.to_string().contains(text);
    until(&mut console, "the message on the console", is_text).await;
    until(&mut widget, "the message on the widget", is_text).await;

    // Client frames pass the other way: a ping through nginx, the server's pong back.
    for ws in [&mut widget, &mut console] {
        ws.send(Message::Ping(b"through nginx".to_vec().into()))
            .await
            .unwrap();
        until(ws, "the pong", |f| f["pong"] == "through nginx").await;
    }
}
