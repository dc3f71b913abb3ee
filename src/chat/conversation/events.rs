//! What happened: the events a transition emits, typed.
//!
//! [`EventData`] is what the core produces and what the log stores: serde names each
//! variant by its event type, and its fields are the `data` of `docs/api.md`, so the JSON
//! is the API's (keys sorted, as `serde_json::Value` writes them: see [`EventData::data`]).
//! Fields that are sometimes absent (not `null`) are skipped when `None`. What visitors see
//! of each type is in `visitor_view`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::types::Rating;

/// An event as the core emits it (the name the engine knows it by).
pub type Event = EventData;

/// One event: its type (the variant) and its data (the fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventData {
    #[serde(rename = "conversation.started")]
    ConversationStarted {
        bot: String,
        visitor_id: String,
        language: String,
        page_url: Option<String>,
        country: Option<String>,
    },
    #[serde(rename = "message.created")]
    MessageCreated(Message),
    #[serde(rename = "flow.step")]
    FlowStep(FlowStep),
    #[serde(rename = "livechat.requested")]
    LivechatRequested {
        action: String,
        team: Option<String>,
    },
    #[serde(rename = "livechat.ringing")]
    LivechatRinging {
        agents: BTreeSet<String>,
        team: Option<String>,
        offered_to: Option<String>,
    },
    #[serde(rename = "livechat.accepted")]
    LivechatAccepted { agent: String },
    #[serde(rename = "livechat.timeout")]
    LivechatTimeout {
        action: Option<String>,
        team: Option<String>,
    },
    #[serde(rename = "livechat.offline")]
    LivechatOffline {
        action: Option<String>,
        reason: OfflineReason,
        form: Option<String>,
    },
    /// Accept, assign, transfer to an agent (`previous` set, maybe `null`); takeover
    /// (`takeover: true`, no `previous`); unassign (`agent: null`, no `name`).
    #[serde(rename = "conversation.assigned")]
    ConversationAssigned {
        agent: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
        previous: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        takeover: bool,
    },
    #[serde(rename = "conversation.transferred")]
    ConversationTransferred {
        by: String,
        from: Option<String>,
        agent: Option<String>,
        team: Option<String>,
    },
    #[serde(rename = "conversation.resolved")]
    ConversationResolved {
        by: String,
        note: Option<String>,
        time_to_resolve_secs: Option<i64>,
    },
    #[serde(rename = "conversation.closed")]
    ConversationClosed {},
    #[serde(rename = "conversation.reopened")]
    ConversationReopened { assignee: Option<String> },
    #[serde(rename = "conversation.ended")]
    ConversationEnded { reason: EndReason },
    #[serde(rename = "note.created")]
    NoteCreated {
        /// Given by the engine when it stores the note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        agent: String,
        name: String,
        text: String,
    },
    /// Contact fields set: by the flow (`by: "visitor"`) or an agent (`by`: their email).
    /// An empty value clears the field.
    #[serde(rename = "contact.updated")]
    ContactUpdated {
        by: String,
        fields: BTreeMap<String, String>,
    },
    #[serde(rename = "form.submitted")]
    FormSubmitted {
        form: String,
        /// Free-form: the form's own field names.
        values: BTreeMap<String, String>,
    },
    /// A video call asked for: by the visitor with their request (`by: "visitor"`), or by
    /// the assigned agent inside a chat (`by`: the agent's email).
    #[serde(rename = "video.requested")]
    VideoRequested { by: String, action: Option<String> },
    /// The call begins: the agent accepted a video request, or the visitor accepted the
    /// agent's offer. From here the two browsers connect peer to peer.
    #[serde(rename = "video.started")]
    VideoStarted { agent: String },
    /// The call is over: hung up, declined, or the chat ended under it.
    #[serde(rename = "video.ended")]
    VideoEnded {
        by: String,
        reason: VideoEndReason,
        duration_secs: i64,
    },
    #[serde(rename = "conversation.rated")]
    ConversationRated {
        rating: Rating,
        comment: Option<String>,
        agent: Option<String>,
    },
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    Visitor,
    Bot,
    System,
    Agent,
}

impl Author {
    pub fn as_str(self) -> &'static str {
        match self {
            Author::Visitor => "visitor",
            Author::Bot => "bot",
            Author::System => "system",
            Author::Agent => "agent",
        }
    }
}

/// Why nobody could take a live chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    /// Outside the Live Chat action's `hours`.
    Closed,
    /// Nobody eligible.
    NoAgents,
}

/// Why a conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The visitor ended it.
    Visitor,
    /// The visitor was silent for `idle_timeout` during a live chat.
    Idle,
    /// The conversation never left the bot and saw no visitor for the server's
    /// `bot_expiry`.
    Expired,
}

/// Why a video call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoEndReason {
    /// One side hung up.
    Hangup,
    /// The visitor declined the agent's offer.
    Declined,
    /// The chat was resolved, transferred, given back or ended while the call was on.
    ChatEnded,
}

/// Which of a Live Chat action's messages a system message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    Welcome,
    Handoff,
    Offline,
    Timeout,
    Assigned,
    Takeover,
    /// The `video_message`, when an agent accepts a video request.
    Video,
}

/// `message.created`: `author` and `text`, and what applies to the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Given by the engine when it stores the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub author: Author,
    pub text: String,
    /// The flow step a bot message or a clicked choice belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The value of a clicked choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// On the collect prompt: `name` or `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect: Option<String>,
    /// Which Live Chat message a system message is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<Notice>,
    /// An agent's message: their email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// An agent's message: their display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Files sent with a visitor's or an agent's message, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A file a message carries, as clients see it: `type` is what its content is (decided by
/// the server), `url` where those allowed fetch it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Seconds of a recording, when its header tells (WAV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    pub url: String,
    /// A smaller copy of a picture, made by the server without the original's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
}

impl Message {
    /// A message with nothing but its author and text.
    pub fn new(author: Author, text: String) -> Message {
        Message {
            message_id: None,
            author,
            text,
            step: None,
            value: None,
            collect: None,
            notice: None,
            agent: None,
            name: None,
            attachments: Vec::new(),
        }
    }
}

/// `flow.step`: one of five shapes, told apart by the fields they have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FlowStep {
    /// What the visitor may do at a step.
    Prompt {
        step: String,
        choices: Vec<Choice>,
        ask: Option<Ask>,
        link: Option<Link>,
        buttons: Vec<String>,
    },
    /// A person is offered (the Live Chat button).
    LiveChat {
        step: Option<String>,
        live_chat: LiveChatOffer,
        buttons: Vec<String>,
    },
    /// The visitor's name or email is asked before a live chat (`step` is `null`); `back`
    /// takes the request back. Rows stored before Back was offered here have no `buttons`.
    Collect {
        step: Option<String>,
        collect: Collect,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        buttons: Vec<String>,
    },
    /// The offline form is shown.
    OfflineForm {
        step: Option<String>,
        offline_form: OfflineFormView,
        buttons: Vec<String>,
    },
    /// The flow has ended (`step` is `null`, `end` is `true`).
    End { step: Option<String>, end: bool },
}

impl FlowStep {
    /// The step it belongs to (`None` for the collect prompt and the end of the flow).
    pub fn step(&self) -> Option<&str> {
        match self {
            FlowStep::Prompt { step, .. } => Some(step),
            FlowStep::LiveChat { step, .. }
            | FlowStep::Collect { step, .. }
            | FlowStep::OfflineForm { step, .. }
            | FlowStep::End { step, .. } => step.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ask {
    pub var: String,
    /// `text`, `email`, `phone` or `number`.
    #[serde(rename = "type")]
    pub kind: String,
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveChatOffer {
    pub action: String,
    pub label: String,
    /// `primary` or `secondary`.
    pub style: String,
    /// Of `text`, `video`.
    pub modes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collect {
    /// `name` or `email`.
    pub field: String,
    /// `text` or `email`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineFormView {
    pub id: String,
    pub title: String,
    pub intro: Option<String>,
    pub fields: Vec<FormFieldView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormFieldView {
    pub name: String,
    pub label: String,
    /// `text`, `email`, `phone`, `textarea` or `select`.
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub max: u32,
    pub options: Vec<String>,
}

impl EventData {
    pub fn kind(&self) -> EventKind {
        match self {
            EventData::ConversationStarted { .. } => EventKind::ConversationStarted,
            EventData::MessageCreated(_) => EventKind::MessageCreated,
            EventData::FlowStep(_) => EventKind::FlowStep,
            EventData::LivechatRequested { .. } => EventKind::LivechatRequested,
            EventData::LivechatRinging { .. } => EventKind::LivechatRinging,
            EventData::LivechatAccepted { .. } => EventKind::LivechatAccepted,
            EventData::LivechatTimeout { .. } => EventKind::LivechatTimeout,
            EventData::LivechatOffline { .. } => EventKind::LivechatOffline,
            EventData::ConversationAssigned { .. } => EventKind::ConversationAssigned,
            EventData::ConversationTransferred { .. } => EventKind::ConversationTransferred,
            EventData::ConversationResolved { .. } => EventKind::ConversationResolved,
            EventData::ConversationClosed {} => EventKind::ConversationClosed,
            EventData::ConversationReopened { .. } => EventKind::ConversationReopened,
            EventData::ConversationEnded { .. } => EventKind::ConversationEnded,
            EventData::NoteCreated { .. } => EventKind::NoteCreated,
            EventData::FormSubmitted { .. } => EventKind::FormSubmitted,
            EventData::ContactUpdated { .. } => EventKind::ContactUpdated,
            EventData::ConversationRated { .. } => EventKind::ConversationRated,
            EventData::VideoRequested { .. } => EventKind::VideoRequested,
            EventData::VideoStarted { .. } => EventKind::VideoStarted,
            EventData::VideoEnded { .. } => EventKind::VideoEnded,
        }
    }

    /// The `data` object, as stored and as agents see it. Through `Value`, whose maps are
    /// sorted, so the keys come out in the order the log has always had.
    pub fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged.remove("data").unwrap_or(Value::Null),
            _ => unreachable!("an event serializes to an object with its type and data"),
        }
    }

    /// An event as stored: its `type` column and its `data` JSON.
    pub fn from_stored(kind: &str, data: &str) -> Result<EventData, serde_json::Error> {
        let data: Value = serde_json::from_str(data)?;
        serde_json::from_value(serde_json::json!({ "type": kind, "data": data }))
    }

    /// Gives a message or a note its id (other events have none).
    pub fn set_message_id(&mut self, id: String) {
        match self {
            EventData::MessageCreated(m) => m.message_id = Some(id),
            EventData::NoteCreated { message_id, .. } => *message_id = Some(id),
            _ => {}
        }
    }
}

/// A field that may be absent or `null`, and says which: `None` is absent (skipped when
/// serializing, the default when missing), `Some(None)` is `null`.
mod present {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        value: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    ConversationStarted,
    MessageCreated,
    FlowStep,
    LivechatRequested,
    LivechatRinging,
    LivechatAccepted,
    LivechatTimeout,
    LivechatOffline,
    ConversationAssigned,
    ConversationTransferred,
    ConversationResolved,
    ConversationClosed,
    ConversationReopened,
    ConversationEnded,
    NoteCreated,
    FormSubmitted,
    ConversationRated,
    VideoRequested,
    VideoStarted,
    VideoEnded,
    ContactUpdated,
}

impl EventKind {
    pub const ALL: [EventKind; 21] = [
        EventKind::ConversationStarted,
        EventKind::MessageCreated,
        EventKind::FlowStep,
        EventKind::LivechatRequested,
        EventKind::LivechatRinging,
        EventKind::LivechatAccepted,
        EventKind::LivechatTimeout,
        EventKind::LivechatOffline,
        EventKind::ConversationAssigned,
        EventKind::ConversationTransferred,
        EventKind::ConversationResolved,
        EventKind::ConversationClosed,
        EventKind::ConversationReopened,
        EventKind::ConversationEnded,
        EventKind::NoteCreated,
        EventKind::FormSubmitted,
        EventKind::ConversationRated,
        EventKind::VideoRequested,
        EventKind::VideoStarted,
        EventKind::VideoEnded,
        EventKind::ContactUpdated,
    ];

    /// The event type name of the API (`docs/api.md`): a contract.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ConversationStarted => "conversation.started",
            EventKind::MessageCreated => "message.created",
            EventKind::FlowStep => "flow.step",
            EventKind::LivechatRequested => "livechat.requested",
            EventKind::LivechatRinging => "livechat.ringing",
            EventKind::LivechatAccepted => "livechat.accepted",
            EventKind::LivechatTimeout => "livechat.timeout",
            EventKind::LivechatOffline => "livechat.offline",
            EventKind::ConversationAssigned => "conversation.assigned",
            EventKind::ConversationTransferred => "conversation.transferred",
            EventKind::ConversationResolved => "conversation.resolved",
            EventKind::ConversationClosed => "conversation.closed",
            EventKind::ConversationReopened => "conversation.reopened",
            EventKind::ConversationEnded => "conversation.ended",
            EventKind::NoteCreated => "note.created",
            EventKind::FormSubmitted => "form.submitted",
            EventKind::ConversationRated => "conversation.rated",
            EventKind::VideoRequested => "video.requested",
            EventKind::VideoStarted => "video.started",
            EventKind::VideoEnded => "video.ended",
            EventKind::ContactUpdated => "contact.updated",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
