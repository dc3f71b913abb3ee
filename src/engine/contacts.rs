//! Contact fields as agents see them: each declared field of the bot with the visitor's
//! value, and the agent's edit, which runs as a command of the conversation so that the
//! event log, the profile and every console hear of it together.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{AgentRef, Engine, EngineError, Outcome};
use crate::chat::conversation::Command;
use crate::config::contacts::ContactField;

/// The bot's declared fields, in the bundle's order, each with the visitor's value (`null`
/// when none). Values of fields no longer declared are left out.
pub fn view(fields: &[ContactField], values: &BTreeMap<String, String>) -> Value {
    let list: Vec<Value> = fields
        .iter()
        .map(|f| {
            let name = f.name.get_ref();
            json!({
                "name": name,
                "label": f.label,
                "type": f.kind.as_str(),
                "options": f.options,
                "value": values.get(name),
            })
        })
        .collect();
    json!(list)
}

/// A visitor's values of the declared fields only, as an object (exports, alerts).
pub fn declared_values(
    fields: &[ContactField],
    values: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    fields
        .iter()
        .filter_map(|f| {
            let name = f.name.get_ref();
            values.get(name).map(|v| (name.clone(), v.clone()))
        })
        .collect()
}

impl Engine {
    /// An agent who may see the conversation sets its visitor's contact fields.
    pub async fn set_contact(
        &self,
        agent: &AgentRef,
        conversation_id: &str,
        fields: BTreeMap<String, String>,
    ) -> Result<Outcome, EngineError> {
        let cmd = Command::SetContact {
            by: agent.email.clone(),
            fields,
        };
        self.agent_command(agent, conversation_id, cmd, None).await
    }
}

/// The declared fields of a visitor with their values, read from the store.
pub async fn of_visitor(
    store: &crate::store::Store,
    visitor_id: &str,
    fields: &[ContactField],
) -> Result<Value, crate::store::StoreError> {
    let values = store.contact_values(visitor_id).await?;
    Ok(view(fields, &values))
}
