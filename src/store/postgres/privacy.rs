//! A visitor's export and erasing conversations and visitors on PostgreSQL (#17): the rows
//! and rules of `store::privacy` (the SQLite side), for replicas. Not used by `serve` yet.
//!
//! As on SQLite, an erase deletes the rows and leaves each event in the log as a tombstone
//! (type `redacted`, empty data), so no `seq` goes missing. Each conversation is locked
//! before it is read and erased, in the order of its id: a guarded write of it on another
//! replica waits, then finds it gone (`conversations::write` refuses it), and two replicas
//! sweeping the same expired conversations erase each once (the second finds nothing).
//! PostgreSQL has nothing like SQLite's `secure_delete`: the deleted text stays in dead
//! tuples until VACUUM reclaims them, and in the WAL and the backups until they are gone
//! (docs/postgres.md).

use deadpool_postgres::GenericClient;
use serde_json::{Value, json};

use super::PgError;
use crate::store::StoreError;
use crate::store::privacy::{Erased, ErasedConversation, REDACTED};

/// Conversation statuses that are over: what retention may delete.
const SETTLED: [&str; 3] = ["resolved", "ended", "closed"];

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Whether the visitor exists.
pub async fn visitor_exists(
    client: &impl GenericClient,
    visitor_id: &str,
) -> Result<bool, PgError> {
    Ok(client
        .query_opt("SELECT 1 FROM visitors WHERE id = $1", &[&visitor_id])
        .await?
        .is_some())
}

/// The visitor's conversations, oldest first (ties by id: PostgreSQL has no `rowid`).
pub async fn conversations_of(
    client: &impl GenericClient,
    visitor_id: &str,
) -> Result<Vec<String>, PgError> {
    Ok(client
        .query(
            "SELECT id FROM conversations WHERE visitor_id = $1 ORDER BY created_at, id",
            &[&visitor_id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The visitor's email as their profile keeps it.
pub async fn email_of(
    client: &impl GenericClient,
    visitor_id: &str,
) -> Result<Option<String>, PgError> {
    Ok(client
        .query_opt("SELECT email FROM visitors WHERE id = $1", &[&visitor_id])
        .await?
        .and_then(|r| r.get(0)))
}

/// A conversation's messages and notes, oldest first, as `privacy::messages_of` answers:
/// `{id, seq, kind, agent, text, at}`, read from the log (a message is its event).
pub async fn messages_of(
    client: &impl GenericClient,
    conversation_id: &str,
) -> Result<Vec<Value>, PgError> {
    Ok(client
        .query(
            "SELECT data::json->>'message_id', seq,
                    CASE type WHEN 'note.created' THEN 'note' ELSE data::json->>'author' END,
                    data::json->>'agent', data::json->>'text', at
             FROM events
             WHERE conversation_id = $1 AND type IN ('message.created', 'note.created')
             ORDER BY seq",
            &[&conversation_id],
        )
        .await?
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, String>(0),
                "seq": r.get::<_, i64>(1),
                "kind": r.get::<_, String>(2),
                "agent": r.get::<_, Option<String>>(3),
                "text": r.get::<_, String>(4),
                "at": r.get::<_, String>(5),
            })
        })
        .collect())
}

/// Everything stored about one visitor, as JSON (as `privacy::export`); `None` if there is
/// no such visitor. Run it in one transaction (`REPEATABLE READ`) for a consistent copy.
pub async fn export(
    client: &impl GenericClient,
    visitor_id: &str,
) -> Result<Option<Value>, StoreError> {
    let Some(r) = client
        .query_opt(
            "SELECT id, bot, name, email, language, country, ip, created_at, last_seen_at
             FROM visitors WHERE id = $1",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?
    else {
        return Ok(None);
    };
    let profile = json!({
        "id": r.get::<_, String>(0),
        "bot": r.get::<_, String>(1),
        "name": r.get::<_, Option<String>>(2),
        "email": r.get::<_, Option<String>>(3),
        "language": r.get::<_, Option<String>>(4),
        "country": r.get::<_, Option<String>>(5),
        "ip": r.get::<_, Option<String>>(6),
        "created_at": r.get::<_, String>(7),
        "last_seen_at": r.get::<_, String>(8),
    });
    let mut conversations = Vec::new();
    for r in client
        .query(
            "SELECT id, bot, status, assignee, team, created_at, updated_at, state
             FROM conversations WHERE visitor_id = $1 ORDER BY created_at, id",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?
    {
        let id: String = r.get(0);
        let state: Value = serde_json::from_str(r.get::<_, &str>(7)).map_err(corrupt)?;
        conversations.push(json!({
            "id": id,
            "bot": r.get::<_, String>(1),
            "status": r.get::<_, String>(2),
            "assignee": r.get::<_, Option<String>>(3),
            "team": r.get::<_, Option<String>>(4),
            "created_at": r.get::<_, String>(5),
            "updated_at": r.get::<_, String>(6),
            "state": state,
            "messages": messages_of(client, &id).await?,
        }));
    }
    let forms: Vec<Value> = client
        .query(
            "SELECT id, bot, form, conversation_id, fields, page_url, ip, created_at
             FROM form_submissions
             WHERE visitor_id = $1
                OR conversation_id IN (SELECT id FROM conversations WHERE visitor_id = $1)
             ORDER BY created_at, id",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?
        .iter()
        .map(|r| {
            let fields: String = r.get(4);
            json!({
                "id": r.get::<_, String>(0),
                "bot": r.get::<_, String>(1),
                "form": r.get::<_, String>(2),
                "conversation_id": r.get::<_, Option<String>>(3),
                "values": serde_json::from_str::<Value>(&fields).unwrap_or(Value::String(fields)),
                "page_url": r.get::<_, Option<String>>(5),
                "ip": r.get::<_, Option<String>>(6),
                "created_at": r.get::<_, String>(7),
            })
        })
        .collect();
    let attachments: Vec<Value> = client
        .query(
            "SELECT a.id, a.name, a.type, a.size, a.conversation_id, a.agent_email, a.created_ms
             FROM attachments a
             WHERE a.visitor_id = $1
                OR a.conversation_id IN (SELECT id FROM conversations WHERE visitor_id = $1)
             ORDER BY a.created_ms, a.id",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, String>(0),
                "name": r.get::<_, String>(1),
                "type": r.get::<_, String>(2),
                "size": r.get::<_, i64>(3),
                "conversation_id": r.get::<_, Option<String>>(4),
                "from_agent": r.get::<_, Option<String>>(5),
                "created_ms": r.get::<_, i64>(6),
            })
        })
        .collect();
    Ok(Some(json!({
        "visitor": profile,
        "conversations": conversations,
        "forms": forms,
        "attachments": attachments,
        "contact": super::contacts::of_visitor(client, visitor_id).await?,
        "pageviews": super::pageviews::of_visitor(client, visitor_id).await?,
    })))
}

/// Erases a visitor (as `privacy::erase_visitor`): their conversations, their offline
/// forms, their unused uploads, contact values, page views and profile. Part of the
/// caller's transaction. Locks in the log writer's order, conversations before the
/// visitor's row (a transition of one of them may write the visitor's profile or contact
/// values): their conversations first, then the visitor's row, so that a page view of
/// theirs on another replica waits for the erase; a conversation of theirs started in
/// between is erased after it.
pub async fn erase_visitor(
    tx: &impl GenericClient,
    visitor_id: &str,
) -> Result<Erased, StoreError> {
    let ids = conversations_of(tx, visitor_id).await?;
    let mut erased = erase_conversations(tx, &ids).await?;
    tx.execute(
        "SELECT 1 FROM visitors WHERE id = $1 FOR UPDATE",
        &[&visitor_id],
    )
    .await
    .map_err(PgError::from)?;
    let late = conversations_of(tx, visitor_id).await?;
    if !late.is_empty() {
        let more = erase_conversations(tx, &late).await?;
        erased.messages += more.messages;
        erased.forms += more.forms;
        erased.events += more.events;
        erased.files.extend(more.files);
        erased.conversations.extend(more.conversations);
    }
    erased.forms += tx
        .execute(
            "DELETE FROM form_submissions WHERE visitor_id = $1",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)? as usize;
    let files = tx
        .query(
            "DELETE FROM attachments WHERE visitor_id = $1 RETURNING sha256",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?;
    erased
        .files
        .extend(files.iter().map(|r| r.get::<_, String>(0)));
    super::contacts::erase(tx, visitor_id).await?;
    erased.pageviews += super::pageviews::erase_of(tx, visitor_id).await?;
    let gone = tx
        .execute("DELETE FROM visitors WHERE id = $1", &[&visitor_id])
        .await
        .map_err(PgError::from)? as usize;
    erased.visitors += gone;
    if gone > 0 {
        erased.visitor_ids.push(visitor_id.to_string());
    }
    Ok(erased)
}

/// Erases conversations (as `privacy::erase_conversations`): their forms, their files'
/// rows and links, their row; their events become tombstones. Part of the caller's
/// transaction; each is locked first, in the order of the ids, and ids that name no
/// conversation (any more) are skipped.
pub async fn erase_conversations(
    tx: &impl GenericClient,
    ids: &[String],
) -> Result<Erased, PgError> {
    let mut ids = ids.to_vec();
    ids.sort();
    let mut erased = Erased::default();
    for id in &ids {
        let Some(r) = tx
            .query_opt(
                "SELECT bot, status, assignee FROM conversations WHERE id = $1 FOR UPDATE",
                &[id],
            )
            .await?
        else {
            continue;
        };
        let conv = ErasedConversation {
            id: id.clone(),
            bot: r.get(0),
            status: r.get(1),
            assignee: r.get(2),
        };
        erased.messages += tx
            .query_one(
                "SELECT count(*) FROM events
                 WHERE conversation_id = $1 AND type IN ('message.created', 'note.created')",
                &[id],
            )
            .await?
            .get::<_, i64>(0) as usize;
        erased.forms += tx
            .execute(
                "DELETE FROM form_submissions WHERE conversation_id = $1",
                &[id],
            )
            .await? as usize;
        tx.execute(
            "DELETE FROM message_attachments WHERE attachment_id IN
               (SELECT id FROM attachments WHERE conversation_id = $1)",
            &[id],
        )
        .await?;
        let files = tx
            .query(
                "DELETE FROM attachments WHERE conversation_id = $1 RETURNING sha256",
                &[id],
            )
            .await?;
        erased
            .files
            .extend(files.iter().map(|r| r.get::<_, String>(0)));
        erased.events += tx
            .execute(
                "UPDATE events SET type = $2, data = '{}', visitor_visible = false,
                                   client_id = NULL
                 WHERE conversation_id = $1",
                &[id, &REDACTED],
            )
            .await? as usize;
        // Its timer row goes with it (`ON DELETE CASCADE`).
        tx.execute("DELETE FROM conversations WHERE id = $1", &[id])
            .await?;
        erased.conversations.push(conv);
    }
    Ok(erased)
}

/// Settled conversations last changed before `cutoff`, at most `limit`, oldest first (as
/// `privacy::expired_conversations`).
pub async fn expired_conversations(
    client: &impl GenericClient,
    cutoff: &str,
    limit: usize,
) -> Result<Vec<String>, PgError> {
    Ok(client
        .query(
            "SELECT id FROM conversations WHERE status = ANY($1) AND updated_at < $2
             ORDER BY updated_at, id LIMIT $3",
            &[&&SETTLED[..], &cutoff, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// After retention removed conversations: visitors last seen before `cutoff` with no
/// conversation left lose their profile, and offline forms sent outside any conversation
/// before `cutoff` go too (as `privacy::erase_expired_leftovers`).
pub async fn erase_expired_leftovers(
    tx: &impl GenericClient,
    cutoff: &str,
) -> Result<Erased, PgError> {
    let mut erased = Erased::default();
    erased.forms += tx
        .execute(
            "DELETE FROM form_submissions WHERE conversation_id IS NULL AND created_at < $1
               AND (visitor_id IS NULL OR visitor_id NOT IN (SELECT id FROM visitors))",
            &[&cutoff],
        )
        .await? as usize;
    erased.visitor_ids = tx
        .query(
            "DELETE FROM visitors WHERE last_seen_at < $1
               AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = visitors.id)
             RETURNING id",
            &[&cutoff],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    erased.visitor_ids.sort();
    erased.visitors = erased.visitor_ids.len();
    Ok(erased)
}
