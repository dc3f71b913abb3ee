//! Property tests of the bundle loader and validator: whatever text an admin saves, loading
//! it never panics, and every error points at a real place in a real file of the bundle.

use livechat::config::{Bundle, Diagnostic, Sources};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// A realistic bot that uses most of what a bot file can say, including non-ASCII text so
/// that cuts land inside multi-byte characters too.
const BOT: &str = r##"# Acme's support bot
name = "Acme Support"
allowed_origins = ["https://acme.example", "http://localhost:8080"]
languages = ["en", "de"]

[widget]
title = { en = "Chat with Acme", de = "Chatten Sie mit Acme" }
color = "#0b6efd"
position = "right"
launcher = "Questions?"
auto_open = "30s"

[[step]]
id = "start"
say = { en = "Hi {{ visitor.name | default('there') }}! What can we do for you?", de = "Hallo! Wie können wir helfen?" }
choices = [
  { label = "Billing question", set = { topic = "billing" }, goto = "human" },
  { label = "Order status", value = "orders", goto = "order" },
  { label = "Something else — anything", goto = "human" },
]

[[step]]
id = "order"
say = "What's your order number?"
ask = { var = "order_no", type = "number", max = 12 }
buttons = ["skip", "back"]

[[step]]
id = "status"
say = "Order {{ order_no }} is on its way. Track it here:"
link = { label = "Track", url = "https://acme.example/track" }
goto = "bye"

[[step]]
id = "human"
live_chat = "desk"
buttons = ["back"]

[[step]]
id = "bye"
say = "Thanks for chatting with us. Tschüss!"
end = true

[live_chat.desk]
modes = ["text", "video"]
button = { label = "Talk to a person", style = "primary" }
collect = ["name", "email"]
welcome_message = "Let me find someone for you."
assigned_message = "{{ agent.name }} has joined the chat."
accept_timeout = "90s"
idle_timeout = "10m"
offline_form = "contact"
notify = ["slack-support", "crm"]
assignment = "auto"
offer_timeout = "20s"
route = [
  { when = { topic = "billing" }, team = "billing" },
  { when = { country = ["US", "GB"], page_url = "https://acme.example/pricing*" }, team = "sales" },
  { team = "support" },
]
hours = { timezone = "Europe/Berlin", open = ["mon-fri 08:00-18:00", "sat 10:00-14:00"] }

[offline_form.contact]
title = "Leave us a message"
intro = "We answer within a day."
fields = [
  { name = "name", label = "Your name", type = "text", required = true },
  { name = "email", label = "Email", type = "email", required = true },
  { name = "topic", label = "Topic", type = "select", options = ["Billing", "Orders", "Other"] },
  { name = "message", label = "Message", type = "textarea", required = true, max = 4000 },
]
email_to = ["support@acme.example"]
subject = "Offline message from {{ name }}"
thank_you = "Thanks — we'll reply by email."

[webhook.slack-support]
kind = "slack"
url = "${SLACK_SUPPORT_WEBHOOK}"

[webhook.crm]
kind = "generic"
url = "${CRM_WEBHOOK_URL:-}"
secret = "${CRM_SECRET}"
"##;

const AGENTS: &str = r#"[[team]]
id = "support"
name = "Support"
bots = ["support"]

[[team]]
id = "billing"
bots = ["support"]

[[team]]
id = "sales"
bots = ["support"]

[[agent]]
name = "Ana Lima"
email = "ana@acme.example"
role = "admin"
max_chats = 3
teams = ["support", "billing"]

[[agent]]
name = "Jörg Weiß"
email = "joerg@acme.example"
teams = ["sales"]
"#;

const RESPONSES: &str = r#"[[response]]
shortcut = "refund"
text = "Refunds take 5–7 business days after we receive the item."

[[response]]
shortcut = "hello"
text = "Hi {{ visitor.name }}, how can I help?"
bots = ["support"]
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "SLACK_SUPPORT_WEBHOOK" => Some("https://hooks.slack.example/T0/B0/x".into()),
        "CRM_SECRET" => Some("s3cret".into()),
        _ => None,
    }
}

fn bundle_with(file: &str, text: &str) -> Sources {
    let mut sources = Sources::new();
    sources.insert("support.toml".into(), BOT.into());
    sources.insert("agents.toml".into(), AGENTS.into());
    sources.insert("responses.toml".into(), RESPONSES.into());
    sources.insert(file.into(), text.into());
    sources
}

/// Loads the bundle (a panic fails the property) and checks that each error names a file
/// of the bundle and a position inside it.
fn check(sources: &Sources) -> Result<(), TestCaseError> {
    let Err(diags) = Bundle::from_sources(sources.clone(), &env) else {
        return Ok(());
    };
    prop_assert!(!diags.is_empty(), "an invalid bundle must say why");
    for d in &diags {
        check_position(sources, d)?;
    }
    Ok(())
}

fn check_position(sources: &Sources, d: &Diagnostic) -> Result<(), TestCaseError> {
    let Some(text) = sources.get(&d.file) else {
        return Err(TestCaseError::fail(format!(
            "error in a file that is not in the bundle: {d:?}"
        )));
    };
    prop_assert!(d.line >= 1 && d.column >= 1, "{d:?}");
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(
        d.line <= lines.len(),
        "line past the end of the file: {d:?}"
    );
    let line_chars = lines[d.line - 1].chars().count();
    prop_assert!(
        d.column <= line_chars + 1,
        "column past the end of its line: {d:?}"
    );
    Ok(())
}

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Pieces of TOML and template syntax that mutations splice in.
const SNIPPETS: &[&str] = &[
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    "\n",
    "#",
    ".",
    "\\",
    "\\u",
    "-",
    "[[step]]\n",
    "[[step]]\nid = \"start\"\n",
    "id = \"start\"\n",
    "goto = \"x\"",
    "end = true\n",
    "live_chat = \"nope\"\n",
    "[live_chat.desk]\n",
    "[webhook.x]\n",
    "${",
    "${NOPE}",
    "{{",
    "}}",
    "{% if %}",
    "ü",
    "—",
    "\u{0}",
    "\t",
    "\r\n",
    "1e999",
    "true",
    "[]",
    "{}",
    "mon-fri 25:00-26:00",
    "Mars/Olympus",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, snippet: usize },
    Replace { at: usize, len: usize, with: String },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(at, snippet)| Edit::Insert { at, snippet }),
        (any::<usize>(), 1usize..10, "\\PC{0,8}").prop_map(|(at, len, with)| Edit::Replace {
            at,
            len,
            with
        }),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_string();
    for e in edits {
        let pos = |at: usize, s: &str| floor_boundary(s, at % (s.len() + 1));
        match e {
            Edit::Delete { at, len } => {
                let start = pos(*at, &s);
                let end = floor_boundary(&s, start + len);
                s.replace_range(start..end, "");
            }
            Edit::Insert { at, snippet } => {
                let at = pos(*at, &s);
                s.insert_str(at, SNIPPETS[*snippet]);
            }
            Edit::Replace { at, len, with } => {
                let start = pos(*at, &s);
                let end = floor_boundary(&s, start + len);
                s.replace_range(start..end, with);
            }
        }
    }
    s
}

#[test]
fn the_embedded_bundle_is_valid() {
    // The mutations below start from a valid bundle; if it were not, they would only ever
    // exercise the error path.
    let sources = bundle_with("support.toml", BOT);
    let bundle = Bundle::from_sources(sources, &env).expect("the embedded bundle is valid");
    assert_eq!(bundle.bots["support"].steps.len(), 5);
    assert_eq!(bundle.roster.agents.len(), 2);
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    #[test]
    fn random_text_as_any_bundle_file(
        text in prop_oneof![
            any::<String>(),
            "[a-z_\\[\\]=\"'{}#\n .,0-9:$-]{0,300}",
        ],
        file in prop_oneof![
            Just("support.toml".to_string()),
            Just("agents.toml".to_string()),
            Just("responses.toml".to_string()),
            "[A-Za-z0-9 _.-]{1,12}\\.toml",
        ],
    ) {
        check(&bundle_with(&file, &text))?;
    }

    #[test]
    fn truncated_files(cut in any::<usize>(), which in 0usize..3) {
        let (file, text) = [("support.toml", BOT), ("agents.toml", AGENTS), ("responses.toml", RESPONSES)][which];
        let cut = floor_boundary(text, cut % (text.len() + 1));
        check(&bundle_with(file, &text[..cut]))?;
    }

    #[test]
    fn mutated_files(edits in prop::collection::vec(edit(), 1..6), which in 0usize..3) {
        let (file, text) = [("support.toml", BOT), ("agents.toml", AGENTS), ("responses.toml", RESPONSES)][which];
        check(&bundle_with(file, &apply(text, &edits)))?;
    }

    #[test]
    fn mutated_then_truncated_bot(edits in prop::collection::vec(edit(), 0..4), cut in any::<usize>()) {
        let text = apply(BOT, &edits);
        let cut = floor_boundary(&text, cut % (text.len() + 1));
        check(&bundle_with("support.toml", &text[..cut]))?;
    }
}
