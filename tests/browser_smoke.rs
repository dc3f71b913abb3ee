//! The example bundle itself (`examples/bots`, its `allowed_origins` included) in a real
//! headless Chromium: the bots' own pages start on their own server, and a page elsewhere
//! that the bot refuses says so plainly and offers the contact form.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::browser::{Browser, host_site, js};
use common::bundle::example_bundle;

/// The text of the widget's shadow root, polled until `pred` holds for it.
async fn widget_text_until(browser: &Browser, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = browser
            .client
            .execute(
                "const h = document.querySelector('[data-livechat]');\
                 return h && h.shadowRoot ? h.shadowRoot.textContent : '';",
                vec![],
            )
            .await
            .unwrap();
        let text = text.as_str().unwrap_or("").to_string();
        if pred(&text) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s; the widget says: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_bots_pages_start_on_their_own_server() {
    let server = tokio::task::spawn_blocking(|| TestServer::start(example_bundle, &[]))
        .await
        .unwrap();
    let browser = Browser::start().await;

    // Both bots with `allowed_origins` start on the server's own pages: Chromium sends an
    // `Origin` on the page's session request, and it is the server's own.
    for (bot, title, greeting) in [
        ("support", "Acme Support", "Hi! What can we help you with?"),
        ("sales", "Acme Sales", "What brings you here?"),
    ] {
        browser.goto(&format!("{}/chat/{bot}", server.url)).await;
        let text = widget_text_until(&browser, bot, |t| {
            t.contains(greeting) || t.contains("may not")
        })
        .await;
        assert!(text.contains(greeting), "/chat/{bot}: {text:?}");
        assert_eq!(browser.client.title().await.unwrap(), title);
        // The page is a working chat: a labelled send button and a message box.
        let send = js(
            &browser,
            "return document.querySelector('[data-livechat]').shadowRoot.querySelector('.lc-send').textContent",
        )
        .await;
        assert!(
            !send.as_str().unwrap_or("").is_empty(),
            "/chat/{bot}: unlabelled send button"
        );
    }

    // A page on another origin that mounts the support bot's full-page chat: the bot lists
    // only example.com sites, so the chat is refused, with a notice and the contact form.
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Elsewhere</title></head>
<body><main id="livechat-page"></main>
<script src="{}/widget.js" data-bot="support" data-mode="page"></script></body></html>"#,
        server.url
    );
    let elsewhere = host_site(html).await;
    browser.goto(&elsewhere).await;
    let text = widget_text_until(&browser, "the refusal", |t| t.contains("can't start")).await;
    assert!(
        text.contains(&format!("may not be embedded on {elsewhere}")),
        "{text:?}"
    );
    let link = js(
        &browser,
        "const r = document.querySelector('[data-livechat]').shadowRoot;\
         const a = r.querySelector('.lc-refused a');\
         return [a ? a.href : null, r.querySelector('.lc-compose').hidden, r.querySelector('.lc').hidden];",
    )
    .await;
    assert_eq!(
        link,
        serde_json::json!([format!("{}/bots/support/contact", server.url), true, false]),
        "the notice links to the contact form and hides the message box"
    );
    // And the link leads to a form that works without JavaScript.
    browser.goto(link[0].as_str().unwrap()).await;
    browser.wait_for_text("body", "Leave us a message").await;
    let fields = js(
        &browser,
        "return document.querySelectorAll('form[method=post] [name]').length",
    )
    .await;
    assert!(
        fields.as_u64().unwrap() >= 4,
        "the contact form's fields: {fields}"
    );
    browser.close().await;
}
