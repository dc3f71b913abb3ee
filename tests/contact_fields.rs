//! Contact fields over the real API: a bot declares `[[contact_field]]`s, the flow fills two
//! of them (a choice's `set`, an `ask`), an agent reads them in the details and edits one
//! (type errors refused with `400 invalid_contact_field`, another bot's agent gets 404), the
//! conversations CSV and the visitor's export carry them, and erasing the visitor removes
//! them. (Declaration errors with positions: `tests/fixtures/invalid/bad-contact-*`.)

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::live::{Api, PASSWORD};
use common::{Bundle, TestServer, bot};
use serde_json::{Value, json};

const ANA: &str = "ana@acme.example";
const OLGA: &str = "olga@acme.example";
const BOSS: &str = "boss@acme.example";
const WAIT: Duration = Duration::from_secs(10);

pub const SHOP: &str = r#"name = "Acme Shop"

[[contact_field]]
name = "company"
label = "Company"

[[contact_field]]
name = "plan"
label = "Plan"
type = "select"
options = ["Free", "Pro"]

[[contact_field]]
name = "seats"
label = "Seats"
type = "number"

[[step]]
id = "start"
say = "Which plan are you on?"
choices = [
  { label = "Pro", set = { "contact.plan" = "Pro" }, goto = "company" },
  { label = "Free", set = { "contact.plan" = "Free" }, goto = "company" },
]

[[step]]
id = "company"
say = "And your company?"
ask = { var = "contact.company" }

[[step]]
id = "human"
live_chat = "desk"

[live_chat.desk]
accept_timeout = "90s"
"#;

fn serve() -> TestServer {
    // `live(0)`: no agents of its own, but `boss@acme.example`, an admin.
    Bundle::live(0)
        .team("sales", &["shop"])
        .agent("Ana Lima", ANA, "sales")
        .team("other", &["other"])
        .agent("Olga", OLGA, "other")
        .bot("shop", SHOP)
        .bot("other", bot("Other", "Hi from the other bot"))
        .serve(&[ANA, OLGA, BOSS])
}

async fn put_contact(api: &Api, token: &str, conv: &str, fields: Value) -> (u16, Value) {
    api.call(
        "PUT",
        &format!("/api/v1/conversations/{conv}/contact"),
        Some(token),
        Some(&json!({ "fields": fields }).to_string()),
    )
    .await
}

/// The `contact` list of the details, as name → value.
fn values(contact: &Value) -> Vec<(String, Value)> {
    contact
        .as_array()
        .expect("a list of fields")
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f["value"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_fills_fields_agents_edit_them_exports_carry_them_and_erase_removes_them() {
    let server = serve();
    let api = Api::new(&server.url);
    let ana = api.login(ANA).await;
    let olga = api.login(OLGA).await;
    let mut stream = api.agent_stream(&ana, 0).await;

    // The visitor picks "Pro" (a choice's `set`) and types their company (an `ask`).
    let visitor = api.session("shop").await;
    api.post_ok(
        "/api/v1/visitor/actions",
        Some(&visitor.token),
        json!({"type": "choice", "value": "Pro"}),
    )
    .await;
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&visitor.token),
        json!({"client_id": "c1", "text": "  Acme GmbH  "}),
    )
    .await;
    let conv = visitor.conv.clone();
    let d = api.details(&ana, &conv).await;
    assert_eq!(
        values(&d["contact"]),
        vec![
            ("company".to_string(), json!("Acme GmbH")),
            ("plan".to_string(), json!("Pro")),
            ("seats".to_string(), Value::Null),
        ],
        "{d}"
    );
    assert_eq!(d["contact"][1]["type"], "select");
    assert_eq!(d["contact"][1]["options"], json!(["Free", "Pro"]));
    assert_eq!(d["contact"][0]["label"], "Company");
    // Agents hear it; the visitor's own event log never shows it.
    let heard = stream
        .wait_for(WAIT, "contact.updated by the flow", |f: &Value| {
            f["type"] == "contact.updated" && f["data"]["fields"]["company"] == "Acme GmbH"
        })
        .await;
    assert_eq!(heard["data"]["by"], "visitor", "{heard}");
    let history = api.history(&visitor.token, 0).await;
    assert!(
        history.iter().all(|e| e["type"] != "contact.updated"),
        "{history:?}"
    );

    // Values that do not fit their type, and undeclared fields, are refused; nothing changes.
    for (fields, says) in [
        (
            json!({"seats": "12 seats"}),
            "`seats` is not a valid number",
        ),
        (json!({"plan": "Gold"}), "`plan` is not one of Free, Pro"),
        (json!({"colour": "red"}), "no contact field `colour`"),
        (json!({}), "at least one"),
    ] {
        let (status, body) = put_contact(&api, &ana, &conv, fields.clone()).await;
        assert_eq!(status, 400, "{fields}: {body}");
        assert_eq!(body["error"]["code"], "invalid_contact_field", "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{body}"
        );
    }
    let (status, body) = put_contact(&api, &ana, &conv, json!("not an object")).await;
    assert_eq!(status, 400, "{body}");

    // A fitting edit: set seats, change the company to something a spreadsheet would run,
    // clear nothing else.
    let (status, body) = put_contact(
        &api,
        &ana,
        &conv,
        json!({"seats": "12", "company": "=HYPERLINK(\"http://evil.example\")"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        values(&body["contact"]),
        vec![
            (
                "company".to_string(),
                json!("=HYPERLINK(\"http://evil.example\")")
            ),
            ("plan".to_string(), json!("Pro")),
            ("seats".to_string(), json!("12")),
        ]
    );
    let heard = stream
        .wait_for(WAIT, "contact.updated by Ana", |f: &Value| {
            f["type"] == "contact.updated" && f["data"]["fields"]["seats"] == "12"
        })
        .await;
    assert_eq!(heard["data"]["by"], ANA, "{heard}");

    // Another bot's agent: as if the conversation did not exist.
    let (status, body) = put_contact(&api, &olga, &conv, json!({"seats": "1"})).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = api
        .get(&format!("/api/v1/conversations/{conv}"), Some(&olga))
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        values(&api.details(&ana, &conv).await["contact"])[2].1,
        json!("12")
    );

    // The conversations CSV: a `contact` column with the declared values as JSON, in one
    // quoted cell.
    let reply = api
        .request(
            "GET",
            "/api/v1/conversations.csv?from=2000-01-01&to=2100-01-01",
        )
        .bearer(&ana)
        .send()
        .await;
    assert_eq!(reply.status, 200);
    let csv = reply.text;
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",call_secs,contact"), "{header}");
    let row = csv
        .lines()
        .find(|l| l.starts_with(&conv))
        .unwrap_or_else(|| panic!("{conv} not in {csv}"));
    assert!(
        row.ends_with(
            r#","{""company"":""=HYPERLINK(\""http://evil.example\"")"",""plan"":""Pro"",""seats"":""12""}""#
        ),
        "{row}"
    );

    // Clearing a field with an empty value.
    let (status, body) = put_contact(&api, &ana, &conv, json!({"seats": ""})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["contact"][2]["value"], Value::Null, "{body}");

    // In the console (real Chromium): the details pane shows the fields, the agent edits
    // one, and the value survives a reload. The visitor's markup stays text.
    console_edit(&server.url, &conv).await;
    let d2 = api.details(&ana, &conv).await;
    assert_eq!(d2["contact"][0]["value"], "<i>Initech</i>", "{d2}");

    // The visitor ends the chat and comes back: a new conversation, the same profile.
    api.post_ok(
        "/api/v1/visitor/actions",
        Some(&visitor.token),
        json!({"type": "end"}),
    )
    .await;
    let (status, again) = api
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "shop", "token": visitor.token}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    let conv2 = again["conversation_id"].as_str().unwrap().to_string();
    assert_ne!(conv2, conv);
    let d3 = api.details(&ana, &conv2).await;
    assert_eq!(d3["visitor"]["id"], d["visitor"]["id"], "{d3}");
    assert_eq!(d3["contact"][0]["value"], "<i>Initech</i>", "{d3}");
    assert_eq!(d3["contact"][1]["value"], "Pro", "{d3}");

    // The visitor's export holds their values; erasing the visitor removes them.
    let boss = api.login(BOSS).await;
    let vid = d["visitor"]["id"].as_str().unwrap().to_string();
    let export = api
        .get_ok(&format!("/api/v1/visitors/{vid}/export"), Some(&boss))
        .await;
    assert_eq!(export["contact"]["company"], "<i>Initech</i>");
    assert_eq!(export["contact"]["plan"], "Pro");
    // The new conversation holds them too (what its alerts tell).
    let convs = export["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 2, "{export}");
    assert_eq!(convs[1]["state"]["contact"]["company"], "<i>Initech</i>");
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/api/v1/visitors/{vid}"),
            Some(&boss),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let left = server.count(&format!(
        "SELECT count(*) FROM contact_values WHERE visitor_id = '{vid}'"
    ));
    assert_eq!(left, 0);
    let (status, _) = api
        .get(&format!("/api/v1/visitors/{vid}/export"), Some(&boss))
        .await;
    assert_eq!(status, 404);
}

async fn js(browser: &Browser, script: &str) -> Value {
    browser
        .client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Polls `script` until it answers `true`.
async fn wait_js(browser: &Browser, what: &str, script: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while js(browser, script).await != json!(true) {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn console_edit(url: &str, conv: &str) {
    let browser = Browser::start().await;
    let link = format!("{url}/console#/conversations/{conv}");
    browser.goto(&link).await;
    js(
        &browser,
        "window.errors = [];
         addEventListener('error', e => errors.push(String(e.message)));
         addEventListener('unhandledrejection', e => errors.push(String(e.reason)));",
    )
    .await;
    browser.type_into("#signin-email", ANA).await;
    browser.type_into("#signin-password", PASSWORD).await;
    browser.click("#signin-submit").await;
    browser.wait_for_text("#conn", "Live").await;
    wait_js(
        &browser,
        "the fields show the visitor's values",
        "const c = document.getElementById('contact-company');
         const p = document.getElementById('contact-plan');
         return !!c && c.value === '=HYPERLINK(\"http://evil.example\")' && p.value === 'Pro'
           && p.tagName === 'SELECT';",
    )
    .await;
    // The agent types a new company (with markup in it) and saves.
    js(
        &browser,
        "const c = document.getElementById('contact-company');
         c.value = '';
         c.dispatchEvent(new Event('input', { bubbles: true }));",
    )
    .await;
    browser
        .type_into("#contact-company", "<i>Initech</i>")
        .await;
    browser.click(".contact-form button[type=submit]").await;
    browser.wait_for_text(".contact-status", "Saved.").await;
    // A redraw of the pane (any event of the conversation causes one) keeps the agent's
    // place: the input they are in stays focused, so their next keys land in it.
    js(
        &browser,
        "document.getElementById('contact-seats').focus();
         dispatchEvent(new Event('resize'));",
    )
    .await;
    assert_eq!(
        js(&browser, "return document.activeElement.id;").await,
        json!("contact-seats"),
        "a redraw took the focus away from the contact form"
    );
    // A value that does not fit its type is refused with the server's reason.
    browser.type_into("#contact-seats", "twelve").await;
    browser.click(".contact-form button[type=submit]").await;
    browser
        .wait_for_text(".contact-status", "`seats` is not a valid number")
        .await;

    let errors = js(&browser, "return window.errors;").await;
    assert_eq!(errors, json!([]), "the console threw");

    // After a reload the saved value is still there, as text.
    browser.client.refresh().await.unwrap();
    wait_js(
        &browser,
        "the saved company after a reload",
        "const c = document.getElementById('contact-company');
         return !!c && c.value === '<i>Initech</i>';",
    )
    .await;
    assert_eq!(
        js(
            &browser,
            "return document.querySelectorAll('#details i').length;"
        )
        .await,
        json!(0),
        "markup from a value became an element"
    );
    browser.close().await;
}
