//! The transcript a visitor asks to be mailed: the conversation's messages (notes left
//! out), composed from the `mail/transcript` templates.

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::{Value, json};

use super::Outbound;
use super::transport::Mail;
use crate::config::Bundle;
use crate::store::StoreError;

/// A message of the transcript as stored: kind, author, text, time.
pub type Row = (String, Option<String>, String, String);

/// The messages a visitor sees of a conversation, in order.
pub fn rows(conn: &Connection, conversation_id: &str) -> Result<Vec<Row>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, author, text, at,
           (SELECT group_concat(a.name, ', ' ORDER BY ma.position)
            FROM message_attachments ma JOIN attachments a ON a.id = ma.attachment_id
            WHERE ma.message_id = m.id)
         FROM conversation_messages m
         WHERE m.conversation_id = ?1 AND m.kind != 'note' ORDER BY m.seq",
    )?;
    let rows = stmt.query_map([conversation_id], |r| {
        let text: String = r.get(2)?;
        // Files are listed by name (the mail carries none of them).
        let text = match r.get::<_, Option<String>>(4)? {
            None => text,
            Some(files) if text.is_empty() => format!("[Files: {files}]"),
            Some(files) => format!("{text}\n[Files: {files}]"),
        };
        Ok((r.get(0)?, r.get(1)?, text, r.get(3)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The mail to `to` with the transcript of a conversation of bot `bot_id`. Agents are
/// named as the live roster names them; the visitor is "You".
pub fn compose(
    out: &Outbound,
    bundle: &Bundle,
    bot_id: &str,
    to: &str,
    rows: Vec<Row>,
) -> Result<Mail, String> {
    let bot_name = bundle
        .bots
        .get(bot_id)
        .map_or(bot_id.to_string(), |b| b.header.name.get_ref().clone());
    let names: HashMap<String, String> = bundle
        .roster
        .agents
        .iter()
        .map(|a| (a.email.as_str().to_lowercase(), a.name.clone()))
        .collect();
    let messages: Vec<Value> = rows
        .into_iter()
        .map(|(kind, author, text, at)| {
            let who = match kind.as_str() {
                "visitor" => "You".to_string(),
                "agent" => author
                    .and_then(|a| names.get(&a.to_lowercase()).cloned())
                    .unwrap_or_else(|| "Agent".into()),
                _ => bot_name.clone(),
            };
            json!({ "author": who, "text": text, "at": at })
        })
        .collect();
    let subject = format!("Your conversation with {bot_name}");
    let ctx = json!({
        "subject": subject,
        "public_url": out.public_url,
        "bot": { "name": bot_name },
        "messages": messages,
    });
    let (text, html) = out
        .templates
        .render_pair("mail/transcript", &ctx)
        .map_err(|e| format!("the transcript template: {e}"))?;
    Ok(Mail {
        kind: "transcript".into(),
        to: vec![to.to_string()],
        reply_to: None,
        subject,
        text,
        html,
    })
}
