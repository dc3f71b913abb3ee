//! Offline forms sent outside any conversation (the no-JavaScript contact page, the offline
//! API): what the store is given of one. Its row and the mail it sends are written together
//! by `Store::write_submission` (`engine::persist`, beside the SQLite SQL); a form filled in
//! within a conversation is written with the conversation's event instead.

use std::collections::BTreeMap;

/// An offline form sent outside any conversation.
pub struct Submitted<'a> {
    pub bot: &'a str,
    pub form: &'a str,
    pub values: &'a BTreeMap<String, String>,
    pub page_url: Option<&'a str>,
    /// The sender's address, kept with the form.
    pub ip: Option<&'a str>,
}
