//! The one client of the tests, `Api`: the live chat API as a visitor's widget and an
//! agent's console speak it, real HTTP with reqwest and real WebSockets with
//! tokio-tungstenite; `Api::blocking` for the tests that are synchronous by design.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::livechat;

pub const PASSWORD: &str = "correct horse battery";

/// Sets an agent's password through the real CLI, reading it from standard input.
pub fn set_password(bots_dir: &Path, data_dir: &Path, email: &str) {
    set_password_with(bots_dir, data_dir, email, &[]);
}

/// The same, with the environment the bundle's `${VAR}`s need.
pub fn set_password_with(bots_dir: &Path, data_dir: &Path, email: &str, env: &[(String, String)]) {
    let mut cmd = livechat();
    // The store of the server on `data_dir` when the suite runs on PostgreSQL.
    if super::store_under_test() == "postgres"
        && !env.iter().any(|(k, _)| k == "LIVECHAT_DATABASE_URL")
    {
        cmd.env("LIVECHAT_DATABASE_URL", super::test_database(data_dir));
    }
    let mut child = cmd
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["agent", "password", email, "--bots-dir"])
        .arg(bots_dir)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "agent password: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one client of the tests: JSON calls with `call`/`get`/`post`, anything else (other
/// methods, headers, forms, pages) with `request(..).send()`.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api {
            url: url.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// The same client for a test that is synchronous by design.
    pub fn blocking(url: &str) -> Blocking {
        Blocking(Api {
            url: url.to_string(),
            // Each call runs on a runtime of its own: a kept connection would outlive it.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        })
    }

    /// A request to `path` of the server, sent by `Request::send`.
    pub fn request(&self, method: &str, path: &str) -> Request {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        Request(self.http.request(method, format!("{}{path}", self.url)))
    }

    /// Sends `body` (JSON text, or nothing) with an optional bearer token.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.request(method, path);
        if let Some(t) = token {
            req = req.bearer(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let reply = req.send().await;
        (reply.status, reply.body)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(&body.to_string()))
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call("GET", path, token, None).await
    }

    /// `post`, expecting 200; answers the body.
    pub async fn post_ok(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        ok(path, self.post(path, token, body).await)
    }

    /// `get`, expecting 200; answers the body.
    pub async fn get_ok(&self, path: &str, token: Option<&str>) -> Value {
        ok(path, self.get(path, token).await)
    }

    /// Logs an agent in; answers their bearer token.
    pub async fn login(&self, email: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "login {email}: {body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Starts a visitor session on `bot`; answers the whole reply.
    pub async fn visitor(&self, bot: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/visitor/sessions",
                None,
                json!({"bot": bot, "page_url": "https://acme.example/pricing"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.url.replacen("http://", "ws://", 1))
    }

    /// An agent's event stream (console open).
    pub async fn agent_stream(&self, token: &str, after: i64) -> Stream {
        let mut req = self
            .ws_url(&format!("/api/v1/agent/events?after={after}"))
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("agent ws");
        Stream {
            ws,
            seen: Vec::new(),
        }
    }

    /// A visitor's event stream; the first frame authenticates it.
    pub async fn visitor_stream(&self, token: &str, after: i64) -> Stream {
        let url = self.ws_url(&format!("/api/v1/visitor/events?after={after}"));
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("visitor ws");
        ws.send(Message::Text(
            json!({"type": "auth", "token": token}).to_string().into(),
        ))
        .await
        .unwrap();
        let mut stream = Stream {
            ws,
            seen: Vec::new(),
        };
        let ready = stream
            .next_frame(Duration::from_secs(5))
            .await
            .expect("ready frame");
        assert_eq!(ready["type"], "ready", "{ready}");
        stream
    }
}

/// A request being built; `send` answers the whole `Reply`.
pub struct Request(reqwest::RequestBuilder);

impl Request {
    pub fn header(self, name: &str, value: &str) -> Request {
        Request(self.0.header(name, value))
    }

    pub fn headers(self, headers: &[(&str, &str)]) -> Request {
        headers.iter().fold(self, |req, (k, v)| req.header(k, v))
    }

    pub fn bearer(self, token: &str) -> Request {
        Request(self.0.bearer_auth(token))
    }

    /// `body` as JSON text (sent as is, so tests may send broken JSON too).
    pub fn json(self, body: impl ToString) -> Request {
        self.header("content-type", "application/json").body(body)
    }

    /// `body` as is, with no content type.
    pub fn body(self, body: impl ToString) -> Request {
        Request(self.0.body(body.to_string()))
    }

    /// An HTML form's body, `fields` URL-encoded.
    pub fn form(self, fields: &[(&str, &str)]) -> Request {
        let encode = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
    }

    /// Sends it; panics if the server does not answer.
    pub async fn send(self) -> Reply {
        self.try_send().await.expect("request")
    }

    /// `send` for a synchronous test (on a client of `Api::blocking`).
    pub fn wait(self) -> Reply {
        block_on(self.send())
    }

    /// `try_send` for a synchronous test (on a client of `Api::blocking`).
    pub fn try_wait(self) -> Result<Reply, reqwest::Error> {
        block_on(self.try_send())
    }

    /// Sends it; an error if the server does not answer.
    pub async fn try_send(self) -> Result<Reply, reqwest::Error> {
        let resp = self.0.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Ok(Reply {
            status,
            headers,
            text,
            body,
        })
    }
}

/// What the server answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON (the text as a JSON string when it is not JSON).
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `Api` for a synchronous test: every call runs to its end on a runtime of its own.
pub struct Blocking(pub Api);

impl Blocking {
    /// A request to send with `Request::wait`.
    pub fn request(&self, method: &str, path: &str) -> Request {
        self.0.request(method, path)
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        block_on(self.0.call(method, path, token, body))
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        block_on(self.0.get(path, token))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        block_on(self.0.post(path, token, body))
    }
}

/// Runs `fut` to its end on a fresh runtime in a thread of its own, so async tests may
/// call a blocking helper too.
pub fn block_on<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(fut)
        })
        .join()
        .unwrap()
    })
}

pub struct Stream {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every frame received so far.
    pub seen: Vec<Value>,
}

impl Stream {
    /// The next JSON frame, or None after `limit` (or when the socket closed).
    pub async fn next_frame(&mut self, limit: Duration) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(limit, self.ws.next())
                .await
                .ok()??
                .ok()?;
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                self.seen.push(v.clone());
                return Some(v);
            }
        }
    }

    /// Reads frames until one matches; panics with what was seen after `limit`.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "no {what} within {limit:?}; saw:\n{}",
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Waits for an event of `kind` (in `conversation`, if given).
    pub async fn event(&mut self, kind: &str, conversation: Option<&str>) -> Value {
        self.wait_for(Duration::from_secs(10), kind, |v| {
            v["type"] == kind && conversation.is_none_or(|c| v["conversation_id"] == c)
        })
        .await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

// ---- Helpers of the lifecycle and API error tests --------------------------------------

/// The email of the numbered agent of `Bundle::live`.
pub fn agent_email(i: usize) -> String {
    format!("agent{i}@acme.example")
}

/// An agent with the console open: their token and their event stream.
pub struct Console {
    pub email: String,
    pub token: String,
    pub stream: Stream,
}

/// A visitor's session: their token and their conversation.
pub struct Session {
    pub token: String,
    pub conv: String,
}

impl Api {
    /// Logs the agent in, opens their console (events after 0) and turns "Accept chats" on;
    /// returns once the server lists them online and accepting.
    pub async fn go_online(&self, email: &str) -> Console {
        let token = self.login(email).await;
        let stream = self.agent_stream(&token, 0).await;
        // Online means the socket is subscribed: only then does it hear the presence change.
        self.wait_agent(&token, email, |a| a["online"] == true)
            .await;
        self.set_accepting(&token, true).await;
        self.wait_agent(&token, email, |a| {
            a["online"] == true && a["accepting"] == true
        })
        .await;
        Console {
            email: email.to_string(),
            token,
            stream,
        }
    }

    /// The "Accept chats" toggle.
    pub async fn set_accepting(&self, token: &str, accepting: bool) {
        let (status, body) = self
            .call(
                "PUT",
                "/api/v1/me/availability",
                Some(token),
                Some(&json!({ "accepting": accepting }).to_string()),
            )
            .await;
        assert_eq!(status, 200, "availability: {body}");
    }

    /// The agent `email` as `GET /api/v1/agents` lists them.
    pub async fn agent_view(&self, token: &str, email: &str) -> Value {
        let (status, body) = self.get("/api/v1/agents", Some(token)).await;
        assert_eq!(status, 200, "{body}");
        body["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["email"] == email)
            .cloned()
            .unwrap_or_else(|| panic!("{email} is not listed: {body}"))
    }

    /// Polls `GET /api/v1/agents` until the agent `email` fits `pred`.
    pub async fn wait_agent(&self, token: &str, email: &str, pred: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let view = self.agent_view(token, email).await;
            if pred(&view) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{email} never got there: {view}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A new visitor of `bot`.
    pub async fn session(&self, bot: &str) -> Session {
        let body = self.visitor(bot).await;
        Session {
            token: body["token"].as_str().unwrap().to_string(),
            conv: body["conversation_id"].as_str().unwrap().to_string(),
        }
    }

    /// The visitor asks for a person; answers the reply (200 expected).
    pub async fn request_live_chat(&self, visitor_token: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/visitor/actions",
                Some(visitor_token),
                json!({"type": "request_live_chat"}),
            )
            .await;
        assert_eq!(status, 200, "request_live_chat: {body}");
        body
    }

    /// Every event of `GET /api/v1/visitor/history` after `after`, page after page.
    pub async fn history(&self, visitor_token: &str, after: i64) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = after;
        loop {
            let (status, body) = self
                .get(
                    &format!("/api/v1/visitor/history?after={after}"),
                    Some(visitor_token),
                )
                .await;
            assert_eq!(status, 200, "history: {body}");
            out.extend(body["events"].as_array().unwrap().iter().cloned());
            after = body["last_seq"].as_i64().unwrap();
            if body["more"] != true {
                return out;
            }
        }
    }

    /// `GET /api/v1/conversations/{conv}` (200 expected).
    pub async fn details(&self, agent_token: &str, conv: &str) -> Value {
        let (status, body) = self
            .get(&format!("/api/v1/conversations/{conv}"), Some(agent_token))
            .await;
        assert_eq!(status, 200, "details of {conv}: {body}");
        body
    }

    /// An agent's command on a conversation: `POST /api/v1/conversations/{conv}/{verb}`.
    pub async fn act(
        &self,
        agent_token: &str,
        conv: &str,
        verb: &str,
        body: Value,
    ) -> (u16, Value) {
        self.post(
            &format!("/api/v1/conversations/{conv}/{verb}"),
            Some(agent_token),
            body,
        )
        .await
    }

    /// `act`, expecting 200; answers the body.
    pub async fn act_ok(&self, agent_token: &str, conv: &str, verb: &str, body: Value) -> Value {
        ok(verb, self.act(agent_token, conv, verb, body).await)
    }
}

/// The body of a 200 reply (async callers cannot pass their place on: `what` says which).
fn ok(what: &str, (status, body): (u16, Value)) -> Value {
    assert_eq!(status, 200, "{what}: {body}");
    body
}

impl Stream {
    /// Every frame that arrives within `span`: to prove that something does not happen.
    pub async fn quiet(&mut self, span: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + span;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return got;
            }
            match self.next_frame(left).await {
                Some(v) => got.push(v),
                None => return got,
            }
        }
    }

    /// Reads until what was seen so far (all of it) fits `done`; panics after `limit`.
    pub async fn wait_until(
        &mut self,
        limit: Duration,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.next_frame(left).await.is_none() {
                panic!(
                    "no {what} within {limit:?}; saw:\n{}",
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }

    /// Reads until an event with `seq` at least `seq` arrived (panics after `limit`).
    pub async fn until_seq(&mut self, limit: Duration, seq: i64) -> Value {
        self.wait_for(limit, &format!("the event with seq {seq}"), |v| {
            v["seq"].as_i64().is_some_and(|s| s >= seq)
        })
        .await
    }

    /// The events seen so far: the frames with a `seq` (not presence or typing).
    pub fn events(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["seq"].is_i64())
            .cloned()
            .collect()
    }

    /// The highest `seq` seen so far (0: none).
    pub fn last_seq(&self) -> i64 {
        self.seen
            .iter()
            .filter_map(|v| v["seq"].as_i64())
            .max()
            .unwrap_or(0)
    }
}

/// An HTTP answer read whole, its body as bytes (a file): its status, headers and body.
pub struct RawReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl RawReply {
    /// Sends `req` and reads the whole answer.
    pub async fn of(req: reqwest::RequestBuilder) -> Result<RawReply, reqwest::Error> {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?.to_vec();
        Ok(RawReply {
            status,
            headers,
            bytes,
        })
    }

    /// A header's value ("" when it is missing or not text).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).unwrap_or(serde_json::Value::Null)
    }
}
