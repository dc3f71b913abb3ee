//! The durable outbox: mail and webhook calls are rows written in the same transaction as
//! the event that causes them, then delivered by one worker with retries and exponential
//! backoff (on PostgreSQL, one worker per replica, each delivering what it claimed; the
//! store's side is `outbox_stored`). Nothing is lost: SMTP down delays mail, a crash before
//! delivery delivers after the restart. Delivery is at least once: a crash between the
//! server's "accepted" and our record of it sends that one mail again, with the same
//! `Message-ID`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jiff::Timestamp;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::transport::{Mail, SendError, Transport};
use crate::config::Live;
use crate::config::schema::WebhookKind;
use crate::ids::new_id;
use crate::store::{Store, StoreError};
use crate::webhooks;

/// Attempts before an item becomes a dead letter (with the backoff capped at an hour, about
/// a day of trying).
pub const MAX_ATTEMPTS: i64 = 30;
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long one webhook call may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Items taken at a time.
const BATCH: i64 = 32;
/// On PostgreSQL, how long a replica's claim on a batch holds others off (`Store::claim_outbox`):
/// a replica that dies holding claims delays them by this much at most. The worker stops
/// delivering a batch at half of it and gives the rest back, so that a slow batch (a mail
/// server answering at its timeout) is not claimed and sent again by another replica.
pub const LEASE: Duration = Duration::from_secs(60);

/// One thing to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Mail(Mail),
    /// A webhook call. The URL and secret are looked up in the live config when it is sent,
    /// so no secret is ever stored in the database.
    Webhook {
        bot: String,
        webhook: String,
        webhook_kind: WebhookKind,
        event: String,
        /// The JSON body, as it will be sent.
        body: String,
    },
}

impl Item {
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Mail(_) => "mail",
            Item::Webhook { .. } => "webhook",
        }
    }
}

/// Writes an item to deliver; part of the caller's transaction.
pub fn enqueue(conn: &Connection, item: &Item, now: Timestamp) -> Result<String, StoreError> {
    let payload = serde_json::to_string(item).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    enqueue_encoded(conn, item.kind(), &payload, now)
}

/// `enqueue` of an item already encoded (as JSON, with its kind).
pub fn enqueue_encoded(
    conn: &Connection,
    kind: &str,
    payload: &str,
    now: Timestamp,
) -> Result<String, StoreError> {
    let id = new_id("o");
    conn.prepare_cached(
        "INSERT INTO outbox (id, kind, payload, status, attempts, next_attempt_ms, created_at)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5)",
    )?
    .execute(params![
        id,
        kind,
        payload,
        now.as_millisecond(),
        now.to_string()
    ])?;
    Ok(id)
}

/// Deletes every item about the given conversations (a mail or webhook body that names one
/// of their ids: the console links and webhook payloads all do) and every mail to `email`
/// (a transcript); answers their ids, which also name their mail files (see
/// `transport::remove_mail_files`). Pending items are never sent; sent ones lose their copy.
pub fn forget(
    conn: &Connection,
    conversation_ids: &[String],
    email: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::new();
    for conversation in conversation_ids {
        let mut stmt =
            conn.prepare_cached("DELETE FROM outbox WHERE instr(payload, ?1) > 0 RETURNING id")?;
        let gone = stmt.query_map([conversation], |r| r.get::<_, String>(0))?;
        for id in gone {
            ids.push(id?);
        }
    }
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        let mut stmt = conn.prepare_cached(
            "DELETE FROM outbox WHERE kind = 'mail' AND EXISTS
               (SELECT 1 FROM json_each(payload, '$.to') WHERE lower(value) = lower(?1))
             RETURNING id",
        )?;
        let gone = stmt.query_map([email], |r| r.get::<_, String>(0))?;
        for id in gone {
            ids.push(id?);
        }
    }
    Ok(ids)
}

/// Deletes the items delivered (or given up on) that were queued before `cutoff` (a time
/// as `Timestamp`'s `Display` writes it); answers their ids. Retention's part of the outbox.
pub fn forget_settled_before(conn: &Connection, cutoff: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM outbox WHERE status IN ('sent', 'dead') AND created_at < ?1 RETURNING id",
    )?;
    let ids = stmt
        .query_map([cutoff], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// The delay before attempt `attempts + 1`: `base`, doubling, at most an hour.
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let doublings = (attempts - 1).clamp(0, 30) as u32;
    base.saturating_mul(2u32.saturating_pow(doublings))
        .min(MAX_BACKOFF)
}

/// Counts by status, for `/metrics` and the admin API.
pub fn counts(conn: &Connection) -> Result<Value, StoreError> {
    let mut stmt =
        conn.prepare("SELECT kind, status, count(*) FROM outbox GROUP BY kind, status")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    Ok(counts_value(rows.collect::<Result<Vec<_>, _>>()?))
}

/// `{kind: {status: n}}` from `(kind, status, n)` rows: the counts as the API shows them, on
/// either store.
pub(crate) fn counts_value(rows: impl IntoIterator<Item = (String, String, i64)>) -> Value {
    let mut out = json!({});
    for (kind, status, n) in rows {
        out[kind][status] = json!(n);
    }
    out
}

/// Items of one status, newest first, without their bodies' secrets (there are none).
pub fn list(conn: &Connection, status: &str, limit: i64) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, payload, status, attempts, last_error, created_at, sent_at
         FROM outbox WHERE status = ?1 ORDER BY created_at DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![status, limit], |r| {
        Ok(listing_value(Listing {
            id: r.get(0)?,
            kind: r.get(1)?,
            payload: r.get(2)?,
            status: r.get(3)?,
            attempts: r.get(4)?,
            last_error: r.get(5)?,
            created_at: r.get(6)?,
            sent_at: r.get(7)?,
        }))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A stored item as the admin API lists it, read from either store.
pub(crate) use crate::store::postgres::outbox::Listed as Listing;

/// The API's object of a listed item: the payload only as its summary.
pub(crate) fn listing_value(listed: Listing) -> Value {
    let item: Value = serde_json::from_str(&listed.payload).unwrap_or(Value::Null);
    json!({
        "id": listed.id,
        "kind": listed.kind,
        "summary": summary(&item),
        "status": listed.status,
        "attempts": listed.attempts,
        "last_error": listed.last_error,
        "created_at": listed.created_at,
        "sent_at": listed.sent_at,
    })
}

fn summary(item: &Value) -> Value {
    match item["type"].as_str() {
        Some("mail") => json!({"to": item["to"], "subject": item["subject"], "mail": item["kind"]}),
        _ => json!({"bot": item["bot"], "webhook": item["webhook"], "event": item["event"]}),
    }
}

/// Puts a dead letter back in the queue, due now.
pub fn retry(conn: &Connection, id: &str, now: Timestamp) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_ms = ?2
         WHERE id = ?1 AND status = 'dead'",
        params![id, now.as_millisecond()],
    )?;
    Ok(n == 1)
}

/// Wakes the worker when something was queued.
#[derive(Clone, Default)]
pub struct Doorbell(Arc<Notify>);

impl Doorbell {
    pub fn ring(&self) {
        self.0.notify_one();
    }
}

/// An item taken to deliver: on SQLite read by the one worker, on PostgreSQL claimed by a
/// replica's worker for a lease (`Store::claim_outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub id: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The item, or why its payload cannot be read (it is then a dead letter).
    pub item: Result<Item, String>,
}

impl Claimed {
    pub(crate) fn decode(id: String, attempts: i64, payload: &str) -> Claimed {
        Claimed {
            id,
            attempts,
            item: serde_json::from_str(payload).map_err(|e| e.to_string()),
        }
    }
}

/// How a delivery went, as the worker records it (`Store::record_outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered; `kept` replaces the stored payload when the row must not keep what was
    /// sent (`as_kept_once_sent`).
    Sent { kept: Option<String> },
    /// Failed; due again after `wait`.
    Retry { error: String, wait: Duration },
    /// Failed for good: a dead letter.
    Dead { error: String },
}

/// Up to `limit` pending items due at `now_ms`, the longest due first: the SQLite worker's
/// batch (one worker, so reading is taking).
pub fn due(conn: &Connection, now_ms: i64, limit: i64) -> Result<Vec<Claimed>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, attempts, payload FROM outbox
         WHERE status = 'pending' AND next_attempt_ms <= ?1
         ORDER BY next_attempt_ms LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now_ms, limit], |r| {
        let payload: String = r.get(2)?;
        Ok(Claimed::decode(r.get(0)?, r.get(1)?, &payload))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the earliest pending item is due (milliseconds since the epoch), if any.
pub fn next_attempt_ms(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(
        "SELECT min(next_attempt_ms) FROM outbox WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )?)
}

/// Records the delivery of `id`, its `attempts`-th, as of `now`; false when the item is
/// gone (forgotten by an erase meanwhile).
pub fn record(
    conn: &Connection,
    id: &str,
    attempts: i64,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = match outcome {
        Outcome::Sent { kept } => conn.execute(
            "UPDATE outbox SET status = 'sent', attempts = ?2, sent_at = ?3, last_error = NULL,
             payload = coalesce(?4, payload)
             WHERE id = ?1",
            params![id, attempts, now.to_string(), kept],
        )?,
        Outcome::Dead { error } => conn.execute(
            "UPDATE outbox SET status = 'dead', attempts = ?2, last_error = ?3 WHERE id = ?1",
            params![id, attempts, error],
        )?,
        Outcome::Retry { error, wait } => {
            let next = now.as_millisecond() + wait.as_millis() as i64;
            conn.execute(
                "UPDATE outbox SET attempts = ?2, last_error = ?3, next_attempt_ms = ?4
                 WHERE id = ?1",
                params![id, attempts, error, next],
            )?
        }
    };
    Ok(n == 1)
}

pub struct Worker {
    /// Where the queue is: on SQLite this worker is the only one; on PostgreSQL every
    /// replica runs one, and each takes items by claiming them.
    pub store: Store,
    pub transport: Transport,
    pub from: String,
    pub live: Arc<ArcSwap<Live>>,
    pub doorbell: Doorbell,
    /// The first retry's delay; each further one doubles.
    pub retry_base: Duration,
}

impl Worker {
    /// Runs until the process ends.
    pub async fn run(self) {
        tracing::info!("outbox: mail goes to {}", self.transport.describe());
        // Whose claims these are on PostgreSQL: this worker's, while it runs.
        let claimant = new_id("outbox");
        let leased = matches!(self.store, Store::Postgres(_));
        loop {
            let taken = Instant::now();
            let due = match self.store.claim_outbox(&claimant, LEASE, BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!("outbox: cannot read the queue: {e}");
                    Vec::new()
                }
            };
            let idle = due.is_empty();
            let mut due = due.into_iter();
            for item in due.by_ref() {
                self.deliver(&claimant, item).await;
                if leased && taken.elapsed() >= LEASE / 2 {
                    break;
                }
            }
            let rest: Vec<String> = due.map(|d| d.id).collect();
            if !rest.is_empty() {
                tracing::info!(
                    "outbox: {} item(s) given back, the batch took {:?}",
                    rest.len(),
                    taken.elapsed()
                );
                if let Err(e) = self.store.release_outbox(&claimant, &rest).await {
                    tracing::warn!(
                        "outbox: cannot give claims back (they wait out the lease): {e}"
                    );
                }
            }
            if idle {
                let wait = self.until_next().await;
                let _ = tokio::time::timeout(wait, self.doorbell.0.notified()).await;
            }
        }
    }

    /// How long to sleep when nothing is due: until the next item is, at most a second.
    async fn until_next(&self) -> Duration {
        const MOST: Duration = Duration::from_secs(1);
        match self.store.outbox_next_due().await {
            Ok(Some(wait)) => wait.min(MOST),
            Ok(None) | Err(_) => MOST,
        }
    }

    async fn deliver(&self, claimant: &str, due: Claimed) {
        let result = match &due.item {
            Err(e) => Err(SendError::Permanent(format!("unreadable outbox item: {e}"))),
            Ok(Item::Mail(mail)) => self.transport.send(&self.from, mail, &due.id).await,
            Ok(Item::Webhook {
                bot,
                webhook,
                webhook_kind,
                body,
                ..
            }) => {
                self.call_webhook(bot, webhook, *webhook_kind, body.clone())
                    .await
            }
        };
        let id = &due.id;
        let attempts = due.attempts + 1;
        let outcome = match &result {
            Ok(note) => {
                tracing::info!("outbox: {id} delivered ({note})");
                Outcome::Sent {
                    kept: due.item.as_ref().ok().and_then(as_kept_once_sent),
                }
            }
            Err(SendError::Permanent(e)) => {
                tracing::warn!("outbox: {id} failed for good: {e}");
                Outcome::Dead { error: e.clone() }
            }
            Err(SendError::Retry(e) | SendError::RetryAfter(e, _)) if attempts >= MAX_ATTEMPTS => {
                tracing::warn!("outbox: {id} failed {attempts} times, giving up: {e}");
                Outcome::Dead { error: e.clone() }
            }
            Err(failure @ (SendError::Retry(e) | SendError::RetryAfter(e, _))) => {
                let asked = match failure {
                    SendError::RetryAfter(_, wait) => *wait,
                    _ => Duration::ZERO,
                };
                let wait = backoff(self.retry_base, attempts).max(asked);
                tracing::warn!("outbox: {id} failed (attempt {attempts}), again in {wait:?}: {e}");
                Outcome::Retry {
                    error: e.clone(),
                    wait,
                }
            }
        };
        match self.store.record_outbox(claimant, &due, &outcome).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "outbox: the delivery of {id} is not recorded: the item was erased meanwhile, or \
                 its claim ran out and another replica holds it now"
            ),
            Err(e) => tracing::error!("outbox: cannot record the delivery of {id}: {e}"),
        }
    }

    async fn call_webhook(
        &self,
        bot: &str,
        webhook: &str,
        kind: WebhookKind,
        body: String,
    ) -> Result<String, SendError> {
        let live = self.live.load();
        let Some(hook) = live
            .bundle
            .bots
            .get(bot)
            .and_then(|b| b.webhook.get(webhook))
        else {
            return Err(SendError::Permanent(format!(
                "webhook {bot}/{webhook} is no longer configured"
            )));
        };
        let env = crate::config::process_env;
        let url = hook
            .url
            .resolve(&env)
            .map_err(|e| SendError::Retry(format!("webhook {bot}/{webhook}: {e}")))?;
        if url.is_empty() {
            return Err(SendError::Permanent(format!(
                "webhook {bot}/{webhook} is switched off"
            )));
        }
        let secret = match &hook.secret {
            Some(s) => Some(
                s.resolve(&env)
                    .map_err(|e| SendError::Retry(format!("webhook {bot}/{webhook}: {e}")))?,
            ),
            None => None,
        };
        let label = format!("{bot}/{webhook}");
        tokio::task::spawn_blocking(move || {
            webhooks::deliver(
                &url,
                kind,
                secret.as_deref(),
                body.as_bytes(),
                WEBHOOK_TIMEOUT,
            )
        })
        .await
        .map_err(|e| SendError::Retry(format!("webhook {label}: {e}")))?
        .map(|status| format!("webhook {label} answered {status}"))
        .map_err(|d| {
            let message = format!("{label}: {}", d.message);
            match (d.retryable, d.retry_after) {
                (true, Some(wait)) => SendError::RetryAfter(message, wait),
                (true, None) => SendError::Retry(message),
                (false, _) => SendError::Permanent(message),
            }
        })
    }
}

/// What an item's stored payload becomes once it is sent, when not itself: an invitation
/// holds the one-time set-password link, which the database must not keep (only its hash,
/// in `invites`), so its body is dropped; who it went to and the subject stay.
fn as_kept_once_sent(item: &Item) -> Option<String> {
    match item {
        Item::Mail(mail) if mail.kind == super::invites::KIND => {
            let note = "(not kept: this invitation's set-password link is secret)".to_string();
            let kept = Item::Mail(Mail {
                text: note.clone(),
                html: note,
                ..mail.clone()
            });
            serde_json::to_string(&kept).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_an_hour() {
        let base = Duration::from_secs(5);
        assert_eq!(backoff(base, 1), Duration::from_secs(5));
        assert_eq!(backoff(base, 2), Duration::from_secs(10));
        assert_eq!(backoff(base, 3), Duration::from_secs(20));
        assert_eq!(backoff(base, 20), MAX_BACKOFF);
    }

    #[test]
    fn a_sent_invitation_keeps_no_link_and_other_mail_is_kept_as_it_was() {
        let mail = |kind: &str| Mail {
            kind: kind.into(),
            to: vec!["ana@acme.example".into()],
            reply_to: None,
            subject: "Hello".into(),
            text: "http://x/set-password?token=T0k3nAbc".into(),
            html: "<a href=\"http://x/set-password?token=T0k3nAbc\">".into(),
        };
        let kept = as_kept_once_sent(&Item::Mail(mail("invite"))).unwrap();
        assert!(!kept.contains("T0k3nAbc"), "{kept}");
        assert!(
            kept.contains("ana@acme.example") && kept.contains("Hello"),
            "{kept}"
        );
        assert_eq!(as_kept_once_sent(&Item::Mail(mail("offline_form"))), None);
    }
}
