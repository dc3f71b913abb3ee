//! Invitations and transcripts as people receive them: the mail (written to files, the
//! default transport), the link in it, the page it opens, and signing in afterwards.

#[macro_use]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Bundle;
use common::live::{Api, PASSWORD, agent_email};
use common::smtp::header;
use serde_json::json;

/// The `.eml` files of one kind in the data directory, waiting up to `limit` for `n`.
fn mails(data_dir: &Path, kind: &str, n: usize, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let found: Vec<String> = std::fs::read_dir(data_dir.join("mail"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap())
                    .filter(|t| header(t, "X-Livechat-Kind").as_deref() == Some(kind))
                    .collect()
            })
            .unwrap_or_default();
        if found.len() >= n {
            return found;
        }
        assert!(
            start.elapsed() < limit,
            "{} of {n} {kind} mails",
            found.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The set-password link in an invitation (quoted-printable soft breaks undone).
fn link(mail: &str) -> String {
    let body = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let at = body
        .find("/set-password?token=")
        .expect("a set-password link");
    let start = body[..at].rfind("http://").unwrap();
    body[start..]
        .split(|c: char| c.is_whitespace() || c == '<' || c == '"')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_is_invited_once_and_the_link_sets_their_password() {
    let server = Bundle::live(1).serve(&[]);
    let data = server.data_dir.clone();
    let invites =
        tokio::task::spawn_blocking(move || mails(&data, "invite", 2, Duration::from_secs(10)))
            .await
            .unwrap();
    let to_agent0 = invites
        .iter()
        .find(|m| header(m, "To").as_deref() == Some("agent0@acme.example"))
        .expect("agent0 was invited");
    let url = link(to_agent0);
    assert!(
        url.starts_with(&format!("{}/set-password?token=", server.url)),
        "{url}"
    );

    // The page opens with the agent's address, works without JavaScript.
    let api = Api::new(&server.url);
    let page = api
        .request("GET", &url[server.url.len()..])
        .send()
        .await
        .text;
    assert!(
        page.contains("agent0@acme.example") && page.contains("<form method=\"post\""),
        "{page}"
    );
    let token = url.split("token=").nth(1).unwrap().to_string();
    let post = |password: &str, confirm: &str| {
        let form = [
            ("token", &token[..]),
            ("password", password),
            ("confirm", confirm),
        ];
        let req = api.request("POST", "/set-password").form(&form);
        async move {
            let reply = req.send().await;
            (reply.status, reply.text)
        }
    };
    let (status, body) = post("short", "short").await;
    assert_eq!(status, 400, "too short is refused: {body}");
    let (status, _) = post("correct horse battery", "something else").await;
    assert_eq!(status, 400, "the two must match");
    let (status, body) = post(PASSWORD, PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Your password is set"), "{body}");
    // The link works once.
    let (status, _) = post("another good password", "another good password").await;
    assert_eq!(status, 404);
    // And the agent signs in with it.
    let (status, body) = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "agent0@acme.example", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A password set another way (the CLI) uses the invitation up: the old link is dead.
    let to_boss = invites
        .iter()
        .find(|m| header(m, "To").as_deref() == Some("boss@acme.example"))
        .expect("the admin was invited");
    common::live::set_password(&server.bots_dir, &server.data_dir, "boss@acme.example");
    let dead = api.request("GET", &link(to_boss)[server.url.len()..]);
    assert_eq!(dead.send().await.status, 404);

    // A restart (a reload, too) does not invite anyone twice.
    let server = tokio::task::spawn_blocking(move || server.kill_and_restart())
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let data = server.data_dir.clone();
    let again =
        tokio::task::spawn_blocking(move || mails(&data, "invite", 0, Duration::from_secs(1)))
            .await
            .unwrap();
    assert_eq!(again.len(), 2, "still the two first invitations");
}

/// The transcript goes only where a visitor said, in a chat one of the team took part in
/// (#10: no mail cannon for strangers), at most `transcripts_per_recipient` times a day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_gets_the_transcript_at_the_address_they_gave() {
    let server = Bundle::live(1)
        .live_chat(|d| d.set("collect", "[\"email\"]"))
        .serve(&[&agent_email(0)]);
    let api = Api::new(&server.url);
    let transcript = |token: String| {
        let api = api.clone();
        async move {
            api.post(
                "/api/v1/visitor/actions",
                Some(&token),
                json!({"type": "email_transcript"}),
            )
            .await
        }
    };
    let stranger = api.session("support").await;
    // Without an address there is nothing to send to.
    assert_error!(
        transcript(stranger.token.clone()).await,
        400,
        "invalid_input"
    );
    // Nobody online: the offline form takes an address, but no one of the team saw it, so
    // the server mails nothing there.
    api.request_live_chat(&stranger.token).await;
    api.post_ok(
        "/api/v1/visitor/actions",
        Some(&stranger.token),
        json!({"type": "form", "form": "contact",
                   "values": {"email": "victim@example.com", "message": "spam"}}),
    )
    .await;
    assert_error!(transcript(stranger.token.clone()).await, 403, "not_allowed");

    // A chat with an agent: the visitor gives their address when asking for a person.
    let mut agent = api.go_online(&agent_email(0)).await;
    let chat = |text: &'static str| {
        let api = api.clone();
        let agent_token = agent.token.clone();
        async move {
            let visitor = api.session("support").await;
            api.post_ok(
                "/api/v1/visitor/messages",
                Some(&visitor.token),
                json!({"text": "<b>call me</b>"}),
            )
            .await;
            api.request_live_chat(&visitor.token).await;
            api.post_ok(
                "/api/v1/visitor/messages",
                Some(&visitor.token),
                json!({"text": "ada@example.com"}),
            )
            .await;
            api.post_ok(
                &format!("/api/v1/conversations/{}/accept", visitor.conv),
                Some(&agent_token),
                json!({}),
            )
            .await;
            api.post_ok(
                &format!("/api/v1/conversations/{}/messages", visitor.conv),
                Some(&agent_token),
                json!({ "text": text }),
            )
            .await;
            visitor
        }
    };
    let ada = chat("Happy to help, Ada.").await;
    let (status, body) = transcript(ada.token.clone()).await;
    assert_eq!(
        (status, body["sent_to"].as_str()),
        (200, Some("ada@example.com")),
        "{body}"
    );
    let data = server.data_dir.clone();
    let mails =
        tokio::task::spawn_blocking(move || mails(&data, "transcript", 1, Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(mails.len(), 1, "nothing went to the stranger's address");
    let mail = &mails[0];
    assert_eq!(header(mail, "To").as_deref(), Some("ada@example.com"));
    let body = mail.replace("=\r\n", "").replace("=\n", "");
    assert!(
        body.contains("Hi! What can we do for you?"),
        "the bot's words: {body}"
    );
    assert!(
        body.contains("Happy to help, Ada."),
        "the agent's words: {body}"
    );
    // The visitor's own words: as text in the plain part, escaped in the HTML part.
    assert!(
        body.lines().any(|l| l.trim_end() == "<b>call me</b>"),
        "{body}"
    );
    assert!(body.contains("&lt;b&gt;call me&lt;"), "{body}");
    assert!(
        !body.contains("<b>call me</b></"),
        "escaped in the HTML part: {body}"
    );
    // Three requests an hour per visitor, then a clear refusal.
    assert_eq!(transcript(ada.token.clone()).await.0, 200);
    assert_eq!(transcript(ada.token.clone()).await.0, 200);
    assert_error!(
        transcript(ada.token.clone()).await,
        429,
        "too_many_requests"
    );
    // Three mails a day to one address, whoever asks: a second visitor giving the same
    // address gets none.
    let again = chat("Hello again.").await;
    assert_error!(
        transcript(again.token.clone()).await,
        429,
        "too_many_requests"
    );
    agent.stream.ws.close(None).await.ok();
}

/// Issue #10: once an invitation is sent, the database keeps only the hash of its link's
/// token, as docs/mail.md says; the outbox no longer holds the mail's body.
#[test]
fn a_sent_invitation_leaves_no_link_in_the_database() {
    let server = Bundle::live(1).serve(&[]);
    let invites = mails(&server.data_dir, "invite", 2, Duration::from_secs(10));
    let tokens: Vec<String> = invites
        .iter()
        .map(|m| link(m).split("token=").nth(1).unwrap().to_string())
        .collect();
    // The file is written before the outbox records the mail as sent: wait for that.
    let start = Instant::now();
    loop {
        let stored = server.everything_stored();
        let sent =
            server.count("SELECT count(*) FROM outbox WHERE kind = 'mail' AND status = 'sent'");
        if sent >= 2 {
            for token in &tokens {
                assert!(
                    !stored.iter().any(|v| v.contains(token.as_str())),
                    "the token {token} is still stored"
                );
            }
            assert!(
                !stored.iter().any(|v| v.contains("set-password?token=")),
                "a set-password link is still stored"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{sent} of 2 invitations sent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The link still works: the hash is all the server needs.
    let page = server
        .api()
        .request("GET", &format!("/set-password?token={}", tokens[0]))
        .wait();
    assert_eq!(page.status, 200);
}
