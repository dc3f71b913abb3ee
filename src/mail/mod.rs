//! Mail: templates, transports and the durable outbox that delivers mail and webhooks.

pub mod invites;
pub mod outbox;
pub mod templates;
pub mod transport;
