//! The first five minutes over plain HTTP, on the real binary: the landing page, the demo
//! page, the favicon, the one-time setup link `serve` prints on a fresh data directory,
//! and the log formats.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::Duration;

use common::bundle::example_bundle;
use common::live::{Api, block_on};
use common::{Bundle, TestServer, livechat};

struct Got {
    status: u16,
    content_type: String,
    csp: Option<String>,
    body: String,
}

/// One bot, `plain` (no offline form), and one agent with the default role.
fn plain_bundle(dir: &std::path::Path) {
    Bundle::new()
        .team("support", &["plain"])
        .agent("Ana Lima", "ana@acme.example", "support")
        .bot("plain", common::bot("Plain", "Hello"))
        .write(dir);
}

fn get(url: &str) -> Got {
    let url = url.to_string();
    block_on(async move {
        let resp = reqwest::get(&url).await.expect("GET");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (content_type, csp) = (
            header("content-type").unwrap_or_default(),
            header("content-security-policy"),
        );
        Got {
            status: resp.status().as_u16(),
            content_type,
            csp,
            body: resp.text().await.unwrap(),
        }
    })
}

fn post_form(url: &str, form: &[(&str, &str)]) -> Got {
    let url = url.to_string();
    let form: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    block_on(async move {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
            .collect::<Vec<_>>()
            .join("&");
        let resp = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST");
        Got {
            status: resp.status().as_u16(),
            content_type: String::new(),
            csp: None,
            body: resp.text().await.unwrap(),
        }
    })
}

/// The URL in the `livechat setup:` line.
fn setup_url(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {line:?}"))
        .to_string()
}

#[test]
fn the_landing_page_links_the_console_and_every_bots_pages() {
    let server = TestServer::start(example_bundle, &[]);
    let page = get(&format!("{}/", server.url));
    assert_eq!(page.status, 200);
    assert!(
        page.content_type.starts_with("text/html"),
        "{}",
        page.content_type
    );
    assert!(
        page.csp
            .as_deref()
            .is_some_and(|c| c.contains("default-src 'self'")),
        "the security headers of every page: {:?}",
        page.csp
    );
    let body = &page.body;
    assert!(body.contains(r#"href="/console""#), "{body}");
    for bot in ["afterhours", "sales", "support"] {
        for link in [
            format!(r#"href="/chat/{bot}""#),
            format!(r#"href="/demo/{bot}""#),
            format!(r#"href="/bots/{bot}/contact""#),
        ] {
            assert!(
                body.contains(&link),
                "no {link} on the landing page:\n{body}"
            );
        }
    }
    // The demo button goes to the bot a person can answer at any hour.
    assert!(
        body.contains(r#"id="demo-link" href="/demo/sales""#),
        "{body}"
    );
    assert!(body.contains(r#"<link rel="icon" href="/favicon.svg""#));
    assert!(!body.contains("<script"), "no script on the landing page");

    // A bot without an offline form has no contact link.
    let plain = TestServer::start(plain_bundle, &[]);
    let body = get(&format!("{}/", plain.url)).body;
    assert!(body.contains(r#"href="/chat/plain""#), "{body}");
    assert!(!body.contains("/bots/plain/contact"), "{body}");
}

#[test]
fn the_demo_page_embeds_the_widget_as_a_customers_site_would() {
    let server = TestServer::start(example_bundle, &[]);
    let page = get(&format!("{}/demo/sales", server.url));
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.csp.is_some());
    assert!(
        page.body
            .contains(r#"<script src="/widget.js" data-bot="sales" async></script>"#),
        "{}",
        page.body
    );
    // The only script is the widget: nothing inline (the policy would refuse it).
    assert_eq!(page.body.matches("<script").count(), 1, "{}", page.body);
    assert!(page.body.contains("Acme Sales"));

    let missing = get(&format!("{}/demo/nope", server.url));
    assert_eq!(missing.status, 404);
    let error: serde_json::Value = serde_json::from_str(&missing.body).unwrap();
    assert_eq!(error["error"]["code"], "unknown_bot");
}

#[test]
fn the_favicon_is_there_under_both_names() {
    let server = TestServer::start(example_bundle, &[]);
    for path in ["/favicon.ico", "/favicon.svg"] {
        let icon = get(&format!("{}{path}", server.url));
        assert_eq!(icon.status, 200, "{path}");
        assert_eq!(icon.content_type, "image/svg+xml", "{path}");
        assert!(icon.body.starts_with("<svg"), "{path}: {}", icon.body);
    }
}

#[test]
fn the_setup_link_works_once_and_is_not_printed_once_someone_can_sign_in() {
    let server = TestServer::start(example_bundle, &[]);
    let line = server
        .printed("livechat setup:", Duration::from_secs(10))
        .expect("a setup line on a fresh data directory");
    assert!(
        line.contains("ana.lima@example.com (admin)"),
        "for the first admin of agents.toml: {line}"
    );
    let url = setup_url(&line);
    let landing = get(&format!("{}/", server.url)).body;
    assert!(landing.contains(r#"id="first-run""#), "{landing}");
    assert!(
        url.starts_with(&format!("{}/set-password?token=", server.url)),
        "{url}"
    );
    println!("printed: {line}");

    let form = get(&url);
    assert_eq!(form.status, 200);
    assert!(form.body.contains("ana.lima@example.com"), "{}", form.body);
    let token = url.split_once("token=").unwrap().1;
    let set = format!("{}/set-password", server.url);
    let fields = [
        ("token", token),
        ("password", "a first password"),
        ("confirm", "a first password"),
    ];
    let done = post_form(&set, &fields);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Your password is set"), "{}", done.body);
    assert!(done.body.contains(r#"href="/console""#), "{}", done.body);
    assert!(
        !get(&format!("{}/", server.url)).body.contains("first-run"),
        "the landing page stops pointing at the setup link"
    );

    // Once: the second use is refused, and the password stays the first one.
    let again = post_form(
        &set,
        &[
            ("token", token),
            ("password", "another password"),
            ("confirm", "another password"),
        ],
    );
    assert_eq!(again.status, 404);
    assert!(again.body.contains("not valid any more"), "{}", again.body);
    assert_eq!(get(&url).status, 404);
    let login = |password: &str| {
        Api::blocking(&server.url)
            .post(
                "/api/v1/auth/login",
                None,
                serde_json::json!({"email": "ana.lima@example.com", "password": password}),
            )
            .0
    };
    assert_eq!(login("a first password"), 200);
    assert_eq!(login("another password"), 401);

    // Now an agent can sign in: a restart prints no link.
    let server = server.kill_and_restart();
    assert_eq!(
        server.printed("livechat setup:", Duration::from_secs(1)),
        None,
        "a setup link once someone can sign in"
    );
}

#[test]
fn without_an_admin_the_setup_line_says_so() {
    // `plain_bundle`'s only agent has the default role.
    let server = TestServer::start(plain_bundle, &[]);
    let line = server
        .printed("livechat setup:", Duration::from_secs(10))
        .expect("a setup line");
    assert!(line.contains("no admin"), "{line}");
    assert!(line.contains("livechat agent password"), "{line}");
    assert!(!line.contains("http://"), "{line}");
}

/// Starts `serve` on the example bundle with `args` and `env`, waits until it answers,
/// stops it, and answers what it wrote to standard error.
fn stderr_of_a_run(args: &[&str], env: &[(&str, &str)], config: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let bots = dir.path().join("bots");
    std::fs::create_dir_all(&bots).unwrap();
    example_bundle(&bots);
    let mut cmd = livechat();
    if let Some(text) = config {
        let file = dir.path().join("livechat.toml");
        std::fs::write(&file, text).unwrap();
        cmd.arg("--config").arg(file);
    }
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--bots-dir")
        .arg(&bots)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .env("LIVECHAT_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("a listening line").unwrap();
        if let Some(rest) = line.strip_prefix("livechat listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // The setup line follows: it is printed after the startup's log lines.
    let setup = lines.next().expect("the setup line").unwrap();
    assert!(setup.starts_with("livechat setup:"), "{setup}");
    let (_, health) = Api::blocking(&url).get("/healthz", None);
    assert_eq!(health["status"], "ok");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    stderr
}

fn assert_json_lines(stderr: &str, how: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.len() >= 3, "{how}: {stderr}");
    let mut messages = Vec::new();
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{how}: not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(v["fields"]["message"].as_str().unwrap_or("").to_string());
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("config live: revision 1")),
        "{how}: {messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("first run:")),
        "{how}: the setup link is logged too: {messages:?}"
    );
}

#[test]
fn logs_are_json_lines_when_asked_and_carry_no_colour_off_a_terminal() {
    let text = stderr_of_a_run(&[], &[], None);
    assert!(!text.contains('\u{1b}'), "escape codes in a pipe: {text:?}");
    assert!(text.contains(" INFO "), "{text}");
    assert!(text.contains("config live: revision 1"), "{text}");
    println!("text: {}", text.lines().next().unwrap_or(""));

    let json = stderr_of_a_run(&["--log-format", "json"], &[], None);
    assert_json_lines(&json, "--log-format json");
    println!("json: {}", json.lines().next().unwrap_or(""));
    assert_json_lines(
        &stderr_of_a_run(&[], &[("LIVECHAT_LOG_FORMAT", "json")], None),
        "LIVECHAT_LOG_FORMAT=json",
    );
    assert_json_lines(
        &stderr_of_a_run(&[], &[], Some("log_format = \"json\"\n")),
        "log_format in livechat.toml",
    );
    // The flag wins over the file.
    let flag = stderr_of_a_run(
        &["--log-format", "text"],
        &[],
        Some("log_format = \"json\"\n"),
    );
    assert!(!flag.trim_start().starts_with('{'), "{flag}");
}
