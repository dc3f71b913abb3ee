//! Conversations on PostgreSQL, guarded for replicas: a transition is written only if the
//! conversation is still at the version it was read at (first accept wins: the loser finds
//! the version moved), and a transition that gives an agent a chat only if the agent stays
//! within `max_chats`, counted under the agent's row lock.
//!
//! A group commit locks in one order, always: the group's conversations (by id), then its
//! agents (by email), then the counter row (`log::append`, last), so two replicas' groups
//! do not wait for each other in a circle on these. Written after them, in the group's
//! order: new conversations (two groups inserting the same ids in opposite orders could
//! deadlock; ids are random, and PostgreSQL breaks it, after which `log` retries the jobs
//! one by one) and timer rows (under their conversation's lock already).

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::GenericClient;

use super::PgError;

/// The statuses in which a conversation counts against its assignee's `max_chats`.
pub const ACTIVE: [&str; 2] = ["assigned", "chatting"];

/// A conversation's row: the columns of SQLite's `conversations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    pub id: String,
    pub visitor_id: String,
    pub bot: String,
    pub status: String,
    pub assignee: Option<String>,
    pub team: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub requested_at: Option<String>,
    pub state: String,
}

impl ConversationRow {
    fn load_of(&self) -> Option<&str> {
        self.assignee
            .as_deref()
            .filter(|_| ACTIVE.contains(&self.status.as_str()))
    }
}

/// What a transition may write: the conversation's new row, if it is still at `version`
/// (0: the conversation is new), and, with `max_chats`, only if the row's assignee stays
/// within it when the row gives them a chat they did not have.
#[derive(Debug, Clone)]
pub struct Guard {
    pub row: ConversationRow,
    pub version: i64,
    pub max_chats: Option<u32>,
    /// The conversation's earliest deadline after the transition (RFC 3339), or none: its
    /// row in `timers`, which any replica may claim when it is due (`timers::claim`).
    pub due_at: Option<String>,
    /// The client's id of the message the transition writes: when an event of the
    /// conversation already carries it, the transition is a retry of one written before,
    /// and is refused as [`Refused::Duplicate`] with that event's `seq`, whatever the
    /// version (the first write moved it).
    pub client_id: Option<String>,
}

/// Why a guarded transition was not written (nothing of it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The conversation moved on since it was read (another replica wrote it): read it
    /// again. For an accept, this is the loser of the race.
    Stale,
    /// The agent already has `max_chats` active chats.
    AgentFull,
    /// The message was written before (a client's retry): the `seq` of its event.
    Duplicate { seq: i64 },
}

const ROW: &str =
    "id, visitor_id, bot, status, assignee, team, created_at, updated_at, requested_at, state";

/// A conversation and its version, or `None`.
pub async fn load(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<(i64, ConversationRow)>, PgError> {
    let row = client
        .query_opt(
            &format!("SELECT version, {ROW} FROM conversations WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.map(|r| {
        (
            r.get(0),
            ConversationRow {
                id: r.get(1),
                visitor_id: r.get(2),
                bot: r.get(3),
                status: r.get(4),
                assignee: r.get(5),
                team: r.get(6),
                created_at: r.get(7),
                updated_at: r.get(8),
                requested_at: r.get(9),
                state: r.get(10),
            },
        )
    }))
}

/// Decides and writes the guards of one group, in the open transaction `tx`: `None` for each
/// one written, or why it was refused. Takes the conversations' locks, then those of the
/// agents it gives a chat.
pub async fn write(
    tx: &impl GenericClient,
    guards: &[&Guard],
) -> Result<Vec<Option<Refused>>, PgError> {
    if guards.is_empty() {
        return Ok(Vec::new());
    }
    let ids: BTreeSet<&str> = guards.iter().map(|g| g.row.id.as_str()).collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    // Lock the group's conversations, by id. `now` holds what each one is as the group goes:
    // its version and whose chat it counts as.
    let mut now: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    for r in tx
        .query(
            &tx.prepare_cached(
                "SELECT id, version, assignee, status FROM conversations
             WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .await?,
            &[&ids],
        )
        .await?
    {
        let status: String = r.get(3);
        let assignee: Option<String> = r.get(2);
        let load = assignee.filter(|_| ACTIVE.contains(&status.as_str()));
        now.insert(r.get(0), (r.get(1), load));
    }
    // Messages written before, by client id: looked up under the conversations' locks,
    // which every write of those conversations takes, so a retry racing its original on
    // another replica finds it once the original commits.
    let retried: Vec<(&str, &str)> = guards
        .iter()
        .filter_map(|g| Some((g.row.id.as_str(), g.client_id.as_deref()?)))
        .collect();
    let mut written_before: BTreeMap<(String, String), i64> = BTreeMap::new();
    if !retried.is_empty() {
        let (convs, ids): (Vec<&str>, Vec<&str>) = retried.into_iter().unzip();
        for r in tx
            .query(
                &tx.prepare_cached(
                    "SELECT e.conversation_id, e.client_id, min(e.seq) FROM events e
                 JOIN unnest($1::text[], $2::text[]) AS k (conversation_id, client_id)
                   ON e.conversation_id = k.conversation_id AND e.client_id = k.client_id
                 GROUP BY e.conversation_id, e.client_id",
                )
                .await?,
                &[&convs, &ids],
            )
            .await?
        {
            written_before.insert((r.get(0), r.get(1)), r.get(2));
        }
    }
    // Lock the agents the group gives a chat, by email (a row is made the first time). A
    // chat that already counts for its agent adds nothing to their load: a message in an
    // assigned chat takes no lock (it would queue every write of the agent's chats, on
    // every replica, behind one row). A conversation written twice in the group may lose
    // and regain its agent within it, so its agent is locked anyway.
    let mut writes: BTreeMap<&str, usize> = BTreeMap::new();
    for g in guards {
        *writes.entry(g.row.id.as_str()).or_default() += 1;
    }
    let agents: BTreeSet<&str> = guards
        .iter()
        .filter(|g| g.max_chats.is_some())
        .filter_map(|g| {
            let agent = g.row.load_of()?;
            let had = now.get(&g.row.id).and_then(|(_, a)| a.as_deref());
            (had != Some(agent) || writes[g.row.id.as_str()] > 1).then_some(agent)
        })
        .collect();
    let agents: Vec<&str> = agents.into_iter().collect();
    let mut loads: BTreeMap<String, i64> = BTreeMap::new();
    if !agents.is_empty() {
        tx.execute(
            "INSERT INTO agents (email) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            &[&agents],
        )
        .await?;
        tx.query(
            "SELECT email FROM agents WHERE email = ANY($1) ORDER BY email FOR UPDATE",
            &[&agents],
        )
        .await?;
        // Their chats outside this group, as committed by the time the locks were granted:
        // whoever gave them a chat held the same lock until its commit.
        let active: Vec<&str> = ACTIVE.to_vec();
        for r in tx
            .query(
                "SELECT assignee, count(*) FROM conversations
                 WHERE assignee = ANY($1) AND status = ANY($2) AND NOT id = ANY($3)
                 GROUP BY assignee",
                &[&agents, &active, &ids],
            )
            .await?
        {
            loads.insert(r.get(0), r.get(1));
        }
    }
    let load = |now: &BTreeMap<String, (i64, Option<String>)>, agent: &str, except: &str| {
        loads.get(agent).copied().unwrap_or(0)
            + now
                .iter()
                .filter(|(id, (_, a))| id.as_str() != except && a.as_deref() == Some(agent))
                .count() as i64
    };
    let mut outcome = Vec::with_capacity(guards.len());
    for guard in guards {
        let row = &guard.row;
        let key = guard
            .client_id
            .as_ref()
            .map(|c| (row.id.clone(), c.clone()));
        if let Some(seq) = key.as_ref().and_then(|k| written_before.get(k)) {
            outcome.push(Some(Refused::Duplicate { seq: *seq }));
            continue;
        }
        let current = now.get(&row.id);
        let version = current.map_or(0, |(v, _)| *v);
        if version != guard.version {
            outcome.push(Some(Refused::Stale));
            continue;
        }
        let had = current.and_then(|(_, a)| a.as_deref());
        if let (Some(max), Some(agent)) = (guard.max_chats, row.load_of())
            && had != Some(agent)
            && load(&now, agent, &row.id) >= i64::from(max)
        {
            outcome.push(Some(Refused::AgentFull));
            continue;
        }
        let written = if guard.version == 0 {
            tx.execute(
                &format!(
                    "INSERT INTO conversations (version, {ROW})
                     VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[
                    &row.id,
                    &row.visitor_id,
                    &row.bot,
                    &row.status,
                    &row.assignee,
                    &row.team,
                    &row.created_at,
                    &row.updated_at,
                    &row.requested_at,
                    &row.state,
                ],
            )
            .await?
        } else {
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE conversations SET version = version + 1, status = $2, assignee = $3,
                     team = $4, updated_at = $5, requested_at = $6, state = $7
                 WHERE id = $1",
                )
                .await?,
                &[
                    &row.id,
                    &row.status,
                    &row.assignee,
                    &row.team,
                    &row.updated_at,
                    &row.requested_at,
                    &row.state,
                ],
            )
            .await?
        };
        if written == 0 {
            // Made at the same moment by another replica (an id chosen twice).
            outcome.push(Some(Refused::Stale));
            continue;
        }
        // The timer: set anew (any claim on it ends with the transition that fired it), or
        // gone when nothing is due any more.
        match &guard.due_at {
            Some(due) => {
                tx.execute(&tx.prepare_cached("INSERT INTO timers (conversation_id, due_at) VALUES ($1, $2::text::timestamptz)
                     ON CONFLICT (conversation_id) DO UPDATE
                     SET due_at = excluded.due_at, leased_by = NULL, lease_until = NULL").await?,
                    &[&row.id, due],
                )
                .await?;
            }
            None => {
                tx.execute(
                    &tx.prepare_cached("DELETE FROM timers WHERE conversation_id = $1")
                        .await?,
                    &[&row.id],
                )
                .await?;
            }
        }
        now.insert(
            row.id.clone(),
            (version + 1, row.load_of().map(str::to_owned)),
        );
        outcome.push(None);
    }
    Ok(outcome)
}
