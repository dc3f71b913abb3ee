//! Personal data in the live engine: a visitor's export, erasing a visitor, and the
//! retention sweep. The rows go through the store interface (`engine::privacy_stored`: one
//! writer job on SQLite, one transaction on PostgreSQL); what the engine holds of them
//! (conversations in memory, their timers, agents' load, the token cache) goes with them,
//! the visitor's open sockets are ended, and on SQLite the WAL is cut back so no old page
//! image keeps the text.

use std::path::{Path, PathBuf};

use super::*;
use crate::store::privacy::Erased;

/// Conversations one retention pass erases at most (in one writer job, or one transaction
/// on PostgreSQL); the next pass, at once, takes the rest.
const SWEEP_BATCH: usize = 200;

/// A second look for mail files, after a mail that was being delivered during the erase
/// may have been written.
const LATE_MAIL_CHECK: Duration = Duration::from_secs(30);

/// What an erase or a sweep removed, for the answer and the log.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    pub conversations: usize,
    pub messages: usize,
    pub forms: usize,
    pub pageviews: usize,
    pub events_redacted: usize,
    pub visitors: usize,
    pub outbox_items: usize,
    pub mail_files: usize,
    /// Whether SQLite's WAL was emptied afterwards (false: readers held it, and it empties
    /// at a later checkpoint; always false on PostgreSQL, which has no such step).
    pub wal_truncated: bool,
}

impl Engine {
    /// Everything stored about a visitor (see `store::privacy::export`).
    pub async fn export_visitor(&self, visitor_id: &str) -> Result<Value, EngineError> {
        let exported = self
            .store()
            .export_visitor(visitor_id)
            .await?
            .ok_or(EngineError::NotFound)?;
        Ok(exported)
    }

    /// Erases a visitor and everything about them; `mail_dir` is where the file transport
    /// writes mail. `NotFound` when there is no such visitor.
    pub async fn erase_visitor(
        &self,
        visitor_id: &str,
        mail_dir: &Path,
    ) -> Result<Removed, EngineError> {
        let ids = self
            .store()
            .visitor_conversations(visitor_id)
            .await?
            .ok_or(EngineError::NotFound)?;
        self.forget_visitor(visitor_id);
        // Commands in flight on these conversations finish first; later ones find them gone.
        let entries: Vec<_> = {
            let convs = self.convs();
            ids.iter().filter_map(|id| convs.get(id).cloned()).collect()
        };
        let mut held = Vec::with_capacity(entries.len());
        for entry in &entries {
            held.push(entry.lock().await);
        }
        let (erased, outbox) = self.store().erase_visitor_rows(visitor_id).await?;
        self.drop_live(&erased);
        drop(held);
        // A token looked up while the erase was in flight may have been cached again.
        self.forget_visitor(visitor_id);
        self.leave_live(visitor_id);
        self.inner.hub.publish(Frame {
            visitor_id: Some(visitor_id.to_string()),
            visitor_json: Some(
                json!({"type": "error", "error": {"code": "visitor_erased",
                    "message": "this visitor's data was erased"}})
                .to_string()
                .into(),
            ),
            kind: Some(VISITOR_ERASED),
            ..Frame::default()
        });
        let removed = self.finish(erased, outbox, mail_dir).await?;
        tracing::info!(
            "erased visitor {visitor_id}: {} conversations, {} messages, {} forms, {} events \
             redacted, {} outbox items, {} mail files",
            removed.conversations,
            removed.messages,
            removed.forms,
            removed.events_redacted,
            removed.outbox_items,
            removed.mail_files
        );
        Ok(removed)
    }

    /// One retention pass: erases settled conversations last changed more than `keep` ago,
    /// the profiles of visitors left with none, offline forms sent outside a conversation
    /// and delivered outbox items as old; then the next batch, until none is left.
    pub async fn sweep_retention(
        &self,
        keep: Duration,
        mail_dir: &Path,
    ) -> Result<Removed, EngineError> {
        let cutoff_time =
            Timestamp::now() - jiff::SignedDuration::try_from(keep).unwrap_or_default();
        let cutoff = persist::stamp(cutoff_time);
        let mut total = Removed::default();
        loop {
            let (erased, outbox, more) = self
                .store()
                .erase_expired(&cutoff, cutoff_time, SWEEP_BATCH)
                .await?;
            let nothing = erased.conversations.is_empty()
                && erased.forms == 0
                && erased.visitors == 0
                && outbox.is_empty();
            if nothing {
                // A full batch that another replica erased first (PostgreSQL): the rest
                // may still be due.
                if more {
                    continue;
                }
                break;
            }
            self.drop_live(&erased);
            for visitor in &erased.visitor_ids {
                self.forget_everywhere(visitor);
            }
            let removed = self.finish(erased, outbox, mail_dir).await?;
            total.add(&removed);
            if !more {
                break;
            }
        }
        Ok(total)
    }

    /// Forgets a visitor whose profile a sweep removed, here and, on PostgreSQL, on the
    /// other replicas (`visitor.forgotten`: no socket's business, the visitor has nothing
    /// left to see).
    pub(super) fn forget_everywhere(&self, visitor_id: &str) {
        self.forget_visitor(visitor_id);
        if self.inner.replicated.is_some() {
            self.inner.hub.publish(Frame {
                visitor_id: Some(visitor_id.to_string()),
                kind: Some(VISITOR_FORGOTTEN),
                ..Frame::default()
            });
        }
    }

    /// Forgets a visitor's tokens and current conversation in the cache.
    pub(super) fn forget_visitor(&self, visitor_id: &str) {
        let mut known = self.known();
        known.forgets += 1;
        known.tokens.retain(|_, v| v.id != visitor_id);
        known.current.remove(visitor_id);
    }

    /// Drops what the engine holds of erased conversations, and tells the consoles.
    fn drop_live(&self, erased: &Erased) {
        let mut load_changed = false;
        let mut queues = BTreeSet::new();
        for conv in &erased.conversations {
            load_changed |= self.drop_cached(&conv.id, conv.assignee.as_deref());
            if conv.status == Status::New.as_str() {
                queues.insert(conv.bot.clone());
            }
            self.inner.hub.publish(Frame {
                conversation_id: Some(conv.id.clone()),
                bot: Some(conv.bot.clone()),
                agent_json: Some(
                    json!({
                        "type": CONVERSATION_ERASED,
                        "conversation_id": conv.id,
                        "at": Timestamp::now().to_string(),
                        "data": {},
                    })
                    .to_string()
                    .into(),
                ),
                kind: Some(CONVERSATION_ERASED),
                ..Frame::default()
            });
        }
        if load_changed {
            self.agents_changed();
        }
        for bot in queues {
            self.publish_queue(bot);
        }
    }

    /// Forgets what this engine holds of conversation `id` (its copy, its timer, its place
    /// in `assignee`'s load; any agent's when `None`); answers whether a load changed.
    pub(super) fn drop_cached(&self, id: &str, assignee: Option<&str>) -> bool {
        self.convs().remove(id);
        self.state_written().remove(id);
        if let Some((timer, _)) = self
            .inner
            .timers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            timer.abort();
        }
        if let Some(r) = &self.inner.replicated {
            r.forget(id);
        }
        let mut presence = self.presence();
        match assignee {
            Some(agent) => presence
                .load
                .get_mut(agent)
                .is_some_and(|held| held.remove(id)),
            // A conversation counts for one agent at most.
            None => presence.load.values_mut().any(|held| held.remove(id)),
        }
    }

    /// Another replica erased conversation `id` (its `conversation.erased` frame, heard
    /// before this replica's consoles get it): what this one holds of it goes. A visitor
    /// whose latest conversation it was is erased with it, and forgotten when their own
    /// frame comes (`visitor.erased`, or retention's `visitor.forgotten`).
    pub(super) fn erased_elsewhere(&self, id: &str) {
        if self.drop_cached(id, None) {
            self.agents_changed();
        }
    }

    /// After the rows are gone: the WAL cut back, the mail files removed (and looked for
    /// once more a little later).
    async fn finish(
        &self,
        erased: Erased,
        outbox: Vec<String>,
        mail_dir: &Path,
    ) -> Result<Removed, EngineError> {
        if !erased.files.is_empty() {
            let data_dir = self.inner.data_dir.clone();
            self.store()
                .remove_unreferenced_files(&data_dir, &erased.files)
                .await?;
        }
        // SQLite's WAL cut back (`None` on PostgreSQL, which has no such step).
        let wal = self.store().cut_back_wal().await?;
        let wal_truncated = wal.unwrap_or(false);
        let dir: PathBuf = mail_dir.to_path_buf();
        let ids = outbox.clone();
        let mail_files = tokio::task::spawn_blocking(move || {
            crate::mail::transport::remove_mail_files(&dir, &ids)
        })
        .await
        .unwrap_or(0);
        let dir: PathBuf = mail_dir.to_path_buf();
        let ids = outbox.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LATE_MAIL_CHECK).await;
            let _ = tokio::task::spawn_blocking(move || {
                crate::mail::transport::remove_mail_files(&dir, &ids)
            })
            .await;
        });
        if wal == Some(false) {
            tracing::warn!("after an erase, the WAL could not be emptied yet (readers held it)");
        }
        Ok(Removed {
            conversations: erased.conversations.len(),
            messages: erased.messages,
            forms: erased.forms,
            pageviews: erased.pageviews,
            events_redacted: erased.events,
            visitors: erased.visitors,
            outbox_items: outbox.len(),
            mail_files,
            wal_truncated,
        })
    }
}

impl Removed {
    fn add(&mut self, other: &Removed) {
        self.conversations += other.conversations;
        self.messages += other.messages;
        self.forms += other.forms;
        self.pageviews += other.pageviews;
        self.events_redacted += other.events_redacted;
        self.visitors += other.visitors;
        self.outbox_items += other.outbox_items;
        self.mail_files += other.mail_files;
        self.wal_truncated = other.wal_truncated;
    }
}

/// The hub frame that ends an erased visitor's sockets.
pub const VISITOR_ERASED: &str = "visitor.erased";
/// The console frame (not stored) saying a conversation was erased.
pub const CONVERSATION_ERASED: &str = "conversation.erased";
/// A frame of no socket telling the other replicas that a sweep (retention, page views)
/// removed a visitor's profile: they forget the visitor's token.
pub const VISITOR_FORGOTTEN: &str = "visitor.forgotten";

/// Runs the retention sweep every `every` (and once at start) while the engine lives.
pub async fn retention_loop(engine: Engine, keep: Duration, every: Duration, mail_dir: PathBuf) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match engine.sweep_retention(keep, &mail_dir).await {
            Ok(r) if r.conversations + r.forms + r.visitors + r.outbox_items > 0 => {
                tracing::info!(
                    "retention: erased {} conversations, {} visitor profiles, {} forms, {} \
                     outbox items, {} mail files",
                    r.conversations,
                    r.visitors,
                    r.forms,
                    r.outbox_items,
                    r.mail_files
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!("retention sweep failed (tried again later): {e}"),
        }
    }
}
