//! Each tool's own payload, built from a [`Notification`].
//!
//! Trusted text (our titles and labels, the bot's name from the bundle, the console link,
//! the time) and untrusted text (everything the visitor supplied) are kept apart: the
//! latter only ever enters a payload through a [`Budget`], which escapes it for the tool
//! and keeps the whole message within the tool's size limits.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::text::{self, Budget, chat_html, one_line, slack_mrkdwn, teams_markdown, verbatim};
use super::{Notification, NotifyEvent};

const OPEN: &str = "Open in console";
const SHORTENED: &str = "Shortened here: the console has everything.";
const LINES_HEADING: &str = "What they wrote or chose";
const FORM_HEADING: &str = "Form answers";
/// The heading of a new request's contact fields and flow variables.
const DETAILS_HEADING: &str = "Details";

/// What the `fields` of a notification are, as a heading.
fn fields_heading(n: &Notification) -> &'static str {
    match n.event {
        NotifyEvent::NewRequest => DETAILS_HEADING,
        _ => FORM_HEADING,
    }
}

/// The facts shown first in every tool: (label, value, single line).
fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    let given = |v: &Option<String>| v.as_deref().map(one_line).filter(|v| !v.is_empty());
    let mut out = vec![(
        "Visitor",
        given(&n.visitor_name).unwrap_or_else(|| "Anonymous".to_string()),
    )];
    if let Some(email) = given(&n.visitor_email) {
        out.push(("Email", email));
    }
    out.push(("Bot", one_line(&n.bot_name)));
    if let Some(page) = given(&n.page_url) {
        out.push(("Page", page));
    }
    if let Some(language) = given(&n.language) {
        out.push(("Language", language));
    }
    if let Some(country) = given(&n.country) {
        out.push(("Country", country));
    }
    out
}

/// Who to name in a one-line summary: their name, else their email.
fn who(n: &Notification) -> Option<String> {
    [&n.visitor_name, &n.visitor_email]
        .into_iter()
        .filter_map(|v| v.as_deref().map(one_line))
        .find(|v| !v.is_empty())
        .map(|v| text::clip(&v, 100, verbatim).0)
}

/// The heading: the event's title, or for a new request for a video call, that.
fn title(n: &Notification) -> &'static str {
    match n.event {
        NotifyEvent::NewRequest if n.video => "New video call request",
        event => event.title(),
    }
}

/// The one-line summary (untrusted: contains the visitor's name), not yet escaped.
fn summary(n: &Notification) -> String {
    let bot = one_line(&n.bot_name);
    let who = who(n);
    match n.event {
        NotifyEvent::NewRequest => format!(
            "{} is asking for a {} on {bot}",
            who.as_deref().unwrap_or("A visitor"),
            if n.video { "video call" } else { "person" }
        ),
        NotifyEvent::RequestTimedOut => format!(
            "Nobody accepted the request from {} on {bot} in time",
            who.as_deref().unwrap_or("a visitor")
        ),
        NotifyEvent::OfflineFormSubmitted => format!(
            "{} left a message on {bot}",
            who.as_deref().unwrap_or("A visitor")
        ),
    }
}

/// `at` to the second in the exact RFC 3339 form the chat tools' date functions take.
fn utc_seconds(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `at` for people, when the tool cannot localise it.
fn utc_human(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

// ---- Slack: Block Kit ---------------------------------------------------------------------

/// Slack's documented limits, in characters.
const SLACK_HEADER: usize = 150;
const SLACK_FIELD: usize = 2000;
const SLACK_SECTION: usize = 3000;
const SLACK_FIELDS_PER_SECTION: usize = 10;
const SLACK_CONTEXT: usize = 2000;
const SLACK_BUTTON_URL: usize = 3000;
/// A message has at most 50 blocks; header, facts, lines, context and actions take five.
const SLACK_FORM_SECTIONS: usize = 40;
/// Visitor text in one message; far above what a notification needs, far below the limits.
const SLACK_BUDGET: usize = 12_000;

fn slack_plain(text: impl Into<String>) -> Value {
    json!({ "type": "plain_text", "text": text.into() })
}

pub(crate) fn slack(n: &Notification) -> Value {
    let mut budget = Budget::new(SLACK_BUDGET);
    let title = title(n);
    let mut blocks = vec![json!({
        "type": "header",
        "text": slack_plain(text::clip(title, SLACK_HEADER, verbatim).0),
    })];

    let fields: Vec<Value> = facts(n)
        .into_iter()
        .take(SLACK_FIELDS_PER_SECTION)
        .filter_map(|(label, value)| {
            budget.take(&format!("{label}\n{value}"), SLACK_FIELD, verbatim)
        })
        .map(slack_plain)
        .collect();
    blocks.push(json!({ "type": "section", "fields": fields }));

    let heading = format!("{LINES_HEADING}:\n");
    // Room for the heading and the "…" line that marks earlier lines left out.
    let room = SLACK_SECTION - heading.chars().count() - 2;
    let (lines, left_out) = budget.recent(&n.lines, room, 1, verbatim);
    if !lines.is_empty() {
        let earlier = if left_out { "…\n" } else { "" };
        let text = format!("{heading}{earlier}{}", lines.join("\n"));
        blocks.push(json!({ "type": "section", "text": slack_plain(text) }));
    }

    for (i, (label, value)) in n.fields.iter().enumerate() {
        if i == SLACK_FORM_SECTIONS {
            budget.cut = true;
            break;
        }
        let label = text::clip(&one_line(label), 200, verbatim).0;
        let room = SLACK_SECTION - label.chars().count() - 1;
        if let Some(value) = budget.take(value, room, verbatim) {
            blocks.push(
                json!({ "type": "section", "text": slack_plain(format!("{label}\n{value}")) }),
            );
        }
    }

    // Slack shows `<!date…>` in each reader's own time zone; the part after `|` is the
    // fallback for clients that cannot.
    let mut context = vec![json!({
        "type": "mrkdwn",
        "text": format!(
            "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
            n.at.as_second(),
            utc_human(n.at)
        ),
    })];
    if let Some(id) = &n.conversation_id {
        let id = text::clip(&one_line(id), 100, verbatim).0;
        context.push(slack_plain(format!("Conversation {id}")));
    }
    if budget.cut {
        context.push(slack_plain(
            text::clip(SHORTENED, SLACK_CONTEXT, verbatim).0,
        ));
    }
    blocks.push(json!({ "type": "context", "elements": context }));

    if !n.console_url.is_empty() && n.console_url.chars().count() <= SLACK_BUTTON_URL {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": slack_plain(OPEN),
                "url": n.console_url,
                "style": "primary",
                "action_id": "livechat-open-console",
            }],
        }));
    }

    // The fallback is `mrkdwn`: shown in notifications and where blocks cannot be.
    let fallback = text::clip(&summary(n), 500, slack_mrkdwn).0;
    json!({ "text": format!("{title}: {fallback}"), "blocks": blocks })
}

// ---- Google Chat: cardsV2 -----------------------------------------------------------------

const CHAT_FACT: usize = 500;
const CHAT_LINES: usize = 4000;
const CHAT_ANSWER: usize = 2000;
/// A Chat message is at most 32,000 bytes; leave room for multi-byte text and the markup.
const CHAT_BUDGET: usize = 7000;

/// Chat's message `text` has Markdown-like syntax with `<users/all>` mentions and
/// `<url|label>` links, and no escape; only trusted text goes there, with angle brackets
/// turned into look-alikes in case a bot's name has any.
fn chat_trusted(s: &str) -> String {
    one_line(s).replace('<', "‹").replace('>', "›")
}

fn chat_fact(label: &str, text: String, icon: Option<&str>) -> Value {
    let mut widget = json!({ "topLabel": label, "text": text, "wrapText": true });
    if let Some(icon) = icon {
        widget["startIcon"] = json!({ "knownIcon": icon });
    }
    json!({ "decoratedText": widget })
}

pub(crate) fn google_chat(n: &Notification) -> Value {
    let mut budget = Budget::new(CHAT_BUDGET);
    let title = title(n);
    let bot = text::clip(&chat_trusted(&n.bot_name), 100, verbatim).0;

    let mut first: Vec<Value> = facts(n)
        .into_iter()
        .filter(|(label, _)| *label != "Bot")
        .filter_map(|(label, value)| {
            let icon = match label {
                "Visitor" => Some("PERSON"),
                "Email" => Some("EMAIL"),
                _ => Some("BOOKMARK"),
            };
            Some(chat_fact(
                label,
                budget.take(&value, CHAT_FACT, chat_html)?,
                icon,
            ))
        })
        .collect();
    first.push(chat_fact("Time", utc_human(n.at), Some("CLOCK")));
    if let Some(id) = &n.conversation_id {
        let id = text::clip(&one_line(id), 100, chat_html).0;
        first.push(chat_fact("Conversation", id, None));
    }
    let mut sections = vec![json!({ "widgets": first })];

    let (lines, left_out) = budget.recent(&n.lines, CHAT_LINES - 5, 4, chat_html);
    if !lines.is_empty() {
        let earlier = if left_out { "…<br>" } else { "" };
        sections.push(json!({
            "header": LINES_HEADING,
            "widgets": [{ "decoratedText": {
                "text": format!("{earlier}{}", lines.join("<br>")),
                "wrapText": true,
            }}],
        }));
    }

    let answers: Vec<Value> = n
        .fields
        .iter()
        .filter_map(|(label, value)| {
            let label = text::clip(&one_line(label), 100, verbatim).0;
            Some(chat_fact(
                &label,
                budget.take(value, CHAT_ANSWER, chat_html)?,
                None,
            ))
        })
        .collect();
    if !answers.is_empty() {
        sections.push(json!({ "header": fields_heading(n), "widgets": answers }));
    }

    let mut last = Vec::new();
    if budget.cut {
        last.push(json!({ "textParagraph": { "text": format!("<i>{SHORTENED}</i>") } }));
    }
    if !n.console_url.is_empty() {
        last.push(json!({ "buttonList": { "buttons": [{
            "text": OPEN,
            "onClick": { "openLink": { "url": n.console_url } },
        }]}}));
    }
    if !last.is_empty() {
        sections.push(json!({ "widgets": last }));
    }

    json!({
        "text": format!("{title} on {bot}"),
        "cardsV2": [{
            "cardId": n.event.as_str().replace('.', "-"),
            "card": {
                "header": { "title": title, "subtitle": bot },
                "sections": sections,
            },
        }],
    })
}

// ---- Microsoft Teams ----------------------------------------------------------------------

const TEAMS_FACT: usize = 500;
const TEAMS_LINES: usize = 3000;
const TEAMS_ANSWER: usize = 2000;
/// A Teams card is at most 28 KB; leave room for multi-byte text and the markup.
const TEAMS_BUDGET: usize = 6000;

fn teams_color(event: NotifyEvent) -> (&'static str, &'static str) {
    // (Adaptive Card colour name, MessageCard theme colour)
    match event {
        NotifyEvent::NewRequest => ("Accent", "0078D7"),
        NotifyEvent::RequestTimedOut => ("Warning", "E8A317"),
        NotifyEvent::OfflineFormSubmitted => ("Good", "2E8B57"),
    }
}

/// A `label: value` line whose value is a `TextRun`, which Adaptive Cards never parse as
/// Markdown: the visitor's text is shown exactly as typed.
fn adaptive_fact(label: &str, value: String) -> Value {
    json!({
        "type": "RichTextBlock",
        "inlines": [
            { "type": "TextRun", "text": format!("{label}: "), "weight": "Bolder" },
            { "type": "TextRun", "text": value },
        ],
    })
}

fn adaptive_heading(text: &str) -> Value {
    json!({
        "type": "TextBlock", "text": text,
        "weight": "Bolder", "spacing": "Medium", "wrap": true,
    })
}

/// The Teams payload `kind = "teams"` sends: the message envelope with one Adaptive Card
/// (version 1.4, the highest Workflows webhooks render) as its attachment:
/// `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive",
/// "contentUrl":null,"content":{"type":"AdaptiveCard",…}}]}`.
///
/// Teams' Workflows webhooks (the "When a Teams webhook request is received" trigger, the
/// replacement for the retired Office 365 connectors) post the attachment's card, and the
/// legacy "Incoming Webhook" connector accepts the same envelope, so one format serves
/// both. Visitor text is only ever in `TextRun`s, which are never parsed as Markdown;
/// cards render no HTML, and a mention needs an `msteams.entities` entry, which we never
/// send, so `<at>…</at>` typed by a visitor stays text.
pub fn teams_adaptive_card(n: &Notification) -> Value {
    let mut budget = Budget::new(TEAMS_BUDGET);
    let (color, _) = teams_color(n.event);
    let at = utc_seconds(n.at);
    let mut body = vec![
        json!({
            "type": "TextBlock", "text": title(n),
            "size": "Large", "weight": "Bolder", "color": color, "wrap": true,
        }),
        // DATE() and TIME() are shown in the reader's own time zone.
        json!({
            "type": "TextBlock", "text": format!("{{{{DATE({at}, SHORT)}}}} {{{{TIME({at})}}}}"),
            "isSubtle": true, "spacing": "None", "wrap": true,
        }),
    ];
    for (label, value) in facts(n) {
        if let Some(value) = budget.take(&value, TEAMS_FACT, verbatim) {
            body.push(adaptive_fact(label, value));
        }
    }

    let (lines, left_out) = budget.recent(&n.lines, TEAMS_LINES, 0, verbatim);
    if !lines.is_empty() {
        body.push(adaptive_heading(LINES_HEADING));
        let mut items: Vec<Value> = Vec::new();
        if left_out {
            items.push(json!({
                "type": "RichTextBlock",
                "inlines": [{ "type": "TextRun", "text": "…" }],
            }));
        }
        items.extend(lines.into_iter().map(|line| {
            json!({ "type": "RichTextBlock", "inlines": [{ "type": "TextRun", "text": line }] })
        }));
        body.push(json!({ "type": "Container", "style": "emphasis", "items": items }));
    }

    let answers: Vec<Value> = n
        .fields
        .iter()
        .filter_map(|(label, value)| {
            let label = text::clip(&one_line(label), 100, verbatim).0;
            Some(adaptive_fact(
                &label,
                budget.take(value, TEAMS_ANSWER, verbatim)?,
            ))
        })
        .collect();
    if !answers.is_empty() {
        body.push(adaptive_heading(fields_heading(n)));
        body.extend(answers);
    }

    if let Some(id) = &n.conversation_id {
        let id = text::clip(&one_line(id), 100, verbatim).0;
        body.push(json!({
            "type": "RichTextBlock",
            "inlines": [{
                "type": "TextRun", "text": format!("Conversation {id}"), "isSubtle": true,
            }],
        }));
    }
    if budget.cut {
        body.push(
            json!({ "type": "TextBlock", "text": SHORTENED, "isSubtle": true, "wrap": true }),
        );
    }

    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": { "width": "Full" },
        "body": body,
    });
    if !n.console_url.is_empty() {
        card["actions"] =
            json!([{ "type": "Action.OpenUrl", "title": OPEN, "url": n.console_url }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// The legacy Office 365 connector format (`"@type": "MessageCard"`): a title, a summary,
/// a theme colour, sections with facts and an `OpenUri` action to the console.
///
/// Not what `kind = "teams"` sends (see [`teams_adaptive_card`]): only the legacy
/// connectors, retired by Microsoft, render it, while a Workflows webhook accepts it with
/// 202 and then fails to post it. Kept for a legacy connector that rejects Adaptive Cards.
/// MessageCard text is Markdown with some HTML, so visitor text has `&`, `<`, `>` as
/// entities and the Markdown characters (`\ * _ [ ] ( ) ` ~ # |`) backslash-escaped.
pub fn teams_message_card(n: &Notification) -> Value {
    let mut budget = Budget::new(TEAMS_BUDGET);
    let (_, theme) = teams_color(n.event);
    let title = title(n);
    let bot = text::clip(&one_line(&n.bot_name), 100, teams_markdown).0;

    let mut first: Vec<Value> = facts(n)
        .into_iter()
        .filter_map(|(label, value)| {
            let value = budget.take(&value, TEAMS_FACT, teams_markdown)?;
            Some(json!({ "name": label, "value": value }))
        })
        .collect();
    first.push(json!({ "name": "Time", "value": utc_human(n.at) }));
    if let Some(id) = &n.conversation_id {
        let id = text::clip(&one_line(id), 100, teams_markdown).0;
        first.push(json!({ "name": "Conversation", "value": id }));
    }
    let mut sections = vec![json!({
        "activityTitle": text::clip(
            who(n).as_deref().unwrap_or("A visitor"),
            200,
            teams_markdown
        )
        .0,
        "activitySubtitle": bot,
        "facts": first,
        "markdown": true,
    })];

    let (lines, left_out) = budget.recent(&n.lines, TEAMS_LINES - 3, 2, teams_markdown);
    if !lines.is_empty() {
        let earlier = if left_out { "…\n\n" } else { "" };
        sections.push(json!({
            "title": LINES_HEADING,
            "text": format!("{earlier}{}", lines.join("\n\n")),
            "markdown": true,
        }));
    }

    let answers: Vec<Value> = n
        .fields
        .iter()
        .filter_map(|(label, value)| {
            let label = text::clip(&one_line(label), 100, teams_markdown).0;
            let value = budget.take(value, TEAMS_ANSWER, teams_markdown)?;
            Some(json!({ "name": label, "value": value }))
        })
        .collect();
    if !answers.is_empty() {
        sections.push(json!({ "title": fields_heading(n), "facts": answers, "markdown": true }));
    }
    if budget.cut {
        sections.push(json!({ "text": SHORTENED }));
    }

    let mut card = json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "summary": format!("{title} on {bot}"),
        "themeColor": theme,
        "title": title,
        "sections": sections,
    });
    if !n.console_url.is_empty() {
        card["potentialAction"] = json!([{
            "@type": "OpenUri",
            "name": OPEN,
            "targets": [{ "os": "default", "uri": n.console_url }],
        }]);
    }
    card
}

// ---- Generic ------------------------------------------------------------------------------

/// livechat's own format: every value as given, for programs rather than people.
pub(crate) fn generic(n: &Notification) -> Value {
    json!({
        "event": n.event.as_str(),
        "video": n.video,
        "bot": { "id": n.bot_id, "name": n.bot_name },
        "conversation_id": n.conversation_id,
        "visitor": { "name": n.visitor_name, "email": n.visitor_email },
        "page_url": n.page_url,
        "language": n.language,
        "country": n.country,
        "variables": n.variables,
        "contact": n.contact,
        "lines": n.lines,
        "fields": n.fields.iter()
            .map(|(label, value)| json!({ "label": label, "value": value }))
            .collect::<Vec<_>>(),
        "console_url": n.console_url,
        "at": n.at.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::WebhookKind;
    use crate::webhooks::payload;

    const HOSTILE: &str = "<!channel> *bold* <https://evil|click>";

    fn request() -> Notification {
        Notification {
            event: NotifyEvent::NewRequest,
            bot_id: "support".into(),
            bot_name: "Support".into(),
            conversation_id: Some("c_01HZX".into()),
            visitor_name: Some("Jane Doe".into()),
            visitor_email: Some("jane@example.com".into()),
            page_url: Some("https://acme.example/pricing".into()),
            language: None,
            country: None,
            variables: Default::default(),
            contact: Default::default(),
            video: false,
            lines: vec!["Billing".into(), "I was charged twice".into()],
            fields: vec![],
            console_url: "https://chat.acme.example/console#/conversations/c_01HZX".into(),
            at: "2026-04-20T14:03:05Z".parse().unwrap(),
        }
    }

    fn form() -> Notification {
        Notification {
            event: NotifyEvent::OfflineFormSubmitted,
            conversation_id: None,
            lines: vec![],
            fields: vec![
                ("Your name".into(), "Jane Doe".into()),
                ("Message".into(), "Please call me back.\nThanks!".into()),
            ],
            ..request()
        }
    }

    fn hostile() -> Notification {
        Notification {
            visitor_name: Some(HOSTILE.into()),
            visitor_email: Some("<@U123>@evil.example".into()),
            page_url: Some("<https://evil.example|acme.example>".into()),
            lines: vec![
                HOSTILE.into(),
                "[click](https://evil) <at>Everyone</at>".into(),
            ],
            fields: vec![("Message".into(), HOSTILE.into())],
            ..request()
        }
    }

    #[test]
    fn a_request_for_a_video_call_says_so_in_every_format() {
        let n = Notification {
            video: true,
            ..request()
        };
        for kind in [
            WebhookKind::Slack,
            WebhookKind::GoogleChat,
            WebhookKind::Teams,
        ] {
            let body = payload(kind, &n).to_string();
            assert!(body.contains("New video call request"), "{kind:?}: {body}");
        }
        // Slack's fallback text names the visitor (Google Chat's holds trusted text only).
        let slack = payload(WebhookKind::Slack, &n).to_string();
        assert!(
            slack.contains("Jane Doe is asking for a video call on Support"),
            "{slack}"
        );
        assert_eq!(generic(&n)["video"], true);
        assert!(
            !payload(WebhookKind::Slack, &request())
                .to_string()
                .contains("video")
        );
    }

    /// Every string anywhere in `v`.
    fn strings(v: &Value) -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().flat_map(strings).collect(),
            Value::Object(o) => o.values().flat_map(strings).collect(),
            _ => vec![],
        }
    }

    fn slack_blocks<'a>(v: &'a Value, kind: &str) -> Vec<&'a Value> {
        v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == kind)
            .collect()
    }

    #[test]
    fn slack_has_fallback_header_fields_context_and_a_console_button() {
        let v = payload(WebhookKind::Slack, &request());
        assert_eq!(
            v["text"],
            "New live chat request: Jane Doe is asking for a person on Support"
        );
        let header = slack_blocks(&v, "header");
        assert_eq!(header[0]["text"]["type"], "plain_text");
        assert_eq!(header[0]["text"]["text"], "New live chat request");
        let sections = slack_blocks(&v, "section");
        let fields: Vec<&str> = sections[0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "Visitor\nJane Doe",
                "Email\njane@example.com",
                "Bot\nSupport",
                "Page\nhttps://acme.example/pricing"
            ]
        );
        assert_eq!(
            sections[1]["text"]["text"],
            "What they wrote or chose:\nBilling\nI was charged twice"
        );
        let context = slack_blocks(&v, "context");
        assert_eq!(
            context[0]["elements"][0]["text"],
            "<!date^1776693785^{date_short_pretty} at {time}|2026-04-20 14:03 UTC>"
        );
        assert_eq!(context[0]["elements"][1]["text"], "Conversation c_01HZX");
        let actions = slack_blocks(&v, "actions");
        let button = &actions[0]["elements"][0];
        assert_eq!(button["type"], "button");
        assert_eq!(button["url"], request().console_url);
        assert_eq!(button["text"]["text"], "Open in console");
    }

    #[test]
    fn slack_shows_hostile_text_as_text() {
        let v = payload(WebhookKind::Slack, &hostile());
        // The mrkdwn fallback: the control characters are entities.
        let text = v["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;!channel&gt; *bold* &lt;https://evil|click&gt;"),
            "{text}"
        );
        // In the blocks, visitor text only ever sits in plain_text objects.
        for block in v["blocks"].as_array().unwrap() {
            for obj in [&block["text"]]
                .into_iter()
                .chain(block["fields"].as_array().into_iter().flatten())
                .chain(block["elements"].as_array().into_iter().flatten())
            {
                let s = obj["text"].as_str().unwrap_or_default();
                if s.contains("evil") || s.contains("channel") || s.contains("@U123") {
                    assert_eq!(obj["type"], "plain_text", "{obj}");
                }
            }
        }
        let fields = &slack_blocks(&v, "section")[0]["fields"];
        assert_eq!(fields[0]["text"], format!("Visitor\n{HOSTILE}"));
        // The only mrkdwn is ours: the date.
        let mrkdwn: Vec<&Value> = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["elements"].as_array().into_iter().flatten())
            .filter(|e| e["type"] == "mrkdwn")
            .collect();
        assert_eq!(mrkdwn.len(), 1);
        assert!(mrkdwn[0]["text"].as_str().unwrap().starts_with("<!date^"));
    }

    #[test]
    fn slack_offline_form_answers_are_sections() {
        let v = payload(WebhookKind::Slack, &form());
        let texts: Vec<&str> = slack_blocks(&v, "section")
            .iter()
            .filter_map(|s| s["text"]["text"].as_str())
            .collect();
        assert_eq!(
            texts,
            [
                "Your name\nJane Doe",
                "Message\nPlease call me back.\nThanks!"
            ]
        );
        assert_eq!(
            v["text"],
            "New offline message: Jane Doe left a message on Support"
        );
    }

    #[test]
    fn slack_stays_within_its_limits_and_says_when_it_shortened() {
        let mut n = request();
        n.visitor_name = Some("N".repeat(5000));
        n.lines = (0..500)
            .map(|i| format!("line {i} {}", "x".repeat(50)))
            .collect();
        n.fields = (0..60)
            .map(|i| (format!("Field {i}"), "y".repeat(4000)))
            .collect();
        let v = payload(WebhookKind::Slack, &n);
        let blocks = v["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50, "{} blocks", blocks.len());
        for b in blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                let max = if b["type"] == "header" { 150 } else { 3000 };
                assert!(t.chars().count() <= max, "{}", t.chars().count());
            }
            for f in b["fields"].as_array().into_iter().flatten() {
                assert!(f["text"].as_str().unwrap().chars().count() <= 2000);
            }
        }
        let lines = slack_blocks(&v, "section")[1]["text"]["text"]
            .as_str()
            .unwrap();
        assert!(lines.ends_with(&n.lines[499]), "the latest line is kept");
        assert!(
            lines.contains("…\n"),
            "and earlier ones are marked as left out"
        );
        let context = slack_blocks(&v, "context")[0].to_string();
        assert!(context.contains("the console has everything"), "{context}");
        assert!(v.to_string().len() < 40_000);
    }

    #[test]
    fn google_chat_has_text_and_a_card_with_header_widgets_and_button() {
        let v = payload(WebhookKind::GoogleChat, &request());
        assert_eq!(v["text"], "New live chat request on Support");
        let card = &v["cardsV2"][0];
        assert_eq!(card["cardId"], "livechat-requested");
        assert_eq!(card["card"]["header"]["title"], "New live chat request");
        assert_eq!(card["card"]["header"]["subtitle"], "Support");
        let sections = card["card"]["sections"].as_array().unwrap();
        let facts = sections[0]["widgets"].as_array().unwrap();
        assert_eq!(facts[0]["decoratedText"]["topLabel"], "Visitor");
        assert_eq!(facts[0]["decoratedText"]["text"], "Jane Doe");
        assert_eq!(
            facts[0]["decoratedText"]["startIcon"]["knownIcon"],
            "PERSON"
        );
        assert_eq!(facts[1]["decoratedText"]["text"], "jane@example.com");
        assert_eq!(facts[3]["decoratedText"]["text"], "2026-04-20 14:03 UTC");
        assert_eq!(sections[1]["header"], "What they wrote or chose");
        assert_eq!(
            sections[1]["widgets"][0]["decoratedText"]["text"],
            "Billing<br>I was charged twice"
        );
        let button = &sections.last().unwrap()["widgets"][0]["buttonList"]["buttons"][0];
        assert_eq!(button["text"], "Open in console");
        assert_eq!(button["onClick"]["openLink"]["url"], request().console_url);
    }

    #[test]
    fn google_chat_escapes_hostile_text_and_keeps_it_out_of_the_text_field() {
        let v = payload(WebhookKind::GoogleChat, &hostile());
        assert_eq!(v["text"], "New live chat request on Support");
        let all = strings(&v).join("\n");
        assert!(!all.contains("<!channel>"), "{all}");
        assert!(!all.contains("<https://evil"), "{all}");
        assert!(!all.contains("<@U123>"), "{all}");
        assert!(!all.contains("<at>"), "{all}");
        let facts = &v["cardsV2"][0]["card"]["sections"][0]["widgets"];
        assert_eq!(
            facts[0]["decoratedText"]["text"],
            "&lt;!channel&gt; *bold* &lt;https://evil|click&gt;"
        );
        let mut bad_bot = request();
        bad_bot.bot_name = "<users/all> Support".into();
        let v = payload(WebhookKind::GoogleChat, &bad_bot);
        assert_eq!(v["text"], "New live chat request on ‹users/all› Support");
    }

    #[test]
    fn google_chat_offline_form_answers_are_labelled_widgets() {
        let v = payload(WebhookKind::GoogleChat, &form());
        let sections = v["cardsV2"][0]["card"]["sections"].as_array().unwrap();
        let form = sections
            .iter()
            .find(|s| s["header"] == "Form answers")
            .unwrap();
        assert_eq!(form["widgets"][1]["decoratedText"]["topLabel"], "Message");
        assert_eq!(
            form["widgets"][1]["decoratedText"]["text"],
            "Please call me back.<br>Thanks!"
        );
        assert!(v.to_string().len() < 32_000);
    }

    #[test]
    fn teams_sends_an_adaptive_card_envelope() {
        let v = payload(WebhookKind::Teams, &request());
        assert_eq!(v["type"], "message");
        let attachment = &v["attachments"][0];
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert!(attachment["contentUrl"].is_null());
        let card = &attachment["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["body"][0]["text"], "New live chat request");
        assert_eq!(
            card["body"][1]["text"],
            "{{DATE(2026-04-20T14:03:05Z, SHORT)}} {{TIME(2026-04-20T14:03:05Z)}}"
        );
        assert_eq!(card["body"][2]["type"], "RichTextBlock");
        assert_eq!(card["body"][2]["inlines"][0]["text"], "Visitor: ");
        assert_eq!(card["body"][2]["inlines"][1]["text"], "Jane Doe");
        let action = &card["actions"][0];
        assert_eq!(action["type"], "Action.OpenUrl");
        assert_eq!(action["url"], request().console_url);
    }

    #[test]
    fn teams_adaptive_card_keeps_visitor_text_in_text_runs() {
        let v = payload(WebhookKind::Teams, &hostile());
        let card = &v["attachments"][0]["content"];
        // A TextBlock is Markdown: none of them may carry visitor text.
        fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
            match v {
                Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                Value::Object(o) => {
                    if o.contains_key("type") {
                        out.push(v);
                    }
                    o.values().for_each(|x| walk(x, out));
                }
                _ => {}
            }
        }
        let mut elements = Vec::new();
        walk(card, &mut elements);
        for e in &elements {
            let text = e["text"].as_str().unwrap_or_default();
            if text.contains("evil") || text.contains("channel") || text.contains("<at>") {
                assert_eq!(e["type"], "TextRun", "{e}");
            }
        }
        assert_eq!(card["body"][2]["inlines"][1]["text"], HOSTILE);
    }

    #[test]
    fn teams_message_card_has_the_legacy_shape_and_escapes() {
        let v = teams_message_card(&request());
        assert_eq!(v["@type"], "MessageCard");
        assert_eq!(v["@context"], "http://schema.org/extensions");
        assert_eq!(v["summary"], "New live chat request on Support");
        assert_eq!(v["themeColor"], "0078D7");
        assert_eq!(v["title"], "New live chat request");
        assert_eq!(v["sections"][0]["facts"][0]["name"], "Visitor");
        assert_eq!(v["sections"][0]["facts"][0]["value"], "Jane Doe");
        let action = &v["potentialAction"][0];
        assert_eq!(action["@type"], "OpenUri");
        assert_eq!(action["targets"][0]["uri"], request().console_url);

        let v = teams_message_card(&hostile());
        assert_eq!(
            v["sections"][0]["facts"][0]["value"],
            "&lt;!channel&gt; \\*bold\\* &lt;https://evil\\|click&gt;"
        );
        let all = strings(&v).join("\n");
        assert!(
            !all.contains("<!channel>") && !all.contains("[click]"),
            "{all}"
        );
        assert!(!all.contains("<at>"), "{all}");
    }

    #[test]
    fn generic_carries_every_value_as_given() {
        let v = payload(WebhookKind::Generic, &form());
        assert_eq!(
            v,
            json!({
                "event": "form.submitted",
                "video": false,
                "bot": { "id": "support", "name": "Support" },
                "conversation_id": null,
                "visitor": { "name": "Jane Doe", "email": "jane@example.com" },
                "page_url": "https://acme.example/pricing",
                "language": null,
                "country": null,
                "variables": {},
                "contact": {},
                "lines": [],
                "fields": [
                    { "label": "Your name", "value": "Jane Doe" },
                    { "label": "Message", "value": "Please call me back.\nThanks!" },
                ],
                "console_url": "https://chat.acme.example/console#/conversations/c_01HZX",
                "at": "2026-04-20T14:03:05Z",
            })
        );
        let v = payload(WebhookKind::Generic, &hostile());
        assert_eq!(v["visitor"]["name"], HOSTILE, "programs get the raw text");
    }

    #[test]
    fn an_anonymous_visitor_and_a_timeout_read_well() {
        let mut n = request();
        n.event = NotifyEvent::RequestTimedOut;
        n.visitor_name = None;
        n.visitor_email = None;
        n.page_url = None;
        n.lines.clear();
        let v = payload(WebhookKind::Slack, &n);
        assert_eq!(
            v["text"],
            "Live chat request timed out: \
             Nobody accepted the request from a visitor on Support in time"
        );
        assert_eq!(
            slack_blocks(&v, "section")[0]["fields"][0]["text"],
            "Visitor\nAnonymous"
        );
        assert_eq!(
            slack_blocks(&v, "section").len(),
            1,
            "no empty lines section"
        );
        for kind in [WebhookKind::GoogleChat, WebhookKind::Teams] {
            let s = payload(kind, &n).to_string();
            assert!(s.contains("Anonymous"), "{s}");
        }
    }
}
