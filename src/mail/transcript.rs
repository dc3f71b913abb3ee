//! The transcript a visitor asks to be mailed: the conversation's messages (notes left
//! out), composed from the `mail/transcript` templates.

use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::{Value, json};

use super::Outbound;
use super::transport::Mail;
use crate::config::Bundle;
use crate::store::handle::client;
use crate::store::postgres::PgError;
use crate::store::{Store, StoreError};

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
        let text = with_files(r.get(2)?, r.get(4)?);
        Ok((r.get(0)?, r.get(1)?, text, r.get(3)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Store {
    /// [`rows`] from either store (#17). On PostgreSQL the messages come from the log by its
    /// index on `(conversation_id, seq)` (`queries::PG_MESSAGES`, the view's twin), their
    /// files through `message_attachments`, as on SQLite.
    pub async fn transcript_rows(&self, conversation_id: &str) -> Result<Vec<Row>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = conversation_id.to_string();
                db.read(move |c| rows(c, &id)).await
            }
            Store::Postgres(pg) => {
                let found = client(pg)
                    .await?
                    .query(
                        &format!(
                            "SELECT m.kind, m.author, m.text, m.at,
                               (SELECT string_agg(a.name, ', ' ORDER BY ma.position)
                                FROM message_attachments ma
                                JOIN attachments a ON a.id = ma.attachment_id
                                WHERE ma.message_id = m.id)
                             FROM ({}) m
                             WHERE m.kind <> 'note' ORDER BY m.seq",
                            crate::store::postgres::log::MESSAGES
                        ),
                        &[&conversation_id],
                    )
                    .await
                    .map_err(PgError::from)?;
                let mut out = Vec::with_capacity(found.len());
                for r in found {
                    let text: String = r.try_get(2).map_err(PgError::from)?;
                    out.push((
                        r.try_get(0).map_err(PgError::from)?,
                        r.get(1),
                        with_files(text, r.get(4)),
                        r.get(3),
                    ));
                }
                Ok(out)
            }
        }
    }
}

/// A message's text with its files named after it (the mail carries none of them).
fn with_files(text: String, files: Option<String>) -> String {
    match files {
        None => text,
        Some(files) if text.is_empty() => format!("[Files: {files}]"),
        Some(files) => format!("{text}\n[Files: {files}]"),
    }
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
