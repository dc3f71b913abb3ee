//! `livechat serve` as an operator meets it: the real binary, a real bundle directory edited
//! the way editors do, `/healthz` as the window on what is live.

#[macro_use]
mod common;

use std::fs;
use std::time::Duration;

use common::{Bundle, TestServer, bot, livechat, save_atomically};

/// Team `support` serves both bots; Ana is its agent.
fn ana() -> Bundle {
    Bundle::new().agent("Ana Lima", "ana@acme.example", "support")
}

fn two_bots(dir: &std::path::Path) {
    ana()
        .team("support", &["support", "sales"])
        .bot("support", bot("Support", "Hi there"))
        .bot("sales", bot("Sales", "Hello"))
        .write(dir);
}

#[test]
fn an_edit_is_live_within_a_second_and_a_broken_edit_keeps_the_last_good_one() {
    let server = TestServer::start(two_bots, &[]);
    let h = server.health();
    assert_eq!(h["config_revision"], 1, "{h}");
    assert!(h["config_error"].is_null(), "{h}");
    assert_eq!(h["bots"], serde_json::json!(["sales", "support"]));

    // A saved edit goes live.
    let support = server.bots_dir.join("support.toml");
    save_atomically(&support, &bot("Support desk", "Hi, how can we help?"));
    let (h, took) = server.wait_for(Duration::from_secs(5), "revision 2", |h| {
        h["config_revision"] == 2
    });
    println!("edit → live in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(h["config_error"].is_null(), "{h}");

    // A broken edit is refused: revision 2 stays live and the error points at the line.
    let broken =
        bot("Support desk", "Hi").replace("accept_timeout = \"90s\"", "accept_timeout = \"soon\"");
    save_atomically(&support, &broken);
    let (h, _) = server.wait_for(Duration::from_secs(5), "a config error", |h| {
        !h["config_error"].is_null()
    });
    assert_eq!(h["config_revision"], 2, "{h}");
    let error = h["config_error"].as_str().unwrap();
    let line = broken
        .lines()
        .position(|l| l.starts_with("accept_timeout"))
        .unwrap()
        + 1;
    assert!(
        error.starts_with(&format!("support.toml:{line}:18: invalid duration `soon`")),
        "{error}"
    );

    // Fixing it clears the error and makes the fix live.
    save_atomically(&support, &bot("Support desk", "Fixed"));
    let (h, _) = server.wait_for(Duration::from_secs(5), "revision 3", |h| {
        h["config_revision"] == 3
    });
    assert!(h["config_error"].is_null(), "{h}");
}

#[test]
fn a_burst_of_saves_reloads_once() {
    let server = TestServer::start(two_bots, &[]);
    assert_eq!(server.revision(), 1);
    let support = server.bots_dir.join("support.toml");
    let sales = server.bots_dir.join("sales.toml");
    for i in 0..10 {
        save_atomically(&support, &bot("Support", &format!("Greeting {i}")));
        save_atomically(&sales, &bot("Sales", &format!("Hello {i}")));
    }
    server.wait_for(Duration::from_secs(5), "revision 2", |h| {
        h["config_revision"] == 2
    });
    // Give a second reload every chance to happen; it must not.
    std::thread::sleep(Duration::from_millis(800));
    let h = server.health();
    assert_eq!(h["config_revision"], 2, "{h}");

    let history = server
        .livechat()
        .args(["history", "--format", "json", "--data-dir"])
        .arg(&server.data_dir)
        .arg("--bots-dir")
        .arg(&server.bots_dir)
        .output()
        .unwrap();
    assert!(history.status.success());
    let text = String::from_utf8_lossy(&history.stdout);
    let list: serde_json::Value = serde_json::from_str(&text).expect("history json");
    let list = list
        .as_array()
        .or(list["revisions"].as_array())
        .cloned()
        .unwrap();
    assert_eq!(list.len(), 2, "{text}");
}

#[test]
fn a_deleted_and_recreated_file_reloads_both_times() {
    let server = TestServer::start(two_bots, &[]);
    let sales = server.bots_dir.join("sales.toml");
    let text = fs::read_to_string(&sales).unwrap();
    // The team serves `sales`; without the bot the roster would be invalid, so the
    // roster changes with it, in one burst.
    fs::remove_file(&sales).unwrap();
    ana().team("support", &["support"]).write(&server.bots_dir);
    let (h, _) = server.wait_for(Duration::from_secs(5), "sales removed", |h| {
        h["config_revision"] == 2
    });
    assert_eq!(h["bots"], serde_json::json!(["support"]), "{h}");
    fs::write(&sales, text).unwrap();
    let (h, _) = server.wait_for(Duration::from_secs(5), "sales back", |h| {
        h["config_revision"] == 3
    });
    assert_eq!(h["bots"], serde_json::json!(["sales", "support"]), "{h}");
}

#[test]
fn an_invalid_bundle_at_startup_runs_the_last_good_revision() {
    let mut server = TestServer::start(two_bots, &[]);
    assert_eq!(server.revision(), 1);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let (bots_dir, data_dir) = (server.bots_dir.clone(), server.data_dir.clone());
    drop(server);
    fs::write(
        bots_dir.join("support.toml"),
        "name = \"Support\"\n[[step]]\nid = 5\n",
    )
    .unwrap();
    let server = TestServer::start_in(dir, bots_dir, data_dir, &[]);
    let h = server.health();
    assert_eq!(h["config_revision"], 1, "{h}");
    assert_eq!(h["bots"], serde_json::json!(["sales", "support"]), "{h}");
    assert!(
        h["config_error"]
            .as_str()
            .unwrap()
            .starts_with("support.toml:3:6: wrong type"),
        "{h}"
    );
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut server = TestServer::start(two_bots, &[]);
    let pid = server.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(code) = server.child.try_wait().unwrap() {
            break code;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code:?}");
}

#[test]
fn serve_without_a_bundle_directory_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = livechat()
        .args(["serve", "--listen", "127.0.0.1:0", "--bots-dir"])
        .arg(dir.path().join("missing"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist") && err.contains("livechat init"),
        "{err}"
    );
}

#[test]
fn synchronous_full_is_taken_and_a_bad_mode_is_refused_by_name() {
    let server = TestServer::start(two_bots, &[("LIVECHAT_SYNCHRONOUS", "full")]);
    // SQLite's setting: on PostgreSQL the server says it does nothing there.
    let said = match server.database_url() {
        None => "synchronous=FULL",
        Some(_) => "does nothing on PostgreSQL",
    };
    assert!(
        server.logged(said, Duration::from_secs(5)).is_some(),
        "no line about synchronous=FULL in the log"
    );
    assert_eq!(server.health()["status"], "ok");
    drop(server);
    let dir = tempfile::tempdir().unwrap();
    two_bots(dir.path());
    let out = livechat()
        .args(["serve", "--listen", "127.0.0.1:0", "--bots-dir"])
        .arg(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("LIVECHAT_SYNCHRONOUS", "always")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LIVECHAT_SYNCHRONOUS")
            && err.contains("`always` is not a synchronous mode: write `normal` or `full`"),
        "{err}"
    );
}

#[test]
fn the_admin_api_applies_a_bundle_remotely_and_refuses_bad_callers() {
    let server = TestServer::start(two_bots, &[("LIVECHAT_ADMIN_TOKEN", "s3cret-token")]);
    let api = server.api();
    let apply =
        |token: &str, body: &str| api.call("POST", "/api/v1/admin/config", Some(token), Some(body));

    // Remote apply through the CLI.
    let local = tempfile::tempdir().unwrap();
    two_bots(local.path());
    fs::write(
        local.path().join("support.toml"),
        bot("Support", "Remote hello"),
    )
    .unwrap();
    let out = livechat()
        .arg("apply")
        .arg(local.path())
        .args(["--server", &server.url, "--token", "s3cret-token"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("~ bot support"), "{stdout}");
    // Live at once, without waiting for the watcher.
    assert_eq!(server.revision(), 2);
    // A new visitor hears the applied bot.
    let (status, session) = api.post(
        "/api/v1/visitor/sessions",
        None,
        serde_json::json!({"bot": "support"}),
    );
    assert_eq!(status, 201, "{session}");
    assert!(session.to_string().contains("Remote hello"), "{session}");
    // On SQLite the bundle directory holds it; on PostgreSQL the database does (every
    // replica serves it from there) and no directory is written.
    let installed = fs::read_to_string(server.bots_dir.join("support.toml")).unwrap();
    assert_eq!(
        installed.contains("Remote hello"),
        server.database_url().is_none(),
        "{installed}"
    );

    // A wrong token, malformed JSON, a path in a file name, an invalid bundle.
    assert_error!(apply("nope", "{\"files\":{}}"), 401, "unauthorized");
    assert_error!(
        apply("s3cret-token", "{\"files\": {,}}"),
        400,
        "invalid_json"
    );
    assert_error!(
        apply("s3cret-token", "{\"files\": {\"a\": 1}}"),
        400,
        "invalid_body"
    );
    assert_error!(
        apply(
            "s3cret-token",
            "{\"files\": {\"../evil.toml\": \"name = 'x'\"}}",
        ),
        400,
        "invalid_file_name"
    );
    let (status, body) = apply(
        "s3cret-token",
        "{\"files\": {\"x.toml\": \"name = 'x'\\n[[step]]\\nid = 'a'\\ngoto = 'nowhere'\\n\"}}",
    );
    assert_error!((status, &body), 422, "invalid_bundle");
    let first = &body["error"]["diagnostics"][0];
    assert_eq!(
        (first["file"].as_str(), first["line"].as_i64()),
        (Some("x.toml"), Some(4)),
        "{body}"
    );
    assert_eq!(server.revision(), 2, "nothing bad was installed");
    assert!(!server.bots_dir.join("x.toml").exists());
}

#[test]
fn the_admin_api_is_off_without_a_token() {
    let server = TestServer::start(two_bots, &[]);
    let (status, body) = server.api().call(
        "POST",
        "/api/v1/admin/config",
        Some("anything"),
        Some("{\"files\":{}}"),
    );
    assert_error!((status, body), 403, "admin_api_disabled");
}

#[test]
fn metrics_ask_for_their_token_when_one_is_set() {
    let server = TestServer::start(two_bots, &[("LIVECHAT_METRICS_TOKEN", "scrape-me")]);
    let scrape = |auth: Option<&str>| {
        let headers: Vec<_> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let reply = server
            .api()
            .request("GET", "/metrics")
            .headers(&headers)
            .wait();
        (reply.status, reply.text)
    };
    for auth in [None, Some("Bearer wrong"), Some("Basic c2NyYXBlLW1l")] {
        let (status, body) = scrape(auth);
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
        assert!(!body.contains("livechat_config_revision"), "{body}");
    }
    let (status, body) = scrape(Some("Bearer scrape-me"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("livechat_config_revision 1"), "{body}");
    // Health stays open: load balancers probe it without a token.
    let health = server.api().request("GET", "/healthz").wait().body;
    assert_eq!(health["status"], "ok", "{health}");
}

#[test]
fn every_html_page_carries_the_security_headers() {
    let server = TestServer::start(two_bots, &[]);
    for (path, status) in [
        ("/chat/support", 200),
        ("/console", 200),
        ("/set-password?token=nope", 404),
    ] {
        let page = server.api().request("GET", path).wait();
        assert_eq!(page.status, status, "{path}");
        let header = |name: &str| page.header(name).unwrap_or("").to_string();
        assert!(header("content-type").starts_with("text/html"), "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
}

/// Issue #10, finding 2: an unauthorised upload is refused from its headers, before a byte
/// of its (here never finished) 8 MB body is waited for.
#[test]
fn the_admin_upload_refuses_a_caller_without_the_token_before_reading_the_body() {
    use std::io::{Read, Write};
    let server = TestServer::start(two_bots, &[("LIVECHAT_ADMIN_TOKEN", "s3cret-admin")]);
    let addr = server.url.trim_start_matches("http://").to_string();
    for auth in ["", "Authorization: Bearer wrong\r\n"] {
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = format!(
            "POST /api/v1/admin/config HTTP/1.1\r\nHost: {addr}\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: 8000000\r\n\r\n{{\"files\":"
        );
        tcp.write_all(head.as_bytes()).unwrap();
        let mut answer = [0u8; 512];
        let n = tcp
            .read(&mut answer)
            .expect("an answer while the body is still being sent");
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 401"), "{auth:?}: {answer}");
        assert!(answer.contains("\"unauthorized\""), "{auth:?}: {answer}");
    }
}

/// What a container's HEALTHCHECK runs: 0 while the server answers `ok`, 1 once it is gone.
#[test]
fn healthcheck_says_whether_the_server_answers() {
    let mut server = TestServer::start(two_bots, &[]);
    let listen = server.url.trim_start_matches("http://").to_string();
    let check = || {
        livechat()
            .args(["healthcheck", "--listen", &listen])
            .output()
            .unwrap()
    };
    let up = check();
    assert_eq!(up.status.code(), Some(0), "{up:?}");
    assert_eq!(
        String::from_utf8_lossy(&up.stdout).trim(),
        format!("ok: http://{listen}/healthz")
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let down = check();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(String::from_utf8_lossy(&down.stderr).starts_with("unhealthy: "));
}
