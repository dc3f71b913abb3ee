//! Visitors online over the real API and in real browsers: the widget's page views (a token
//! without a conversation), `GET /api/v1/visitors` scoped to the agent's bots, the
//! `visitor.active` frames, invitations and their refusals, the reply that becomes a chat
//! assigned to the inviting agent, the limits per address, the export and erase of page
//! views, and their retention sweep.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::browser::{Browser, host_site};
use common::live::{Api, agent_email};
use common::{Bundle, TestServer, bot};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const OLGA: &str = "olga@acme.example";
const BOSS: &str = "boss@acme.example";

/// The server: `support` (team desk: Agent 0, one chat at a time, and the admin) and
/// `other` (team other: Olga).
fn serve(env: &[(&str, &str)]) -> TestServer {
    Bundle::live(1)
        .max_chats(1)
        .team("other", &["other"])
        .agent("Olga", OLGA, "other")
        .bot("other", bot("Other", "Hi from the other bot"))
        .serve_with(&[&agent_email(0), OLGA, BOSS], env)
}

async fn page_view(api: &Api, token: Option<&str>, body: Value) -> (u16, Value) {
    api.post("/api/v1/visitor/pageviews", token, body).await
}

/// The visitors the agent sees online.
async fn online(api: &Api, token: &str) -> Vec<Value> {
    let body = api.get_ok("/api/v1/visitors", Some(token)).await;
    body["visitors"].as_array().unwrap().clone()
}

async fn listed(api: &Api, token: &str, visitor: &str) -> Option<Value> {
    online(api, token)
        .await
        .into_iter()
        .find(|v| v["visitor_id"] == visitor)
}

/// Polls the agent's list until the visitor fits `pred`.
async fn wait_listed(api: &Api, token: &str, visitor: &str, pred: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let v = listed(api, token, visitor).await;
        if v.as_ref().is_some_and(&pred) {
            return;
        }
        assert!(start.elapsed() < WAIT, "{visitor} never got there: {v:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_views_list_scoped_visitors_and_an_invite_becomes_the_agents_chat() {
    let server = serve(&[]);
    let api = Api::new(&server.url);
    let mut ana = api.go_online(&agent_email(0)).await;
    let olga = api.login(OLGA).await;
    let boss = api.login(BOSS).await;

    // A first page view: a token, a visitor, no conversation.
    let (status, first) = page_view(
        &api,
        None,
        json!({"bot": "support", "url": "https://acme.example/", "title": "Acme",
               "referrer": "https://search.example/?q=acme", "language": "de-DE"}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let token = first["token"].as_str().unwrap().to_string();
    let id = first["visitor_id"].as_str().unwrap().to_string();
    assert_eq!(first["conversation_id"], Value::Null);
    assert_eq!(first["widget"]["bot"], "support");
    // The next page keeps the token and the visitor.
    let (status, second) = page_view(
        &api,
        Some(&token),
        json!({"bot": "support", "url": "https://acme.example/pricing", "title": "Pricing"}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["visitor_id"], id.as_str());
    assert_eq!(second["token"], token.as_str());
    let (_, conversations) = api
        .get("/api/v1/conversations?status=bot", Some(&ana.token))
        .await;
    assert_eq!(conversations["conversations"], json!([]), "no chat started");

    // A visitor of the other bot: Olga's, not Ana's.
    let (status, other) = page_view(
        &api,
        None,
        json!({"bot": "other", "url": "https://other.example/"}),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    let other_id = other["visitor_id"].as_str().unwrap().to_string();
    let other_token = other["token"].as_str().unwrap().to_string();

    let seen = listed(&api, &ana.token, &id)
        .await
        .expect("Ana sees her visitor");
    assert_eq!(seen["url"], "https://acme.example/pricing");
    assert_eq!(seen["title"], "Pricing");
    assert_eq!(seen["pages"], 2);
    assert_eq!(seen["recent_pages"][1]["url"], "https://acme.example/");
    assert_eq!(seen["referrer"], "https://search.example/?q=acme");
    assert_eq!(seen["language"], "de-DE");
    assert_eq!(seen["chatting"], false);
    assert!(seen["time_on_site_secs"].as_i64().unwrap() >= 0, "{seen}");
    assert!(seen.get("country").is_none(), "no country source: {seen}");
    assert!(listed(&api, &ana.token, &other_id).await.is_none());
    assert!(listed(&api, &olga, &id).await.is_none());
    assert!(listed(&api, &olga, &other_id).await.is_some());
    let all = online(&api, &boss).await;
    assert!(all.iter().any(|v| v["visitor_id"] == id.as_str()));
    assert!(all.iter().any(|v| v["visitor_id"] == other_id.as_str()));

    // Ana's console heard her visitor, live, and nothing of the other bot's.
    ana.stream
        .wait_for(WAIT, "visitor.active of the second page", |f| {
            f["type"] == "visitor.active" && f["data"]["pages"] == 2
        })
        .await;
    assert!(
        !ana.stream
            .seen
            .iter()
            .any(|f| f["data"]["visitor_id"] == other_id.as_str()),
        "Ana heard of the other bot's visitor"
    );

    // Page views that do not fit are refused.
    for (body, what) in [
        (
            json!({"bot": "support", "url": "ftp://acme.example/"}),
            "ftp url",
        ),
        (json!({"bot": "support", "url": ""}), "empty url"),
        (
            json!({"bot": "support", "url": format!("https://acme.example/{}", "a".repeat(2100))}),
            "long url",
        ),
        (
            json!({"bot": "support", "url": "https://acme.example/", "title": "t".repeat(301)}),
            "long title",
        ),
    ] {
        assert_error!(
            page_view(&api, None, body).await,
            400,
            "invalid_input",
            "{what}"
        );
    }
    assert_error!(
        page_view(
            &api,
            None,
            json!({"bot": "nope", "url": "https://acme.example/"})
        )
        .await,
        404,
        "unknown_bot"
    );

    // Invitations that cannot be: bad text, another bot's visitor, nobody, no widget
    // listening, an agent without a console.
    let invite = |who: &str| format!("/api/v1/visitors/{who}/invite");
    assert_error!(
        api.post(&invite(&id), Some(&ana.token), json!({"text": "  "}))
            .await,
        400,
        "invalid_input"
    );
    assert_error!(
        api.post(
            &invite(&id),
            Some(&ana.token),
            json!({"text": "x".repeat(1001)})
        )
        .await,
        400,
        "invalid_input"
    );
    assert_error!(
        api.post(&invite(&other_id), Some(&ana.token), json!({"text": "Hi"}))
            .await,
        404,
        "not_found",
        "another bot's visitor"
    );
    assert_error!(
        api.post(&invite("v_nobody"), Some(&ana.token), json!({"text": "Hi"}))
            .await,
        404,
        "not_found"
    );
    assert_error!(
        api.post(&invite(&id), Some(&ana.token), json!({"text": "Hi"}))
            .await,
        409,
        "visitor_unreachable"
    );
    let other_widget = api.visitor_stream(&other_token, 0).await;
    wait_listed(&api, &olga, &other_id, |v| v["connected"] == true).await;
    assert_error!(
        api.post(&invite(&other_id), Some(&olga), json!({"text": "Hi"}))
            .await,
        409,
        "agent_offline",
        "Olga has no console open"
    );
    other_widget.close().await;

    // The widget listens; Ana invites; the widget hears it, and the next page shows it again.
    let mut widget = api.visitor_stream(&token, 0).await;
    wait_listed(&api, &ana.token, &id, |v| v["connected"] == true).await;
    let words = "Hi! Questions about pricing?";
    let answer = api
        .post_ok(&invite(&id), Some(&ana.token), json!({"text": words}))
        .await;
    assert_eq!(answer["invited"], true);
    let heard = widget
        .wait_for(WAIT, "the invite", |f| f["type"] == "invite")
        .await;
    assert_eq!(heard["data"]["text"], words);
    assert_eq!(heard["data"]["name"], "Agent 0");
    ana.stream
        .wait_for(WAIT, "visitor.active saying invited", |f| {
            f["type"] == "visitor.active" && f["data"]["invited_by"] == agent_email(0)
        })
        .await;
    let (_, again) = page_view(
        &api,
        Some(&token),
        json!({"bot": "support", "url": "https://acme.example/plans"}),
    )
    .await;
    assert_eq!(again["invite"]["text"], words);

    // The reply: a conversation that is Ana's, opened by her words.
    let (status, session) = api
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "support", "token": token}),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["visitor_id"], id.as_str());
    let conv = session["conversation_id"].as_str().unwrap().to_string();
    assert!(
        session["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "message.created" && e["data"]["text"] == words),
        "the invite opens the visitor's chat: {session}"
    );
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&token),
        json!({"client_id": "r1", "text": "Yes, which plan fits me?"}),
    )
    .await;
    let details = api.details(&ana.token, &conv).await;
    assert_eq!(details["status"], "chatting", "{details}");
    assert_eq!(details["assignee"], agent_email(0));
    let texts: Vec<&str> = details["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    let (said, replied) = (
        texts.iter().position(|t| *t == words),
        texts.iter().position(|t| *t == "Yes, which plan fits me?"),
    );
    assert!(said.is_some() && said < replied, "{texts:?}");
    wait_listed(&api, &ana.token, &id, |v| v["chatting"] == true).await;
    assert_error!(
        api.post(&invite(&id), Some(&ana.token), json!({"text": "Hi again"}))
            .await,
        409,
        "visitor_chatting"
    );
    widget.close().await;

    // Ana holds her one chat: another visitor cannot be hers now.
    let (_, third) = page_view(
        &api,
        None,
        json!({"bot": "support", "url": "https://acme.example/"}),
    )
    .await;
    let third_id = third["visitor_id"].as_str().unwrap();
    let third_widget = api
        .visitor_stream(third["token"].as_str().unwrap(), 0)
        .await;
    wait_listed(&api, &ana.token, third_id, |v| v["connected"] == true).await;
    assert_error!(
        api.post(&invite(third_id), Some(&ana.token), json!({"text": "Hi"}))
            .await,
        409,
        "at_capacity"
    );
    third_widget.close().await;

    // Page views are personal data: in the export, gone with an erase.
    let export = api
        .get_ok(&format!("/api/v1/visitors/{id}/export"), Some(&boss))
        .await;
    let urls: Vec<&str> = export["pageviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "https://acme.example/",
            "https://acme.example/pricing",
            "https://acme.example/plans"
        ]
    );
    let (status, erased) = api
        .call(
            "DELETE",
            &format!("/api/v1/visitors/{other_id}"),
            Some(&boss),
            None,
        )
        .await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["erased"]["pageviews"], 1);
    assert!(listed(&api, &boss, &other_id).await.is_none());
    assert_error!(
        api.get(&format!("/api/v1/visitors/{other_id}/export"), Some(&boss))
            .await,
        404,
        "not_found"
    );
    // Its token is gone too: the next page view is a new visitor.
    let (status, fresh) = page_view(
        &api,
        Some(&other_token),
        json!({"bot": "other", "url": "https://other.example/"}),
    )
    .await;
    assert_eq!(status, 201, "{fresh}");
    assert_ne!(fresh["visitor_id"], other_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_views_are_limited_per_address_and_swept_after_their_retention() {
    // The test talks to the server as a trusted proxy that names the visitor's country.
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("livechat.toml");
    std::fs::write(
        &file,
        "country_header = \"CF-IPCountry\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    )
    .unwrap();
    let server = serve(&[
        ("LIVECHAT_CONFIG", file.to_str().unwrap()),
        ("LIVECHAT_PAGEVIEWS_PER_ADDRESS", "5"),
        ("LIVECHAT_SESSIONS_PER_ADDRESS", "3"),
        ("LIVECHAT_PAGEVIEW_RETENTION", "3s"),
    ]);
    let api = Api::new(&server.url);
    let boss = api.login(BOSS).await;
    let view = |url: &str| json!({"bot": "support", "url": url});
    // Two new visitors (two of the three new sessions), the second one chats (the third).
    let browsing = api
        .request("POST", "/api/v1/visitor/pageviews")
        .header("CF-IPCountry", "de")
        .json(view("https://acme.example/a"))
        .send()
        .await;
    assert_eq!(browsing.status, 201, "{}", browsing.body);
    let browsing = browsing.body;
    let seen = listed(&api, &boss, browsing["visitor_id"].as_str().unwrap())
        .await
        .expect("listed");
    assert_eq!(seen["country"], "DE", "{seen}");
    let (status, chatting) = page_view(&api, None, view("https://acme.example/b")).await;
    assert_eq!(status, 201, "{chatting}");
    let chatting_token = chatting["token"].as_str().unwrap();
    let (status, session) = api
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "support", "token": chatting_token}),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    // A third new visitor is one new session too many; a known one still counts pages.
    assert_error!(
        page_view(&api, None, view("https://acme.example/c")).await,
        429,
        "too_many_sessions"
    );
    let (status, known) =
        page_view(&api, Some(chatting_token), view("https://acme.example/d")).await;
    assert_eq!(status, 200, "{known}");
    assert_eq!(known["conversation_id"], session["conversation_id"]);
    let (status, _) = page_view(&api, Some(chatting_token), view("https://acme.example/e")).await;
    assert_eq!(status, 200);
    assert_error!(
        page_view(&api, Some(chatting_token), view("https://acme.example/f")).await,
        429,
        "too_many_pageviews"
    );

    // After the retention (3 s) the page views go; so does the visitor who only browsed,
    // while the one who chats keeps their conversation.
    let browsing_id = browsing["visitor_id"].as_str().unwrap();
    let chatting_id = chatting["visitor_id"].as_str().unwrap();
    let before = api
        .get_ok(
            &format!("/api/v1/visitors/{chatting_id}/export"),
            Some(&boss),
        )
        .await;
    assert_eq!(before["pageviews"].as_array().unwrap().len(), 3, "{before}");
    let start = Instant::now();
    loop {
        let (gone, _) = api
            .get(
                &format!("/api/v1/visitors/{browsing_id}/export"),
                Some(&boss),
            )
            .await;
        let kept = api
            .get_ok(
                &format!("/api/v1/visitors/{chatting_id}/export"),
                Some(&boss),
            )
            .await;
        if gone == 404 && kept["pageviews"] == json!([]) {
            assert_eq!(kept["conversations"].as_array().unwrap().len(), 1);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not swept: {gone} {kept}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        server
            .logged("page view retention: deleted", Duration::from_secs(5))
            .is_some()
    );
}

/// Runs `script` in the page (an expression's value as JSON).
async fn js(browser: &Browser, script: &str) -> Value {
    browser
        .client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Waits until `script` (in the page) answers true.
async fn wait_js(browser: &Browser, what: &str, limit: Duration, script: &str) {
    let start = Instant::now();
    loop {
        if js(browser, script).await == Value::Bool(true) {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_a_widget_page_shows_in_the_console_and_answers_an_invite() {
    let server = serve(&[]);
    let api = Api::new(&server.url);
    let email = agent_email(0);
    let console = Browser::start().await;
    let visitor = Browser::start().await;

    console.goto(&format!("{}/console", server.url)).await;
    console.type_into("#signin-email", &email).await;
    console
        .type_into("#signin-password", common::live::PASSWORD)
        .await;
    console.click("#signin-submit").await;
    console.wait_for_text("#me", &email).await;
    console.wait_for_text("#conn", "Live").await;
    console
        .wait_for_text("#sec-visitors", "Nobody is on the site now")
        .await;

    let site = host_site(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Acme Pricing</title></head>
<body><h1>Pricing</h1><script src="{}/widget.js" data-bot="support" async></script></body></html>"#,
        server.url
    ))
    .await;
    visitor.goto(&site).await;
    // Within 2 s of the page, the console lists them.
    wait_js(
        &console,
        "the visitor in Visitors online",
        Duration::from_secs(2),
        "return [...document.querySelectorAll('#sec-visitors .visitor-row')]
           .some((r) => r.textContent.includes('Acme Pricing'));",
    )
    .await;
    // The invite needs the widget's socket: wait until the server has it.
    let me = api.login(&email).await;
    let start = Instant::now();
    let id = loop {
        let found = online(&api, &me)
            .await
            .into_iter()
            .find(|v| v["connected"] == true);
        if let Some(v) = found {
            break v["visitor_id"].as_str().unwrap().to_string();
        }
        assert!(start.elapsed() < WAIT, "the widget never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    console.click("#sec-visitors .visitor-invite").await;
    js(
        &console,
        "const i = document.querySelector('#sec-visitors .invite-form input');
         i.value = 'Hello from Agent 0, need help with pricing?'; return true;",
    )
    .await;
    console
        .click("#sec-visitors .invite-form button[type=submit]")
        .await;
    console.wait_for_text("#toast", "Invitation sent").await;

    // The widget opens with the invite; the visitor answers it.
    let shadow = "document.querySelector('livechat-widget').shadowRoot";
    wait_js(
        &visitor,
        "the invite in the widget",
        WAIT,
        &format!(
            "const r = {shadow}; return !!r && !r.querySelector('.lc-panel').hidden &&
               r.querySelector('.lc-log').textContent.includes('need help with pricing?');"
        ),
    )
    .await;
    js(
        &visitor,
        &format!(
            "const r = {shadow}; r.querySelector('.lc-input').value = 'Yes please';
             r.querySelector('.lc-compose').requestSubmit(); return true;"
        ),
    )
    .await;

    // The reply is a chat assigned to the agent, in the console's Mine.
    console.wait_for_text("#sec-mine", "Visitor").await;
    let start = Instant::now();
    let conv = loop {
        let (_, body) = api
            .get("/api/v1/conversations?status=chatting", Some(&me))
            .await;
        let found = body["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["visitor"]["id"] == id.as_str())
            .cloned();
        if let Some(c) = found {
            break c;
        }
        assert!(start.elapsed() < WAIT, "no chat: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(conv["assignee"], email);
    let details = api.details(&me, conv["id"].as_str().unwrap()).await;
    let texts: Vec<&str> = details["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        texts.contains(&"Hello from Agent 0, need help with pricing?")
            && texts.contains(&"Yes please"),
        "{texts:?}"
    );
    wait_js(
        &visitor,
        "the reply shown once, after the invite",
        WAIT,
        &format!(
            "const t = {shadow}.querySelector('.lc-log').textContent;
             return t.indexOf('need help with pricing?') >= 0 &&
               t.indexOf('need help with pricing?') < t.indexOf('Yes please') &&
               t.split('Yes please').length === 2;"
        ),
    )
    .await;
    console.close().await;
    visitor.close().await;
}

/// An invitation waits up to ten minutes; an agent who stops serving the bot meanwhile
/// (a roster change) does not get the chat when the visitor answers: it stays with the bot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_taken_back_when_its_agent_no_longer_serves_the_bot() {
    let server = serve(&[]);
    let api = Api::new(&server.url);
    let olga = api.go_online(OLGA).await;
    let boss = api.login(BOSS).await;
    let (_, view) = page_view(
        &api,
        None,
        json!({"bot": "other", "url": "https://acme.example/other"}),
    )
    .await;
    let token = view["token"].as_str().unwrap().to_string();
    let id = view["visitor_id"].as_str().unwrap().to_string();
    let widget = api.visitor_stream(&token, 0).await;
    wait_listed(&api, &olga.token, &id, |v| v["connected"] == true).await;
    api.post_ok(
        &format!("/api/v1/visitors/{id}/invite"),
        Some(&olga.token),
        json!({"text": "Can I help?"}),
    )
    .await;

    // Olga moves to the desk team, which serves `support`, not `other`.
    let roster = server.bots_dir.join("agents.toml");
    let text = std::fs::read_to_string(&roster).unwrap();
    let olga_at = text.find(OLGA).unwrap();
    let (head, tail) = text.split_at(olga_at);
    let moved = format!(
        "{head}{}",
        tail.replacen("teams = [\"other\"]", "teams = [\"desk\"]", 1)
    );
    assert_ne!(moved, text);
    let before = server.revision();
    common::save_atomically(&roster, &moved);
    let start = Instant::now();
    while server.revision() == before {
        assert!(
            start.elapsed() < WAIT,
            "the roster change was never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The visitor answers: the chat is nobody's.
    let (status, session) = api
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "other", "token": token}),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let conv = session["conversation_id"].as_str().unwrap();
    // What answering the invitation does happens right after the session starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let details = api.details(&boss, conv).await;
    assert_eq!(details["assignee"], Value::Null, "{details}");
    assert_eq!(details["status"], "bot", "{details}");
    widget.close().await;
}
