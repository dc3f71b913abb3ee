//! Mail: templates, transports and the durable outbox that delivers mail and webhooks.

pub mod invites;
pub mod outbox;
pub mod outbox_stored;
pub mod pg;
pub mod stored;
pub mod templates;
pub mod transcript;
pub mod transport;

use outbox::Doorbell;
use templates::Templates;

/// What the engine needs to compose outgoing mail and notifications.
#[derive(Clone)]
pub struct Outbound {
    pub templates: Templates,
    /// How people reach the server, for links.
    pub public_url: String,
    pub doorbell: Doorbell,
}

impl Outbound {
    pub fn console_url(&self, conversation_id: Option<&str>) -> String {
        let base = self.public_url.trim_end_matches('/');
        match conversation_id {
            Some(id) => format!("{base}/console#/conversations/{id}"),
            None => format!("{base}/console"),
        }
    }
}
