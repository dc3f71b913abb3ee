//! The public v1 API as the widget and the console speak it: JSON over HTTP (reqwest) and
//! event streams over WebSocket (tokio-tungstenite). Every call is bounded in time.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one HTTP call or one WebSocket handshake may take before it counts as an error.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct Api {
    pub url: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(url: &str) -> anyhow::Result<Api> {
        if !is_loopback(url) {
            bail!(
                "{url} is not a loopback address: the bench only runs against 127.0.0.1 or [::1]"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Api {
            url: url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// A visitor's file upload (the body is the file); answers the status.
    pub async fn upload(&self, token: &str, name: &str, body: Vec<u8>) -> anyhow::Result<u16> {
        let resp = self
            .http
            .post(format!(
                "{}/api/v1/visitor/attachments?name={name}",
                self.url
            ))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        resp.bytes().await?;
        Ok(status)
    }

    /// One call; answers the status and the body (JSON, or the text as a JSON string).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, body))
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    /// A counter or gauge from `/metrics` (without labels); `None` when the server has none.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (status, body) = self.get("/metrics", None).await.ok()?;
        if status != 200 {
            return None;
        }
        body.as_str()?.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
    }

    /// `POST` that must answer 200 or 201; the body of any other answer is the error.
    pub async fn post_ok(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Value> {
        let (status, answer) = self.post(path, token, body).await?;
        if !(200..300).contains(&status) {
            bail!("POST {path}: {status} {answer}");
        }
        Ok(answer)
    }

    /// Logs an agent in; answers the session token, used as a bearer token.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let body = self
            .post_ok(
                "/api/v1/auth/login",
                None,
                &json!({"email": email, "password": password}),
            )
            .await
            .with_context(|| format!("log in {email}"))?;
        body["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("login answered no token: {body}"))
    }

    /// `PUT /api/v1/me/availability`.
    pub async fn set_accepting(&self, token: &str, accepting: bool) -> anyhow::Result<()> {
        let (status, body) = self
            .call(
                reqwest::Method::PUT,
                "/api/v1/me/availability",
                Some(token),
                Some(&json!({"accepting": accepting})),
            )
            .await?;
        if status != 200 {
            bail!("availability: {status} {body}");
        }
        Ok(())
    }

    /// `GET /healthz`'s `config_revision` (None while the server does not answer).
    pub async fn revision(&self) -> Option<i64> {
        let (status, body) = self.get("/healthz", None).await.ok()?;
        (status == 200).then(|| body["config_revision"].as_i64())?
    }

    /// `GET /healthz`'s `store.kind`: `sqlite` or `postgres` (None while it does not answer).
    pub async fn store_kind(&self) -> Option<String> {
        let (status, body) = self.get("/healthz", None).await.ok()?;
        (status == 200).then(|| body["store"]["kind"].as_str().map(str::to_string))?
    }

    fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.url.replacen("http://", "ws://", 1))
    }

    /// A visitor's event stream: connects, authenticates with the first frame and waits for
    /// `ready`.
    pub async fn visitor_socket(&self, token: &str, after: i64) -> anyhow::Result<Ws> {
        Ok(self.visitor_socket_via(token, after).await?.0)
    }

    /// `visitor_socket`, with the replica that took the handshake when a proxy names it in
    /// `X-Livechat-Upstream` (as `bench/replicas.sh`'s nginx does).
    pub async fn visitor_socket_via(
        &self,
        token: &str,
        after: i64,
    ) -> anyhow::Result<(Ws, Option<String>)> {
        let url = self.ws_url(&format!("/api/v1/visitor/events?after={after}"));
        let handshake = async {
            let (mut ws, response) =
                tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true).await?;
            ws.send(Message::Text(
                json!({"type": "auth", "token": token}).to_string().into(),
            ))
            .await?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(&t)?;
                        if v["type"] == "ready" {
                            return Ok((ws, upstream(&response)));
                        }
                        bail!("the visitor socket answered {v}");
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("the visitor socket closed before `ready`"),
                }
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, handshake)
            .await
            .map_err(|_| anyhow!("visitor socket: no `ready` within {CALL_TIMEOUT:?}"))?
    }

    /// An agent's event stream (the console), authorised by the bearer token.
    pub async fn agent_socket(&self, token: &str, after: i64) -> anyhow::Result<Ws> {
        Ok(self.agent_socket_via(token, after).await?.0)
    }

    /// `agent_socket`, with the replica that took it (see `visitor_socket_via`).
    pub async fn agent_socket_via(
        &self,
        token: &str,
        after: i64,
    ) -> anyhow::Result<(Ws, Option<String>)> {
        let mut req = self
            .ws_url(&format!("/api/v1/agent/events?after={after}"))
            .into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (ws, response) = tokio::time::timeout(
            CALL_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true),
        )
        .await
        .map_err(|_| anyhow!("agent socket: no handshake within {CALL_TIMEOUT:?}"))??;
        Ok((ws, upstream(&response)))
    }
}

/// The header a proxy in front of several replicas names the one that answered in.
pub const UPSTREAM_HEADER: &str = "x-livechat-upstream";

fn upstream(
    response: &tokio_tungstenite::tungstenite::handshake::client::Response,
) -> Option<String> {
    response
        .headers()
        .get(UPSTREAM_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Small buffers: the idle scenario holds thousands of sockets in this process too.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// The bench speaks to this machine only.
pub fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The parts of an event envelope the bench looks at; everything else is skipped.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub seq: Option<i64>,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub data: Option<EventData>,
    /// An `ack`'s: the write it answers.
    #[serde(default)]
    pub client_id: Option<String>,
    /// An `ack` of a refused write: the status and error the HTTP endpoint would answer.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub error: Option<Value>,
}

impl Envelope {
    /// An `ack` frame: its `client_id`, and `Err` with the status and error code when the
    /// write was refused.
    pub fn ack(&self) -> Option<(String, Result<(), String>)> {
        if self.kind != "ack" {
            return None;
        }
        let id = self.client_id.clone()?;
        Some(match self.status {
            None => (id, Ok(())),
            Some(status) => {
                let code = self
                    .error
                    .as_ref()
                    .and_then(|e| e["code"].as_str())
                    .unwrap_or("?");
                (id, Err(format!("ack: {status} {code}")))
            }
        })
    }
}

/// How a client sends its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SendPath {
    /// A `message` frame on the sender's open WebSocket, acknowledged by an `ack` frame (as
    /// the widget and the console send while their socket is open).
    Ws,
    /// `POST` to the messages endpoint, acknowledged by its answer.
    Http,
}

impl SendPath {
    /// For titles: which way the messages went.
    pub fn describe(self) -> &'static str {
        match self {
            SendPath::Ws => "sent as frames on the open WebSocket (--send ws)",
            SendPath::Http => "sent by HTTP POST (--send http)",
        }
    }

    /// For labels: how the acknowledgement came.
    pub fn ack_label(self) -> &'static str {
        match self {
            SendPath::Ws => "frame → ack frame",
            SendPath::Http => "HTTP round trip",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub revision: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_told_from_other_frames() {
        let env = |t: &str| serde_json::from_str::<Envelope>(t).unwrap();
        let ok = env(r#"{"type":"ack","client_id":"v1-2","seq":9,"duplicate":false}"#);
        assert_eq!(ok.ack(), Some(("v1-2".to_string(), Ok(()))));
        let refused = env(
            r#"{"type":"ack","client_id":"v1-3","status":400,"error":{"code":"invalid_input"}}"#,
        );
        assert_eq!(
            refused.ack(),
            Some((
                "v1-3".to_string(),
                Err("ack: 400 invalid_input".to_string())
            ))
        );
        assert_eq!(env(r#"{"type":"message.created","seq":9}"#).ack(), None);
        assert_eq!(env(r#"{"type":"ack","client_id":null}"#).ack(), None);
    }

    #[test]
    fn only_loopback_urls() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://[::1]:8080/"));
        assert!(is_loopback("http://localhost:1"));
        assert!(!is_loopback("http://10.0.0.1:8080"));
        assert!(!is_loopback("https://127.0.0.1"));
        assert!(!is_loopback("http://example.com"));
    }
}
