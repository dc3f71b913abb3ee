//! The durable outbox: mail and webhook calls are rows written in the same transaction as
//! the event that causes them, then delivered by one worker with retries and exponential
//! backoff. Nothing is lost: SMTP down delays mail, a crash before delivery delivers after
//! the restart. Delivery is at least once: a crash between the server's "accepted" and our
//! record of it sends that one mail again, with the same `Message-ID`.

use std::sync::Arc;
use std::time::Duration;

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
use crate::store::StoreError;
use crate::store::reader::Readers;
use crate::store::writer::Writer;
use crate::webhooks;

/// Attempts before an item becomes a dead letter (with the backoff capped at an hour, about
/// a day of trying).
pub const MAX_ATTEMPTS: i64 = 30;
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long one webhook call may take.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

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
    let mut out = json!({});
    for row in rows {
        let (kind, status, n) = row?;
        out[kind][status] = json!(n);
    }
    Ok(out)
}

/// Items of one status, newest first, without their bodies' secrets (there are none).
pub fn list(conn: &Connection, status: &str, limit: i64) -> Result<Vec<Value>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, kind, payload, status, attempts, last_error, created_at, sent_at
         FROM outbox WHERE status = ?1 ORDER BY created_at DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![status, limit], |r| {
        let payload: String = r.get(2)?;
        let item: Value = serde_json::from_str(&payload).unwrap_or(Value::Null);
        Ok(json!({
            "id": r.get::<_, String>(0)?,
            "kind": r.get::<_, String>(1)?,
            "summary": summary(&item),
            "status": r.get::<_, String>(3)?,
            "attempts": r.get::<_, i64>(4)?,
            "last_error": r.get::<_, Option<String>>(5)?,
            "created_at": r.get::<_, String>(6)?,
            "sent_at": r.get::<_, Option<String>>(7)?,
        }))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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

pub struct Worker {
    pub readers: Readers,
    pub writer: Writer,
    pub transport: Transport,
    pub from: String,
    pub live: Arc<ArcSwap<Live>>,
    pub doorbell: Doorbell,
    /// The first retry's delay; each further one doubles.
    pub retry_base: Duration,
}

struct Due {
    id: String,
    attempts: i64,
    item: Result<Item, String>,
}

impl Worker {
    /// Runs until the process ends.
    pub async fn run(self) {
        tracing::info!("outbox: mail goes to {}", self.transport.describe());
        loop {
            let due = match self.due().await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!("outbox: cannot read the queue: {e}");
                    Vec::new()
                }
            };
            let idle = due.is_empty();
            for item in due {
                self.deliver(item).await;
            }
            if idle {
                let wait = self.until_next().await;
                let _ = tokio::time::timeout(wait, self.doorbell.0.notified()).await;
            }
        }
    }

    async fn due(&self) -> Result<Vec<Due>, StoreError> {
        let now = Timestamp::now().as_millisecond();
        self.readers
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id, attempts, payload FROM outbox
                     WHERE status = 'pending' AND next_attempt_ms <= ?1
                     ORDER BY next_attempt_ms LIMIT 32",
                )?;
                let rows = stmt.query_map([now], |r| {
                    let payload: String = r.get(2)?;
                    Ok(Due {
                        id: r.get(0)?,
                        attempts: r.get(1)?,
                        item: serde_json::from_str(&payload).map_err(|e| e.to_string()),
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    /// How long to sleep when nothing is due: until the next retry, at most a second.
    async fn until_next(&self) -> Duration {
        let next: Option<i64> = self
            .readers
            .read(|c| {
                Ok(c.query_row(
                    "SELECT min(next_attempt_ms) FROM outbox WHERE status = 'pending'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap_or(None);
        let now = Timestamp::now().as_millisecond();
        let ms = next.map_or(1000, |n| (n - now).clamp(0, 1000));
        Duration::from_millis(ms as u64)
    }

    async fn deliver(&self, due: Due) {
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
        let now = Timestamp::now();
        let id = due.id.clone();
        let attempts = due.attempts + 1;
        let kept = match (&result, &due.item) {
            (Ok(_), Ok(item)) => as_kept_once_sent(item),
            _ => None,
        };
        let record = match &result {
            Ok(note) => {
                tracing::info!("outbox: {id} delivered ({note})");
                Outcome::Sent
            }
            Err(SendError::Permanent(e)) => {
                tracing::warn!("outbox: {id} failed for good: {e}");
                Outcome::Dead(e.clone())
            }
            Err(SendError::Retry(e) | SendError::RetryAfter(e, _)) if attempts >= MAX_ATTEMPTS => {
                tracing::warn!("outbox: {id} failed {attempts} times, giving up: {e}");
                Outcome::Dead(e.clone())
            }
            Err(failure @ (SendError::Retry(e) | SendError::RetryAfter(e, _))) => {
                let asked = match failure {
                    SendError::RetryAfter(_, wait) => *wait,
                    _ => Duration::ZERO,
                };
                let wait = backoff(self.retry_base, attempts).max(asked);
                tracing::warn!("outbox: {id} failed (attempt {attempts}), again in {wait:?}: {e}");
                Outcome::Retry(e.clone(), now.as_millisecond() + wait.as_millis() as i64)
            }
        };
        let written = self
            .writer
            .run(move |c| {
                match record {
                    Outcome::Sent => c.execute(
                        "UPDATE outbox SET status = 'sent', attempts = ?2, sent_at = ?3, last_error = NULL,
                         payload = coalesce(?4, payload)
                         WHERE id = ?1",
                        params![id, attempts, now.to_string(), kept],
                    )?,
                    Outcome::Dead(e) => c.execute(
                        "UPDATE outbox SET status = 'dead', attempts = ?2, last_error = ?3 WHERE id = ?1",
                        params![id, attempts, e],
                    )?,
                    Outcome::Retry(e, next) => c.execute(
                        "UPDATE outbox SET attempts = ?2, last_error = ?3, next_attempt_ms = ?4
                         WHERE id = ?1",
                        params![id, attempts, e, next],
                    )?,
                };
                Ok(())
            })
            .await;
        if let Err(e) = written {
            tracing::error!("outbox: cannot record the delivery of {}: {e}", due.id);
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

enum Outcome {
    Sent,
    Dead(String),
    Retry(String, i64),
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
