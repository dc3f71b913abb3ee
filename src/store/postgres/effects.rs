//! What a conversation's transition writes besides its row, its events and its outbox items,
//! on PostgreSQL (#17): the rows SQLite's `engine::persist::write_transition` writes beside
//! them, applied in the same group transaction once the transition's guard held, so that a
//! refused transition writes none of them.

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;

use super::PgError;
use crate::store::visitors::OwnedVisitor;

/// One row-level change that goes with a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The visitor's profile keeps the name and email they gave, for their next
    /// conversations (`None`: unchanged).
    Profile {
        visitor_id: String,
        name: Option<String>,
        email: Option<String>,
    },
    /// A message's files, in order: linked to it, and marked used by its conversation.
    Files {
        message_id: String,
        conversation_id: String,
        attachments: Vec<String>,
        now_ms: i64,
    },
    /// Contact fields a `contact.updated` sets (an empty value clears one).
    Contact {
        visitor_id: String,
        fields: BTreeMap<String, String>,
        at: String,
    },
    /// A form filled in within the conversation.
    Form(FormRow),
    /// A new visitor, stored with their first conversation, made and last seen `at`.
    Visitor { visitor: OwnedVisitor, at: String },
    /// A returning visitor's row, locked for the transaction: a sweep or an erase of the
    /// visitor (which locks it too) waits for their new conversation and then sees it.
    LockVisitor(String),
}

/// A row of `form_submissions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormRow {
    pub id: String,
    pub bot: String,
    pub form: String,
    pub conversation_id: Option<String>,
    pub visitor_id: Option<String>,
    /// The values, as JSON.
    pub fields: String,
    pub page_url: Option<String>,
    pub ip: Option<String>,
    pub created_at: String,
}

/// Applies `effects`, in order, in the caller's transaction.
pub async fn apply(tx: &impl GenericClient, effects: &[&Effect]) -> Result<(), PgError> {
    for effect in effects {
        match *effect {
            Effect::Profile {
                visitor_id,
                name,
                email,
            } => {
                tx.execute(
                    "UPDATE visitors SET name = coalesce($2, name), email = coalesce($3, email)
                     WHERE id = $1
                       AND (name IS DISTINCT FROM coalesce($2, name)
                            OR email IS DISTINCT FROM coalesce($3, email))",
                    &[visitor_id, name, email],
                )
                .await?;
            }
            Effect::Files {
                message_id,
                conversation_id,
                attachments,
                now_ms,
            } => {
                let positions: Vec<i64> = (0..attachments.len() as i64).collect();
                tx.execute(
                    "INSERT INTO message_attachments (message_id, position, attachment_id)
                     SELECT $1, position, id FROM unnest($2::bigint[], $3::text[]) AS f (position, id)",
                    &[message_id, &positions, attachments],
                )
                .await?;
                tx.execute(
                    "UPDATE attachments SET conversation_id = coalesce(conversation_id, $2),
                                            used_ms = coalesce(used_ms, $3)
                     WHERE id = ANY($1)",
                    &[attachments, conversation_id, now_ms],
                )
                .await?;
            }
            Effect::Contact {
                visitor_id,
                fields,
                at,
            } => {
                super::contacts::save(tx, visitor_id, fields, at).await?;
            }
            Effect::Form(row) => insert_form(tx, row).await?,
            Effect::Visitor { visitor, at } => {
                super::visitors::insert(tx, &visitor.borrowed(), at).await?;
            }
            Effect::LockVisitor(id) => {
                tx.query("SELECT 1 FROM visitors WHERE id = $1 FOR UPDATE", &[id])
                    .await?;
            }
        }
    }
    Ok(())
}

/// Stores a form submission (within a conversation, or an offline form outside one).
pub async fn insert_form(tx: &impl GenericClient, f: &FormRow) -> Result<(), PgError> {
    tx.execute(
        "INSERT INTO form_submissions
           (id, bot, form, conversation_id, visitor_id, fields, page_url, ip, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &f.id,
            &f.bot,
            &f.form,
            &f.conversation_id,
            &f.visitor_id,
            &f.fields,
            &f.page_url,
            &f.ip,
            &f.created_at,
        ],
    )
    .await?;
    Ok(())
}
