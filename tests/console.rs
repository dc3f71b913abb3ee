//! The agent console as agents use it: a real headless Chromium signs in at `/console` on a
//! real server, while visitors (and a second agent) speak the API over HTTP and WebSocket.

mod common;

use std::time::Duration;

use common::browser::{Browser, js, until};
use common::live::{Api, PASSWORD, Session, Stream, agent_email};
use common::{Bundle, TestServer};
use fantoccini::Locator;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

/// A server with the `support` bot and agents 0 and 1 (team `desk`), both with passwords.
async fn server() -> (TestServer, Api) {
    let server = Bundle::live(2).serve(&[&agent_email(0), &agent_email(1)]);
    let api = Api::new(&server.url);
    (server, api)
}

/// From here on, the page keeps its uncaught errors and rejections in `window.errors` and
/// the WebSockets it opens in `window.sockets` (`window.RealWebSocket` is the original),
/// what it sends on them in `window.sent`, and with `window.cut` set, a socket drops right
/// after it sends a message; `window.fetching` counts its API calls in flight,
/// `window.fetchedAt` when one last ended.
async fn instrument(browser: &Browser) {
    js(
        browser,
        "window.errors = [];
         addEventListener('error', e => errors.push(String(e.message)));
         addEventListener('unhandledrejection', e => errors.push(String(e.reason)));
         window.sockets = [];
         window.fetching = 0;
         window.fetchedAt = Date.now();
         const realFetch = window.fetch;
         window.fetch = (...args) => {
           fetching += 1;
           return realFetch(...args).finally(() => { fetching -= 1; fetchedAt = Date.now(); });
         };
         window.RealWebSocket = WebSocket;
         window.sent = [];
         window.cut = false;
         window.WebSocket = function (url) {
           const ws = new RealWebSocket(url);
           sockets.push(ws);
           const send = ws.send.bind(ws);
           ws.send = (data) => {
             send(data);
             sent.push(data);
             if (cut && data.includes('\"type\":\"message\"')) { cut = false; ws.close(); }
           };
           return ws;
         };",
    )
    .await;
}

/// Closes the browser after checking the page threw nothing.
async fn finish(browser: Browser) {
    let errors = js(&browser, "return window.errors || [];").await;
    assert_eq!(errors, json!([]), "the console threw");
    browser.close().await;
}

/// Clicks the button (or link) labelled `label` inside the element with id `scope`.
async fn click_labelled(browser: &Browser, scope: &str, label: &str) {
    let xpath =
        format!("//*[@id='{scope}']//*[self::button or self::a][normalize-space()='{label}']");
    browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no `{label}` in #{scope}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click `{label}`: {e}"));
}

/// Opens the console, signs in as `email`, and waits for the console to show them.
async fn sign_in(browser: &Browser, url: &str, email: &str) {
    browser.goto(&format!("{url}/console")).await;
    instrument(browser).await;
    browser.type_into("#signin-email", email).await;
    browser.type_into("#signin-password", PASSWORD).await;
    browser.click("#signin-submit").await;
    browser.wait_for_text("#me", email).await;
    browser.wait_for_text("#conn", "Live").await;
}

/// Switches "Accept chats" on in the browser and waits until the server has the agent
/// online and accepting (`watcher` is any agent's bearer token).
async fn accept_chats(browser: &Browser, api: &Api, watcher: &str, email: &str) {
    browser.click("label.switch").await;
    until(
        browser,
        "the Accept chats switch is on",
        "return document.getElementById('accepting').checked;",
    )
    .await;
    api.wait_agent(watcher, email, |a| {
        a["online"] == true && a["accepting"] == true
    })
    .await;
}

/// A visitor with their stream open asks for a person; the request shows under New.
async fn ringing_visitor(browser: &Browser, api: &Api) -> (Session, Stream) {
    let session = api.session("support").await;
    let stream = api.visitor_stream(&session.token, 0).await;
    api.request_live_chat(&session.token).await;
    let row = format!("#sec-new .row[data-id='{}']", session.conv);
    browser.text_of(&row).await;
    (session, stream)
}

/// Opens the request and accepts it in the browser; waits for the assigned notice.
async fn accept_in_browser(browser: &Browser, conv: &str) {
    browser
        .click(&format!("#sec-new .row[data-id='{conv}']"))
        .await;
    click_labelled(browser, "conv-actions", "Accept").await;
    browser
        .wait_for_text("#messages", "Agent 0 has joined the chat.")
        .await;
    browser
        .text_of(&format!("#sec-mine .row[data-id='{conv}']"))
        .await;
    until(
        browser,
        "the composer writes to the visitor",
        "return !document.getElementById('note-mode').checked;",
    )
    .await;
}

async fn visitor_says(api: &Api, session: &Session, client_id: &str, text: &str) {
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&session.token),
        json!({"client_id": client_id, "text": text}),
    )
    .await;
}

fn agent_message(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| {
        v["type"] == "message.created"
            && v["data"]["author"] == "agent"
            && v["data"]["text"] == text
    }
}

/// (1) A request rings under New; the agent accepts; both sides talk, Enter sends and
/// Shift+Enter breaks the line; typing shows both ways. Ends with the docs screenshot and a
/// look at a narrow window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_rings_is_accepted_and_both_sides_talk() {
    let (server, api) = server().await;
    let watcher = api.login(&agent_email(1)).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server.url, &agent_email(0)).await;
    accept_chats(&browser, &api, &watcher, &agent_email(0)).await;

    let (session, mut visitor) = ringing_visitor(&browser, &api).await;
    let row = format!("#sec-new .row[data-id='{}']", session.conv);
    browser.text_of(&format!("{row}.ringing")).await;
    assert!(browser.text_of(&row).await.contains("Visitor"));
    until(
        &browser,
        "the title flashes",
        "return document.title === '(1) New request';",
    )
    .await;

    accept_in_browser(&browser, &session.conv).await;
    let assigned = visitor
        .wait_for(WAIT, "the assigned notice", |v| {
            v["type"] == "message.created" && v["data"]["notice"] == "assigned"
        })
        .await;
    assert_eq!(assigned["data"]["text"], "Agent 0 has joined the chat.");
    until(
        &browser,
        "the title stops flashing",
        "return document.title === 'livechat console';",
    )
    .await;

    // The agent types; Enter sends. The visitor sees "typing" first, then the message.
    browser
        .type_into("#composer-text", "Hello! How can I help?\u{e007}")
        .await;
    visitor
        .wait_for(
            WAIT,
            "the agent's reply",
            agent_message("Hello! How can I help?"),
        )
        .await;
    visitor
        .wait_until(WAIT, "the agent's typing", |seen| {
            seen.iter()
                .any(|v| v["type"] == "typing" && v["data"]["from"] == "agent")
        })
        .await;
    until(
        &browser,
        "the composer is empty again",
        "return document.getElementById('composer-text').value === '';",
    )
    .await;
    // Shift+Enter is a new line, not a send (\u{e008} holds Shift, \u{e000} lets go).
    browser
        .type_into(
            "#composer-text",
            "Line one\u{e008}\u{e007}\u{e000}line two\u{e007}",
        )
        .await;
    visitor
        .wait_for(
            WAIT,
            "the two-line reply",
            agent_message("Line one\nline two"),
        )
        .await;

    // The visitor types, then writes: both show in the console.
    visitor
        .ws
        .send(Message::Text(json!({"type": "typing"}).to_string().into()))
        .await
        .unwrap();
    // A visitor without a name is "Visitor" and a tag of their id ("Visitor 4F2A").
    browser.wait_for_text("#typing", " is typing").await;
    assert!(browser.text_of("#typing").await.starts_with("Visitor "));
    visitor_says(&api, &session, "v-1", "My invoice shows the wrong address.").await;
    browser
        .wait_for_text("#messages", "My invoice shows the wrong address.")
        .await;
    browser
        .wait_for_text(
            &format!("#sec-mine .row[data-id='{}']", session.conv),
            "My invoice shows the wrong address.",
        )
        .await;
    let details = browser.text_of("#details").await;
    for needle in ["https://acme.example/pricing", "support", "desk"] {
        assert!(details.contains(needle), "details lack {needle}: {details}");
    }

    // A colleague's note arrives live, marked internal.
    api.act_ok(
        &watcher,
        &session.conv,
        "notes",
        json!({"text": "Billing address changed last week, see ticket 4411."}),
    )
    .await;
    browser
        .wait_for_text("#messages .msg-note", "Internal note · Agent 1")
        .await;

    // (6) The screenshot the docs show: a 1280×800 page with the conversation open.
    let chrome = js(
        &browser,
        "return [outerWidth - innerWidth, outerHeight - innerHeight];",
    )
    .await;
    let extra = |i: usize| chrome[i].as_u64().unwrap() as u32;
    browser
        .client
        .set_window_size(1280 + extra(0), 800 + extra(1))
        .await
        .unwrap();
    until(
        &browser,
        "a 1280×800 page",
        "return innerWidth === 1280 && innerHeight === 800;",
    )
    .await;
    browser
        .type_into("#composer-text", "Let me check that for you")
        .await;
    until(
        &browser,
        "nothing is wider than the window at 1280×800",
        "return document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await;
    let png = common::browser::screenshot_path("console.png");
    browser.screenshot(&png).await;
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);

    // A narrow window: one column, the conversation with a way back to the lists.
    browser.client.set_window_size(480, 800).await.unwrap();
    until(
        &browser,
        "one column on a narrow window",
        "const lists = document.getElementById('lists');
         return getComputedStyle(lists).display === 'none'
           && document.getElementById('back').offsetParent !== null
           && document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await;
    browser.click("#back").await;
    until(
        &browser,
        "the lists come back",
        "return document.getElementById('lists').offsetParent !== null;",
    )
    .await;
    finish(browser).await;
}

/// (2) Two consoles ring; agent 1 (over the API) accepts first: the browser's request is
/// gone from New and the open request says "Taken by someone else". Then the same when the
/// news could not arrive (the event stream is cut): Accept answers 409 `already_taken`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_taken_by_another_agent_leaves_new() {
    let (server, api) = server().await;
    let other = api.go_online(&agent_email(1)).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server.url, &agent_email(0)).await;
    accept_chats(&browser, &api, &other.token, &agent_email(0)).await;

    let (session, _visitor) = ringing_visitor(&browser, &api).await;
    let row = format!("#sec-new .row[data-id='{}']", session.conv);
    browser.click(&row).await;
    until(
        &browser,
        "the request offers Accept",
        "return [...document.querySelectorAll('#conv-actions button')]
                  .some(b => b.textContent === 'Accept');",
    )
    .await;
    api.act_ok(&other.token, &session.conv, "accept", json!({}))
        .await;

    browser
        .wait_for_text("#conv-notice", "Taken by someone else")
        .await;
    until(
        &browser,
        "the request leaves New",
        &format!(
            "return !document.querySelector(\"#sec-new .row[data-id='{}']\");",
            session.conv
        ),
    )
    .await;
    until(
        &browser,
        "no Accept button and no ringing",
        "return ![...document.querySelectorAll('#conv-actions button')]
                   .some(b => b.textContent === 'Accept')
               && document.title === 'livechat console';",
    )
    .await;

    // A second request, opened; then the stream is cut and stays down, so the console
    // cannot hear that agent 1 takes it. Accept tells.
    let (second, _visitor2) = ringing_visitor(&browser, &api).await;
    browser
        .click(&format!("#sec-new .row[data-id='{}']", second.conv))
        .await;
    browser.wait_for_text("#conv-status", "New").await;
    js(
        &browser,
        "window.WebSocket = function () { return new RealWebSocket('ws://127.0.0.1:9/'); };
         sockets[0].close();",
    )
    .await;
    browser.wait_for_text("#conn", "Offline").await;
    api.act_ok(&other.token, &second.conv, "accept", json!({}))
        .await;
    click_labelled(&browser, "conv-actions", "Accept").await;
    browser
        .wait_for_text("#conv-notice", "Taken by someone else")
        .await;
    browser.wait_for_text("#conv-status", "Assigned").await;
    finish(browser).await;
}

/// (3) A note typed with Note on shows as an internal note and never reaches the visitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_stays_internal() {
    let (server, api) = server().await;
    let watcher = api.login(&agent_email(1)).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server.url, &agent_email(0)).await;
    accept_chats(&browser, &api, &watcher, &agent_email(0)).await;
    let (session, mut visitor) = ringing_visitor(&browser, &api).await;
    accept_in_browser(&browser, &session.conv).await;

    let note = "VIP customer: offer the annual discount";
    browser.click("label.note-toggle").await;
    browser
        .type_into("#composer-text", &format!("{note}\u{e007}"))
        .await;
    browser.wait_for_text("#messages .msg-note", note).await;
    let shown = browser.text_of("#messages .msg-note").await;
    assert!(shown.contains("Internal note"), "{shown}");

    // Later events reach the visitor; the note never does, live or in history.
    visitor_says(&api, &session, "v-1", "Are you still there?").await;
    visitor
        .wait_for(WAIT, "the visitor's own message", |v| {
            v["type"] == "message.created" && v["data"]["text"] == "Are you still there?"
        })
        .await;
    let leaked = |v: &Value| v.to_string().contains(note) || v["type"] == "note.created";
    assert!(!visitor.seen.iter().any(leaked), "{:?}", visitor.seen);
    assert!(!api.history(&session.token, 0).await.iter().any(leaked));

    // After a reload (the session survives) the note is still there, still internal.
    browser.goto(&format!("{}/console", server.url)).await;
    instrument(&browser).await;
    browser
        .click(&format!("#sec-mine .row[data-id='{}']", session.conv))
        .await;
    browser.wait_for_text("#messages .msg-note", note).await;

    // Signing out elsewhere (another tab, or a script with the same session) ends this
    // tab's session too: with nothing else happening, its socket is told (`session_ended`)
    // and the console goes back to the sign-in screen saying why (issue #10, finding 1).
    // The session cookie is HttpOnly; the browser's driver still reads it. First the
    // console settles (no call in flight for half a second), so that no call of its own
    // learns of the end before the socket does.
    until(
        &browser,
        "the console is idle",
        "return fetching === 0 && Date.now() - fetchedAt > 500;",
    )
    .await;
    let cookie = browser
        .client
        .get_named_cookie("livechat_session")
        .await
        .expect("the session cookie");
    let reply = api
        .request("POST", "/api/v1/auth/logout")
        .bearer(cookie.value())
        .send()
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    browser
        .wait_for_text("#signin-error", "You were signed out")
        .await;
    assert!(browser.text_of("#signin-view").await.contains("Sign in"));
    finish(browser).await;
}

/// (4) Resolve with a closing note: the conversation moves to Resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_with_a_note_moves_it_to_resolved() {
    let (server, api) = server().await;
    let watcher = api.login(&agent_email(1)).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server.url, &agent_email(0)).await;
    accept_chats(&browser, &api, &watcher, &agent_email(0)).await;
    let (session, mut visitor) = ringing_visitor(&browser, &api).await;
    accept_in_browser(&browser, &session.conv).await;

    click_labelled(&browser, "conv-actions", "Resolve").await;
    browser
        .type_into("#resolve-note", "Sent the corrected invoice")
        .await;
    click_labelled(&browser, "resolve-form", "Resolve").await;
    browser
        .text_of(&format!("#sec-resolved .row[data-id='{}']", session.conv))
        .await;
    until(
        &browser,
        "it leaves Mine",
        &format!(
            "return !document.querySelector(\"#sec-mine .row[data-id='{}']\");",
            session.conv
        ),
    )
    .await;
    browser.wait_for_text("#conv-status", "Resolved").await;
    browser
        .wait_for_text("#details", "Sent the corrected invoice")
        .await;

    let details = api.details(&watcher, &session.conv).await;
    assert_eq!(details["status"], "resolved");
    assert_eq!(details["resolve_note"], "Sent the corrected invoice");
    let resolved = visitor
        .event("conversation.resolved", Some(&session.conv))
        .await;
    assert!(resolved["data"].get("note").is_none(), "{resolved}");

    // The transcript link downloads the CSV (with the console's own cookie).
    let csv = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const link = [...document.querySelectorAll('#conv-actions a')]
               .find(a => a.textContent === 'Download transcript');
             fetch(link.href).then(r => r.text()).then(done, e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("time,author,agent,text"), "{csv}");
    assert!(csv.contains("Agent 0 has joined the chat."), "{csv}");

    // The visitor rates the chat: the open conversation's details show it.
    let (status, body) = api
        .post(
            "/api/v1/visitor/actions",
            Some(&session.token),
            json!({"type": "rate", "rating": "good", "comment": "Fixed fast"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    browser.wait_for_text("#details", "Good: Fixed fast").await;

    // Reports: this week's figures, this agent's accept and resolve, and the CSV.
    browser.click("#reports").await;
    until(
        &browser,
        "the reports pane with its totals",
        "return !document.getElementById('reports-pane').hidden
               && document.getElementById('conv-pane').hidden
               && !!document.querySelector('#reports-body table.report');",
    )
    .await;
    let figures = js(
        &browser,
        "const rows = {};
         for (const tr of document.querySelectorAll('#reports-body table.report tbody tr'))
           rows[tr.querySelector('th').textContent] = tr.querySelector('td').textContent;
         return rows;",
    )
    .await;
    assert_eq!(figures["Conversations"], "1", "{figures}");
    assert_eq!(figures["Live chat requests"], "1", "{figures}");
    assert_eq!(figures["Accepted"], "1", "{figures}");
    assert_eq!(figures["Resolved"], "1", "{figures}");
    assert_eq!(figures["Missed (timed out or offline)"], "0", "{figures}");
    assert_eq!(figures["Rated good"], "1", "{figures}");
    assert_eq!(figures["Rated bad"], "0", "{figures}");
    // The agent's own row: shown as "You".
    assert_eq!(figures["You"], "1", "{figures}");
    let report = js(
        &browser,
        "const href = document.getElementById('reports-csv').href;
         return href.startsWith('data:text/csv;charset=utf-8,')
           ? decodeURIComponent(href.slice(href.indexOf(',') + 1)) : href;",
    )
    .await;
    let report = report.as_str().unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert!(
        lines[1].starts_with("bot,conversations,live_chat_requests,accepted,missed,resolved"),
        "{report}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("support,1,1,1,0,1,")),
        "{report}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("all,1,1,1,0,1,")),
        "{report}"
    );
    assert!(lines.contains(&"agent0@acme.example,1,1,1,0"), "{report}");
    // The conversations of the period, with the console's own cookie.
    let export = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(document.getElementById('reports-export').href)
               .then(r => r.text()).then(done, e => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    let export = export.as_str().unwrap();
    assert!(export.starts_with("id,bot,status,opened_at,"), "{export}");
    assert!(
        export.contains(&format!("{},support,resolved,", session.conv)),
        "{export}"
    );
    assert!(
        export.contains("Sent the corrected invoice,good,Fixed fast"),
        "{export}"
    );
    // Opening a conversation leaves the reports.
    browser
        .click(&format!("#sec-resolved .row[data-id='{}']", session.conv))
        .await;
    until(
        &browser,
        "the conversation instead of the reports",
        "return document.getElementById('reports-pane').hidden
               && !document.getElementById('conv-pane').hidden;",
    )
    .await;

    // Sign out: back to the sign-in screen, and the cookie's session is over.
    browser.click("#signout").await;
    until(
        &browser,
        "the sign-in screen",
        "return !document.getElementById('signin-view').hidden
               && document.getElementById('console-view').hidden;",
    )
    .await;
    let status = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/me').then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(401));
    finish(browser).await;
}

/// (5) A hostile visitor's text is shown as text: no element is made from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_visitor_message_renders_as_text() {
    let (server, api) = server().await;
    let watcher = api.login(&agent_email(1)).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server.url, &agent_email(0)).await;
    accept_chats(&browser, &api, &watcher, &agent_email(0)).await;

    // The page URL is the visitor's to say, too.
    let (status, body) = api
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "support", "page_url": "javascript:alert(1)//<b>bold</b>"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let session = Session {
        token: body["token"].as_str().unwrap().to_string(),
        conv: body["conversation_id"].as_str().unwrap().to_string(),
    };
    api.request_live_chat(&session.token).await;
    browser
        .text_of(&format!("#sec-new .row[data-id='{}']", session.conv))
        .await;
    accept_in_browser(&browser, &session.conv).await;

    let hostile = "<img src=x onerror=alert(1)><script>window.pwned=1</script>";
    visitor_says(&api, &session, "v-1", hostile).await;
    browser.wait_for_text("#messages", hostile).await;
    browser
        .wait_for_text(
            &format!("#sec-mine .row[data-id='{}']", session.conv),
            "<img src=x onerror=alert(1)>",
        )
        .await;
    browser
        .wait_for_text("#details", "javascript:alert(1)//<b>bold</b>")
        .await;
    let elements = js(
        &browser,
        "return {
           img: document.querySelectorAll('img').length,
           script: document.querySelectorAll('body script').length,
           b: document.querySelectorAll('#details b').length,
           js_links: document.querySelectorAll('a[href^=\"javascript\"]').length,
           pwned: window.pwned === undefined ? null : window.pwned
         };",
    )
    .await;
    assert_eq!(
        elements,
        json!({"img": 0, "script": 0, "b": 0, "js_links": 0, "pwned": null})
    );
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "an alert opened"
    );
    finish(browser).await;
}

const RESPONSES: &str = r#"[[response]]
shortcut = "hello"
text = "Hi {{ visitor.name | default('there') }}, this is {{ agent.name }}."

[[response]]
shortcut = "refund"
text = "Refunds take 5 to 7 days."
bots = ["support"]
"#;

/// The rest of the toolbox: take over a bot conversation, a canned response from the `#`
/// picker, a dropped socket that comes back and replays, mute (→ Awaiting), transfer,
/// search, and the banner of a config reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_over_canned_reconnect_mute_transfer_search_and_reload() {
    let server = Bundle::live(2)
        .file("responses.toml", RESPONSES)
        .serve(&[&agent_email(0), &agent_email(1)]);
    let api = Api::new(&server.url);
    let other = api.go_online(&agent_email(1)).await;
    let browser = Browser::start().await;
    sign_in(&browser, &server.url, &agent_email(0)).await;
    accept_chats(&browser, &api, &other.token, &agent_email(0)).await;

    // A visitor still with the bot: listed under "With the bot"; the agent takes over.
    let bot_visitor = api.session("support").await;
    let mut bot_stream = api.visitor_stream(&bot_visitor.token, 0).await;
    visitor_says(&api, &bot_visitor, "b-1", "parcel tracking question").await;
    browser.click("#sec-bot summary").await;
    browser
        .click(&format!("#sec-bot .row[data-id='{}']", bot_visitor.conv))
        .await;
    click_labelled(&browser, "conv-actions", "Take over").await;
    browser.wait_for_text("#conv-status", "Chatting").await;
    browser
        .text_of(&format!("#sec-mine .row[data-id='{}']", bot_visitor.conv))
        .await;
    bot_stream
        .wait_for(WAIT, "the takeover", |v| {
            v["type"] == "conversation.assigned" && v["data"]["takeover"] == true
        })
        .await;

    // `#hel` offers the canned response; Enter picks it (filled in), Enter sends it.
    until(
        &browser,
        "the composer writes to the visitor",
        "return !document.getElementById('note-mode').checked;",
    )
    .await;
    browser.type_into("#composer-text", "#hel").await;
    browser.wait_for_text("#picker", "#hello").await;
    assert!(!browser.text_of("#picker").await.contains("#refund"));
    browser.type_into("#composer-text", "\u{e007}").await;
    until(
        &browser,
        "the response is filled in",
        "return document.getElementById('composer-text').value === 'Hi there, this is Agent 0.';",
    )
    .await;
    browser.type_into("#composer-text", "\u{e007}").await;
    bot_stream
        .wait_for(
            WAIT,
            "the canned response",
            agent_message("Hi there, this is Agent 0."),
        )
        .await;

    // The socket drops; the console reconnects after the last seq it saw and replays
    // what it missed, once.
    js(&browser, "sockets[0].close();").await;
    visitor_says(&api, &bot_visitor, "b-2", "Missed while offline?").await;
    until(
        &browser,
        "a second socket, after the last seq",
        "return sockets.length === 2 && /after=[1-9]/.test(sockets[1].url);",
    )
    .await;
    browser.wait_for_text("#conn", "Live").await;
    browser
        .wait_for_text("#messages", "Missed while offline?")
        .await;
    until(
        &browser,
        "the missed message shows once",
        "return [...document.querySelectorAll('#messages .msg-text')]
                  .filter(m => m.textContent === 'Missed while offline?').length === 1;",
    )
    .await;

    // A message goes on the socket, which drops right after sending it: the console sends
    // it again by HTTP with the same client_id; the visitor gets it once, it shows once.
    js(&browser, "window.cut = true;").await;
    browser
        .type_into("#composer-text", "Sent as the socket fell\u{e007}")
        .await;
    bot_stream
        .wait_for(
            WAIT,
            "the message sent as the socket fell",
            agent_message("Sent as the socket fell"),
        )
        .await;
    let again = bot_stream.quiet(Duration::from_millis(800)).await;
    assert!(
        !again.iter().any(agent_message("Sent as the socket fell")),
        "sent twice: {again:?}"
    );
    until(
        &browser,
        "it shows once, and went on the socket once",
        "return [...document.querySelectorAll('#messages .msg-text')]
                  .filter(m => m.textContent === 'Sent as the socket fell').length === 1
               && sent.filter(f => f.includes('Sent as the socket fell')).length === 1;",
    )
    .await;
    until(&browser, "a third socket", "return sockets.length === 3;").await;
    browser.wait_for_text("#conn", "Live").await;

    // A request rings; Mute moves it under Awaiting and stops the ringing here.
    let (ringing, _stream) = ringing_visitor(&browser, &api).await;
    browser
        .click(&format!("#sec-new .row[data-id='{}']", ringing.conv))
        .await;
    click_labelled(&browser, "conv-actions", "Mute").await;
    browser
        .text_of(&format!("#sec-awaiting .row[data-id='{}']", ringing.conv))
        .await;
    until(
        &browser,
        "nothing rings for this agent",
        "return !document.querySelector('.row.ringing') && document.title === 'livechat console';",
    )
    .await;

    // Transfer the taken-over chat to agent 1: it leaves Mine.
    browser
        .click(&format!("#sec-mine .row[data-id='{}']", bot_visitor.conv))
        .await;
    click_labelled(&browser, "conv-actions", "Transfer").await;
    // The options come from the agent list the form loads: wait for the one we want.
    let option = format!("#transfer-target option[value='agent:{}']", agent_email(1));
    browser
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&option))
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Css("#transfer-target"))
        .await
        .unwrap()
        .select_by_value(&format!("agent:{}", agent_email(1)))
        .await
        .unwrap();
    click_labelled(&browser, "transfer-form", "Transfer").await;
    until(
        &browser,
        "the chat leaves Mine",
        &format!(
            "return !document.querySelector(\"#sec-mine .row[data-id='{}']\");",
            bot_visitor.conv
        ),
    )
    .await;
    let details = api.details(&other.token, &bot_visitor.conv).await;
    assert_eq!(details["assignee"], agent_email(1));

    // Search finds it by a word of its text, and only it.
    browser.type_into("#search", "parcel").await;
    browser
        .text_of(&format!("#lists .row[data-id='{}']", bot_visitor.conv))
        .await;
    until(
        &browser,
        "only the match is listed",
        "return document.querySelectorAll('#lists .row').length === 1;",
    )
    .await;

    // An admin saves a new bundle: the console says which revision is live.
    let file = server.bots_dir.join("responses.toml");
    common::save_atomically(&file, &RESPONSES.replace("5 to 7", "3 to 5"));
    browser
        .wait_for_text("#banner", "Config updated to revision 2")
        .await;
    finish(browser).await;
}

/// The visitor data buttons of the details panel: an agent has none; an admin exports the
/// visitor's data as a file and erases them after confirming (a first try is cancelled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_export_and_erase_a_visitor_and_erasing_asks_first() {
    let boss = "boss@acme.example";
    let server = Bundle::live(1).serve(&[&agent_email(0), boss]);
    let api = Api::new(&server.url);
    let started = api.visitor("support").await;
    let session = Session {
        token: started["token"].as_str().unwrap().to_string(),
        conv: started["conversation_id"].as_str().unwrap().to_string(),
    };
    visitor_says(&api, &session, "p1", "my browser parcel").await;
    // With the bot still: under "With the bot", a section that opens on a click.
    let row = format!("#sec-bot .row[data-id='{}']", session.conv);

    // An agent opens the conversation: the details have no visitor data part.
    let browser = Browser::start().await;
    sign_in(&browser, &server.url, &agent_email(0)).await;
    browser.click("#sec-bot summary").await;
    browser.click(&row).await;
    browser.wait_for_text("#details", "Visitor").await;
    browser
        .wait_for_text("#messages", "my browser parcel")
        .await;
    let buttons = js(
        &browser,
        "return document.querySelectorAll('#details .privacy, .privacy-export, .privacy-erase').length;",
    )
    .await;
    assert_eq!(buttons, json!(0), "an agent sees the visitor data buttons");
    finish(browser).await;

    // An admin exports, then erases after confirming.
    let browser = Browser::start().await;
    sign_in(&browser, &server.url, boss).await;
    js(
        &browser,
        "window.exported = [];
         const make = URL.createObjectURL;
         URL.createObjectURL = (blob) => { blob.text().then((t) => exported.push(t)); return make(blob); };",
    )
    .await;
    browser.click("#sec-bot summary").await;
    browser.click(&row).await;
    browser.wait_for_text("#details", "Export data").await;
    click_labelled(&browser, "details", "Export data").await;
    until(
        &browser,
        "the export holds the visitor's messages",
        "return exported.length === 1 && exported[0].includes('my browser parcel');",
    )
    .await;
    click_labelled(&browser, "details", "Erase visitor…").await;
    browser
        .wait_for_text("#details", "This cannot be undone.")
        .await;
    click_labelled(&browser, "details", "Cancel").await;
    click_labelled(&browser, "details", "Erase visitor…").await;
    click_labelled(&browser, "details", "Erase for good").await;
    browser.wait_for_text("#toast", "erased").await;
    until(
        &browser,
        "the erased conversation is closed and gone from the lists",
        &format!(
            "return document.getElementById('conv-pane').hidden
               && !document.querySelector(\"{row}\");"
        ),
    )
    .await;
    let admin = api.login(boss).await;
    let (status, _) = api
        .get(
            &format!("/api/v1/conversations/{}", session.conv),
            Some(&admin),
        )
        .await;
    assert_eq!(status, 404);
    finish(browser).await;
}
