//! Reads for the API: event replay for streams, conversation lists, details, transcripts.
//! Each runs on a read connection in a blocking thread; none takes the conversation locks.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, params_from_iter};
use serde_json::{Value, json};
use tokio_postgres::types::ToSql;

use super::wire;
use crate::chat::conversation::Conversation;
use crate::config::contacts::ContactField;
use crate::store::attachments::Stored;
use crate::store::event_index;
use crate::store::handle::client;
use crate::store::postgres::{PgError, PgStore};
use crate::store::{Store, StoreError};

/// The most events one replay answer holds; a client asks again with the last `seq`.
pub const PAGE: usize = 500;

/// An event as the replays read it: seq, type, conversation, time, data.
type EventRow = (i64, String, String, String, String);

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

/// Events as their visitor sees them, in the wire's envelope.
fn visitor_envelopes(rows: impl IntoIterator<Item = EventRow>) -> Vec<Value> {
    rows.into_iter()
        .map(|(seq, kind, conv, at, data)| {
            let data = wire::visitor_data(&kind, &data);
            wire::envelope(seq, &kind, &conv, &at, &data)
        })
        .collect()
}

/// [`event_row`] on PostgreSQL; an event of no conversation has an empty id, as SQLite's
/// text of NULL reads.
fn pg_event_row(r: &tokio_postgres::Row) -> EventRow {
    (
        r.get(0),
        r.get(1),
        r.get::<_, Option<String>>(2).unwrap_or_default(),
        r.get(3),
        r.get(4),
    )
}

/// The visitor's events after `after`, in order, as the visitor sees them.
pub async fn visitor_events(
    store: &Store,
    visitor_id: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<Value>, StoreError> {
    let rows = match store {
        Store::Sqlite(db) => {
            let visitor_id = visitor_id.to_string();
            db.read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT e.seq, e.type, e.conversation_id, e.at, e.data
                     FROM conversation_events e
                     WHERE e.conversation_id IN
                           (SELECT id FROM conversations WHERE visitor_id = ?1)
                       AND e.seq > ?2 AND e.visitor_visible = 1
                     ORDER BY e.seq LIMIT ?3",
                )?;
                stmt.query_map(
                    rusqlite::params![visitor_id, after, limit as i64],
                    event_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
        }
        Store::Postgres(pg) => {
            let client = client(pg).await?;
            let statement = client
                .prepare_cached(
                    "SELECT e.seq, e.type, e.conversation_id, e.at, e.data FROM events e
                     WHERE e.conversation_id IN
                           (SELECT id FROM conversations WHERE visitor_id = $1)
                       AND e.seq > $2 AND e.visitor_visible
                     ORDER BY e.seq LIMIT $3",
                )
                .await
                .map_err(PgError::from)?;
            client
                .query(&statement, &[&visitor_id, &after, &(limit as i64)])
                .await
                .map_err(PgError::from)?
                .iter()
                .map(pg_event_row)
                .collect()
        }
    };
    Ok(visitor_envelopes(rows))
}

/// The last `limit` events of one conversation as its visitor sees them, oldest first
/// (what a resumed widget shows).
pub async fn conversation_visitor_events(
    store: &Store,
    conversation_id: &str,
    limit: usize,
) -> Result<Vec<Value>, StoreError> {
    let rows = match store {
        Store::Sqlite(db) => {
            let conversation_id = conversation_id.to_string();
            db.read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, type, conversation_id, at, data FROM conversation_events
                     WHERE conversation_id = ?1 AND visitor_visible = 1
                     ORDER BY seq DESC LIMIT ?2",
                )?;
                stmt.query_map(rusqlite::params![conversation_id, limit as i64], event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
        }
        Store::Postgres(pg) => client(pg)
            .await?
            .query(
                "SELECT seq, type, conversation_id, at, data FROM events
                 WHERE conversation_id = $1 AND visitor_visible
                 ORDER BY seq DESC LIMIT $2",
                &[&conversation_id, &(limit as i64)],
            )
            .await
            .map_err(PgError::from)?
            .iter()
            .map(pg_event_row)
            .collect(),
    };
    Ok(visitor_envelopes(rows.into_iter().rev()))
}

/// The events of the given bots (`None`: all) after `after`, as agents see them.
pub async fn agent_events(
    store: &Store,
    bots: Option<BTreeSet<String>>,
    after: i64,
    limit: usize,
) -> Result<Vec<Value>, StoreError> {
    if matches!(&bots, Some(b) if b.is_empty()) {
        return Ok(Vec::new());
    }
    let rows = match store {
        Store::Sqlite(db) => {
            db.read(move |c| {
                let (filter, mut args): (String, Vec<String>) = match &bots {
                    None => (String::new(), Vec::new()),
                    Some(bots) => (
                        format!("AND bot IN ({})", vec!["?"; bots.len()].join(", ")),
                        bots.iter().cloned().collect(),
                    ),
                };
                args.insert(0, after.to_string());
                args.push(limit.to_string());
                let sql = format!(
                    "SELECT seq, type, conversation_id, at, data FROM events
                     WHERE seq > CAST(?1 AS INTEGER) {filter}
                     ORDER BY seq LIMIT CAST(?{} AS INTEGER)",
                    args.len()
                );
                // Renumber the placeholders: ?1 is `after`, then the bots, then the limit.
                let sql = renumber(&sql);
                let mut stmt = c.prepare(&sql)?;
                stmt.query_map(params_from_iter(args.iter()), event_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
        }
        Store::Postgres(pg) => {
            let bots: Option<Vec<String>> = bots.map(|b| b.into_iter().collect());
            client(pg)
                .await?
                .query(
                    "SELECT seq, type, conversation_id, at, data FROM events
                     WHERE seq > $1 AND ($2::text[] IS NULL OR bot = ANY($2))
                     ORDER BY seq LIMIT $3",
                    &[&after, &bots, &(limit as i64)],
                )
                .await
                .map_err(PgError::from)?
                .iter()
                .map(pg_event_row)
                .collect()
        }
    };
    Ok(rows
        .into_iter()
        .map(|(seq, kind, conv, at, data)| {
            let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            wire::envelope(seq, &kind, &conv, &at, &data)
        })
        .collect())
}

/// Gives each bare `?` the next number after the explicit ones before it.
pub(crate) fn renumber(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '?' {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            n = match digits.parse::<usize>() {
                Ok(explicit) => explicit,
                Err(_) => n + 1,
            };
            out.push('?');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// The newest event's sequence number (0 before any).
pub async fn last_seq(store: &Store) -> Result<i64, StoreError> {
    match store {
        Store::Sqlite(db) => {
            db.read(|c| c.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0)))
                .await
        }
        // The counter row: `max(seq)` of what has committed, without a scan.
        Store::Postgres(pg) => Ok(client(pg)
            .await?
            .query_one("SELECT last FROM seq_counter", &[])
            .await
            .map_err(PgError::from)?
            .get(0)),
    }
}

impl Store {
    /// How many conversations there are of each status (`/metrics`), by status; on
    /// PostgreSQL ordered bytewise, as SQLite's grouping gives them.
    pub async fn conversations_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                db.read(|c| {
                    let mut stmt =
                        c.prepare("SELECT status, count(*) FROM conversations GROUP BY status")?;
                    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await
            }
            Store::Postgres(pg) => Ok(client(pg)
                .await?
                .query(
                    "SELECT status, count(*) FROM conversations
                     GROUP BY status ORDER BY status COLLATE \"C\"",
                    &[],
                )
                .await
                .map_err(PgError::from)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()),
        }
    }
}

/// Filters of the conversation list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    /// Only conversations held by this agent.
    pub assignee: Option<String>,
    pub bot: Option<String>,
    /// Full-text search over messages and notes.
    pub q: Option<String>,
    pub limit: usize,
    /// Whose read marks give each conversation's `unread` count.
    pub reader: String,
    /// Only conversations with visitor messages the reader has not read.
    pub unread: bool,
}

/// Conversations the caller may see, newest waiting requests first, then most recent.
pub async fn list(
    store: &Store,
    bots: Option<BTreeSet<String>>,
    filter: ListFilter,
) -> Result<Vec<Value>, StoreError> {
    if matches!(&bots, Some(b) if b.is_empty()) {
        return Ok(Vec::new());
    }
    let rows = match store {
        Store::Sqlite(db) => {
            if filter.q.as_deref().is_some_and(|q| !q.trim().is_empty())
                && db.read(crate::store::search::behind).await?
            {
                // The newest messages may not be in the search index yet: the writer adds them.
                db.write(crate::store::search::catch_up).await?;
            }
            db.read(move |c| list_rows(c, bots.as_ref(), &filter))
                .await?
        }
        Store::Postgres(pg) => pg_list_rows(pg, bots.as_ref(), &filter).await?,
    };
    rows.into_iter().map(list_entry).collect()
}

/// A conversation of the list as either store reads it: its state, the visitor's stored
/// name and email, the last message's text and the reader's unread count.
type ListRow = (String, Option<String>, Option<String>, Option<String>, i64);

/// One conversation of the list, from its row.
fn list_entry((state, vname, vemail, last, unread): ListRow) -> Result<Value, StoreError> {
    let conv = parse_state(&state)?;
    let mut summary = summary(&conv);
    summary["visitor"]["name"] = json!(conv.name.clone().or(vname));
    summary["visitor"]["email"] = json!(conv.email.clone().or(vemail));
    summary["last_message"] = json!(last);
    summary["unread"] = json!(unread);
    Ok(summary)
}

fn parse_state(state: &str) -> Result<Conversation, StoreError> {
    serde_json::from_str(state).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn list_rows(
    c: &Connection,
    bots: Option<&BTreeSet<String>>,
    f: &ListFilter,
) -> Result<Vec<ListRow>, StoreError> {
    let mut clauses = Vec::new();
    // `?1` is the reader, in the unread count of the select list.
    let mut args: Vec<String> = vec![f.reader.to_lowercase()];
    if let Some(bots) = bots {
        clauses.push(format!("c.bot IN ({})", vec!["?"; bots.len()].join(", ")));
        args.extend(bots.iter().cloned());
    }
    if let Some(status) = &f.status {
        let statuses: Vec<&str> = status.split(',').map(str::trim).collect();
        clauses.push(format!(
            "c.status IN ({})",
            vec!["?"; statuses.len()].join(", ")
        ));
        args.extend(statuses.iter().map(|s| s.to_string()));
    }
    if let Some(a) = &f.assignee {
        clauses.push("c.assignee = ?".into());
        args.push(a.to_lowercase());
    }
    if let Some(b) = &f.bot {
        clauses.push("c.bot = ?".into());
        args.push(b.clone());
    }
    if let Some(q) = f.q.as_deref().map(fts_query).filter(|q| !q.is_empty()) {
        clauses.push(
            "c.id IN (SELECT m.conversation_id FROM messages m
                      JOIN messages_fts ON messages_fts.rowid = m.seq
                      WHERE messages_fts MATCH ?)"
                .into(),
        );
        args.push(q);
    }
    if f.unread {
        // The select list's count, by its name.
        clauses.push("unread > 0".into());
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    args.push(f.limit.clamp(1, 500).to_string());
    // The last message: above the index's mark if there is one there, else the last the
    // index holds (a correlated subquery reads the two halves itself, see `event_index`).
    let sql = renumber(&format!(
        "SELECT c.state, v.name, v.email,
                coalesce(
                  (SELECT e.data ->> '$.text' FROM {}
                     AND e.type = 'message.created' ORDER BY e.seq DESC LIMIT 1),
                  (SELECT e.data ->> '$.text' FROM {}
                     AND e.type = 'message.created' ORDER BY i.seq DESC LIMIT 1)),
                {} AS unread
         FROM conversations c JOIN visitors v ON v.id = c.visitor_id
         {where_sql}
         ORDER BY CASE c.status WHEN 'new' THEN 0 ELSE 1 END,
                  CASE c.status WHEN 'new' THEN c.requested_at END DESC,
                  c.updated_at DESC
         LIMIT CAST(? AS INTEGER)",
        event_index::unindexed("e", "c.id"),
        event_index::indexed("e", "c.id"),
        crate::store::reads::unread_sql("?1")
    ));
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Parameters of a PostgreSQL statement built clause by clause.
#[derive(Default)]
struct PgParams(Vec<Box<dyn ToSql + Sync + Send>>);

impl PgParams {
    /// Adds `value` and names its placeholder (`$3`).
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The list on PostgreSQL: the same filters and order as [`list_rows`]. Text that SQLite
/// orders bytewise is ordered by the "C" collation, and a `new` conversation without a
/// request time comes last among the `new` ones, as SQLite's NULLs sort in `DESC`. The
/// visitor's row is joined if there is one (no foreign key from conversations here).
/// Search runs on PostgreSQL's full-text search (migration 11's index), each word of the
/// search a phrase that must be in a message or note of the conversation.
async fn pg_list_rows(
    pg: &PgStore,
    bots: Option<&BTreeSet<String>>,
    f: &ListFilter,
) -> Result<Vec<ListRow>, StoreError> {
    let mut params = PgParams::default();
    let reader = params.bind(f.reader.to_lowercase());
    let unread = crate::store::postgres::reads::unread_sql(&reader);
    let mut clauses = Vec::new();
    if let Some(bots) = bots {
        let bots: Vec<String> = bots.iter().cloned().collect();
        clauses.push(format!("c.bot = ANY({})", params.bind(bots)));
    }
    if let Some(status) = &f.status {
        let statuses: Vec<String> = status.split(',').map(|s| s.trim().to_string()).collect();
        clauses.push(format!("c.status = ANY({})", params.bind(statuses)));
    }
    if let Some(a) = &f.assignee {
        clauses.push(format!("c.assignee = {}", params.bind(a.to_lowercase())));
    }
    if let Some(b) = &f.bot {
        clauses.push(format!("c.bot = {}", params.bind(b.clone())));
    }
    let words = f.q.as_deref().map(search_words).unwrap_or_default();
    if !words.is_empty() {
        let query: Vec<String> = words
            .into_iter()
            .map(|w| format!("phraseto_tsquery('simple', {})", params.bind(w)))
            .collect();
        clauses.push(format!(
            "c.id IN (SELECT e.conversation_id FROM events e
                      WHERE e.type IN ('message.created', 'note.created')
                        AND {PG_SEARCH_TEXT} @@ ({}))",
            query.join(" && ")
        ));
    }
    if f.unread {
        clauses.push(format!("{unread} > 0"));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit = params.bind(f.limit.clamp(1, 500) as i64);
    let sql = format!(
        "SELECT c.state, v.name, v.email,
                (SELECT e.data::json ->> 'text' FROM events e
                  WHERE e.conversation_id = c.id AND e.type = 'message.created'
                  ORDER BY e.seq DESC LIMIT 1),
                {unread}
         FROM conversations c LEFT JOIN visitors v ON v.id = c.visitor_id
         {where_sql}
         ORDER BY CASE c.status WHEN 'new' THEN 0 ELSE 1 END,
                  (CASE c.status WHEN 'new' THEN c.requested_at END) COLLATE \"C\" DESC NULLS LAST,
                  c.updated_at COLLATE \"C\" DESC
         LIMIT {limit}"
    );
    let rows = client(pg)
        .await?
        .query(&sql, &params.refs())
        .await
        .map_err(PgError::from)?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect())
}

/// What PostgreSQL's search looks in: a message's or note's text as words, lowercased and
/// not stemmed (the "simple" configuration), as migration 11 indexes it.
const PG_SEARCH_TEXT: &str = "to_tsvector('simple', e.data::json ->> 'text')";

/// The words of a search, control characters dropped (as [`fts_query`]).
fn search_words(q: &str) -> Vec<String> {
    q.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Words of a search, each quoted, so user input is never FTS syntax.
/// Control characters (a NUL, say) are dropped: they can never match and FTS refuses them.
fn fts_query(q: &str) -> String {
    search_words(q)
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a conversation appears in lists and details.
pub fn summary(conv: &Conversation) -> Value {
    let t = |ts: Option<jiff::Timestamp>| ts.map(|t| t.to_string());
    json!({
        "id": conv.id,
        "bot": conv.bot,
        "status": conv.status.as_str(),
        "assignee": conv.assignee,
        "team": conv.team,
        "live_chat": conv.live_chat,
        "ringing": conv.ringing,
        "muted": conv.muted,
        "video": conv.video,
        "in_call": conv.call.as_ref().is_some_and(|c| c.started_at.is_some()),
        "language": conv.language,
        "page_url": conv.page_url,
        "country": conv.country,
        "visitor": { "id": conv.visitor_id, "name": conv.name, "email": conv.email },
        "variables": conv.flow.vars,
        "opened_at": conv.opened_at.to_string(),
        "requested_at": t(conv.requested_at),
        "assigned_at": t(conv.assigned_at),
        "resolved_at": t(conv.resolved_at),
        "closed_at": t(conv.closed_at),
        "ended_at": t(conv.ended_at),
        "resolve_note": conv.resolve_note,
        "rating": conv.rating.map(|r| json!({ "rating": r.as_str(), "comment": conv.rating_comment })),
    })
}

/// What a conversation's details are made of, as either store reads them.
struct DetailRows {
    contact: BTreeMap<String, String>,
    /// The visitor's stored name and email.
    visitor: (Option<String>, Option<String>),
    /// Messages and notes in order, as `privacy::messages_of` gives them.
    messages: Vec<Value>,
    /// (message id, file) of the conversation's files.
    files: Vec<(String, Stored)>,
    forms: Vec<Value>,
    earlier: Vec<Value>,
}

/// Messages, notes and form answers of one conversation, and the visitor's other ones.
pub async fn details(
    store: &Store,
    conv: Conversation,
    contact_fields: Vec<ContactField>,
) -> Result<Value, StoreError> {
    let rows = match store {
        Store::Sqlite(db) => {
            let (id, visitor_id) = (conv.id.clone(), conv.visitor_id.clone());
            db.read(move |c| detail_rows(c, &id, &visitor_id)).await?
        }
        Store::Postgres(pg) => pg_detail_rows(pg, &conv.id, &conv.visitor_id).await?,
    };
    let mut out = summary(&conv);
    out["contact"] = super::contacts::view(&contact_fields, &rows.contact);
    // What the visitor gave in an earlier conversation still names them.
    let (vname, vemail) = rows.visitor;
    out["visitor"]["name"] = json!(conv.name.clone().or(vname));
    out["visitor"]["email"] = json!(conv.email.clone().or(vemail));
    let mut files: std::collections::HashMap<String, Vec<Value>> = Default::default();
    for (message, file) in rows.files {
        files.entry(message).or_default().push(json!(file.view()));
    }
    let mut messages = Vec::new();
    let mut notes = Vec::new();
    for mut row in rows.messages {
        if let Some(list) = row["id"].as_str().and_then(|id| files.remove(id)) {
            row["attachments"] = json!(list);
        }
        if row["kind"] == "note" {
            notes.push(row);
        } else {
            messages.push(row);
        }
    }
    out["messages"] = json!(messages);
    out["notes"] = json!(notes);
    out["forms"] = json!(rows.forms);
    out["earlier_conversations"] = json!(rows.earlier);
    Ok(out)
}

/// A form submission as the details show it.
fn form_entry(form: String, fields: &str, at: String) -> Value {
    json!({
        "form": form,
        "values": serde_json::from_str::<Value>(fields).unwrap_or(Value::Null),
        "at": at,
    })
}

/// Another conversation of the visitor as the details show it.
fn earlier_entry(id: String, status: String, opened_at: String) -> Value {
    json!({ "id": id, "status": status, "opened_at": opened_at })
}

fn detail_rows(c: &Connection, id: &str, visitor_id: &str) -> Result<DetailRows, StoreError> {
    let contact = crate::store::contacts::of_visitor(c, visitor_id)?;
    let visitor = c.query_row(
        "SELECT name, email FROM visitors WHERE id = ?1",
        [visitor_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let messages = crate::store::privacy::messages_of(c, id)?;
    let files = crate::store::attachments::by_message(c, id)?;
    let mut stmt = c.prepare_cached(
        "SELECT form, fields, created_at FROM form_submissions
         WHERE conversation_id = ?1 ORDER BY created_at",
    )?;
    let forms = stmt
        .query_map([id], |r| {
            Ok(form_entry(r.get(0)?, &r.get::<_, String>(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut stmt = c.prepare_cached(
        "SELECT id, status, created_at FROM conversations
         WHERE visitor_id = ?1 AND id != ?2 ORDER BY created_at DESC LIMIT 50",
    )?;
    let earlier = stmt
        .query_map([visitor_id, id], |r| {
            Ok(earlier_entry(r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(DetailRows {
        contact,
        visitor,
        messages,
        files,
        forms,
        earlier,
    })
}

use crate::store::postgres::log::MESSAGES as PG_MESSAGES;

/// [`detail_rows`] on PostgreSQL. A visitor without a row (nothing ties conversations to
/// visitors here) has no stored name or email. Text SQLite orders bytewise is ordered by
/// the "C" collation.
async fn pg_detail_rows(
    pg: &PgStore,
    id: &str,
    visitor_id: &str,
) -> Result<DetailRows, StoreError> {
    let client = client(pg).await?;
    let contact = crate::store::postgres::contacts::of_visitor(&client, visitor_id).await?;
    let visitor = client
        .query_opt(
            "SELECT name, email FROM visitors WHERE id = $1",
            &[&visitor_id],
        )
        .await
        .map_err(PgError::from)?
        .map_or((None, None), |r| (r.get(0), r.get(1)));
    let mut messages = Vec::new();
    for r in client
        .query(&format!("{PG_MESSAGES} ORDER BY e.seq"), &[&id])
        .await
        .map_err(PgError::from)?
    {
        messages.push(json!({
            "id": r.try_get::<_, String>(0).map_err(PgError::from)?,
            "seq": r.get::<_, i64>(1),
            "kind": r.try_get::<_, String>(2).map_err(PgError::from)?,
            "agent": r.get::<_, Option<String>>(3),
            "text": r.try_get::<_, String>(4).map_err(PgError::from)?,
            "at": r.get::<_, String>(5),
        }));
    }
    let files = crate::store::postgres::attachments::by_message(&client, id).await?;
    let forms = client
        .query(
            "SELECT form, fields, created_at FROM form_submissions
             WHERE conversation_id = $1 ORDER BY created_at COLLATE \"C\"",
            &[&id],
        )
        .await
        .map_err(PgError::from)?
        .iter()
        .map(|r| form_entry(r.get(0), r.get(1), r.get(2)))
        .collect();
    let earlier = client
        .query(
            "SELECT id, status, created_at FROM conversations
             WHERE visitor_id = $1 AND id <> $2
             ORDER BY created_at COLLATE \"C\" DESC LIMIT 50",
            &[&visitor_id, &id],
        )
        .await
        .map_err(PgError::from)?
        .iter()
        .map(|r| earlier_entry(r.get(0), r.get(1), r.get(2)))
        .collect();
    Ok(DetailRows {
        contact,
        visitor,
        messages,
        files,
        forms,
        earlier,
    })
}

/// A line of the transcript: time, author, agent, text, the files' names.
type TranscriptRow = (String, String, Option<String>, String, Option<String>);

/// The transcript as CSV: time, author, name, text. Notes are left out.
pub async fn transcript_csv(store: &Store, conversation_id: String) -> Result<String, StoreError> {
    let rows: Vec<TranscriptRow> = match store {
        Store::Sqlite(db) => {
            db.read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT at, kind, author, text,
                       (SELECT group_concat(a.name, '; ' ORDER BY ma.position)
                        FROM message_attachments ma JOIN attachments a ON a.id = ma.attachment_id
                        WHERE ma.message_id = m.id)
                     FROM conversation_messages m
                     WHERE m.conversation_id = ?1 AND m.kind != 'note' ORDER BY m.seq",
                )?;
                stmt.query_map([&conversation_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
        }
        Store::Postgres(pg) => {
            let rows = client(pg)
                .await?
                .query(
                    &format!(
                        "SELECT m.at, m.kind, m.author, m.text,
                           (SELECT string_agg(a.name, '; ' ORDER BY ma.position)
                            FROM message_attachments ma JOIN attachments a ON a.id = ma.attachment_id
                            WHERE ma.message_id = m.id)
                         FROM ({PG_MESSAGES}) m
                         WHERE m.kind <> 'note' ORDER BY m.seq"
                    ),
                    &[&conversation_id],
                )
                .await
                .map_err(PgError::from)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push((
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.try_get(3).map_err(PgError::from)?,
                    r.get(4),
                ));
            }
            out
        }
    };
    let mut out = String::from("time,author,agent,text,attachments\r\n");
    for (at, kind, agent, text, files) in rows {
        out.push_str(&csv_field(&at));
        out.push(',');
        out.push_str(&csv_field(&kind));
        out.push(',');
        out.push_str(&csv_field(agent.as_deref().unwrap_or("")));
        out.push(',');
        out.push_str(&csv_field(&text));
        out.push(',');
        out.push_str(&csv_field(files.as_deref().unwrap_or("")));
        out.push_str("\r\n");
    }
    Ok(out)
}

/// A conversation of the export as either store reads it.
struct ExportRow {
    conv: Conversation,
    vname: Option<String>,
    vemail: Option<String>,
    from_visitor: i64,
    from_agents: i64,
    calls: i64,
    call_secs: i64,
    files: i64,
    /// The visitor's contact values.
    contact: BTreeMap<String, String>,
}

/// The conversations opened in `[from, to)` of the bots in `visible` (`None`: all), oldest
/// first, as CSV: one row each, with who they were, who took them and how they ended.
pub async fn conversations_csv(
    store: &Store,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
    bot: Option<String>,
    visible: Option<BTreeSet<String>>,
    fields_of: BTreeMap<String, Vec<ContactField>>,
) -> Result<String, StoreError> {
    let (from, to) = (super::persist::stamp(from), super::persist::stamp(to));
    let rows = match store {
        Store::Sqlite(db) => {
            db.read(move |c| export_rows(c, &from, &to, bot.as_deref(), visible.as_ref()))
                .await?
        }
        Store::Postgres(pg) => {
            pg_export_rows(pg, &from, &to, bot.as_deref(), visible.as_ref()).await?
        }
    };
    let mut out = String::from(
        "id,bot,status,opened_at,requested_at,assigned_at,resolved_at,closed_at,\
         assignee,team,visitor_name,visitor_email,country,language,page_url,\
         visitor_messages,agent_messages,attachments,resolve_note,rating,rating_comment,\
         video_calls,call_secs,contact\r\n",
    );
    for row in rows {
        let conv = row.conv;
        let contact = match fields_of.get(&conv.bot) {
            Some(fields) => super::contacts::declared_values(fields, &row.contact),
            None => BTreeMap::new(),
        };
        let contact = if contact.is_empty() {
            String::new()
        } else {
            json!(contact).to_string()
        };
        let time = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
        let fields = [
            conv.id.clone(),
            conv.bot.clone(),
            conv.status.as_str().to_string(),
            conv.opened_at.to_string(),
            time(conv.requested_at),
            time(conv.assigned_at),
            time(conv.resolved_at),
            time(conv.closed_at.or(conv.ended_at)),
            conv.assignee.clone().unwrap_or_default(),
            conv.team.clone().unwrap_or_default(),
            conv.name.clone().or(row.vname).unwrap_or_default(),
            conv.email.clone().or(row.vemail).unwrap_or_default(),
            conv.country.clone().unwrap_or_default(),
            conv.language.clone(),
            conv.page_url.clone().unwrap_or_default(),
            row.from_visitor.to_string(),
            row.from_agents.to_string(),
            row.files.to_string(),
            conv.resolve_note.clone().unwrap_or_default(),
            conv.rating
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
            conv.rating_comment.clone().unwrap_or_default(),
            row.calls.to_string(),
            row.call_secs.to_string(),
            contact,
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    Ok(out)
}

fn export_rows(
    c: &Connection,
    from: &str,
    to: &str,
    bot: Option<&str>,
    visible: Option<&BTreeSet<String>>,
) -> Result<Vec<ExportRow>, StoreError> {
    // Counted over the log's two halves (see `event_index`).
    let (old, new) = (
        event_index::indexed("e", "c.id"),
        event_index::unindexed("e", "c.id"),
    );
    let author = "json_extract(e.data, '$.author')";
    let sql = format!(
        "SELECT c.state, v.name, v.email,
           (SELECT count(*) FROM {old} AND e.type = 'message.created' AND {author} = 'visitor')
           + (SELECT count(*) FROM {new} AND e.type = 'message.created' AND {author} = 'visitor'),
           (SELECT count(*) FROM {old} AND e.type = 'message.created' AND {author} = 'agent')
           + (SELECT count(*) FROM {new} AND e.type = 'message.created' AND {author} = 'agent'),
           (SELECT count(*) FROM {old} AND e.type = 'video.started')
           + (SELECT count(*) FROM {new} AND e.type = 'video.started'),
           (SELECT coalesce(sum(json_extract(e.data, '$.duration_secs')), 0) FROM {old}
             AND e.type = 'video.ended')
           + (SELECT coalesce(sum(json_extract(e.data, '$.duration_secs')), 0) FROM {new}
             AND e.type = 'video.ended'),
           (SELECT count(*) FROM attachments a
            JOIN message_attachments ma ON ma.attachment_id = a.id
            WHERE a.conversation_id = c.id)
         FROM conversations c JOIN visitors v ON v.id = c.visitor_id
         WHERE c.created_at >= ?1 AND c.created_at < ?2 AND (?3 IS NULL OR c.bot = ?3)
         ORDER BY c.created_at, c.rowid"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params![from, to, bot], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get(1)?,
            r.get(2)?,
            [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (state, vname, vemail, counts) = row?;
        let conv = parse_state(&state)?;
        if visible.is_some_and(|bots| !bots.contains(&conv.bot)) {
            continue;
        }
        let contact = crate::store::contacts::of_visitor(c, &conv.visitor_id)?;
        out.push(export_row(conv, vname, vemail, counts, contact));
    }
    Ok(out)
}

/// An [`ExportRow`] from its counts: visitor messages, agent messages, calls, call
/// seconds, files.
fn export_row(
    conv: Conversation,
    vname: Option<String>,
    vemail: Option<String>,
    [from_visitor, from_agents, calls, call_secs, files]: [i64; 5],
    contact: BTreeMap<String, String>,
) -> ExportRow {
    ExportRow {
        conv,
        vname,
        vemail,
        from_visitor,
        from_agents,
        calls,
        call_secs,
        files,
        contact,
    }
}

/// [`export_rows`] on PostgreSQL, from the log by its index on `(conversation_id, seq)`.
/// Conversations opened at the same instant come in the order of their ids (SQLite's come
/// in the order they were written, which PostgreSQL does not keep).
async fn pg_export_rows(
    pg: &PgStore,
    from: &str,
    to: &str,
    bot: Option<&str>,
    visible: Option<&BTreeSet<String>>,
) -> Result<Vec<ExportRow>, StoreError> {
    let client = client(pg).await?;
    let count = |what: &str| {
        format!("(SELECT count(*) FROM events e WHERE e.conversation_id = c.id AND {what})")
    };
    let message_by = |author: &str| {
        count(&format!(
            "e.type = 'message.created' AND e.data::json ->> 'author' = '{author}'"
        ))
    };
    let sql = format!(
        "SELECT c.state, v.name, v.email, {}, {}, {},
           (SELECT coalesce(sum((e.data::json ->> 'duration_secs')::bigint), 0)::bigint
            FROM events e WHERE e.conversation_id = c.id AND e.type = 'video.ended'),
           (SELECT count(*) FROM attachments a
            JOIN message_attachments ma ON ma.attachment_id = a.id
            WHERE a.conversation_id = c.id)
         FROM conversations c LEFT JOIN visitors v ON v.id = c.visitor_id
         WHERE c.created_at COLLATE \"C\" >= $1 AND c.created_at COLLATE \"C\" < $2
           AND ($3::text IS NULL OR c.bot = $3)
         ORDER BY c.created_at COLLATE \"C\", c.id COLLATE \"C\"",
        message_by("visitor"),
        message_by("agent"),
        count("e.type = 'video.started'"),
    );
    let rows = client
        .query(&sql, &[&from, &to, &bot])
        .await
        .map_err(PgError::from)?;
    let mut out = Vec::new();
    for r in rows {
        let conv = parse_state(r.get(0))?;
        if visible.is_some_and(|bots| !bots.contains(&conv.bot)) {
            continue;
        }
        let contact =
            crate::store::postgres::contacts::of_visitor(&client, &conv.visitor_id).await?;
        let counts = [r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)];
        out.push(export_row(conv, r.get(1), r.get(2), counts, contact));
    }
    Ok(out)
}

/// One CSV field: quoted when it needs to be, and never read as a formula by a spreadsheet.
/// Spreadsheets in many locales split on `;` (or a tab) rather than `,`, so a field is
/// guarded when any of its `,`/`;`/tab-separated parts starts a formula, and quoted
/// whenever it holds any of those separators, which keeps it one cell whatever the
/// spreadsheet splits on.
fn csv_field(s: &str) -> String {
    const SEPARATORS: [char; 3] = [',', ';', '\t'];
    let formula = s.starts_with('\r')
        || s.split(SEPARATORS)
            .any(|part| part.starts_with(['=', '+', '-', '@']));
    let guarded = if formula || s.starts_with('\t') {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if guarded.contains([',', ';', '\t', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_after_explicit_ones() {
        assert_eq!(
            renumber("a > ?1 AND b IN (?, ?) LIMIT ?"),
            "a > ?1 AND b IN (?2, ?3) LIMIT ?4"
        );
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }

    #[test]
    fn csv_guards_formulas_after_any_separator_a_spreadsheet_may_split_on() {
        // A `;` or tab splitting spreadsheet would see `=cmd…` as a cell of its own.
        assert_eq!(
            csv_field("ok;=cmd|' /C calc'!A0"),
            "\"'ok;=cmd|' /C calc'!A0\""
        );
        assert_eq!(csv_field("ok\t+1"), "\"'ok\t+1\"");
        assert_eq!(csv_field("a,@SUM(1)"), "\"'a,@SUM(1)\"");
        assert_eq!(csv_field("x;-2"), "\"'x;-2\"");
        // A separator alone only quotes, so the field stays one cell.
        assert_eq!(csv_field("yes; thanks"), "\"yes; thanks\"");
        assert_eq!(csv_field("\tx"), "\"'\tx\"");
        assert_eq!(csv_field("a - b"), "a - b");
    }

    #[test]
    fn search_words_are_quoted() {
        assert_eq!(fts_query("refund OR \"x"), "\"refund\" \"OR\" \"\"\"x\"");
        assert_eq!(fts_query("x\0y"), "\"x\" \"y\"");
        assert_eq!(fts_query("\0"), "");
    }
}
