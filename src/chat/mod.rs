//! The pure domain: the conversation state machine, the flow interpreter and routing.
//! No clock (callers pass `now`), no I/O, no async, no randomness (ids come from callers).
//!
//! - `conversation`: `Conversation::start` and `apply(conv, command, ctx)` → the next
//!   conversation and its events (or a `Rejection` with a stable code). Timers to schedule
//!   are in `Conversation::deadlines`.
//! - `flow`: the interpreter of a bot's `[[step]]`s; where each step leads is the rule of
//!   `config::graph`, the one validation checks reachability with.
//! - `routing`: which team a request rings, which agents are eligible.
//! - `form`: checking an offline-form submission.
//! - `text`: rendering bot texts (minijinja) with a conversation's variables.

pub mod conversation;
pub mod flow;
pub mod form;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reachability;
pub mod routing;
pub mod text;
