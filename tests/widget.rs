//! The visitor widget as visitors meet it: a real headless Chromium runs `widget.js` on a
//! page of another origin (and on `/chat/{bot}`) against a real server, while the test plays
//! the agent over the API.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::browser::host_site;
use common::live::{Api, agent_email};
use common::{Bundle, TestServer};
use fantoccini::Locator;
use fantoccini::elements::{Element, ShadowRoot};
use futures_util::SinkExt;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

/// The server with the `support` bot of `Bundle::live` and one agent with a password; with
/// `collect`, the Live Chat action asks for the visitor's name and email first.
async fn start_server(collect: bool) -> TestServer {
    let bundle = Bundle::live(1);
    match collect {
        true => bundle.live_chat(|d| d.set("collect", r#"["name", "email"]"#)),
        false => bundle,
    }
    .serve(&[&agent_email(0)])
}

/// A shop page that embeds the widget, with rules that would break a widget living in the
/// page's own DOM (every button hidden, every div framed, serif text, tall lines).
fn shop_page(livechat: &str, head: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme Shop</title>
<style>
  * {{ font-family: Georgia, serif !important; color: #5a3e1b !important; line-height: 3 !important; }}
  button {{ display: none !important; }}
  div {{ background: #fdf6e3 !important; border: 3px solid #5a3e1b !important; }}
  body {{ margin: 40px; background: #fdf6e3; }}
</style>
{head}
</head><body>
<h1>Acme Shop</h1>
<p>Pricing, plans and everything else you came for.</p>
<p class="lc-msg" id="host-msg">A paragraph of the host page that shares a class name with the widget.</p>
<script src="{livechat}/widget.js" data-bot="support" async></script>
</body></html>"#
    )
}

/// The widget inside the browser: everything is looked up in its shadow root, again on each
/// call (a reload replaces it), and waited for.
struct Widget<'a> {
    browser: &'a Browser,
}

impl Widget<'_> {
    async fn root(&self) -> Option<ShadowRoot> {
        let host = self
            .browser
            .client
            .find(Locator::Css("[data-livechat]"))
            .await
            .ok()?;
        host.shadow_root().await.ok()
    }

    /// Polls `probe` until it answers `Some`; panics with `what` and the widget's text.
    async fn until<T, F: Future<Output = Option<T>>>(
        &self,
        what: &str,
        probe: impl Fn() -> F,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            if start.elapsed() > LIMIT {
                panic!(
                    "{what}: not within {LIMIT:?}; the widget says:\n{}",
                    self.js("return r ? r.textContent : 'no widget'", vec![])
                        .await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first displayed element matching `css`.
    async fn find(&self, css: &str) -> Element {
        self.until(&format!("a displayed `{css}`"), || async {
            for el in self.root().await?.find_all(Locator::Css(css)).await.ok()? {
                if el.is_displayed().await.unwrap_or(false) {
                    return Some(el);
                }
            }
            None
        })
        .await
    }

    /// The displayed element matching `css` whose text is `label`.
    async fn find_labelled(&self, css: &str, label: &str) -> Element {
        self.until(&format!("`{css}` labelled {label:?}"), || async {
            for el in self.root().await?.find_all(Locator::Css(css)).await.ok()? {
                if el.is_displayed().await.unwrap_or(false) && el.text().await.ok()?.trim() == label
                {
                    return Some(el);
                }
            }
            None
        })
        .await
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn click_labelled(&self, css: &str, label: &str) {
        self.find_labelled(css, label).await.click().await.unwrap();
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.unwrap();
    }

    /// Waits until the panel shows `needle`.
    async fn wait_for_text(&self, needle: &str) {
        self.until(&format!("the text {needle:?}"), || async {
            let text = self
                .root()
                .await?
                .find(Locator::Css(".lc-panel"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(needle).then_some(())
        })
        .await
    }

    /// Runs `body` as a function with `r` bound to the widget's shadow root.
    async fn js(&self, body: &str, args: Vec<Value>) -> Value {
        let script = format!(
            "const h = document.querySelector('[data-livechat]'); const r = h && h.shadowRoot; {body}"
        );
        self.browser.client.execute(&script, args).await.unwrap()
    }

    /// How many message bubbles read exactly `text`.
    async fn bubbles(&self, text: &str) -> u64 {
        self.js(
            "return [...r.querySelectorAll('.lc-msg .lc-text')].filter(e => e.textContent === arguments[0]).length",
            vec![json!(text)],
        )
        .await
        .as_u64()
        .unwrap()
    }

    /// Waits until exactly one bubble reads `text`, then makes sure it stays one.
    async fn one_bubble(&self, text: &str) {
        self.until(&format!("a bubble {text:?}"), || async {
            (self.bubbles(text).await > 0).then_some(())
        })
        .await;
        assert_eq!(self.bubbles(text).await, 1, "{text:?} is shown twice");
    }
}

/// The agent (over the API) sees the request ring and accepts it; answers the conversation.
async fn accept(api: &Api, console: &mut common::live::Console) -> String {
    let ring = console.stream.event("livechat.ringing", None).await;
    let conv = ring["conversation_id"].as_str().unwrap().to_string();
    let (status, body) = api.act(&console.token, &conv, "accept", json!({})).await;
    assert_eq!(status, 200, "accept: {body}");
    conv
}

async fn agent_says(api: &Api, token: &str, conv: &str, text: &str) {
    let (status, body) = api
        .act(
            token,
            conv,
            "messages",
            json!({"client_id": format!("agent-{text}"), "text": text}),
        )
        .await;
    assert_eq!(status, 200, "agent message: {body}");
}

/// Waits on the agent's stream for the visitor's message `text`.
async fn agent_hears(console: &mut common::live::Console, text: &str) {
    console
        .stream
        .wait_for(LIMIT, &format!("the visitor's {text:?}"), |v| {
            v["type"] == "message.created"
                && v["data"]["author"] == "visitor"
                && v["data"]["text"] == text
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_widget_on_another_origin_chats_with_an_agent_and_resumes_after_reload() {
    let server = start_server(false).await;
    let api = Api::new(&server.url);
    let mut console = api.go_online(&agent_email(0)).await;
    let site = host_site(shop_page(&server.url, "")).await;
    assert_ne!(site, server.url);

    let browser = Browser::start().await;
    browser.client.set_window_size(1000, 760).await.unwrap();
    browser.goto(&site).await;
    let w = Widget { browser: &browser };

    // The launcher shows the bot's label in the bot's colour, despite the page's rules.
    let launcher = w.find(".lc-launcher").await;
    assert_eq!(launcher.text().await.unwrap(), "Chat");
    assert_eq!(
        launcher.attr("aria-expanded").await.unwrap().unwrap(),
        "false"
    );
    let color = launcher.css_value("background-color").await.unwrap();
    assert!(color.contains("11, 110, 253"), "{color}");
    launcher.click().await.unwrap();

    // An accessible dialog opens, with the focus in the input.
    let panel = w.find(".lc-panel").await;
    assert_eq!(panel.attr("role").await.unwrap().unwrap(), "dialog");
    assert_eq!(
        panel.attr("aria-label").await.unwrap().unwrap(),
        "Chat with us"
    );
    assert_eq!(
        w.js(
            "return r.querySelector('.lc-log').getAttribute('aria-live')",
            vec![]
        )
        .await,
        "polite"
    );
    assert_eq!(
        w.js(
            "return r.activeElement && r.activeElement.className",
            vec![]
        )
        .await,
        "lc-input"
    );
    w.wait_for_text("Hi! What can we do for you?").await;
    w.find_labelled(".lc-choice", "Nothing, thanks").await;

    // Styles stay on their side of the shadow boundary, both ways.
    let styles = w
        .js(
            "const s = getComputedStyle(r.querySelector('.lc-bot'));
             return [s.color, s.fontFamily, getComputedStyle(document.getElementById('host-msg')).maxWidth]",
            vec![],
        )
        .await;
    assert_eq!(styles[0], "rgb(31, 35, 40)", "{styles}");
    assert!(!styles[1].as_str().unwrap().contains("Georgia"), "{styles}");
    assert_eq!(styles[2], "none", "{styles}");

    // The visitor asks for a person; the agent accepts and writes.
    w.click_labelled(".lc-choice", "Talk to a person").await;
    w.click(".lc-live").await;
    w.wait_for_text("Connecting you to our team…").await;
    // While it rings, the banner says so, with the visitor's place in the queue.
    w.wait_for_text("You're number 1 in line…").await;
    let conv = accept(&api, &mut console).await;
    w.wait_for_text("Agent 0 has joined the chat.").await;
    agent_says(
        &api,
        &console.token,
        &conv,
        "Hello, I'm Agent 0. How can I help?",
    )
    .await;
    w.one_bubble("Hello, I'm Agent 0. How can I help?").await;
    let name = w
        .js(
            "return [...r.querySelectorAll('.lc-agent .lc-name')].map(e => e.textContent)",
            vec![],
        )
        .await;
    assert_eq!(name, json!(["Agent 0"]));
    assert_eq!(
        w.js("return r.querySelector('.lc-banner').hidden", vec![])
            .await,
        true
    );

    // The agent types: the visitor sees it.
    console
        .stream
        .ws
        .send(tokio_tungstenite::tungstenite::Message::Text(
            json!({"type": "typing", "conversation_id": conv})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    w.wait_for_text("Agent 0 is typing…").await;

    // The visitor types (the agent sees that) and sends with Enter.
    let text = "My invoice 100234 shows the wrong VAT id.";
    w.type_into(".lc-input", &format!("{text}\u{E007}")).await;
    w.one_bubble(text).await;
    agent_hears(&mut console, text).await;
    assert!(
        console
            .stream
            .seen
            .iter()
            .any(|v| v["type"] == "typing" && v["data"]["from"] == "visitor"),
        "the agent never saw the visitor typing"
    );
    w.until("the message marked as sent", || async {
        let left = w
            .js("return r.querySelectorAll('.lc-pending').length", vec![])
            .await;
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(
        w.js("return r.querySelector('.lc-input').value", vec![])
            .await,
        ""
    );

    let png = common::browser::screenshot_path("widget.png");
    browser.screenshot(&png).await;

    // A reload resumes the same conversation (token in localStorage), open as it was.
    browser.client.refresh().await.unwrap();
    w.wait_for_text("Hello, I'm Agent 0. How can I help?").await;
    w.one_bubble(text).await;
    w.one_bubble("Hi! What can we do for you?").await;
    agent_says(&api, &console.token, &conv, "Let me look that up.").await;
    w.one_bubble("Let me look that up.").await;

    // A hostile agent message is text, not markup.
    let hostile =
        r#"<img src=x onerror="window.pwned=1"><b>bold</b><script>window.pwned=2</script>"#;
    agent_says(&api, &console.token, &conv, hostile).await;
    w.one_bubble(hostile).await;
    let injected = w
        .js(
            "return [r.querySelectorAll('.lc-log img, .lc-log b, .lc-log script').length,
                     document.querySelectorAll('img, b').length, window.pwned === undefined]",
            vec![],
        )
        .await;
    assert_eq!(injected, json!([0, 0, true]));

    // The visitor can still write after the reload, into the same conversation.
    w.type_into(".lc-input", "Thanks!\u{E007}").await;
    agent_hears(&mut console, "Thanks!").await;
    let last = console.stream.events().last().cloned().unwrap();
    assert_eq!(last["conversation_id"], conv.as_str());

    // The agent resolves the chat: the widget asks how it was, once, and thanks for the answer.
    api.post_ok(
        &format!("/api/v1/conversations/{conv}/resolve"),
        Some(&console.token),
        json!({}),
    )
    .await;
    w.wait_for_text("How was this chat?").await;
    w.click(".lc-rate-good").await;
    w.wait_for_text("Thanks for your feedback!").await;
    assert_eq!(
        w.js("return r.querySelectorAll('.lc-rate').length", vec![])
            .await,
        0
    );
    let rated = console
        .stream
        .event("conversation.rated", Some(&conv))
        .await;
    assert_eq!(rated["data"]["rating"], "good", "{rated}");

    // Escape closes the panel and gives the focus back to the launcher.
    w.find(".lc-input")
        .await
        .send_keys("\u{E00C}")
        .await
        .unwrap();
    let launcher = w.find(".lc-launcher").await;
    assert_eq!(
        launcher.attr("aria-expanded").await.unwrap().unwrap(),
        "false"
    );
    assert_eq!(
        w.js(
            "return [r.querySelector('.lc-panel').hidden, r.activeElement.className]",
            vec![]
        )
        .await,
        json!([true, "lc-launcher"])
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_page_chat_runs_the_flow_and_the_offline_form() {
    let server = start_server(false).await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/chat/support", server.url)).await;
    let w = Widget { browser: &browser };

    // Without JavaScript the page points to the contact form.
    let source = browser.client.source().await.unwrap();
    let noscript = source
        .split("<noscript>")
        .nth(1)
        .and_then(|s| s.split("</noscript>").next())
        .unwrap_or_else(|| panic!("no <noscript> in {source}"));
    assert!(
        noscript.contains(r#"href="/bots/support/contact""#),
        "{noscript}"
    );
    let contact = Api::new(&server.url)
        .request("GET", "/bots/support/contact")
        .send()
        .await;
    assert_eq!(contact.status, 200);

    // The panel is open and full-size, without a launcher or a close button.
    w.wait_for_text("Hi! What can we do for you?").await;
    let counts = w
        .js(
            "const p = r.querySelector('.lc-panel').getBoundingClientRect();
             return [r.querySelectorAll('.lc-launcher, .lc-close').length,
                     Math.round(p.height) === innerHeight]",
            vec![],
        )
        .await;
    assert_eq!(counts, json!([0, true]));

    // Nobody is online: asking for a person shows the offline notice and form.
    w.click_labelled(".lc-choice", "Talk to a person").await;
    w.click(".lc-live").await;
    w.wait_for_text("We're offline at the moment.").await;
    let types = w
        .js(
            "return [...r.querySelectorAll('.lc-form input, .lc-form textarea')]
                .map(e => [e.name, e.type, e.required, e.maxLength])",
            vec![],
        )
        .await;
    assert_eq!(
        types,
        json!([
            ["email", "email", true, 1000],
            ["message", "textarea", true, 2000]
        ])
    );

    // Blank (only spaces) passes the browser's check; the server's 400 lands under the field.
    w.type_into(".lc-form input[name=email]", "lena@example.org")
        .await;
    w.type_into(".lc-form textarea[name=message]", "   ").await;
    w.click(".lc-form button[type=submit]").await;
    w.wait_for_text("Message is required").await;
    assert_eq!(
        w.js(
            "return r.querySelector('.lc-form textarea').getAttribute('aria-invalid')",
            vec![]
        )
        .await,
        "true"
    );
    w.type_into(".lc-form textarea[name=message]", "Please call me back.")
        .await;
    w.click(".lc-form button[type=submit]").await;
    w.wait_for_text("Thanks — we'll get back to you by email.")
        .await;
    w.wait_for_text("Thanks for visiting.").await;
    assert_eq!(
        w.js("return r.querySelectorAll('.lc-form').length", vec![])
            .await,
        0
    );

    // End chat, then a new one starts from the greeting.
    w.click(".lc-end").await;
    w.wait_for_text("This chat has ended.").await;
    assert_eq!(
        w.js("return r.querySelector('.lc-input').disabled", vec![])
            .await,
        true
    );
    w.click(".lc-again").await;
    w.until("a fresh conversation", || async {
        let texts = w
            .js(
                "return [...r.querySelectorAll('.lc-msg')].map(e => e.textContent)",
                vec![],
            )
            .await;
        (texts == json!(["Hi! What can we do for you?"])).then_some(())
    })
    .await;
    assert_eq!(
        w.js("return r.querySelector('.lc-input').disabled", vec![])
            .await,
        false
    );
    browser.close().await;
}

/// The host page wraps `WebSocket` so the test can drop the widget's socket, or refuse new
/// ones (as a proxy that cannot carry WebSockets would); it keeps what the widget sent on
/// its sockets in `__sent`, and with `__cut` set drops the socket right after a message.
const SOCKET_TAP: &str = r#"<script>
  window.__sockets = []; window.__sent = []; window.__refuse = false; window.__cut = false;
  const Real = window.WebSocket;
  window.WebSocket = function (url) {
    if (window.__refuse) {
      const fake = { send() {}, close() {} };
      setTimeout(() => fake.onclose && fake.onclose({}), 10);
      return fake;
    }
    const s = new Real(url);
    const send = s.send.bind(s);
    s.send = (data) => {
      send(data);
      window.__sent.push(data);
      if (window.__cut && data.includes('"type":"message"')) window.__cut = false, s.close();
    };
    window.__sockets.push(s);
    return s;
  };
</script>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_collects_name_and_email_reconnects_without_gaps_or_doubles_and_polls() {
    let server = start_server(true).await;
    let api = Api::new(&server.url);
    let mut console = api.go_online(&agent_email(0)).await;
    let site = host_site(shop_page(&server.url, SOCKET_TAP)).await;
    let browser = Browser::start().await;
    browser.goto(&site).await;
    let w = Widget { browser: &browser };

    w.click(".lc-launcher").await;
    w.click_labelled(".lc-choice", "Talk to a person").await;
    w.click(".lc-live").await;

    // Before it rings, the bot asks for a name, then an email: the input fits each.
    let input =
        "const i = r.querySelector('.lc-input'); return [i.type, i.autocomplete, i.placeholder]";
    w.until("the name prompt", || async {
        (w.js(input, vec![]).await == json!(["text", "name", "Your name"])).then_some(())
    })
    .await;
    w.type_into(".lc-input", "Lena Kraus\u{E007}").await;
    w.until("the email prompt", || async {
        (w.js(input, vec![]).await == json!(["email", "email", "Your email"])).then_some(())
    })
    .await;
    w.type_into(".lc-input", "lena@example.org\u{E007}").await;
    let conv = accept(&api, &mut console).await;
    let details = api.details(&console.token, &conv).await;
    assert_eq!(
        details["visitor"],
        json!({"id": details["visitor"]["id"], "name": "Lena Kraus", "email": "lena@example.org"})
    );
    // What follows is chat: a plain text input again.
    assert_eq!(
        w.js(input, vec![]).await,
        json!(["text", "off", "Write a message…"])
    );
    agent_says(&api, &console.token, &conv, "first").await;
    w.one_bubble("first").await;

    // The socket drops; the agent writes meanwhile; the widget reconnects after the last seq.
    // (Sockets so far: the page view's, which hears invitations, then the chat's.)
    let opened = w.js("return window.__sockets.length", vec![]).await;
    let opened = opened.as_u64().unwrap() as usize;
    w.js("window.__sockets.forEach(s => s.close())", vec![])
        .await;
    agent_says(&api, &console.token, &conv, "second").await;
    w.one_bubble("second").await;
    w.one_bubble("first").await;
    let urls = w
        .js("return window.__sockets.map(s => s.url)", vec![])
        .await;
    let urls: Vec<&str> = urls
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), opened + 1, "{urls:?}");
    let after: i64 = urls[opened]
        .rsplit("after=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after > 0, "{urls:?}");

    // The visitor writes on the socket, which drops right after sending it, before any
    // ack: the widget sends it again with the same client_id, and it is stored once.
    w.js("window.__cut = true", vec![]).await;
    w.type_into(".lc-input", "sent as the socket fell\u{E007}")
        .await;
    agent_hears(&mut console, "sent as the socket fell").await;
    w.until("the message settled", || async {
        let settled = "return r.querySelectorAll('.lc-pending, .lc-failed').length === 0";
        (w.js(settled, vec![]).await == json!(true)).then_some(())
    })
    .await;
    w.one_bubble("sent as the socket fell").await;
    let frames = w.js("return window.__sent", vec![]).await;
    let on_socket: Vec<Value> = frames
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| serde_json::from_str::<Value>(f.as_str().unwrap()).ok())
        .filter(|f| f["type"] == "message" && f["text"] == "sent as the socket fell")
        .collect();
    assert_eq!(on_socket.len(), 1, "sent once on the socket: {frames}");
    let stored = api.details(&console.token, &conv).await["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["text"] == "sent as the socket fell")
        .count();
    assert_eq!(stored, 1, "stored once");
    // Once the socket is back, messages go on it and are acknowledged.
    w.until("the socket back", || async {
        let open = "const s = window.__sockets; \
                    return s.length === arguments[0] && s[s.length - 1].readyState === 1";
        (w.js(open, vec![json!(opened + 2)]).await == json!(true)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.type_into(".lc-input", "on the new socket\u{E007}").await;
    agent_hears(&mut console, "on the new socket").await;
    w.until("the second message settled", || async {
        let settled = "return r.querySelectorAll('.lc-pending, .lc-failed').length === 0";
        (w.js(settled, vec![]).await == json!(true)).then_some(())
    })
    .await;
    let sent = w
        .js(
            "return window.__sent.filter(f => f.includes('on the new socket')).length",
            vec![],
        )
        .await;
    assert_eq!(sent, json!(1), "the message went on the socket");

    // No more sockets: after three failures the widget polls the history.
    w.js(
        "window.__refuse = true; window.__sockets.forEach(s => s.close())",
        vec![],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    agent_says(&api, &console.token, &conv, "third, by polling").await;
    w.one_bubble("third, by polling").await;
    w.type_into(".lc-input", "still here\u{E007}").await;
    agent_hears(&mut console, "still here").await;
    w.one_bubble("still here").await;
    for text in ["first", "second"] {
        assert_eq!(w.bubbles(text).await, 1, "{text}");
    }
    browser.close().await;
}
