//! Notifications to Slack, Google Chat, Microsoft Teams and signed generic webhooks.
//!
//! The outbox calls this module in two steps: [`payload`] turns a [`Notification`] into the
//! JSON body in the format of the webhook's tool (done when the notification is queued),
//! and [`deliver`] POSTs that body (done by the worker, blocking, once per try). `deliver`
//! sorts every failure into *retry later* or *give up*, so the outbox can back off or
//! dead-letter without knowing HTTP.
//!
//! What a visitor typed is never trusted: in every tool it is shown as text, never as a
//! mention, a link or markup (see `text`). Webhook URLs are secrets: no message of this
//! module contains one. The formats are described with examples in `docs/webhooks.md`.

mod deliver;
mod format;
mod text;

use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::config::schema::WebhookKind;

pub use deliver::{Delivery, deliver};
pub use format::{teams_adaptive_card, teams_message_card};

/// The Live Chat actions a webhook can be rung for (`notify = [...]` on a bot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotifyEvent {
    /// A visitor asked for a person.
    #[serde(rename = "livechat.requested")]
    NewRequest,
    /// Nobody accepted the request within `accept_timeout`.
    #[serde(rename = "livechat.timeout")]
    RequestTimedOut,
    /// A visitor submitted an offline form.
    #[serde(rename = "form.submitted")]
    OfflineFormSubmitted,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 3] = [
        NotifyEvent::NewRequest,
        NotifyEvent::RequestTimedOut,
        NotifyEvent::OfflineFormSubmitted,
    ];

    /// The stable name: the generic payload's `event` and its `X-Livechat-Event` header.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::NewRequest => "livechat.requested",
            NotifyEvent::RequestTimedOut => "livechat.timeout",
            NotifyEvent::OfflineFormSubmitted => "form.submitted",
        }
    }

    /// The event named by [`NotifyEvent::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The headline people read in the chat tools.
    pub fn title(self) -> &'static str {
        match self {
            NotifyEvent::NewRequest => "New live chat request",
            NotifyEvent::RequestTimedOut => "Live chat request timed out",
            NotifyEvent::OfflineFormSubmitted => "New offline message",
        }
    }
}

/// One thing to tell the team, in the terms of the tools: who, which bot, what they wrote,
/// and where to answer. Everything but `bot_*`, `console_url` and `at` comes from the
/// visitor and is treated as hostile text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: NotifyEvent,
    pub bot_id: String,
    pub bot_name: String,
    pub conversation_id: Option<String>,
    pub visitor_name: Option<String>,
    pub visitor_email: Option<String>,
    pub page_url: Option<String>,
    /// The language the visitor's browser asked for first (a new request).
    pub language: Option<String>,
    /// The visitor's country, when the server knows it (a new request).
    pub country: Option<String>,
    /// A new request: the flow's variables (the topic and whatever routing looks at), by
    /// name; contact fields are in `contact`.
    pub variables: std::collections::BTreeMap<String, String>,
    /// A new request: the visitor's contact fields, by name.
    pub contact: std::collections::BTreeMap<String, String>,
    /// A new request for a video call (seed 002's video request notification).
    pub video: bool,
    /// What the visitor wrote or chose, most recent last (already plain text, may be empty)
    pub lines: Vec<String>,
    /// Offline form answers as (label, value), in form order
    pub fields: Vec<(String, String)>,
    /// Opens the request in the console, e.g. "{public_url}/console#/conversations/{id}"
    pub console_url: String,
    pub at: Timestamp,
}

/// The JSON body for a webhook of `kind`, in that tool's own incoming-webhook format:
///
/// - **Slack**: Block Kit. A `text` fallback (for notifications) and `blocks`: a header,
///   a section with fields (visitor, email, bot, page), the visitor's lines and form
///   answers as sections, a context line with the time, and a button to the console.
///   Visitor text is in `plain_text` objects (never parsed for mentions or links); the
///   `mrkdwn` fallback has `&`, `<`, `>` escaped.
/// - **Google Chat**: a `text` fallback made of trusted text only (Chat's text format has
///   `<users/all>` mentions and no escape) and one card in `cardsV2`: a header, sections
///   of `decoratedText` widgets with the visitor's text HTML-escaped, and a `buttonList`
///   opening the console.
/// - **Teams**: the Adaptive Card envelope of [`teams_adaptive_card`], which both kinds of
///   Teams webhook accept: the Workflows ("When a Teams webhook request is received")
///   webhooks that replace the retired Office 365 connectors take *only* this, and the
///   legacy "Incoming Webhook" connector accepts it too. The legacy MessageCard is
///   available as [`teams_message_card`] but is not what `kind = "teams"` sends, because a
///   Workflows webhook answers 202 to it and then fails to post it, silently.
/// - **Generic**: livechat's own JSON, for integrators:
///   `{"event","bot":{"id","name"},"conversation_id","visitor":{"name","email"},
///   "page_url","language","country","variables":{},"contact":{},"lines",
///   "fields":[{"label","value"}],"console_url","at"}`, values as given
///   (not escaped or shortened), absent ones `null`, `at` in RFC 3339. [`deliver`] signs it.
pub fn payload(kind: WebhookKind, n: &Notification) -> Value {
    match kind {
        WebhookKind::Slack => format::slack(n),
        WebhookKind::GoogleChat => format::google_chat(n),
        WebhookKind::Teams => format::teams_adaptive_card(n),
        WebhookKind::Generic => format::generic(n),
    }
}

/// `"sha256=" + lowercase hex of HMAC-SHA256(secret, message)`.
///
/// [`deliver`] signs a generic webhook's request with `message` =
/// `"<X-Livechat-Timestamp>.<body>"` (the decimal unix seconds, a dot, the exact body
/// bytes); see [`signature_message`].
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The bytes a generic webhook's `X-Livechat-Signature` is computed over:
/// `"<timestamp>.<body>"`. Signing the timestamp with the body means a captured request
/// cannot be replayed later with a fresh timestamp: receivers reject old timestamps.
pub fn signature_message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    message
}

/// What a receiver does: true when `signature` (the `X-Livechat-Signature` header) is the
/// HMAC of `"<timestamp>.<body>"` under `secret`, compared in constant time. Checking that
/// `timestamp` is recent (for example within five minutes) is the receiver's part.
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_mac) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_mac) else {
        return false;
    };
    let Ok(timestamp) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(&signature_message(timestamp, body));
    mac.verify_slice(&expected).is_ok()
}

/// False for a webhook whose URL resolved to nothing: it is switched off, send nothing.
pub fn is_enabled(resolved_url: &str) -> bool {
    !resolved_url.trim().is_empty()
}

/// How messages name a webhook of `kind` (never by its URL, which is a secret).
pub fn kind_name(kind: WebhookKind) -> &'static str {
    match kind {
        WebhookKind::Slack => "Slack",
        WebhookKind::GoogleChat => "Google Chat",
        WebhookKind::Teams => "Teams",
        WebhookKind::Generic => "generic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_stable_names_both_ways() {
        for e in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(NotifyEvent::NewRequest.as_str(), "livechat.requested");
        assert_eq!(NotifyEvent::RequestTimedOut.as_str(), "livechat.timeout");
        assert_eq!(NotifyEvent::OfflineFormSubmitted.as_str(), "form.submitted");
        assert_eq!(NotifyEvent::parse("nope"), None);
    }

    #[test]
    fn sign_matches_a_known_hmac_sha256_vector() {
        // The classic vector (RFC 4231 style), computed with Python's hmac module:
        // hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", sha256).
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        // hmac.new(b"whsec_livechat_test",
        //          b'1700000000.{"event":"livechat.requested"}', sha256).hexdigest()
        let body = br#"{"event":"livechat.requested"}"#;
        let expected = "sha256=57c05982cf61b404fad892d3f5cc5a798cab4989f84621097914b30d64c6827d";
        let message = signature_message(1_700_000_000, body);
        assert_eq!(message, br#"1700000000.{"event":"livechat.requested"}"#);
        assert_eq!(sign(b"whsec_livechat_test", &message), expected);
        assert!(verify(b"whsec_livechat_test", "1700000000", body, expected));
        // Another timestamp, body, secret or a malformed header: refused.
        assert!(!verify(
            b"whsec_livechat_test",
            "1700000001",
            body,
            expected
        ));
        assert!(!verify(
            b"whsec_livechat_test",
            "1700000000",
            b"{}",
            expected
        ));
        assert!(!verify(b"other", "1700000000", body, expected));
        assert!(!verify(
            b"whsec_livechat_test",
            "1700000000",
            body,
            &expected[7..]
        ));
        assert!(!verify(b"whsec_livechat_test", "soon", body, expected));
        assert!(!verify(
            b"whsec_livechat_test",
            "1700000000",
            body,
            "sha256=zz"
        ));
    }

    #[test]
    fn an_empty_url_is_switched_off() {
        assert!(!is_enabled(""));
        assert!(!is_enabled("  "));
        assert!(is_enabled("https://hooks.slack.com/services/T/B/X"));
    }
}
