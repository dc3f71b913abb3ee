//! What a newcomer does in the first five minutes, in a real headless Chromium, on a copy of
//! `examples/bots` with a fresh data directory: follow the setup link `serve` printed, choose
//! a password, sign in to the console, switch on "Accept chats", open the landing page,
//! follow its demo link, chat with the bot that is open around the clock until it asks for
//! a person, and accept in the console. Both sides then see each other's messages. One
//! browser (the console in one window, the demo page in another) and one server.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::browser::{Browser, js, until};
use common::bundle::example_bundle;
use fantoccini::Locator;
use fantoccini::elements::Element;
use fantoccini::wd::WindowHandle;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "my first password";

/// The widget's shadow root as `r` in `body`.
fn in_widget(body: &str) -> String {
    format!(
        "const h = document.querySelector('[data-livechat]'); const r = h && h.shadowRoot;
         if (!r) return null; {body}"
    )
}

/// Waits for the widget's chat log to hold `text`.
async fn widget_says(browser: &Browser, text: &str) {
    let needle = serde_json::to_string(text).unwrap();
    until(
        browser,
        &format!("the widget says {text:?}"),
        &in_widget(&format!(
            "return r.querySelector('.lc-log').textContent.includes({needle});"
        )),
    )
    .await;
}

/// The displayed element in the widget matching `css` whose text is `label` (any text when
/// `label` is empty), found through the shadow root so that the click is a real one.
async fn widget_element(browser: &Browser, css: &str, label: &str) -> Element {
    let start = Instant::now();
    loop {
        if let Ok(host) = browser.client.find(Locator::Css("[data-livechat]")).await
            && let Ok(root) = host.shadow_root().await
            && let Ok(found) = root.find_all(Locator::Css(css)).await
        {
            for el in found {
                if el.is_displayed().await.unwrap_or(false)
                    && el.is_enabled().await.unwrap_or(false)
                    && (label.is_empty() || el.text().await.unwrap_or_default().trim() == label)
                {
                    return el;
                }
            }
        }
        assert!(
            start.elapsed() < LIMIT,
            "no enabled `{css}` labelled {label:?} in the widget"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks it; a button the widget replaced between finding and clicking is found again.
async fn widget_click(browser: &Browser, css: &str, label: &str) {
    let start = Instant::now();
    while widget_element(browser, css, label)
        .await
        .click()
        .await
        .is_err()
    {
        assert!(start.elapsed() < LIMIT, "cannot click `{css}` {label:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Types a line into the widget's message box and sends it with Enter.
async fn widget_send(browser: &Browser, text: &str) {
    widget_element(browser, ".lc-input", "")
        .await
        .send_keys(&format!("{text}\u{e007}"))
        .await
        .unwrap();
}

/// The texts of the widget's visitor bubbles, in order.
async fn visitor_bubbles(browser: &Browser) -> Value {
    js(
        browser,
        &in_widget(
            "return [...r.querySelectorAll('.lc-msg.lc-visitor .lc-text')].map(e => e.textContent);",
        ),
    )
    .await
}

/// Whether the console's message list shows its last message (scrolled to the bottom).
const AT_NEWEST: &str = "const ol = document.getElementById('messages');
    return ol.children.length > 0 && ol.scrollHeight - ol.scrollTop - ol.clientHeight < 2
        && ol.scrollHeight > ol.clientHeight ? 'scrolled' : (ol.scrollHeight <= ol.clientHeight ? 'fits' : false);";

/// Clicks the console's action button labelled `label`. The bar is drawn again when the
/// conversation changes, so a button found a moment ago may be gone: find it again.
async fn console_action(browser: &Browser, label: &str) {
    let xpath = format!("//div[@id='conv-actions']//button[normalize-space()='{label}']");
    let start = Instant::now();
    loop {
        if let Ok(button) = browser.client.find(Locator::XPath(&xpath)).await
            && button.click().await.is_ok()
        {
            return;
        }
        assert!(
            start.elapsed() < LIMIT,
            "no `{label}` button in the console"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn switch(browser: &Browser, window: &WindowHandle) {
    browser
        .client
        .switch_to_window(window.clone())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_follows_the_setup_link_and_chats_with_the_demo_bot() {
    let server = tokio::task::spawn_blocking(|| TestServer::start(example_bundle, &[]))
        .await
        .unwrap();
    let url = server.url.clone();
    // The link as `serve` printed it, after the `listening` line.
    let line = server
        .printed("livechat setup:", Duration::from_secs(10))
        .expect("serve prints a setup link on a fresh data directory");
    println!("{line}");
    let link = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();

    let browser = Browser::start().await;
    // The browser window is narrow enough that a short chat fills the console's list.
    browser.client.set_window_size(1100, 640).await.unwrap();

    // 1. The setup link: choose a password, then on to the console.
    browser.goto(&link).await;
    browser.wait_for_text("body", "ana.lima@example.com").await;
    browser.type_into("#p1", PASSWORD).await;
    browser.type_into("#p2", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("body", "Your password is set").await;
    browser.click("#signin-link").await;

    // 2. Sign in, and switch on "Accept chats".
    browser
        .type_into("#signin-email", "ana.lima@example.com")
        .await;
    browser.type_into("#signin-password", PASSWORD).await;
    browser.click("#signin-submit").await;
    browser.wait_for_text("#me", "ana.lima@example.com").await;
    browser.wait_for_text("#conn", "Live").await;
    browser.click("label.switch").await;
    until(
        &browser,
        "Accept chats is on",
        "return document.getElementById('accepting').checked;",
    )
    .await;
    let console = browser.client.window().await.unwrap();

    // 3. In another window: the landing page, and its demo link.
    let visitor = browser.client.new_window(false).await.unwrap().handle;
    switch(&browser, &visitor).await;
    browser.goto(&format!("{url}/")).await;
    browser
        .wait_for_text("body", "Open the agent console")
        .await;
    browser.click("#demo-link").await;
    until(
        &browser,
        "the demo page",
        "return location.pathname === '/demo/sales';",
    )
    .await;
    assert_eq!(browser.client.title().await.unwrap(), "Demo: Acme Sales");

    // 4. The widget, as on a customer's site: open it and follow the bot to a person.
    widget_click(&browser, ".lc-launcher", "").await;
    widget_says(&browser, "What brings you here?").await;
    widget_click(&browser, ".lc-choice", "Talk to sales now").await;
    widget_click(&browser, ".lc-live", "Talk to sales").await;
    widget_says(&browser, "Before I connect you: what's your name?").await;
    // The Live Chat click is echoed, like the choice before it.
    until(
        &browser,
        "the Live Chat click echoed",
        &in_widget(
            "return [...r.querySelectorAll('.lc-msg.lc-visitor')].some(e => e.textContent === 'Talk to sales');",
        ),
    )
    .await;
    assert_eq!(
        visitor_bubbles(&browser).await,
        json!(["Talk to sales now", "Talk to sales"])
    );
    // Back while the name is asked: the Live Chat button again.
    widget_click(&browser, ".lc-minor", "Back").await;
    widget_click(&browser, ".lc-live", "Talk to sales").await;
    until(
        &browser,
        "the name asked again",
        &in_widget(
            "return r.querySelectorAll('.lc-msg.lc-bot').length >= 3
                    && r.querySelector('.lc-input').placeholder === 'Your name';",
        ),
    )
    .await;
    widget_send(&browser, "Lena Kraus").await;
    widget_says(&browser, "And your email, Lena Kraus, so we can follow up?").await;
    widget_send(&browser, "lena@example.org").await;
    widget_says(&browser, "Finding a salesperson for you, Lena Kraus…").await;

    // 5. The console rings; accept there.
    switch(&browser, &console).await;
    let row = until(
        &browser,
        "the request under New",
        "const r = document.querySelector('#sec-new .row');
         return r && r.getAttribute('data-id');",
    )
    .await;
    let row = row.as_str().unwrap().to_string();
    browser
        .click(&format!("#sec-new .row[data-id='{row}']"))
        .await;
    browser
        .wait_for_text("#messages", "Finding a salesperson for you")
        .await;
    let opened = until(&browser, "the newest messages shown on open", AT_NEWEST).await;
    console_action(&browser, "Accept").await;
    browser
        .wait_for_text("#messages", "I'm Ana Lima from sales")
        .await;
    let accepted = until(
        &browser,
        "the newest messages shown after Accept",
        AT_NEWEST,
    )
    .await;
    println!("console on open: {opened}, after accept: {accepted}");
    // The assigned notice is the last message, and it is in view.
    let last_in_view = js(
        &browser,
        "const ol = document.getElementById('messages'); const li = ol.lastElementChild;
         const a = li.getBoundingClientRect(), b = ol.getBoundingClientRect();
         return [li.textContent.includes('from sales'), a.bottom <= b.bottom + 1];",
    )
    .await;
    assert_eq!(last_in_view, json!([true, true]));

    // 6. Each side sees the other's message.
    browser
        .type_into("#composer-text", "Hello Lena! How can I help?\u{e007}")
        .await;
    switch(&browser, &visitor).await;
    widget_says(&browser, "Hello Lena! How can I help?").await;
    until(
        &browser,
        "the agent in the header",
        &in_widget("return r.querySelector('.lc-sub').textContent === 'Ana Lima';"),
    )
    .await;
    widget_send(&browser, "Do you have a plan for ten people?").await;
    switch(&browser, &console).await;
    browser
        .wait_for_text("#messages", "Do you have a plan for ten people?")
        .await;

    // 7. Resolved: the widget no longer shows the agent or "End chat".
    console_action(&browser, "Resolve").await;
    browser.click("#resolve-form button[type=submit]").await;
    switch(&browser, &visitor).await;
    widget_says(&browser, "This chat was marked as resolved").await;
    let header = until(
        &browser,
        "the header after the resolve",
        &in_widget(
            "const sub = r.querySelector('.lc-sub').textContent, end = r.querySelector('.lc-end');
             return sub !== 'Ana Lima' && end.hidden ? [sub, end.hidden] : null;",
        ),
    )
    .await;
    assert_eq!(
        header,
        json!(["Questions about plans, pricing or a demo?", true])
    );
    browser.close().await;
}
