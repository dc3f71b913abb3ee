//! The engine's SQL: writing a transition (conversation row, events, messages) in one job of
//! the group commit, and reading conversations and events back.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::wire;
use crate::chat::conversation::{Conversation, Event, EventData, EventKind};
use crate::hub::Frame;
use crate::mail::outbox::{self, Item};
use crate::store::handle::client;
use crate::store::postgres::PgError;
use crate::store::postgres::conversations::{ConversationRow, Guard};
use crate::store::postgres::effects::{Effect, FormRow};
use crate::store::postgres::log::{NewEvent, Transition};
use crate::store::postgres::outbox::NewItem;
use crate::store::{Store, StoreError};

/// A transition made ready for the writer: everything encoded beforehand, on the caller's
/// thread, so the writer's time (which every write waits for) goes to SQL alone.
pub struct Pending {
    pub conv: Conversation,
    /// The client's id of the message or note it writes, if any.
    pub client_id: Option<String>,
    /// The conversation's row, when the transition writes it (see `Engine::state_due`).
    state: Option<String>,
    events: Vec<PendingEvent>,
    items: Vec<(&'static str, String)>,
    now: Timestamp,
    at: String,
}

struct PendingEvent {
    kind: EventKind,
    visible: bool,
    data: String,
    message: Option<PendingMessage>,
    form: Option<(String, String)>,
    /// Contact fields a `contact.updated` sets on the visitor's profile.
    contact: Option<BTreeMap<String, String>>,
    /// The envelopes without their `seq`, which only the insert gives: `"type":…}`.
    agent_rest: String,
    visitor_rest: Option<String>,
}

struct PendingMessage {
    id: String,
    /// `visitor`, `agent`, `bot`, `system` or `note` (its author and text are in the
    /// event's data, which the view `messages` reads).
    kind: &'static str,
    /// The ids of the files it carries, in order.
    attachments: Vec<String>,
}

impl Pending {
    pub fn new(
        conv: Conversation,
        events: &[Event],
        items: &[Item],
        client_id: Option<String>,
        write_state: bool,
        now: Timestamp,
    ) -> Result<Pending, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let at = stamp(now);
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let kind = event.kind();
            let mut event = event.clone();
            let message = match &event {
                EventData::MessageCreated(m) => Some((
                    m.author.as_str(),
                    m.attachments.iter().map(|a| a.id.clone()).collect(),
                )),
                EventData::NoteCreated { .. } => Some(("note", Vec::new())),
                _ => None,
            }
            .map(|(kind, attachments)| PendingMessage {
                id: wire::new_sortable_id("m"),
                kind,
                attachments,
            });
            if let Some(m) = &message {
                event.set_message_id(m.id.clone());
            }
            let form = match &event {
                EventData::FormSubmitted { form, values } => Some((
                    form.clone(),
                    serde_json::to_string(values).map_err(corrupt)?,
                )),
                _ => None,
            };
            let contact = match &event {
                EventData::ContactUpdated { fields, .. } => Some(fields.clone()),
                _ => None,
            };
            let data = event.data();
            let visitor_data = event.visitor_view();
            let visible = visitor_data.is_some();
            let agent_rest = wire::envelope_rest(kind.as_str(), &conv.id, &at, &data);
            let visitor_rest =
                visitor_data.map(|seen| wire::envelope_rest(kind.as_str(), &conv.id, &at, &seen));
            pending.push(PendingEvent {
                kind,
                visible,
                data: data.to_string(),
                message,
                form,
                contact,
                agent_rest,
                visitor_rest,
            });
        }
        let items = items
            .iter()
            .map(|item| Ok((item.kind(), serde_json::to_string(item).map_err(corrupt)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(Pending {
            state: if write_state {
                Some(serde_json::to_string(&conv).map_err(corrupt)?)
            } else {
                None
            },
            conv,
            client_id,
            events: pending,
            items,
            now,
            at,
        })
    }

    /// The hub frames of the events, once written with these `seq`s.
    pub fn frames<'a>(&'a self, seqs: &'a [i64]) -> impl Iterator<Item = Frame> + 'a {
        self.events.iter().zip(seqs).map(|(event, &seq)| Frame {
            seq: Some(seq),
            conversation_id: Some(self.conv.id.clone()),
            bot: Some(self.conv.bot.clone()),
            visitor_id: Some(self.conv.visitor_id.clone()),
            agent_json: Some(wire::with_seq(seq, &event.agent_rest).into()),
            visitor_json: event
                .visitor_rest
                .as_deref()
                .map(|rest| wire::with_seq(seq, rest).into()),
            kind: None,
            to_agent: None,
        })
    }

    /// When the transition happened.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// [`Pending::now`] as stored.
    pub fn at(&self) -> &str {
        &self.at
    }

    /// The first message (or note) the transition writes: its place among the events, and
    /// its id.
    pub fn first_message(&self) -> Option<(usize, &str)> {
        self.events
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.message.as_ref().map(|m| (i, m.id.as_str())))
    }
}

impl Pending {
    /// The same transition as PostgreSQL's log writer takes it (#17): the conversation's row
    /// written only at `version` (0: a new conversation) and, with `max_chats`, only while
    /// its assignee stays within it; `due_at` is its earliest deadline after the transition
    /// (its timer row). Every write of a conversation raises its version, so the row is
    /// written whether or not SQLite's writer would have skipped it (`Engine::state_due`).
    pub fn pg_transition(
        &self,
        version: i64,
        max_chats: Option<u32>,
        due_at: Option<Timestamp>,
    ) -> Result<Transition, StoreError> {
        let conv = &self.conv;
        let state = match &self.state {
            Some(state) => state.clone(),
            None => serde_json::to_string(conv).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        };
        let row = ConversationRow {
            id: conv.id.clone(),
            visitor_id: conv.visitor_id.clone(),
            bot: conv.bot.clone(),
            status: conv.status.as_str().to_string(),
            assignee: conv.assignee.clone(),
            team: conv.team.clone(),
            created_at: stamp(conv.opened_at),
            updated_at: stamp(self.now),
            requested_at: conv.requested_at.map(stamp),
            state,
        };
        let mut effects = Vec::new();
        if conv.name.is_some() || conv.email.is_some() {
            effects.push(Effect::Profile {
                visitor_id: conv.visitor_id.clone(),
                name: conv.name.clone(),
                email: conv.email.clone(),
            });
        }
        let mut client_id = self.client_id.as_deref();
        let mut events = Vec::with_capacity(self.events.len());
        for event in &self.events {
            // As on SQLite: the client id goes with the first message the client sent.
            let cid = match &event.message {
                Some(m) if matches!(m.kind, "visitor" | "agent" | "note") => client_id.take(),
                _ => None,
            };
            events.push(NewEvent {
                conversation_id: Some(conv.id.clone()),
                bot: Some(conv.bot.clone()),
                kind: event.kind.as_str().to_string(),
                at: self.at.clone(),
                visitor_visible: event.visible,
                data: event.data.clone(),
                client_id: cid.map(str::to_string),
            });
            if let Some(m) = event.message.as_ref().filter(|m| !m.attachments.is_empty()) {
                effects.push(Effect::Files {
                    message_id: m.id.clone(),
                    conversation_id: conv.id.clone(),
                    attachments: m.attachments.clone(),
                    now_ms: self.now.as_millisecond(),
                });
            }
            if let Some(fields) = &event.contact {
                effects.push(Effect::Contact {
                    visitor_id: conv.visitor_id.clone(),
                    fields: fields.clone(),
                    at: self.at.clone(),
                });
            }
            if let Some((form, values)) = &event.form {
                effects.push(Effect::Form(FormRow {
                    id: wire::new_id("f"),
                    bot: conv.bot.clone(),
                    form: form.clone(),
                    conversation_id: Some(conv.id.clone()),
                    visitor_id: Some(conv.visitor_id.clone()),
                    fields: values.clone(),
                    page_url: conv.page_url.clone(),
                    ip: None,
                    created_at: self.at.clone(),
                }));
            }
        }
        Ok(Transition {
            guard: Some(Guard {
                row,
                version,
                max_chats,
                due_at: due_at.map(stamp),
                client_id: self.client_id.clone(),
            }),
            events,
            outbox: self
                .items
                .iter()
                .map(|(kind, payload)| NewItem {
                    id: crate::ids::new_id("o"),
                    kind: kind.to_string(),
                    payload: payload.clone(),
                })
                .collect(),
            effects,
        })
    }
}

/// Writes the conversation's new state and its events; returns each event's `seq`. (Only
/// numbers: what the writer thread allocates and another thread frees costs a lock in
/// glibc's malloc, so the frames are put together by the caller, with [`Pending::frames`].)
pub fn write_transition(conn: &Connection, p: &Pending) -> Result<Vec<i64>, StoreError> {
    let mut client_id = p.client_id.as_deref();
    let conv = &p.conv;
    if let Some(state) = &p.state {
        upsert_conversation(conn, conv, state, p.now)?;
    }
    if conv.name.is_some() || conv.email.is_some() {
        // The visitor's profile keeps what they gave, for their next conversations.
        conn.prepare_cached(
            "UPDATE visitors SET name = coalesce(?2, name), email = coalesce(?3, email)
             WHERE id = ?1 AND (name IS NOT coalesce(?2, name) OR email IS NOT coalesce(?3, email))",
        )?
        .execute(params![conv.visitor_id, conv.name, conv.email])?;
    }
    for (kind, payload) in &p.items {
        outbox::enqueue_encoded(conn, kind, payload, p.now)?;
    }
    let mut seqs = Vec::with_capacity(p.events.len());
    for event in &p.events {
        let kind = event.kind;
        // The client id belongs to the first message the command wrote (the one the
        // client sent: a message or a note); bot replies that follow carry none.
        let cid = match &event.message {
            Some(m) if matches!(m.kind, "visitor" | "agent" | "note") => client_id.take(),
            _ => None,
        };
        // A message is its event: `messages` is a view over the log (migration 11).
        conn.prepare_cached(
            "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data, client_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            conv.id,
            conv.bot,
            kind.as_str(),
            p.at,
            event.visible,
            event.data,
            cid
        ])?;
        let seq = conn.last_insert_rowid();
        if let Some(cid) = cid {
            CLIENT_IDS.with_borrow_mut(|ids| ids.add(&conv.id, cid));
        }
        if let Some(m) = &event.message {
            crate::store::attachments::link(
                conn,
                &m.id,
                &conv.id,
                &m.attachments,
                p.now.as_millisecond(),
            )?;
        }
        if let Some(fields) = &event.contact {
            crate::store::contacts::save(conn, &conv.visitor_id, fields, &p.at)?;
        }
        if let Some((form, values)) = &event.form {
            conn.prepare_cached(
                "INSERT INTO form_submissions
                   (id, bot, form, conversation_id, visitor_id, fields, page_url, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                wire::new_id("f"),
                conv.bot,
                form,
                conv.id,
                conv.visitor_id,
                values,
                conv.page_url,
                p.at
            ])?;
        }
        seqs.push(seq);
    }
    Ok(seqs)
}

fn upsert_conversation(
    conn: &Connection,
    conv: &Conversation,
    state: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO conversations
           (id, visitor_id, bot, status, assignee, team, created_at, updated_at, requested_at, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (id) DO UPDATE SET
           status = excluded.status, assignee = excluded.assignee, team = excluded.team,
           updated_at = excluded.updated_at, requested_at = excluded.requested_at,
           state = excluded.state",
    )?
    .execute(params![
        conv.id,
        conv.visitor_id,
        conv.bot,
        conv.status.as_str(),
        conv.assignee,
        conv.team,
        stamp(conv.opened_at),
        stamp(now),
        conv.requested_at.map(stamp),
        state
    ])?;
    Ok(())
}

pub fn load_conversation(conn: &Connection, id: &str) -> Result<Option<Conversation>, StoreError> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM conversations WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    state
        .map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

/// Conversations still in play: the ones the engine keeps in memory and times.
pub fn load_open(conn: &Connection) -> Result<Vec<Conversation>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT state FROM conversations
         WHERE status IN ('bot', 'collecting', 'new', 'assigned', 'chatting')",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        let conv: Conversation =
            serde_json::from_str(&row?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        out.push(conv);
    }
    Ok(out)
}

/// The visitor a token belongs to: (visitor id, bot).
pub fn visitor_by_token(
    conn: &Connection,
    token_hash: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, bot FROM visitors WHERE token_hash = ?1")?
        .query_row([token_hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The visitor's most recent conversation.
pub fn latest_conversation_of(
    conn: &Connection,
    visitor_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM conversations WHERE visitor_id = ?1
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )?
        .query_row([visitor_id], |r| r.get(0))
        .optional()?)
}

pub use crate::store::visitors::NewVisitor;

pub fn insert_visitor(
    conn: &Connection,
    v: &NewVisitor<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    crate::store::visitors::insert(conn, v, &stamp(now))
}

/// A message written earlier with this client id: (message id, seq). Exact: it reads the
/// conversation's log. It runs a conversation's events, so the writer asks
/// [`seen_client_id`] first.
pub fn message_by_client_id(
    conn: &Connection,
    conversation_id: &str,
    client_id: &str,
) -> Result<Option<(String, i64)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT id, seq FROM conversation_messages WHERE conversation_id = ?1 AND client_id = ?2",
        )?
        .query_row([conversation_id, client_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// [`message_by_client_id`] as the writer asks it: from the log only when the client id may
/// have been seen in the conversation, by [`ClientIds`]; a new id (nearly every write)
/// costs a hash lookup, not a walk through the conversation's events.
pub fn seen_client_id(
    conn: &Connection,
    conversation_id: &str,
    client_id: &str,
) -> Result<Option<(String, i64)>, StoreError> {
    let maybe = CLIENT_IDS.with_borrow_mut(|ids| ids.may_have(conn, conversation_id, client_id))?;
    if maybe {
        message_by_client_id(conn, conversation_id, client_id)
    } else {
        Ok(None)
    }
}

thread_local! {
    /// The writer thread's [`ClientIds`] (the one thread that writes events; another thread
    /// that writes, such as a test's, keeps its own and loads it from the log alike).
    static CLIENT_IDS: std::cell::RefCell<ClientIds> = std::cell::RefCell::new(ClientIds::default());
}

/// Hashes of the client ids each conversation's messages carry, loaded from the log the
/// first time the writer meets the conversation (after a start, or once the set was
/// dropped) and kept as it writes. Nothing here is trusted to say yes: a hit is confirmed
/// in the log. So an entry added by a group that then failed, or one whose message was
/// erased since, costs one lookup; what must never happen, a written client id missing
/// from a loaded set, cannot, since every write goes through [`write_transition`] (which
/// adds it) and a set is loaded from the committed log plus the group's own writes.
#[derive(Default)]
pub struct ClientIds {
    convs: std::collections::HashMap<String, std::collections::HashSet<u64>>,
    entries: usize,
}

/// The most hashes kept (8 bytes each), a conversation's set counting as
/// [`CLIENT_IDS_PER_SET`] more for its key and its own allocation; past it every set is
/// dropped and loaded again when next needed (about 8 MiB at most, or 32,768 sets).
const CLIENT_IDS_MAX: usize = 1 << 20;
const CLIENT_IDS_PER_SET: usize = 32;

fn client_hash(client_id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(client_id)
}

impl ClientIds {
    fn may_have(
        &mut self,
        conn: &Connection,
        conversation_id: &str,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        if !self.convs.contains_key(conversation_id) {
            if self.entries > CLIENT_IDS_MAX {
                self.convs.clear();
                self.entries = 0;
            }
            let mut stmt = conn.prepare_cached(
                "SELECT client_id FROM conversation_events
                 WHERE conversation_id = ?1 AND client_id IS NOT NULL",
            )?;
            let set: std::collections::HashSet<u64> = stmt
                .query_map([conversation_id], |r| {
                    r.get::<_, String>(0).map(|c| client_hash(&c))
                })?
                .collect::<Result<_, _>>()?;
            self.entries += set.len() + CLIENT_IDS_PER_SET;
            self.convs.insert(conversation_id.to_string(), set);
        }
        Ok(self.convs[conversation_id].contains(&client_hash(client_id)))
    }

    /// Records a client id written; a conversation not loaded yet is left to its load,
    /// which reads this write from the log.
    fn add(&mut self, conversation_id: &str, client_id: &str) {
        if let Some(set) = self.convs.get_mut(conversation_id)
            && set.insert(client_hash(client_id))
        {
            self.entries += 1;
        }
    }
}

/// Agents' "Accept chats" toggles.
pub fn accepting_agents(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT email FROM agents WHERE accepting = 1")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_accepting(
    conn: &Connection,
    email: &str,
    accepting: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO agents (email, accepting, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (email) DO UPDATE SET accepting = excluded.accepting, updated_at = excluded.updated_at",
        params![email.to_lowercase(), accepting, now.to_string()],
    )?;
    Ok(())
}

/// Agents whose "Take video calls" is off.
pub fn no_video_agents(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT email FROM agents WHERE video = 0")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_video(
    conn: &Connection,
    email: &str,
    video: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO agents (email, video, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (email) DO UPDATE SET video = excluded.video, updated_at = excluded.updated_at",
        params![email.to_lowercase(), video, now.to_string()],
    )?;
    Ok(())
}

/// The toggles above on either store (#17). On PostgreSQL the row may already exist without
/// a password (made to lock the agent while counting their chats) or with one (`auth::pg`);
/// the upsert changes only the toggle and its time, as on SQLite.
impl Store {
    /// [`accepting_agents`]: the emails (lowercased) whose "Accept chats" is on, in no order.
    pub async fn accepting_agents(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(db) => db.read(accepting_agents).await,
            Store::Postgres(pg) => Ok(client(pg)
                .await?
                .query("SELECT email FROM agents WHERE accepting", &[])
                .await
                .map_err(PgError::from)?
                .iter()
                .map(|r| r.get(0))
                .collect()),
        }
    }

    /// [`no_video_agents`]: the emails (lowercased) whose "Take video calls" is off.
    pub async fn no_video_agents(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(db) => db.read(no_video_agents).await,
            Store::Postgres(pg) => Ok(client(pg)
                .await?
                .query("SELECT email FROM agents WHERE NOT video", &[])
                .await
                .map_err(PgError::from)?
                .iter()
                .map(|r| r.get(0))
                .collect()),
        }
    }

    /// [`set_video`]: turns the agent's "Take video calls" on or off, at `now`.
    pub async fn set_video(
        &self,
        email: &str,
        video: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(db) => {
                let email = email.to_string();
                db.write(move |c| set_video(c, &email, video, now)).await
            }
            Store::Postgres(pg) => {
                client(pg)
                    .await?
                    .execute(
                        "INSERT INTO agents (email, video, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (email) DO UPDATE
                         SET video = excluded.video, updated_at = excluded.updated_at",
                        &[&email.to_lowercase(), &video, &now.to_string()],
                    )
                    .await
                    .map_err(PgError::from)?;
                Ok(())
            }
        }
    }

    /// [`set_accepting`]: turns the agent's "Accept chats" on or off, at `now`.
    pub async fn set_accepting(
        &self,
        email: &str,
        accepting: bool,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(db) => {
                let email = email.to_string();
                db.write(move |c| set_accepting(c, &email, accepting, now))
                    .await
            }
            Store::Postgres(pg) => {
                client(pg)
                    .await?
                    .execute(
                        "INSERT INTO agents (email, accepting, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (email) DO UPDATE
                         SET accepting = excluded.accepting, updated_at = excluded.updated_at",
                        &[&email.to_lowercase(), &accepting, &now.to_string()],
                    )
                    .await
                    .map_err(PgError::from)?;
                Ok(())
            }
        }
    }
}

/// The visitor's last few messages in a conversation, oldest first (for notifications).
pub fn last_visitor_lines(
    conn: &Connection,
    conversation_id: &str,
    n: i64,
) -> Result<Vec<String>, StoreError> {
    // Pages of plain columns, newest first, until enough: with a limit and no computed
    // column, SQLite merges the two halves of `conversation_events` from their ends; a
    // filter on the author (inside the JSON) would have it read and sort the whole
    // conversation first.
    let want = usize::try_from(n).unwrap_or(0);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, data FROM conversation_events WHERE conversation_id = ?1
           AND type = 'message.created' AND seq < ?2 ORDER BY seq DESC LIMIT 32",
    )?;
    let mut lines = Vec::new();
    let mut before = i64::MAX;
    while lines.len() < want {
        let page: Vec<(i64, String)> = stmt
            .query_map(params![conversation_id, before], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let Some(&(last, _)) = page.last() else { break };
        before = last;
        for (_, data) in page {
            let message: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if message["author"] == "visitor"
                && let Some(text) = message["text"].as_str()
                && lines.len() < want
            {
                lines.push(text.to_string());
            }
        }
    }
    lines.reverse();
    Ok(lines)
}

/// The lookups above as reads of either store (#17). The SQLite arm runs the function of
/// the same name on a reader; the PostgreSQL arm reads the same rows, a conversation's
/// messages from `events` by its index on `(conversation_id, seq)`.
impl Store {
    /// [`load_conversation`]: a conversation's state, if it exists.
    pub async fn load_conversation(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = id.to_string();
                db.read(move |c| load_conversation(c, &id)).await
            }
            Store::Postgres(pg) => client(pg)
                .await?
                .query_opt("SELECT state FROM conversations WHERE id = $1", &[&id])
                .await
                .map_err(PgError::from)?
                .map(|r| {
                    serde_json::from_str(r.get(0)).map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .transpose(),
        }
    }

    /// [`visitor_by_token`]: (visitor id, bot) of a token's hash.
    pub async fn visitor_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let key = token_hash.to_string();
                db.read(move |c| visitor_by_token(c, &key)).await
            }
            Store::Postgres(pg) => Ok(client(pg)
                .await?
                .query_opt(
                    "SELECT id, bot FROM visitors WHERE token_hash = $1",
                    &[&token_hash],
                )
                .await
                .map_err(PgError::from)?
                .map(|r| (r.get(0), r.get(1)))),
        }
    }

    /// [`latest_conversation_of`]: the visitor's most recent conversation. On PostgreSQL,
    /// of two opened at the same instant the greater id (SQLite: the one written last,
    /// an order PostgreSQL does not keep).
    pub async fn latest_conversation_of(
        &self,
        visitor_id: &str,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = visitor_id.to_string();
                db.read(move |c| latest_conversation_of(c, &id)).await
            }
            Store::Postgres(pg) => Ok(client(pg)
                .await?
                .query_opt(
                    "SELECT id FROM conversations WHERE visitor_id = $1
                     ORDER BY created_at COLLATE \"C\" DESC, id COLLATE \"C\" DESC LIMIT 1",
                    &[&visitor_id],
                )
                .await
                .map_err(PgError::from)?
                .map(|r| r.get(0))),
        }
    }

    /// [`message_by_client_id`]: (message id, seq) of the message a client sent with this
    /// id in the conversation.
    pub async fn message_by_client_id(
        &self,
        conversation_id: &str,
        client_id: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (key, cid) = (conversation_id.to_string(), client_id.to_string());
                db.read(move |c| message_by_client_id(c, &key, &cid)).await
            }
            Store::Postgres(pg) => {
                let row = client(pg)
                    .await?
                    .query_opt(
                        "SELECT data::json ->> 'message_id', seq FROM events
                         WHERE conversation_id = $1 AND client_id = $2
                           AND type IN ('message.created', 'note.created')
                         ORDER BY seq LIMIT 1",
                        &[&conversation_id, &client_id],
                    )
                    .await
                    .map_err(PgError::from)?;
                match row {
                    Some(r) => Ok(Some((r.try_get(0).map_err(PgError::from)?, r.get(1)))),
                    None => Ok(None),
                }
            }
        }
    }

    /// [`last_visitor_lines`]: the text of the visitor's last `n` messages, oldest first.
    pub async fn last_visitor_lines(
        &self,
        conversation_id: &str,
        n: i64,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let id = conversation_id.to_string();
                db.read(move |c| last_visitor_lines(c, &id, n)).await
            }
            Store::Postgres(pg) => {
                let rows = client(pg)
                    .await?
                    .query(
                        "SELECT data::json ->> 'text' FROM events
                         WHERE conversation_id = $1 AND type = 'message.created'
                           AND data::json ->> 'author' = 'visitor'
                           AND json_typeof(data::json -> 'text') = 'string'
                         ORDER BY seq DESC LIMIT greatest($2::bigint, 0)",
                        &[&conversation_id, &n],
                    )
                    .await
                    .map_err(PgError::from)?;
                Ok(rows.iter().rev().map(|r| r.get(0)).collect())
            }
        }
    }
}

/// An offline form sent outside any conversation (the no-JavaScript contact page).
pub use crate::store::forms::Submitted;

pub fn write_submission(
    conn: &Connection,
    s: &Submitted<'_>,
    items: &[Item],
    now: Timestamp,
) -> Result<String, StoreError> {
    let Submitted {
        bot,
        form,
        values,
        page_url,
        ip,
    } = *s;
    let id = wire::new_id("f");
    conn.execute(
        "INSERT INTO form_submissions (id, bot, form, fields, page_url, ip, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            bot,
            form,
            serde_json::to_string(values).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            page_url,
            ip,
            stamp(now)
        ],
    )?;
    for item in items {
        outbox::enqueue(conn, item, now)?;
    }
    Ok(id)
}

impl Store {
    /// [`write_submission`]: stores an offline form sent outside any conversation and queues
    /// `items` (its mail and webhook calls), all or nothing, then rings `doorbell` once they
    /// are durable; answers the form's id. One writer job on SQLite, whose after-commit step
    /// rings; one transaction on PostgreSQL (`effects::insert_form`, `outbox::enqueue`). A
    /// PostgreSQL commit whose answer was lost is `CommitUnknown`, and the form may be
    /// stored: the sender, told to try again, may send it twice.
    pub async fn write_submission(
        &self,
        submitted: &Submitted<'_>,
        items: &[Item],
        now: Timestamp,
        doorbell: &outbox::Doorbell,
    ) -> Result<String, StoreError> {
        match self {
            Store::Sqlite(db) => {
                let (bot, form) = (submitted.bot.to_string(), submitted.form.to_string());
                let values = submitted.values.clone();
                let page_url = submitted.page_url.map(str::to_string);
                let ip = submitted.ip.map(str::to_string);
                let items = items.to_vec();
                let doorbell = doorbell.clone();
                db.writer
                    .write(
                        move |c| {
                            let submitted = Submitted {
                                bot: &bot,
                                form: &form,
                                values: &values,
                                page_url: page_url.as_deref(),
                                ip: ip.as_deref(),
                            };
                            write_submission(c, &submitted, &items, now)
                        },
                        move |_| doorbell.ring(),
                    )
                    .await
            }
            Store::Postgres(pg) => {
                let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
                let row = FormRow {
                    id: wire::new_id("f"),
                    bot: submitted.bot.to_string(),
                    form: submitted.form.to_string(),
                    conversation_id: None,
                    visitor_id: None,
                    fields: serde_json::to_string(submitted.values).map_err(corrupt)?,
                    page_url: submitted.page_url.map(str::to_string),
                    ip: submitted.ip.map(str::to_string),
                    created_at: stamp(now),
                };
                let queued = items
                    .iter()
                    .map(|item| {
                        Ok(NewItem {
                            id: crate::ids::new_id("o"),
                            kind: item.kind().to_string(),
                            payload: serde_json::to_string(item).map_err(corrupt)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let mut conn = client(pg).await?;
                let tx = conn.transaction().await.map_err(PgError::from)?;
                crate::store::postgres::effects::insert_form(&tx, &row).await?;
                let queued: Vec<&NewItem> = queued.iter().collect();
                crate::store::postgres::outbox::enqueue(&tx, &queued).await?;
                tx.commit()
                    .await
                    .map_err(crate::store::postgres::at_commit)?;
                doorbell.ring();
                Ok(row.id)
            }
        }
    }
}

/// Times as stored: RFC 3339 UTC with a fixed six fractional digits, so that text order is
/// time order in SQL (`ORDER BY created_at`).
pub fn stamp(t: Timestamp) -> String {
    format!("{t:.6}")
}

/// The test cluster of `tests/common`, for the tests here that write to PostgreSQL.
#[cfg(test)]
#[path = "../../tests/common/postgres.rs"]
mod pg_cluster;

#[cfg(test)]
mod tests {
    use super::*;

    /// The visitor's last lines come from both halves of the log by conversation (indexed,
    /// and above the mark), newest last, skipping the agent's messages and notes.
    #[test]
    fn last_visitor_lines_span_the_index_and_the_newest_events() {
        let tmp = tempfile::tempdir().unwrap();
        let conn = crate::store::open(tmp.path()).unwrap();
        let add = |conv: &str, kind: &str, author: &str, text: &str| {
            conn.execute(
                "INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data)
                 VALUES (?1, 'b', ?2, 't', 1, json_object('author', ?3, 'text', ?4))",
                [conv, kind, author, text],
            )
            .unwrap();
        };
        add("c", "message.created", "visitor", "one");
        add("c", "message.created", "agent", "hello");
        add("d", "message.created", "visitor", "elsewhere");
        add("c", "message.created", "visitor", "two");
        crate::store::event_index::catch_up(&conn).unwrap();
        add("c", "note.created", "agent", "a note");
        add("c", "message.created", "visitor", "three");
        assert_eq!(last_visitor_lines(&conn, "c", 2).unwrap(), ["two", "three"]);
        assert_eq!(
            last_visitor_lines(&conn, "c", 5).unwrap(),
            ["one", "two", "three"]
        );
        assert_eq!(
            last_visitor_lines(&conn, "c", 0).unwrap(),
            Vec::<String>::new()
        );
    }

    /// Migration 11 on a database of before: each `messages` row reads back from the view
    /// over the log as it was (id, kind, author, text, client id), the search index finds
    /// them by their `seq`, and a retry's client id is still found.
    #[test]
    fn messages_of_before_read_back_from_the_log() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::store::MIGRATIONS.to_version(&mut conn, 10).unwrap();
        conn.execute_batch(
            "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
               VALUES ('v', 'h', 'b', 't', 't');
             INSERT INTO conversations (id, visitor_id, bot, status, created_at, updated_at, state)
               VALUES ('c', 'v', 'b', 'chatting', 't', 't', '{}');
             INSERT INTO events (conversation_id, bot, type, at, visitor_visible, data) VALUES
               ('c', 'b', 'conversation.started', 't1', 1, '{}'),
               ('c', 'b', 'message.created', 't2', 1,
                '{\"author\":\"visitor\",\"message_id\":\"m1\",\"text\":\"where is my parcel\"}'),
               ('c', 'b', 'message.created', 't3', 1,
                '{\"agent\":\"ana@x\",\"author\":\"agent\",\"text\":\"on its way\"}'),
               ('c', 'b', 'note.created', 't4', 0,
                '{\"agent\":\"ana@x\",\"message_id\":\"m3\",\"name\":\"Ana\",\"text\":\"parcel late\"}');
             INSERT INTO messages (id, conversation_id, seq, kind, author, text, client_id, at) VALUES
               ('m1', 'c', 2, 'visitor', NULL, 'where is my parcel', 'w-1', 't2'),
               ('m2', 'c', 3, 'agent', 'ana@x', 'on its way', NULL, 't3'),
               ('m3', 'c', 4, 'note', 'ana@x', 'parcel late', 'n-1', 't4');
             INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');",
        )
        .unwrap();
        let rows = |conn: &rusqlite::Connection| -> Vec<String> {
            conn.prepare(
                "SELECT id, seq, kind, author, text, client_id, at FROM messages ORDER BY seq",
            )
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "{}|{}|{}|{:?}|{}|{:?}|{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let before = rows(&conn);
        assert_eq!(before.len(), 3);
        crate::store::MIGRATIONS.to_latest(&mut conn).unwrap();
        assert_eq!(rows(&conn), before);
        let kind: String = conn
            .query_row(
                "SELECT type FROM sqlite_schema WHERE name = 'messages'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kind, "view");
        // The event that lacked its message id has it now (the log is the only copy).
        let data: String = conn
            .query_row("SELECT data FROM events WHERE seq = 3", [], |r| r.get(0))
            .unwrap();
        assert!(data.contains(r#""message_id":"m2""#), "{data}");
        let found: Vec<i64> = conn
            .prepare(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'parcel' ORDER BY rowid",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(found, vec![2, 4]);
        conn.execute(
            "INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')",
            [],
        )
        .unwrap();
        let secure: i64 = conn
            .query_row(
                "SELECT v FROM messages_fts_config WHERE k = 'secure-delete'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(secure, 1);
        for (cid, want) in [
            ("w-1", Some(("m1", 2))),
            ("n-1", Some(("m3", 4))),
            ("x", None),
        ] {
            let got = seen_client_id(&conn, "c", cid).unwrap();
            assert_eq!(got, want.map(|(id, seq)| (id.to_string(), seq)), "{cid}");
        }
    }

    /// One conversation's transitions (a visitor who gave a name and email, a message with
    /// a file, a request, an accept, the agent's reply and a note), each written as SQLite's
    /// writer writes it and as PostgreSQL's log writer takes it (`Pending::pg_transition`):
    /// the two databases end with the same events (types, data, visibility, client ids),
    /// the same conversation row, the visitor's profile and the message's files alike.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transition_writes_the_same_rows_on_both_stores() {
        use crate::chat::conversation::testkit::{World, accept, agent_says, request, support_bot};
        use crate::chat::conversation::{Attachment, Command, Visitor};
        use crate::store::postgres::{PgStore, log::LogWriter};

        let world = World::new(support_bot("", ""));
        let now = world.now;
        let started = Conversation::start(
            "c1",
            "support",
            "v1",
            Visitor {
                name: Some("Vera Visitor".into()),
                email: Some("vera@visitor.example".into()),
                ..Visitor::default()
            },
            &world.bot,
            now,
        );
        let file = Attachment {
            id: "a1".into(),
            name: "receipt.png".into(),
            kind: "image/png".into(),
            size: 10,
            width: None,
            height: None,
            duration: None,
            url: "/files/a1".into(),
            preview_url: None,
        };
        let mut steps = vec![(started.conversation.clone(), started.events, None)];
        let mut conv = started.conversation;
        for (cmd, client_id) in [
            (
                Command::VisitorMessage {
                    text: "my receipt".into(),
                    attachments: vec![file],
                },
                Some("w-1"),
            ),
            (request(), None),
            (accept("ana@acme.example"), None),
            (
                agent_says("ana@acme.example", "thanks, looking"),
                Some("a-1"),
            ),
            (
                Command::Note {
                    agent: "ana@acme.example".into(),
                    text: "refund?".into(),
                },
                Some("n-1"),
            ),
        ] {
            let (next, events) = world.ok(&conv, cmd);
            steps.push((next.clone(), events, client_id.map(str::to_string)));
            conv = next;
        }
        let pendings: Vec<Pending> = steps
            .into_iter()
            .map(|(conv, events, client_id)| {
                Pending::new(conv, &events, &[], client_id, true, now).unwrap()
            })
            .collect();

        let visitor_row = "INSERT INTO visitors (id, token_hash, bot, created_at, last_seen_at)
                           VALUES ('v1', 'h1', 'support', 't', 't')";
        let file_row = "INSERT INTO attachments (id, sha256, name, type, size, bot, created_ms)
                        VALUES ('a1', 's', 'receipt.png', 'image/png', 10, 'support', 1)";
        let tmp = tempfile::tempdir().unwrap();
        let lite = crate::store::open(tmp.path()).unwrap();
        lite.execute_batch(&format!("{visitor_row}; {file_row};"))
            .unwrap();
        for p in &pendings {
            write_transition(&lite, p).unwrap();
        }

        let cluster = pg_cluster::Postgres::start();
        let pg = PgStore::connect(&cluster.database("transitions"), 2)
            .await
            .unwrap();
        let client = pg.pool().get().await.unwrap();
        client
            .batch_execute(&format!("{visitor_row}; {file_row};"))
            .await
            .unwrap();
        let log = LogWriter::start(&pg, 1);
        for (version, p) in pendings.iter().enumerate() {
            let written = log
                .write(p.pg_transition(version as i64, Some(2), None).unwrap())
                .await
                .unwrap();
            assert!(written.is_ok(), "step {version}: {written:?}");
        }

        // The events, as one text per row.
        let mut stmt = lite
            .prepare(
                "SELECT seq, conversation_id, bot, type, at, visitor_visible, data, client_id
                 FROM events ORDER BY seq",
            )
            .unwrap();
        let on_sqlite: Vec<String> = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}|{}|{}|{}|{}|{}|{}|{:?}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let on_postgres: Vec<String> = client
            .query(
                "SELECT seq, conversation_id, bot, type, at, visitor_visible, data, client_id
                 FROM events ORDER BY seq",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{:?}",
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                    r.get::<_, String>(4),
                    r.get::<_, bool>(5),
                    r.get::<_, String>(6),
                    r.get::<_, Option<String>>(7),
                )
            })
            .collect();
        let client_ids: Vec<&str> = on_sqlite
            .iter()
            .filter_map(|e| e.rsplit('|').next())
            .filter(|c| *c != "None")
            .collect();
        assert_eq!(
            client_ids,
            ["Some(\"w-1\")", "Some(\"a-1\")", "Some(\"n-1\")"]
        );
        assert!(on_sqlite.len() > 6, "{on_sqlite:#?}");
        assert_eq!(on_postgres, on_sqlite);

        // The conversation's row, the visitor's profile, the message's files.
        let lite_row: (String, Option<String>, String, String, String) = lite
            .query_row(
                "SELECT status, assignee, state, name || ' ' || email, (
                   SELECT group_concat(message_id || '#' || position || '=' || attachment_id)
                   FROM message_attachments) || ' ' || (
                   SELECT conversation_id || ' ' || used_ms FROM attachments WHERE id = 'a1')
                 FROM conversations, visitors WHERE conversations.id = 'c1' AND visitors.id = 'v1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        let r = client
            .query_one(
                "SELECT status, assignee, state, name || ' ' || email, (
                   SELECT string_agg(message_id || '#' || position || '=' || attachment_id, ',')
                   FROM message_attachments) || ' ' || (
                   SELECT conversation_id || ' ' || used_ms FROM attachments WHERE id = 'a1')
                 FROM conversations, visitors WHERE conversations.id = 'c1' AND visitors.id = 'v1'",
                &[],
            )
            .await
            .unwrap();
        let pg_row: (String, Option<String>, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        assert_eq!(lite_row.0, "chatting");
        assert_eq!(lite_row.1.as_deref(), Some("ana@acme.example"));
        assert_eq!(lite_row.3, "Vera Visitor vera@visitor.example");
        assert!(
            lite_row
                .4
                .ends_with(&format!(" c1 {}", now.as_millisecond())),
            "{}",
            lite_row.4
        );
        assert_eq!(pg_row, lite_row);
        let version: i64 = client
            .query_one("SELECT version FROM conversations WHERE id = 'c1'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, pendings.len() as i64);
        // A transition refused by its guard writes none of its effects either: the message
        // with the file again (a client's retry, found by its client id), and the same
        // without its client id, at a version long gone.
        use crate::store::postgres::conversations::Refused;
        let retry = log
            .write(pendings[1].pg_transition(1, None, None).unwrap())
            .await
            .unwrap();
        let first_seq = on_sqlite
            .iter()
            .find(|e| e.ends_with("Some(\"w-1\")"))
            .and_then(|e| e.split('|').next()?.parse().ok())
            .unwrap();
        assert_eq!(retry, Err(Refused::Duplicate { seq: first_seq }));
        let mut anonymous = pendings[1].pg_transition(1, None, None).unwrap();
        anonymous.guard.as_mut().unwrap().client_id = None;
        assert_eq!(log.write(anonymous).await.unwrap(), Err(Refused::Stale));
        let links: i64 = client
            .query_one("SELECT count(*) FROM message_attachments", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(links, 1);
    }
}
