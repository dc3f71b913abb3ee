//! The numbers behind the dashboard, derived from the event log: every figure is a count or
//! a duration between two events, so it can be recomputed for any period.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use rusqlite::params_from_iter;
use serde_json::{Value, json};

use super::queries::renumber;
use crate::chat::conversation::{EventData, Rating};
use crate::store::handle::client;
use crate::store::postgres::PgError;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub from: Timestamp,
    pub to: Timestamp,
    /// One bot, or every bot the caller may see.
    pub bot: Option<String>,
    /// The bots the caller may see (`None`: all).
    pub visible: Option<BTreeSet<String>>,
}

#[derive(Default)]
struct Tally {
    conversations: u64,
    requests: u64,
    accepted: u64,
    timeouts: u64,
    offline: u64,
    resolved: u64,
    forms: u64,
    rated_good: u64,
    rated_bad: u64,
    messages: BTreeMap<String, u64>,
    calls: u64,
    call_secs: Vec<f64>,
    wait_secs: Vec<f64>,
    resolve_secs: Vec<f64>,
}

impl Tally {
    fn json(&mut self) -> Value {
        json!({
            "conversations": self.conversations,
            "live_chat_requests": self.requests,
            "accepted": self.accepted,
            "timed_out": self.timeouts,
            "offline": self.offline,
            "missed": self.timeouts + self.offline,
            "resolved": self.resolved,
            "offline_forms": self.forms,
            "ratings": { "good": self.rated_good, "bad": self.rated_bad },
            "messages": self.messages,
            "video_calls": self.calls,
            "call_duration_secs": summary(&mut self.call_secs),
            "time_to_accept_secs": summary(&mut self.wait_secs),
            "time_to_resolve_secs": summary(&mut self.resolve_secs),
        })
    }
}

/// Median, 90th percentile and mean of durations in seconds (nulls when there are none).
fn summary(values: &mut [f64]) -> Value {
    if values.is_empty() {
        return json!({ "count": 0, "median": null, "p90": null, "mean": null });
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    json!({
        "count": values.len(),
        "median": round(at(0.5)),
        "p90": round(at(0.9)),
        "mean": round(mean),
    })
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub async fn stats(store: &Store, q: StatsQuery) -> Result<Value, StoreError> {
    if q.visible.as_ref().is_some_and(BTreeSet::is_empty) {
        return Ok(empty(&q));
    }
    match store {
        Store::Sqlite(db) => db.read(move |c| compute(c, &q)).await,
        Store::Postgres(pg) => {
            let (from, to) = (super::persist::stamp(q.from), super::persist::stamp(q.to));
            let visible: Option<Vec<String>> = q.visible.clone().map(|v| v.into_iter().collect());
            let rows = client(pg)
                .await?
                .query(
                    &format!(
                        "SELECT conversation_id, bot, type, at, data FROM events
                         WHERE at >= $1 AND at < $2 AND type IN ({COUNTED})
                           AND ($3::text IS NULL OR bot = $3)
                           AND ($4::text[] IS NULL OR bot = ANY($4))
                         ORDER BY seq"
                    ),
                    &[&from, &to, &q.bot, &visible],
                )
                .await
                .map_err(PgError::from)?;
            fold(
                rows.iter()
                    .map(|r| Ok((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))),
                &q,
            )
        }
    }
}

/// The types of event the figures count.
const COUNTED: &str = "'conversation.started', 'livechat.requested', 'livechat.accepted', \
    'livechat.timeout', 'livechat.offline', 'conversation.resolved', 'form.submitted', \
    'message.created', 'conversation.rated', 'video.started', 'video.ended'";

/// An event the figures read: conversation, bot, type, time, data.
type StatRow = (Option<String>, Option<String>, String, String, String);

fn compute(c: &rusqlite::Connection, q: &StatsQuery) -> Result<Value, StoreError> {
    let mut sql = format!(
        "SELECT conversation_id, bot, type, at, data FROM events
         WHERE at >= ? AND at < ? AND type IN ({COUNTED})"
    );
    let mut args = vec![super::persist::stamp(q.from), super::persist::stamp(q.to)];
    if let Some(bot) = &q.bot {
        sql.push_str(" AND bot = ?");
        args.push(bot.clone());
    }
    if let Some(visible) = &q.visible {
        sql.push_str(&format!(
            " AND bot IN ({})",
            vec!["?"; visible.len()].join(", ")
        ));
        args.extend(visible.iter().cloned());
    }
    sql.push_str(" ORDER BY seq");
    let mut stmt = c.prepare(&renumber(&sql))?;
    let rows = stmt.query_map(params_from_iter(args.iter()), |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })?;
    fold(rows.map(|r| r.map_err(StoreError::from)), q)
}

/// The figures of `q` from the events it counts, in the log's order.
fn fold(
    rows: impl Iterator<Item = Result<StatRow, StoreError>>,
    q: &StatsQuery,
) -> Result<Value, StoreError> {
    let mut total = Tally::default();
    let mut by_bot: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_agent: BTreeMap<String, AgentTally> = BTreeMap::new();
    let mut requested_at: HashMap<String, Timestamp> = HashMap::new();
    for row in rows {
        let (conv, bot, kind, at, data) = row?;
        let event = match EventData::from_stored(&kind, &data) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("stats: a stored {kind} event does not read: {e}");
                continue;
            }
        };
        let at: Option<Timestamp> = at.parse().ok();
        let bot = bot.unwrap_or_default();
        let conv = conv.unwrap_or_default();
        let apply = |t: &mut Tally| match &event {
            EventData::ConversationStarted { .. } => t.conversations += 1,
            EventData::LivechatRequested { .. } => t.requests += 1,
            EventData::LivechatAccepted { .. } => {
                t.accepted += 1;
                if let (Some(start), Some(at)) = (requested_at.get(&conv), at) {
                    t.wait_secs.push(at.duration_since(*start).as_secs_f64());
                }
            }
            EventData::LivechatTimeout { .. } => t.timeouts += 1,
            EventData::LivechatOffline { .. } => t.offline += 1,
            EventData::ConversationResolved {
                time_to_resolve_secs,
                ..
            } => {
                t.resolved += 1;
                if let Some(secs) = time_to_resolve_secs {
                    t.resolve_secs.push(*secs as f64);
                }
            }
            EventData::FormSubmitted { .. } => t.forms += 1,
            EventData::VideoStarted { .. } => t.calls += 1,
            EventData::VideoEnded { duration_secs, .. } if *duration_secs > 0 => {
                t.call_secs.push(*duration_secs as f64);
            }
            EventData::ConversationRated { rating, .. } => match rating {
                Rating::Good => t.rated_good += 1,
                Rating::Bad => t.rated_bad += 1,
            },
            EventData::MessageCreated(m) => {
                *t.messages.entry(m.author.as_str().to_string()).or_default() += 1;
            }
            _ => {}
        };
        apply(&mut total);
        apply(by_bot.entry(bot).or_default());
        match event {
            EventData::LivechatRequested { .. } => {
                if let Some(at) = at {
                    requested_at.insert(conv, at);
                }
            }
            EventData::LivechatAccepted { agent } => {
                by_agent.entry(agent).or_default().accepted += 1;
            }
            EventData::ConversationResolved { by, .. } => {
                by_agent.entry(by).or_default().resolved += 1;
            }
            EventData::ConversationRated {
                rating,
                agent: Some(agent),
                ..
            } => {
                let a = by_agent.entry(agent).or_default();
                match rating {
                    Rating::Good => a.rated_good += 1,
                    Rating::Bad => a.rated_bad += 1,
                }
            }
            _ => {}
        }
    }
    Ok(json!({
        "from": q.from.to_string(),
        "to": q.to.to_string(),
        "bot": q.bot,
        "total": total.json(),
        "bots": by_bot.iter_mut().map(|(k, t)| (k.clone(), t.json())).collect::<BTreeMap<_, _>>(),
        "agents": by_agent
            .into_iter()
            .map(|(agent, a)| json!({
                "agent": agent,
                "accepted": a.accepted,
                "resolved": a.resolved,
                "ratings": { "good": a.rated_good, "bad": a.rated_bad },
            }))
            .collect::<Vec<_>>(),
    }))
}

/// One agent's figures: requests accepted, conversations resolved, ratings of their chats.
#[derive(Default)]
struct AgentTally {
    accepted: u64,
    resolved: u64,
    rated_good: u64,
    rated_bad: u64,
}

fn empty(q: &StatsQuery) -> Value {
    json!({
        "from": q.from.to_string(),
        "to": q.to.to_string(),
        "bot": q.bot,
        "total": Tally::default().json(),
        "bots": {},
        "agents": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_of_durations() {
        assert_eq!(
            summary(&mut []),
            json!({"count": 0, "median": null, "p90": null, "mean": null})
        );
        let mut v = vec![30.0, 10.0, 20.0];
        assert_eq!(
            summary(&mut v),
            json!({"count": 3, "median": 20.0, "p90": 30.0, "mean": 20.0})
        );
    }
}
