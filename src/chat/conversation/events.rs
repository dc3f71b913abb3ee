//! What happened: the events a transition emits, by type.

use std::fmt;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub data: Value,
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
}

impl EventKind {
    pub const ALL: [EventKind; 17] = [
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
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
