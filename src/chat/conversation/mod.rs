//! The conversation lifecycle as one pure state machine.
//!
//! `bot` → (the visitor asks for a person: `collecting` name and email if the Live Chat
//! action wants them) → `new` (rings every eligible agent, or offers to one in `auto` mode)
//! → `assigned` (accepted, assigned, transferred) → `chatting` (the first message after
//! assignment; the bot is paused) → `resolved` → `closed` (final). Side exits: accept
//! timeout and "nobody online" fall back to the bot (offline form or next step); a silent
//! visitor or the visitor's own "end" → `ended`; a visitor writing to a resolved chat
//! reopens it.
//!
//! `apply` takes the conversation, a command and the world as the caller sees it now (the
//! current bot config, the agents with their presence and load, the clock, business hours)
//! and returns the next conversation and the events to persist and publish — or a
//! `Rejection` with a stable code, and then nothing happened. Deadlines for the timers are
//! part of the returned conversation (`deadlines`).
//!
//! Events are typed (`EventData`, one variant per event type, serialized as the API's
//! `data`); what a visitor sees of each is an allowlist (`visitor_view`).

mod commands;
mod events;
mod language;
mod show;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod tests;
mod transitions;
mod types;
mod visitor_view;

pub use commands::{
    COLLECT_RETRY, Command, MAX_ATTACHMENTS, MAX_COMMENT_CHARS, MAX_MESSAGE_CHARS, MAX_NAME_CHARS,
    TransferTarget,
};
pub use events::{
    Ask, Attachment, Author, Choice, Collect, EndReason, Event, EventData, EventKind, FlowStep,
    FormFieldView, Link, LiveChatOffer, Message, Notice, OfflineFormView, OfflineReason,
};
pub use language::{first_language, pick_language, preferred_language};
pub use transitions::apply;
pub use types::{
    Conversation, Ctx, Deadlines, Rating, Rejection, Status, Transition, Visitor, queue_position,
};
