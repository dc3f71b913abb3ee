//! Agent login as the console and scripts meet it: a password set with the real CLI, the
//! real server over HTTP, the session cookie with its CSRF header or a bearer token.

#[macro_use]
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::live::Reply;
use common::{Bundle, TestServer, bot};

const ANA: &str = "ana@acme.example";
const BO: &str = "bo@acme.example";
const ANA_PASSWORD: &str = "correct horse battery";
const BO_PASSWORD: &str = "bo's own passphrase";
const LOGIN: &str = "/api/v1/auth/login";

/// A bundle with one bot and the given agents (name, email), all in team `support`.
fn bundle(agents: &[(&str, &str)]) -> Bundle {
    let bundle = Bundle::new()
        .team("support", &["support"])
        .bot("support", bot("Support", "Hi"));
    agents
        .iter()
        .fold(bundle, |b, (name, email)| b.agent(name, email, "support"))
}

fn ana_and_bo(dir: &Path) {
    bundle(&[("Ana Lima", ANA), ("Bo Berg", BO)]).write(dir);
}

/// `livechat agent password EMAIL` with the password piped to standard input.
fn set_password(server: &TestServer, email: &str, password: &str) -> Output {
    let mut child = server
        .livechat()
        .args(["agent", "password", email, "--bots-dir"])
        .arg(&server.bots_dir)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn login(server: &TestServer, email: &str, password: &str) -> Reply {
    let body = json!({ "email": email, "password": password });
    server.api().request("POST", LOGIN).json(body).wait()
}

/// A signed-in session as a client keeps it.
struct Session {
    token: String,
    csrf: String,
}

impl Session {
    fn cookie(&self) -> String {
        format!("theme=dark; livechat_session={}", self.token)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

fn logged_in(server: &TestServer, email: &str, password: &str) -> Session {
    let reply = login(server, email, password);
    assert_eq!(reply.status, 200, "{}", reply.body);
    Session {
        token: reply.body["token"].as_str().unwrap().to_string(),
        csrf: reply.body["csrf_token"].as_str().unwrap().to_string(),
    }
}

fn me(server: &TestServer, headers: &[(&str, &str)]) -> Reply {
    server
        .api()
        .request("GET", "/api/v1/me")
        .headers(headers)
        .wait()
}

fn logout(server: &TestServer, headers: &[(&str, &str)]) -> Reply {
    server
        .api()
        .request("POST", "/api/v1/auth/logout")
        .headers(headers)
        .wait()
}

fn is_hex_token(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn an_agent_logs_in_and_out_with_the_cookie_or_a_bearer_token() {
    let server = TestServer::start(ana_and_bo, &[]);
    let out = set_password(&server, ANA, ANA_PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Password set for ana@acme.example.\n");

    // Login answers who the agent is, the tokens, and sets the session cookie.
    let reply = login(&server, ANA, ANA_PASSWORD);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["agent"],
        json!({
            "email": ANA,
            "name": "Ana Lima",
            "role": "agent",
            "teams": ["support"],
            "max_chats": 3,
        })
    );
    assert!(is_hex_token(&reply.body["token"]), "{}", reply.body);
    assert!(is_hex_token(&reply.body["csrf_token"]), "{}", reply.body);
    assert_ne!(reply.body["token"], reply.body["csrf_token"]);
    let session = Session {
        token: reply.body["token"].as_str().unwrap().to_string(),
        csrf: reply.body["csrf_token"].as_str().unwrap().to_string(),
    };
    let set_cookie = reply.header("set-cookie").unwrap();
    let attributes: Vec<&str> = set_cookie.split("; ").collect();
    assert_eq!(
        attributes,
        [
            format!("livechat_session={}", session.token).as_str(),
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=1209600",
        ],
        "{set_cookie}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    // Either credential reaches /me; none does not.
    let by_cookie = me(&server, &[("cookie", &session.cookie())]);
    assert_eq!(by_cookie.status, 200, "{}", by_cookie.body);
    assert_eq!(by_cookie.body["agent"]["email"], ANA);
    assert_eq!(by_cookie.body["agent"]["name"], "Ana Lima");
    let by_bearer = me(&server, &[("authorization", &session.bearer())]);
    assert_eq!(by_bearer.status, 200, "{}", by_bearer.body);
    assert_eq!(by_bearer.body, by_cookie.body);
    let nobody = me(&server, &[]);
    assert_error!(nobody, 401, "unauthorized");
    let forged = me(&server, &[("authorization", "Bearer 0123456789abcdef")]);
    assert_error!(forged, 401, "unauthorized");

    // A cookie write without the CSRF header, or with another one, is refused and changes
    // nothing.
    let refused = logout(&server, &[("cookie", &session.cookie())]);
    assert_error!(refused, 403, "csrf_failed");
    let wrong = "0".repeat(64);
    let refused = logout(
        &server,
        &[("cookie", &session.cookie()), ("x-csrf-token", &wrong)],
    );
    assert_error!(refused, 403, "csrf_failed");
    assert_eq!(me(&server, &[("cookie", &session.cookie())]).status, 200);

    // With it, logout ends the session and clears the cookie.
    let out = logout(
        &server,
        &[
            ("cookie", &session.cookie()),
            ("x-csrf-token", &session.csrf),
        ],
    );
    assert_eq!(out.status, 204, "{}", out.body);
    let cleared = out.header("set-cookie").unwrap();
    assert!(cleared.starts_with("livechat_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    for headers in [
        [("cookie", session.cookie())],
        [("authorization", session.bearer())],
    ] {
        let (k, v) = &headers[0];
        let after = me(&server, &[(*k, v.as_str())]);
        assert_error!(after, 401, "unauthorized");
    }

    // A bearer request carries no ambient credential, so it needs no CSRF header. The email
    // is matched whatever its case.
    let second = logged_in(&server, "Ana@ACME.example", ANA_PASSWORD);
    let out = logout(&server, &[("authorization", &second.bearer())]);
    assert_eq!(out.status, 204, "{}", out.body);
    assert_eq!(
        me(&server, &[("authorization", &second.bearer())]).status,
        401
    );
}

#[test]
fn a_new_password_signs_the_agent_out_everywhere() {
    let server = TestServer::start(ana_and_bo, &[]);
    assert!(set_password(&server, ANA, ANA_PASSWORD).status.success());
    assert!(set_password(&server, BO, BO_PASSWORD).status.success());
    let ana = logged_in(&server, ANA, ANA_PASSWORD);
    let bo = logged_in(&server, BO, BO_PASSWORD);

    let out = set_password(&server, ANA, "a brand new passphrase");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Password set for ana@acme.example.\nSigned out of 1 session.\n"
    );
    assert_eq!(me(&server, &[("authorization", &ana.bearer())]).status, 401);
    assert_eq!(me(&server, &[("authorization", &bo.bearer())]).status, 200);
    assert_eq!(login(&server, ANA, ANA_PASSWORD).status, 401);
    assert_eq!(login(&server, ANA, "a brand new passphrase").status, 200);
}

#[test]
fn a_wrong_password_an_unknown_email_and_no_password_get_the_same_answer() {
    let server = TestServer::start(ana_and_bo, &[]);
    assert!(set_password(&server, ANA, ANA_PASSWORD).status.success());

    let wrong_password = login(&server, ANA, "not her password");
    let unknown_email = login(&server, "eve@acme.example", ANA_PASSWORD);
    let no_password_yet = login(&server, BO, "anything at all");
    assert_error!(wrong_password, 401, "invalid_credentials");
    for other in [&unknown_email, &no_password_yet] {
        assert_eq!(other.status, wrong_password.status);
        assert_eq!(other.body, wrong_password.body);
        assert_eq!(other.header("set-cookie"), None);
    }

    // The CLI refuses what it cannot set, and says why.
    let out = set_password(&server, "eve@acme.example", "long enough password");
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("eve@acme.example is not an agent"),
        "{message}"
    );
    assert!(
        message.contains(&server.bots_dir.display().to_string()),
        "{message}"
    );
    let out = set_password(&server, BO, "short");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("at least 8 characters"),
        "{}",
        stderr(&out)
    );
    assert_eq!(login(&server, BO, "short").status, 401);
}

#[test]
fn malformed_login_bodies_are_400() {
    let server = TestServer::start(ana_and_bo, &[]);
    let send = |body: &str| server.api().request("POST", LOGIN).json(body).wait();
    let bad_json = send("{\"email\": \"ana@");
    assert_error!(bad_json, 400, "invalid_json");
    let missing = send(&json!({ "email": ANA }).to_string());
    assert_error!(missing, 400, "invalid_body");
    let wrong_type = send(&json!({ "email": ANA, "password": 12345678 }).to_string());
    assert_error!(wrong_type, 400, "invalid_body");
}

#[test]
fn an_agent_removed_from_the_roster_is_signed_out() {
    let server = TestServer::start(ana_and_bo, &[]);
    assert!(set_password(&server, ANA, ANA_PASSWORD).status.success());
    assert!(set_password(&server, BO, BO_PASSWORD).status.success());
    let ana = logged_in(&server, ANA, ANA_PASSWORD);
    let bo = logged_in(&server, BO, BO_PASSWORD);
    assert_eq!(me(&server, &[("cookie", &bo.cookie())]).status, 200);

    let before = server.revision();
    bundle(&[("Ana Lima", ANA)]).write(&server.bots_dir);
    server.wait_for(Duration::from_secs(5), "the roster without Bo", |h| {
        h["config_revision"].as_i64() > Some(before)
    });

    let gone = me(&server, &[("cookie", &bo.cookie())]);
    assert_error!(gone, 401, "unauthorized");
    assert_eq!(login(&server, BO, BO_PASSWORD).status, 401);
    let still = me(&server, &[("cookie", &ana.cookie())]);
    assert_eq!(still.status, 200, "{}", still.body);

    // Back in the roster, Bo logs in again: the old session stays over.
    let before = server.revision();
    ana_and_bo(&server.bots_dir);
    server.wait_for(Duration::from_secs(5), "the roster with Bo", |h| {
        h["config_revision"].as_i64() > Some(before)
    });
    assert_eq!(me(&server, &[("cookie", &bo.cookie())]).status, 401);
    assert_eq!(login(&server, BO, BO_PASSWORD).status, 200);
}

/// A login sent from the loopback address `127.0.0.{host}`, as a client elsewhere would.
async fn login_from(url: &str, host: u8, email: &str, password: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, host]))
        .build()
        .unwrap();
    let reply = client
        .post(format!("{url}{LOGIN}"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

/// Issue #10: failed logins for an agent from many addresses slow that agent's logins down
/// but never lock the agent out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_other_addresses_do_not_lock_the_real_agent_out() {
    let server = TestServer::start(ana_and_bo, &[]);
    assert!(set_password(&server, ANA, ANA_PASSWORD).status.success());
    // Twenty guesses at Ana's password, two from each of ten other addresses, all at once.
    let guesses: Vec<_> = (0..20u8)
        .map(|i| {
            let url = server.url.clone();
            tokio::spawn(async move { login_from(&url, 2 + i / 2, ANA, "a guess").await })
        })
        .collect();
    for guess in guesses {
        let (status, body) = guess.await.unwrap();
        assert_eq!(status, 401, "{body}");
    }
    // Ana, from her own address, still signs in, within the longest delay.
    let start = std::time::Instant::now();
    let (status, body) = login_from(&server.url, 1, ANA, ANA_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(4 + 3), "Ana waited {took:?}");
}

/// One address guessing is stopped after ten failures, whatever the emails; from
/// elsewhere the agent signs in.
#[test]
fn eleven_failed_logins_from_one_address_are_refused() {
    let server = TestServer::start(ana_and_bo, &[]);
    assert!(set_password(&server, ANA, ANA_PASSWORD).status.success());
    for i in 1..=10 {
        let reply = login(&server, &format!("guess{i}@acme.example"), "a guess");
        assert_eq!(reply.status, 401, "attempt {i}: {}", reply.body);
    }
    let refused = login(&server, BO, "guess number 11");
    assert_error!(refused, 429, "too_many_attempts");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    // Even the right password waits from this address: the limit is what stops it.
    let right = login(&server, ANA, ANA_PASSWORD);
    assert_error!(right, 429, "too_many_attempts");
    let url = server.url.clone();
    let (status, body) =
        common::live::block_on(async move { login_from(&url, 2, ANA, ANA_PASSWORD).await });
    assert_eq!(status, 200, "{body}");
}

#[test]
fn an_expired_session_is_refused_as_expired() {
    let server = TestServer::start(ana_and_bo, &[]);
    assert!(set_password(&server, ANA, ANA_PASSWORD).status.success());
    let ana = logged_in(&server, ANA, ANA_PASSWORD);
    let changed = server.execute(&format!(
        "UPDATE sessions SET expires_at = '2020-01-01T00:00:00Z' WHERE token_hash = '{}'",
        hex::encode(Sha256::digest(ana.token.as_bytes()))
    ));
    assert_eq!(changed, 1);
    let expired = me(&server, &[("authorization", &ana.bearer())]);
    assert_error!(expired, 401, "session_expired");
}

#[test]
fn the_database_holds_no_plaintext_password_or_session_token() {
    let server = TestServer::start(ana_and_bo, &[]);
    assert!(set_password(&server, ANA, ANA_PASSWORD).status.success());
    let ana = logged_in(&server, ANA, ANA_PASSWORD);

    let stored = server.rows(&format!(
        "SELECT password_hash FROM agents WHERE email = '{ANA}'"
    ));
    let stored = &stored[0][0];
    assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
    assert!(!stored.contains(ANA_PASSWORD));
    let sessions = server.rows("SELECT token_hash, agent_email FROM sessions");
    assert_eq!(
        sessions,
        [[
            hex::encode(Sha256::digest(ana.token.as_bytes())),
            ANA.to_string()
        ]]
    );
    // Nor in any other value the store holds.
    for value in server.everything_stored() {
        for secret in [ANA_PASSWORD, ana.token.as_str()] {
            assert!(
                !value.contains(secret),
                "the store holds `{secret}`: {value}"
            );
        }
    }

    // Nor anywhere in the files: the database, its write-ahead log, queued mail, anything.
    let mut files = Vec::new();
    let mut dirs = vec![server.data_dir.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        for secret in [ANA_PASSWORD, ana.token.as_str()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds `{secret}`",
                path.display()
            );
        }
    }
}

#[test]
fn the_cookie_is_secure_when_the_server_is_reached_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let bots_dir = dir.path().join("bots");
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&bots_dir).unwrap();
    ana_and_bo(&bots_dir);
    let config = dir.path().join("livechat.toml");
    std::fs::write(&config, "public_url = \"https://chat.acme.example\"\n").unwrap();
    let config = config.display().to_string();
    let server = TestServer::start_in(dir, bots_dir, data_dir, &[("LIVECHAT_CONFIG", &config)]);
    assert!(set_password(&server, ANA, ANA_PASSWORD).status.success());

    let reply = login(&server, ANA, ANA_PASSWORD);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let set_cookie = reply.header("set-cookie").unwrap();
    assert!(set_cookie.ends_with("; Secure"), "{set_cookie}");
    let session = Session {
        token: reply.body["token"].as_str().unwrap().to_string(),
        csrf: reply.body["csrf_token"].as_str().unwrap().to_string(),
    };
    let out = logout(
        &server,
        &[
            ("cookie", &session.cookie()),
            ("x-csrf-token", &session.csrf),
        ],
    );
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().ends_with("; Secure"));
}
