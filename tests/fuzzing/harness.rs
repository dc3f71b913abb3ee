//! What the fuzz targets under `fuzz/` run, shared with the normal suite: `cargo fuzz`
//! feeds it generated inputs, `tests/fuzz_regressions.rs` replays the saved ones (the seed
//! corpus and every input that once failed) on every `cargo test`.
//!
//! Three entry points: `bundle` (the loader and validator over any text an admin may save),
//! `api_body` (any body and query string sent to the HTTP API, through the real router of a
//! real server state), `socket_frame` (any frame a client may send on the visitor and agent
//! sockets of a real server on loopback). A failure is a panic: a panic of the server or a
//! `5xx` answer, or an error answer without its stable code.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use futures_util::{SinkExt, StreamExt};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use livechat::config::{Bundle, Sources};
use livechat::http::AppState;

/// The files a bundle input is cut into, at each NUL byte.
const BUNDLE_FILES: [&str; 4] = [
    "support.toml",
    "agents.toml",
    "responses.toml",
    "sales.toml",
];

/// Loads and validates a bundle made of `data`: it may be refused, never panic, and every
/// error must point inside a file of the bundle.
pub fn bundle(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let sources: Sources = BUNDLE_FILES
        .iter()
        .zip(text.split('\0'))
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect::<BTreeMap<_, _>>();
    let env = |name: &str| (name == "FUZZ_SET").then(|| "value".to_string());
    if let Err(diags) = Bundle::from_sources(sources.clone(), &env) {
        assert!(!diags.is_empty());
        for d in diags {
            let text = sources.get(&d.file);
            assert!(
                d.file.is_empty() || text.is_some(),
                "a diagnostic names a file that is not in the bundle: {d:?}"
            );
            if let Some(text) = text {
                assert!(
                    d.line >= 1 && d.line <= text.matches('\n').count() + 1 && d.column >= 1,
                    "{}:{}:{} is outside the file: {d:?}",
                    d.file,
                    d.line,
                    d.column
                );
            }
        }
    }
}

/// A server state on a temporary copy of the example bundle, with a visitor, an agent who
/// accepted that visitor's request, and both sockets' addresses.
pub struct Target {
    pub rt: Runtime,
    pub app: Router,
    pub addr: SocketAddr,
    pub visitor: String,
    pub agent: String,
    pub conversation: String,
    pub admin_token: String,
    sockets: tokio::sync::Mutex<Sockets>,
    peers: AtomicU32,
    _dir: tempfile::TempDir,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Default)]
struct Sockets {
    visitor: Option<Ws>,
    agent: Option<Ws>,
}

const ADMIN: &str = "ana.lima@example.com";
const PASSWORD: &str = "fuzzing is a form of testing";

impl Target {
    /// `root`: the project's directory (where `examples/bots` is).
    pub fn start(root: &Path) -> Target {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bots = dir.path().join("bots");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&bots).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        for entry in std::fs::read_dir(root.join("examples/bots")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                std::fs::copy(&path, bots.join(path.file_name().unwrap())).unwrap();
            }
        }
        let admin_token = "fuzz-admin-token-0123456789".to_string();
        let settings_file = dir.path().join("livechat.toml");
        // Every input comes from one visitor: raised, the limit per visitor lets each
        // message reach the checks it is fed to.
        std::fs::write(
            &settings_file,
            format!(
                "admin_token = \"{admin_token}\"\n\
                 [limits]\nsessions_per_address = 1000000\nmessage_burst = 1000000\n"
            ),
        )
        .unwrap();
        let settings = livechat::settings::ServerArgs {
            config: Some(settings_file),
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data.clone()),
            bots_dir: Some(bots.clone()),
            ..Default::default()
        }
        .resolve()
        .expect("settings");
        {
            let conn = livechat::store::open(&data).expect("the store opens");
            let phc = livechat::auth::password::hash(PASSWORD).unwrap();
            livechat::auth::credentials::set_password(&conn, ADMIN, &phc, jiff::Timestamp::now())
                .unwrap();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (app, addr, state) = rt.block_on(async {
            let state = AppState::open(settings).await.expect("the server starts");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let served = state.clone();
            tokio::spawn(async move {
                livechat::server::serve(listener, served, std::future::pending()).await
            });
            (livechat::http::router(state.clone()), addr, state)
        });
        drop(state);
        let mut target = Target {
            rt,
            app,
            addr,
            visitor: String::new(),
            agent: String::new(),
            conversation: String::new(),
            admin_token,
            sockets: Default::default(),
            peers: AtomicU32::new(1),
            _dir: dir,
        };
        target.set_the_scene();
        target
    }

    /// A visitor of `sales` (open around the clock) asks for a person and the admin accepts.
    fn set_the_scene(&mut self) {
        let (status, session) = self.call(
            "POST",
            "/api/v1/visitor/sessions",
            None,
            r#"{"bot":"sales"}"#,
        );
        assert_eq!(status, 201, "{session}");
        self.visitor = session["token"].as_str().unwrap().to_string();
        self.conversation = session["conversation_id"].as_str().unwrap().to_string();
        let login = format!(r#"{{"email":"{ADMIN}","password":"{PASSWORD}"}}"#);
        let (status, reply) = self.call("POST", "/api/v1/auth/login", None, &login);
        assert_eq!(status, 200, "{reply}");
        self.agent = reply["token"].as_str().unwrap().to_string();
        let agent = self.agent.clone();
        let visitor = self.visitor.clone();
        // Online (a console socket open) and accepting, so that the request rings.
        self.rt.block_on(async {
            let mut sockets = self.sockets.lock().await;
            let ws = self.agent_socket(&mut sockets).await;
            // The server counts the agent online only once the upgraded socket runs, after
            // the handshake has returned here: wait for the socket's own presence frame, or
            // the request below may find nobody online and stay with the bot.
            let online = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(Ok(frame)) = ws.next().await {
                    let frame: serde_json::Value =
                        serde_json::from_str(frame.to_text().unwrap_or("")).unwrap_or_default();
                    if frame["type"] == "agent.presence" && frame["data"]["online"] == true {
                        return true;
                    }
                }
                false
            })
            .await;
            assert_eq!(
                online,
                Ok(true),
                "the agent's socket never counted them online"
            );
        });
        let (status, reply) = self.call(
            "PUT",
            "/api/v1/me/availability",
            Some(&agent),
            r#"{"accepting":true}"#,
        );
        assert_eq!(status, 200, "availability: {reply}");
        let (status, reply) = self.call(
            "POST",
            "/api/v1/visitor/actions",
            Some(&visitor),
            r#"{"type":"request_live_chat"}"#,
        );
        assert_eq!(status, 200, "request: {reply}");
        // The action collects a name and an email first.
        for answer in ["Fuzz Visitor", "fuzz@example.com"] {
            let body = serde_json::json!({"text": answer}).to_string();
            let (status, reply) =
                self.call("POST", "/api/v1/visitor/messages", Some(&visitor), &body);
            assert!(status < 300, "{answer}: {reply}");
        }
        let accept = format!("/api/v1/conversations/{}/accept", self.conversation);
        let (status, reply) = self.call("POST", &accept, Some(&agent), "{}");
        assert_eq!(status, 200, "accept: {reply}");
    }

    /// One JSON call through the router; the status and the body.
    fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let (status, _, bytes) = self.send(
            method,
            path,
            bearer,
            Some("application/json"),
            body.as_bytes().to_vec(),
        );
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Any request through the router, each from an address of its own (so the per-address
    /// limits stay out of the way); the status, the content type and the body.
    fn send(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String, Vec<u8>) {
        use tower::ServiceExt;
        let n = self.peers.fetch_add(1, Ordering::Relaxed);
        let peer = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff)), 40000));
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let mut request = request.body(Body::from(body)).expect("a request");
        request.extensions_mut().insert(ConnectInfo(peer));
        self.rt.block_on(async {
            let response = self.app.clone().oneshot(request).await.expect("infallible");
            let status = response.status().as_u16();
            let ct = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
                .await
                .expect("the body is read");
            (status, ct, bytes.to_vec())
        })
    }

    /// Sends `data` to one endpoint of the API, picked by its first byte; the second picks
    /// the content type; the rest is the body (or the query string of a `GET`).
    pub fn api_body(&self, data: &[u8]) {
        let [pick, ct, rest @ ..] = data else {
            return;
        };
        let conv = &self.conversation;
        let (method, path, who): (&str, String, Who) = match pick % 20 {
            0 => ("POST", "/api/v1/visitor/sessions".into(), Who::Nobody),
            1 => ("POST", "/api/v1/visitor/messages".into(), Who::Visitor),
            2 => ("POST", "/api/v1/visitor/actions".into(), Who::Visitor),
            3 => ("POST", "/api/v1/auth/login".into(), Who::Nobody),
            4 => ("PUT", "/api/v1/me/availability".into(), Who::Agent),
            5 => (
                "POST",
                format!("/api/v1/conversations/{conv}/messages"),
                Who::Agent,
            ),
            6 => (
                "POST",
                format!("/api/v1/conversations/{conv}/notes"),
                Who::Agent,
            ),
            7 => (
                "POST",
                format!("/api/v1/conversations/{conv}/assign"),
                Who::Agent,
            ),
            8 => (
                "POST",
                format!("/api/v1/conversations/{conv}/transfer"),
                Who::Agent,
            ),
            9 => (
                "POST",
                format!("/api/v1/conversations/{conv}/resolve"),
                Who::Agent,
            ),
            10 => (
                "POST",
                format!("/api/v1/conversations/{conv}/accept"),
                Who::Agent,
            ),
            11 => ("POST", "/api/v1/admin/config".into(), Who::Admin),
            12 => (
                "POST",
                "/api/v1/bots/afterhours/offline".into(),
                Who::Nobody,
            ),
            13 => ("POST", "/bots/afterhours/contact".into(), Who::Nobody),
            14 => ("POST", "/set-password".into(), Who::Nobody),
            15 => ("GET", query("/api/v1/conversations", rest), Who::Agent),
            16 => ("GET", query("/api/v1/visitor/history", rest), Who::Visitor),
            17 => ("GET", query("/api/v1/stats", rest), Who::Agent),
            18 => ("GET", query("/api/v1/visitor/widget", rest), Who::Nobody),
            _ => (
                "POST",
                format!("/api/v1/conversations/{conv}/unassign"),
                Who::Agent,
            ),
        };
        let Ok(uri) = path.parse::<axum::http::Uri>() else {
            return;
        };
        let content_type = match ct % 4 {
            0 => Some("application/json"),
            1 => Some("application/x-www-form-urlencoded"),
            2 => Some("text/plain"),
            _ => None,
        };
        let bearer = match who {
            Who::Nobody => None,
            Who::Visitor => Some(self.visitor.as_str()),
            Who::Agent => Some(self.agent.as_str()),
            Who::Admin => Some(self.admin_token.as_str()),
        };
        let body = if method == "GET" {
            Vec::new()
        } else {
            rest.to_vec()
        };
        let (status, ct, bytes) = self.send(method, &uri.to_string(), bearer, content_type, body);
        assert!(
            status < 500,
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if status >= 400 && ct.starts_with("application/json") {
            let reply: serde_json::Value =
                serde_json::from_slice(&bytes).expect("an error answer is JSON");
            assert!(
                reply["error"]["code"].is_string(),
                "{method} {path} answered {status} without a code: {reply}"
            );
        }
    }

    /// Sends `data` as a frame on a socket picked by its first byte: the first frame (auth)
    /// of a new visitor socket, or a text or binary frame on the open visitor or agent
    /// socket. The server must stay up and keep answering on the other socket.
    pub fn socket_frame(&self, data: &[u8]) {
        let [pick, rest @ ..] = data else {
            return;
        };
        let text = String::from_utf8_lossy(rest).into_owned();
        self.rt.block_on(async {
            let mut sockets = self.sockets.lock().await;
            match pick % 5 {
                0 => {
                    let url = format!("ws://{}/api/v1/visitor/events?after=0", self.addr);
                    let (mut ws, _) = tokio_tungstenite::connect_async(url)
                        .await
                        .expect("a socket");
                    let _ = ws.send(Message::Text(text.into())).await;
                    // Whatever came of it, the server answers or closes, and does not hang.
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
                }
                1 | 2 => {
                    let ws = self.visitor_socket(&mut sockets).await;
                    let frame = if pick % 5 == 1 {
                        Message::Text(text.into())
                    } else {
                        Message::Binary(rest.to_vec().into())
                    };
                    if ws.send(frame).await.is_err() {
                        sockets.visitor = None;
                    }
                }
                _ => {
                    let ws = self.agent_socket(&mut sockets).await;
                    let frame = if pick % 5 == 3 {
                        Message::Text(text.into())
                    } else {
                        Message::Binary(rest.to_vec().into())
                    };
                    if ws.send(frame).await.is_err() {
                        sockets.agent = None;
                    }
                }
            }
            // The server is still up: a plain request answers.
            let health = reqwest_free_get(self.addr, "/healthz").await;
            assert!(
                health.starts_with("HTTP/1.1 200"),
                "health after a frame: {health}"
            );
        });
    }

    async fn visitor_socket<'s>(&self, sockets: &'s mut Sockets) -> &'s mut Ws {
        if sockets.visitor.is_none() {
            let url = format!("ws://{}/api/v1/visitor/events?after=0", self.addr);
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("a socket");
            let auth = serde_json::json!({"type": "auth", "token": self.visitor});
            ws.send(Message::Text(auth.to_string().into()))
                .await
                .unwrap();
            sockets.visitor = Some(ws);
        }
        sockets.visitor.as_mut().unwrap()
    }

    async fn agent_socket<'s>(&self, sockets: &'s mut Sockets) -> &'s mut Ws {
        if sockets.agent.is_none() {
            let mut req = format!("ws://{}/api/v1/agent/events?after=0", self.addr)
                .into_client_request()
                .unwrap();
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {}", self.agent).parse().unwrap(),
            );
            let (ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .expect("a socket");
            sockets.agent = Some(ws);
        }
        sockets.agent.as_mut().unwrap()
    }
}

enum Who {
    Nobody,
    Visitor,
    Agent,
    Admin,
}

/// `path?rest`, when `rest` is printable ASCII without spaces.
fn query(path: &str, rest: &[u8]) -> String {
    match std::str::from_utf8(rest) {
        Ok(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_graphic()) => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

/// A `GET` over a plain TCP connection: the server's first line and headers.
async fn reqwest_free_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the server is up");
    let request = format!("GET {path} HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The saved inputs of one target: its seed corpus and its regressions, by file name.
pub fn saved_inputs(root: &Path, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["fuzz/corpus", "fuzz/regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}
