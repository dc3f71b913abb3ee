//! Mail as the team receives it: a real SMTP server (aiosmtpd) on a loopback port, the real
//! server, the real contact page and API.

#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use common::live::{Api, Console, PASSWORD, set_password};
use common::smtp::{SmtpServer, decode_qp, header};
use common::{Bundle, TestServer, livechat};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

/// A bot whose offline form mails the team, with a subject made from the visitor's name.
const SUPPORT: &str = r#"name = "Acme Support"

[[step]]
id = "start"
say = "Hi!"
live_chat = "desk"

[live_chat.desk]
accept_timeout = "1s"
offline_form = "contact"

[offline_form.contact]
title = "Leave us a message"
fields = [
  { name = "name", label = "Your name", type = "text", required = true },
  { name = "email", label = "Email", type = "email", required = true },
  { name = "message", label = "Message", type = "textarea", required = true, max = 4000 },
]
email_to = ["support@acme.example", "lead@acme.example"]
subject = "Offline message from {{ name }}"
thank_you = "Thanks, we'll reply by email."
"#;

fn bundle(dir: &Path) {
    Bundle::new()
        .team("desk", &["support"])
        .agent("Ana Lima", "ana@acme.example", "desk")
        .bot("support", SUPPORT)
        .write(dir);
}

const ADMIN: &str = "admin-secret";

fn start_with_smtp(smtp: &SmtpServer) -> TestServer {
    let conf_dir = tempfile::tempdir().unwrap().keep();
    let conf = smtp.settings(
        &conf_dir,
        "outbox_retry = \"200ms\"\npublic_url = \"http://chat.acme.example\"",
    );
    TestServer::start(
        bundle,
        &[
            ("LIVECHAT_CONFIG", conf.to_str().unwrap()),
            ("LIVECHAT_ADMIN_TOKEN", ADMIN),
        ],
    )
}

/// The outbox's mails of `kind` with `status`, through the admin API.
fn outbox(server: &TestServer, status: &str, kind: &str) -> usize {
    let path = format!("/api/v1/admin/outbox?status={status}");
    let (_, body) = server.api().get(&path, Some(ADMIN));
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["summary"]["mail"] == kind)
        .count()
}

fn metric(server: &TestServer, name_and_labels: &str) -> i64 {
    let text = server.api().request("GET", "/metrics").wait().text;
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse::<f64>().ok())
        .unwrap_or(-1.0) as i64
}

fn post_form(server: &TestServer, fields: &[(&str, &str)]) -> (u16, String) {
    let reply = server
        .api()
        .request("POST", "/bots/support/contact")
        .header("referer", "https://acme.example/pricing")
        .form(fields)
        .wait();
    (reply.status, reply.text)
}

#[test]
fn the_contact_page_mails_the_team_with_the_right_headers_and_escaped_body() {
    let smtp = SmtpServer::start();
    let server = start_with_smtp(&smtp);

    // The page works without JavaScript: a plain form.
    let page = server
        .api()
        .request("GET", "/bots/support/contact")
        .wait()
        .text;
    assert!(
        page.contains("<form method=\"post\"") && page.contains("name=\"message\""),
        "{page}"
    );
    assert!(!page.contains("<script"), "no script needed");

    let (status, body) = post_form(
        &server,
        &[
            ("name", "Zoë\r\nBcc: victim@example.com"),
            ("email", "zoe@example.com"),
            (
                "message",
                "<script>alert('x')</script>\nMy order #42 is late",
            ),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Thanks, we&#x27;ll reply by email.")
            || body.contains("Thanks, we'll reply by email."),
        "{body}"
    );

    let mails = smtp.wait_for_kind("offline_form", 1, WAIT);
    let mail = &mails[0];
    assert_eq!(
        header(mail, "From").as_deref(),
        Some("\"Acme Support\" <support@acme.example>")
    );
    let to = header(mail, "To").unwrap();
    assert!(
        to.contains("support@acme.example") && to.contains("lead@acme.example"),
        "{to}"
    );
    assert_eq!(header(mail, "Reply-To").as_deref(), Some("zoe@example.com"));
    let subject = header(mail, "Subject").unwrap();
    assert!(
        subject.is_ascii() && subject.contains("=?utf-8?"),
        "non-ASCII is encoded: {subject}"
    );
    assert!(
        header(mail, "Bcc").is_none(),
        "no header was injected: {mail}"
    );
    let headers = &mail[..mail.find("\n\n").unwrap()];
    assert!(
        !headers
            .to_lowercase()
            .lines()
            .any(|l| l.starts_with("bcc:")),
        "{headers}"
    );
    assert_eq!(
        header(mail, "X-Livechat-Kind").as_deref(),
        Some("offline_form")
    );
    // Both parts are there; HTML escapes the visitor's text.
    assert!(
        mail.contains("text/plain") && mail.contains("text/html"),
        "{mail}"
    );
    let decoded = decode_qp(mail);
    assert!(decoded.contains("&lt;script&gt;"), "{decoded}");
    assert!(decoded.contains("My order #42 is late"), "{decoded}");
    assert!(
        decoded.contains("Acme Support") && decoded.contains("https://acme.example/pricing"),
        "{decoded}"
    );

    // It is recorded as sent; nothing is dead.
    let start = std::time::Instant::now();
    while outbox(&server, "sent", "offline_form") != 1 {
        assert!(start.elapsed() < WAIT);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        metric(&server, "livechat_outbox{kind=\"mail\",status=\"dead\"}"),
        0
    );
}

#[test]
fn a_form_with_bad_values_is_refused_and_mails_nothing() {
    let smtp = SmtpServer::start();
    let server = start_with_smtp(&smtp);
    let (status, body) = post_form(
        &server,
        &[
            ("name", "Zoë"),
            ("email", "not an address"),
            ("message", ""),
        ],
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("class=\"error\""),
        "the page shows what to fix: {body}"
    );
    // A field the form does not have cannot be used to add a recipient either.
    assert_error!(server.api().post(
        "/api/v1/bots/support/offline",
        None,
        json!({"values": {"name": "Eve", "email": "eve@example.com", "message": "hi", "email_to": "victim@example.com"}}),
    ), 400, "invalid_form");
    std::thread::sleep(Duration::from_millis(500));
    assert!(smtp.mails_of("offline_form").is_empty());
    assert_eq!(outbox(&server, "pending", "offline_form"), 0);
    assert_eq!(outbox(&server, "sent", "offline_form"), 0);
}

#[test]
fn with_smtp_down_mail_waits_and_arrives_once_it_is_back() {
    let mut smtp = SmtpServer::start();
    let server = start_with_smtp(&smtp);
    smtp.stop();
    let (status, _) = post_form(
        &server,
        &[
            ("name", "Ana"),
            ("email", "ana@example.com"),
            ("message", "hello"),
        ],
    );
    assert_eq!(
        status, 200,
        "the visitor is told it was received: it is stored"
    );
    // It waits, retried with backoff, never dropped.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(outbox(&server, "pending", "offline_form"), 1);
    assert_eq!(
        metric(&server, "livechat_outbox{kind=\"mail\",status=\"dead\"}"),
        0
    );
    smtp.resume();
    let mails = smtp.wait_for_kind("offline_form", 1, WAIT);
    assert!(decode_qp(&mails[0]).contains("hello"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.mails_of("offline_form").len(), 1, "delivered once");
}

#[test]
fn a_kill_9_between_queueing_and_sending_still_delivers_exactly_once() {
    let mut smtp = SmtpServer::start();
    let server = start_with_smtp(&smtp);
    smtp.stop();
    let (status, _) = post_form(
        &server,
        &[
            ("name", "Bo"),
            ("email", "bo@example.com"),
            ("message", "queued before the crash"),
        ],
    );
    assert_eq!(status, 200);
    // Queued (and failing) before the crash.
    assert_eq!(outbox(&server, "pending", "offline_form"), 1);
    let server = server.kill_and_restart();
    smtp.resume();
    let mails = smtp.wait_for_kind("offline_form", 1, WAIT);
    assert!(decode_qp(&mails[0]).contains("queued before the crash"));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(smtp.mails_of("offline_form").len(), 1, "exactly once");
    assert_eq!(outbox(&server, "sent", "offline_form"), 1);
}

#[test]
fn without_smtp_mail_is_written_to_files_in_the_data_directory() {
    let server = TestServer::start(bundle, &[]);
    let (status, _) = post_form(
        &server,
        &[
            ("name", "Cy"),
            ("email", "cy@example.com"),
            ("message", "to a file"),
        ],
    );
    assert_eq!(status, 200);
    let dir = server.data_dir.join("mail");
    let start = std::time::Instant::now();
    let text = loop {
        let found = std::fs::read_dir(&dir).ok().and_then(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .find(|t| header(t, "X-Livechat-Kind").as_deref() == Some("offline_form"))
        });
        if let Some(text) = found {
            break text;
        }
        assert!(start.elapsed() < WAIT, "no .eml in {}", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        header(&text, "Subject").as_deref(),
        Some("Offline message from Cy")
    );
    assert!(decode_qp(&text).contains("to a file"));
}

#[test]
fn submissions_are_rate_limited_per_client_address() {
    let server = TestServer::start(bundle, &[]);
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (status, _) = post_form(
            &server,
            &[
                ("name", "Spam"),
                ("email", "s@example.com"),
                ("message", &format!("#{i}")),
            ],
        );
        statuses.push(status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);
}

#[test]
fn send_test_email_checks_the_setup() {
    let smtp = SmtpServer::start();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = smtp.settings(conf_dir.path(), "");
    let out = livechat()
        .args(["send-test-email", "ops@acme.example", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Sent a test mail to ops@acme.example via SMTP 127.0.0.1"),
        "{stdout}"
    );
    let mails = smtp.wait_for_mails(1, WAIT);
    assert_eq!(header(&mails[0], "To").as_deref(), Some("ops@acme.example"));
    // With the server down it says so and fails.
    let mut smtp = smtp;
    smtp.stop();
    let out = livechat()
        .args(["send-test-email", "ops@acme.example", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_mails_the_team_and_its_offline_form_reaches_them() {
    let smtp = SmtpServer::start();
    let port = smtp.port;
    let conf = tempfile::tempdir().unwrap().keep().join("livechat.toml");
    std::fs::write(
        &conf,
        format!("outbox_retry = \"200ms\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n"),
    )
    .unwrap();
    let server = TestServer::start(bundle, &[("LIVECHAT_CONFIG", conf.to_str().unwrap())]);
    set_password(&server.bots_dir, &server.data_dir, "ana@acme.example");
    let api = Api::new(&server.url);
    // Online and accepting (its console open) for as long as the test runs.
    let _ana: Console = api.go_online("ana@acme.example").await;
    let session = api.visitor("support").await;
    let token = session["token"].as_str().unwrap().to_string();
    let mut widget = api.visitor_stream(&token, 0).await;
    api.post(
        "/api/v1/visitor/messages",
        Some(&token),
        json!({"text": "I need help with billing"}),
    )
    .await;
    api.post(
        "/api/v1/visitor/actions",
        Some(&token),
        json!({"type": "request_live_chat"}),
    )
    .await;
    widget.event("livechat.timeout", None).await;
    let values = json!({"name": "Dee", "email": "dee@example.com", "message": "please call me"});
    let form = json!({"type": "form", "form": "contact", "values": values});
    api.post_ok("/api/v1/visitor/actions", Some(&token), form)
        .await;
    let mails = tokio::task::spawn_blocking(move || {
        smtp.wait_for_kind("missed_request", 1, WAIT);
        smtp.wait_for_kind("offline_form", 1, WAIT);
        smtp.mails()
    })
    .await
    .unwrap();
    let kinds: Vec<String> = mails
        .iter()
        .map(|m| header(m, "X-Livechat-Kind").unwrap())
        .collect();
    assert!(kinds.contains(&"missed_request".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"offline_form".to_string()), "{kinds:?}");
    let missed = mails
        .iter()
        .find(|m| m.contains("X-Livechat-Kind: missed_request"))
        .unwrap();
    assert_eq!(header(missed, "To").as_deref(), Some("ana@acme.example"));
    assert!(
        decode_qp(missed).contains("I need help with billing"),
        "{missed}"
    );
    let form = mails
        .iter()
        .find(|m| m.contains("X-Livechat-Kind: offline_form"))
        .unwrap();
    assert_eq!(
        header(form, "Subject").as_deref(),
        Some("Offline message from Dee")
    );
    assert!(decode_qp(form).contains("please call me"));
    let _ = PASSWORD;
}
