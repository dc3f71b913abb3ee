//! The console's read state, notifications and deep links in a real headless Chromium:
//! a deep link opens a waiting request after sign-in and it is accepted there; unread
//! counts rise with visitor messages, fall on opening, survive a reload and follow in a
//! second tab; a hidden console shows browser notifications (permission granted through
//! CDP `Browser.grantPermissions`), and clicking one opens the conversation.
//!
//! "Hidden" is a real background tab: another tab is put in front of the console, and
//! headless Chromium reports the console `hidden` as a desktop browser would. A background
//! tab cannot be asked anything without bringing it to the front, so while it is hidden the
//! test watches from the server, and each notification records whether its page was hidden
//! when it was made.

mod common;

use std::time::{Duration, Instant};

use axum::http::Method;
use common::browser::{Browser, js, until};
use common::live::{Api, PASSWORD, agent_email};
use common::{Bundle, TestServer};
use fantoccini::wd::{WebDriverCompatibleCommand, WindowHandle};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
type ParseError = <reqwest::Url as std::str::FromStr>::Err;

/// A Chrome DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp(Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (Method, Option<String>) {
        (Method::POST, Some(self.0.to_string()))
    }
}

/// Keeps the page's uncaught errors in `window.errors`, and every notification it shows
/// in `window.shown` (the real `Notification` still shows it).
async fn instrument(browser: &Browser) {
    js(
        browser,
        "window.errors = [];
         addEventListener('error', e => errors.push(String(e.message)));
         addEventListener('unhandledrejection', e => errors.push(String(e.reason)));
         window.shown = [];
         const Real = window.Notification;
         window.Notification = class extends Real {
           constructor(title, options) {
             super(title, options);
             shown.push({ title, body: options.body, tag: options.tag, hidden: document.hidden, note: this });
           }
         };",
    )
    .await;
}

/// Puts a new tab in front of the console, which is then hidden; the console's handle.
async fn hide(browser: &Browser) -> WindowHandle {
    let console = browser.client.window().await.unwrap();
    let front = browser.client.new_window(true).await.unwrap();
    browser.client.switch_to_window(front.handle).await.unwrap();
    console
}

/// Closes the tab in front, bringing the console back.
async fn show(browser: &Browser, console: WindowHandle) {
    browser.client.close_window().await.unwrap();
    browser.client.switch_to_window(console).await.unwrap();
}

/// What the server says of `conv`'s unread count stays `n` for a while (the console in
/// the background meanwhile hears what it is going to notify of).
async fn stays_unread(api: &Api, token: &str, conv: &str, n: i64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            unread_of(api, token, conv).await,
            n,
            "a hidden tab reads nothing"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn row(section: &str, conv: &str) -> String {
    format!("#sec-{section} .row[data-id='{conv}']")
}

/// The unread badge of `conv`'s row in `section` ("" when there is none).
async fn badge(browser: &Browser, section: &str, conv: &str) -> String {
    let script = format!(
        "const b = document.querySelector(\"{} .row-unread\"); return b ? b.textContent : '';",
        row(section, conv)
    );
    js(browser, &script)
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn wait_badge(browser: &Browser, section: &str, conv: &str, want: &str) {
    let script = format!(
        "const b = document.querySelector(\"{} .row-unread\"); return (b ? b.textContent : '') === '{want}';",
        row(section, conv)
    );
    until(browser, &format!("{conv} shows unread `{want}`"), &script).await;
}

async fn unread_of(api: &Api, token: &str, conv: &str) -> i64 {
    let d = api.details(token, conv).await;
    d["unread"].as_i64().unwrap()
}

async fn says(api: &Api, visitor: &str, id: &str, text: &str) {
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(visitor),
        json!({"client_id": id, "text": text}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_link_unread_counts_across_tabs_and_notifications_of_a_hidden_console() {
    let server: TestServer = Bundle::live(2).serve(&[&agent_email(0), &agent_email(1)]);
    let api = Api::new(&server.url);
    let me = agent_email(0);
    // Agent 1 keeps requests ringing (a request nobody can take goes offline at once).
    let other = api.go_online(&agent_email(1)).await;
    let browser = Browser::start().await;
    browser
        .client
        .issue_cmd(Cdp(json!({
            "cmd": "Browser.grantPermissions",
            "params": { "origin": server.url, "permissions": ["notifications"] },
        })))
        .await
        .expect("grant notifications");

    // (1) The link of a webhook or mail opens the waiting request after sign-in.
    let a = api.session("support").await;
    api.request_live_chat(&a.token).await;
    browser
        .goto(&format!("{}/console#/conversations/{}", server.url, a.conv))
        .await;
    instrument(&browser).await;
    browser.type_into("#signin-email", &me).await;
    browser.type_into("#signin-password", PASSWORD).await;
    browser.click("#signin-submit").await;
    browser.wait_for_text("#conn", "Live").await;
    browser.click("label.switch").await;
    api.wait_agent(&other.token, &me, |v| v["accepting"] == true)
        .await;
    until(
        &browser,
        "the linked request is open with its Accept button",
        "return [...document.querySelectorAll('#conv-actions button')]
                 .some(b => b.textContent.trim() === 'Accept');",
    )
    .await;
    assert_eq!(
        js(&browser, "return location.hash;").await,
        format!("#/conversations/{}", a.conv)
    );
    js(
        &browser,
        "[...document.querySelectorAll('#conv-actions button')]
            .find(b => b.textContent.trim() === 'Accept').click();",
    )
    .await;
    browser
        .wait_for_text("#messages", "Agent 0 has joined the chat.")
        .await;
    browser.text_of(&row("mine", &a.conv)).await;

    // (2) Unread counts: they rise while the chat is not open…
    // (Back is shown in narrow windows only; its handler is what closes the chat.)
    js(&browser, "document.getElementById('back').click();").await;
    says(&api, &a.token, "a1", "hello?").await;
    says(&api, &a.token, "a2", "anyone?").await;
    wait_badge(&browser, "mine", &a.conv, "2").await;
    until(
        &browser,
        "the Unread tab counts one conversation",
        "return document.getElementById('view-unread-count').textContent === '1';",
    )
    .await;
    until(
        &browser,
        "the favicon counts my unread chat",
        "return document.querySelector('link[rel=icon]').getAttribute('data-count') === '1';",
    )
    .await;
    // … the Unread view shows it, the Done view does not …
    browser.click("#view-unread").await;
    browser.text_of(&row("mine", &a.conv)).await;
    browser.click("#view-done").await;
    until(
        &browser,
        "Done hides open chats",
        "return document.getElementById('sec-mine').hidden;",
    )
    .await;
    browser.click("#view-all").await;
    // … survive a reload …
    browser.client.refresh().await.unwrap();
    instrument(&browser).await;
    browser.wait_for_text("#conn", "Live").await;
    wait_badge(&browser, "mine", &a.conv, "2").await;
    // … show in a second tab of the same session …
    // (A new tab, not opened from the console: it shares only the browser's cookie, and
    // resumes the session without signing in again.)
    let first = browser.client.window().await.unwrap();
    let second = browser.client.new_window(true).await.unwrap().handle;
    browser
        .client
        .switch_to_window(second.clone())
        .await
        .unwrap();
    browser.goto(&format!("{}/console", server.url)).await;
    browser.wait_for_text("#conn", "Live").await;
    wait_badge(&browser, "mine", &a.conv, "2").await;
    // … and fall on opening, in both tabs.
    browser
        .client
        .switch_to_window(first.clone())
        .await
        .unwrap();
    browser.click(&row("mine", &a.conv)).await;
    browser.wait_for_text("#messages", "anyone?").await;
    wait_badge(&browser, "mine", &a.conv, "").await;
    assert_eq!(
        unread_of(&api, &other.token, &a.conv).await,
        2,
        "agent 1 read nothing"
    );
    browser.client.switch_to_window(second).await.unwrap();
    wait_badge(&browser, "mine", &a.conv, "").await;
    browser.client.close_window().await.unwrap();
    browser.client.switch_to_window(first).await.unwrap();
    let token = api.login(&me).await;
    assert_eq!(unread_of(&api, &token, &a.conv).await, 0);

    // (3) A hidden console: a message in my open chat notifies and stays unread until the
    // tab is seen again.
    until(
        &browser,
        "the browser allows notifications",
        "return Notification.permission === 'granted';",
    )
    .await;
    let console = hide(&browser).await;
    says(&api, &a.token, "a3", "I am still here").await;
    stays_unread(&api, &token, &a.conv, 1).await;
    show(&browser, console).await;
    until(
        &browser,
        "a notification of the message, made while hidden",
        &format!(
            "return shown.some(n => n.tag === 'message:{}' && n.body === 'I am still here' && n.hidden);",
            a.conv
        ),
    )
    .await;
    let start = Instant::now();
    while unread_of(&api, &token, &a.conv).await != 0 {
        assert!(
            start.elapsed() < WAIT,
            "seen again, it was never marked read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // (4) A new request while hidden: a notification, a count on the favicon; its click
    // opens the request, with Accept.
    let console = hide(&browser).await;
    let b = api.session("support").await;
    api.request_live_chat(&b.token).await;
    let tag = format!("request:{}", b.conv);
    // It rings for two seconds in the background, then the console comes back to the front.
    tokio::time::sleep(Duration::from_secs(2)).await;
    show(&browser, console).await;
    until(
        &browser,
        "a notification of the new request, made while hidden",
        &format!(
            "return shown.some(n => n.tag === '{tag}' && n.title.startsWith('New request') && n.hidden);"
        ),
    )
    .await;
    until(
        &browser,
        "the favicon counts the ringing request",
        "return document.querySelector('link[rel=icon]').getAttribute('data-count') === '1';",
    )
    .await;
    js(
        &browser,
        &format!("shown.find(n => n.tag === '{tag}').note.dispatchEvent(new Event('click'));"),
    )
    .await;
    until(
        &browser,
        "the clicked request is open with Accept",
        &format!(
            "return location.hash === '#/conversations/{}'
                 && [...document.querySelectorAll('#conv-actions button')]
                      .some(b => b.textContent.trim() === 'Accept');",
            b.conv
        ),
    )
    .await;
    // Switched off, a kind stays quiet (and the switch is remembered in the browser).
    browser.click("#alerts").await;
    browser.click("#alerts-message").await;
    assert_eq!(
        js(&browser, "return localStorage.getItem('livechat.notify:' + document.querySelector('.me-email').textContent);").await,
        json!("{\"request\":true,\"transfer\":true,\"message\":false}")
    );
    let before = js(&browser, "return shown.length;").await;
    says(&api, &a.token, "a4", "one more").await;
    browser
        .wait_for_text(&row("mine", &a.conv), "one more")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(js(&browser, "return shown.length;").await, before);
    assert_eq!(badge(&browser, "mine", &a.conv).await, "1");

    let errors = js(&browser, "return window.errors;").await;
    assert_eq!(errors, json!([]), "the console threw");
    browser.close().await;
}
