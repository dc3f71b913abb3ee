//! Signals to every console: a new config revision is live, or an edit was refused.

use super::*;

impl Engine {
    /// Tells agents' consoles that a new config revision is live.
    pub fn config_reloaded(&self, revision: i64) {
        let json = json!({
            "type": "config.reloaded",
            "at": Timestamp::now().to_string(),
            "data": { "revision": revision },
        })
        .to_string();
        // Each console hears, from here on, what the new roster lets its agent see.
        self.inner
            .hub
            .rescope_all(|scope| self.scope_of(&scope.email));
        self.inner.hub.publish(Frame {
            agent_json: Some(json.into()),
            kind: Some("config.reloaded"),
            ..Frame::default()
        });
        self.agents_changed();
    }

    /// Tells agents' consoles that an edit of the bundle was refused (the live revision
    /// stays), with its errors; no errors means the last refusal is over.
    pub fn config_error(&self, live_revision: Option<i64>, errors: &[crate::config::Diagnostic]) {
        let json = json!({
            "type": "config.error",
            "at": Timestamp::now().to_string(),
            "data": { "revision": live_revision, "errors": errors },
        })
        .to_string();
        self.inner.hub.publish(Frame {
            agent_json: Some(json.into()),
            kind: Some("config.error"),
            ..Frame::default()
        });
    }
}
