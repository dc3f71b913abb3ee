//! Contact fields: what the flow collects into `contact.<name>`, and what agents edit.

use std::collections::BTreeMap;

use super::Tx;
use crate::chat::conversation::events::EventData;
use crate::chat::conversation::types::Rejection;
use crate::config::contacts;

impl<'c, 'a: 'c> Tx<'c, 'a> {
    /// An agent who may see the conversation sets contact fields. Every field must be
    /// declared and every value fit its type, or nothing is set.
    pub(super) fn set_contact(
        &mut self,
        by: &str,
        fields: BTreeMap<String, String>,
    ) -> Result<(), Rejection> {
        if fields.is_empty() {
            return Err(Rejection::InvalidContact(
                "give at least one contact field".into(),
            ));
        }
        let header = &self.ctx.bot.header;
        let mut clean = BTreeMap::new();
        for (name, value) in fields {
            let Some(field) = header.contact_field(&name) else {
                return Err(Rejection::InvalidContact(format!(
                    "this bot has no contact field `{name}`"
                )));
            };
            let value = field
                .check(&value)
                .map_err(|why| Rejection::InvalidContact(format!("`{name}` {why}")))?;
            clean.insert(name, value);
        }
        self.record_contact(by, clean);
        Ok(())
    }

    /// The flow's `contact.<name>` variables that this transition set or changed (`before`
    /// are the variables it started with) become the visitor's contact fields; one the flow
    /// set earlier is not written again, so an agent's edit since stays. A value that does
    /// not fit its field's type is not kept (the bundle was checked; an `ask` is free text).
    pub(super) fn contact_from_flow(&mut self, before: &BTreeMap<String, String>) {
        let header = &self.ctx.bot.header;
        let fields: BTreeMap<String, String> = self
            .conv
            .flow
            .vars
            .iter()
            .filter(|(var, value)| before.get(*var) != Some(*value))
            .filter_map(|(var, value)| {
                let field = header.contact_field(contacts::field_of_var(var)?)?;
                let value = field.check(value).ok().filter(|v| !v.is_empty())?;
                Some((field.name.get_ref().clone(), value))
            })
            .filter(|(name, value)| self.conv.contact.get(name) != Some(value))
            .collect();
        if !fields.is_empty() {
            self.record_contact("visitor", fields);
        }
    }

    fn record_contact(&mut self, by: &str, fields: BTreeMap<String, String>) {
        for (name, value) in &fields {
            if value.is_empty() {
                self.conv.contact.remove(name);
            } else {
                self.conv.contact.insert(name.clone(), value.clone());
            }
        }
        self.emit(EventData::ContactUpdated {
            by: by.to_string(),
            fields,
        });
    }
}
