//! What can happen to a conversation, and the limits on what commands carry.

use std::collections::BTreeMap;

use crate::chat::flow::Pick;

use super::events::Attachment;
use super::types::{Rating, Rejection};

/// Longest message or note accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Longest name accepted when collecting one before a live chat.
pub const MAX_NAME_CHARS: usize = 200;
/// Said when a collected name or email does not fit.
pub const COLLECT_RETRY: &str = "Sorry, that doesn't look right. Please try again.";

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The visitor writes (`text` may be empty when files come with it).
    VisitorMessage {
        text: String,
        attachments: Vec<Attachment>,
    },
    /// The visitor clicks a choice (`step`: the step it belongs to, to catch stale clicks).
    Choose {
        step: Option<String>,
        pick: Pick,
    },
    /// The visitor answers the question asked (a step's `ask`, or a collected field).
    Answer {
        text: String,
    },
    Skip,
    Back,
    /// The visitor asks for a person; `action` defaults to the one of the step the flow is
    /// at, else the bot's first.
    RequestLiveChat {
        action: Option<String>,
    },
    /// The visitor asks for a person on a video call (an action with `video` in `modes`).
    RequestVideo {
        action: Option<String>,
    },
    /// The assigned agent offers a video call inside the chat.
    OfferVideo {
        agent: String,
    },
    /// The visitor accepts or declines the agent's offer.
    AnswerVideo {
        accept: bool,
    },
    /// Either side hangs up (`by`: "visitor" or the agent's email).
    EndVideo {
        by: String,
    },
    /// The visitor sends the offline form shown to them.
    SubmitForm {
        form: String,
        values: BTreeMap<String, String>,
    },
    Accept {
        agent: String,
    },
    AgentMessage {
        agent: String,
        text: String,
        attachments: Vec<Attachment>,
    },
    /// An internal note, never shown to the visitor.
    Note {
        agent: String,
        text: String,
    },
    /// Admins assign anyone; agents only themselves.
    Assign {
        by: String,
        agent: String,
        by_admin: bool,
    },
    /// The assignee gives the conversation back to the queue.
    Unassign {
        by: String,
    },
    Transfer {
        by: String,
        to: TransferTarget,
    },
    /// An agent takes a conversation from the bot.
    Takeover {
        agent: String,
    },
    /// Stop ringing for this agent only.
    Mute {
        agent: String,
    },
    Resolve {
        by: String,
        note: Option<String>,
    },
    Close,
    VisitorEnd,
    AcceptTimeout,
    IdleTimeout,
    OfferTimeout,
    /// A conversation still with the bot, which nobody has touched for `after` (the
    /// server's `bot_expiry`), ends and leaves memory. Refused in any other status, or when
    /// the visitor was active more recently.
    Expire {
        after: std::time::Duration,
    },
    /// Agents' presence, availability or load changed, or the config was reloaded: ring
    /// (or offer) anew for a waiting request.
    AgentsChanged,
    /// An agent sets contact fields of the visitor (an empty value clears one).
    SetContact {
        by: String,
        fields: BTreeMap<String, String>,
    },
    /// The visitor rates a chat a person had with them, once it is over.
    Rate {
        rating: Rating,
        comment: Option<String>,
    },
}

/// The longest rating comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

impl Command {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Command::VisitorMessage { .. } => "visitor message",
            Command::Choose { .. } => "choose",
            Command::Answer { .. } => "answer",
            Command::Skip => "skip",
            Command::Back => "back",
            Command::RequestLiveChat { .. } => "request live chat",
            Command::SubmitForm { .. } => "submit form",
            Command::RequestVideo { .. } => "request video",
            Command::OfferVideo { .. } => "offer video",
            Command::AnswerVideo { .. } => "answer video",
            Command::EndVideo { .. } => "end video",
            Command::Accept { .. } => "accept",
            Command::AgentMessage { .. } => "agent message",
            Command::Note { .. } => "note",
            Command::Assign { .. } => "assign",
            Command::Unassign { .. } => "unassign",
            Command::Transfer { .. } => "transfer",
            Command::Takeover { .. } => "takeover",
            Command::Mute { .. } => "mute",
            Command::Resolve { .. } => "resolve",
            Command::Close => "close",
            Command::VisitorEnd => "end",
            Command::AcceptTimeout => "accept timeout",
            Command::IdleTimeout => "idle timeout",
            Command::OfferTimeout => "offer timeout",
            Command::Expire { .. } => "expire",
            Command::AgentsChanged => "agents changed",
            Command::Rate { .. } => "rate",
            Command::SetContact { .. } => "set contact",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// An agent's email.
    Agent(String),
    /// A team id.
    Team(String),
}

/// Message text, trimmed: not empty, not longer than `MAX_MESSAGE_CHARS`.
pub(super) fn message_text(text: &str) -> Result<String, Rejection> {
    let t = text.trim();
    if t.is_empty() {
        Err(Rejection::InvalidInput("the message is empty".into()))
    } else if t.chars().count() > MAX_MESSAGE_CHARS {
        Err(Rejection::InvalidInput(format!(
            "the message is longer than {MAX_MESSAGE_CHARS} characters"
        )))
    } else {
        Ok(t.to_string())
    }
}

pub(super) fn valid_name(name: &str) -> bool {
    let n = name.trim();
    !n.is_empty() && n.chars().count() <= MAX_NAME_CHARS
}

/// Longest list of files one message carries.
pub const MAX_ATTACHMENTS: usize = 10;

/// A message's text and files: the text may be empty when files come with it.
pub(super) fn message_body(text: &str, attachments: &[Attachment]) -> Result<String, Rejection> {
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(Rejection::InvalidInput(format!(
            "a message carries at most {MAX_ATTACHMENTS} files"
        )));
    }
    if attachments.is_empty() || !text.trim().is_empty() {
        message_text(text)
    } else {
        Ok(String::new())
    }
}

/// An optional free text (a closing note, a rating comment): trimmed, `None` when empty,
/// refused when longer than `max` characters.
pub(super) fn optional_text(
    text: Option<String>,
    max: usize,
    what: &str,
) -> Result<Option<String>, Rejection> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > max => {
            Err(Rejection::InvalidInput(format!("{what} is too long")))
        }
        Some(t) => Ok(Some(t.to_string())),
    }
}
