//! Timers: one task per conversation, woken at its earliest stored deadline, so deadlines
//! survive a restart.

use super::*;

impl Engine {
    /// Arms the conversation's next deadline (replacing the one before).
    pub(super) fn schedule(&self, conv: &Conversation) {
        if let Some(r) = &self.inner.replicated {
            // Shared timers: the transition wrote the deadline in its row; the loop looks
            // again now, in case it is sooner than its next look.
            if conv.deadlines.earliest().is_some() {
                r.timers_wake.notify_one();
            }
            return;
        }
        let mut timers = self.inner.timers.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = conv.deadlines.earliest();
        if let (Some(at), Some((old, wakes))) = (earliest, timers.get(&conv.id))
            && *wakes <= at
            && !old.is_finished()
        {
            // A deadline pushed back (as every message pushes the idle timeout) keeps the
            // timer: it wakes early, finds nothing due and sets itself again (`fire`).
            return;
        }
        if let Some((old, _)) = timers.remove(&conv.id) {
            old.abort();
        }
        let Some(at) = earliest else {
            return;
        };
        let wait = Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default();
        let engine = self.clone();
        let id = conv.id.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            // Awake: no longer the conversation's pending timer (unless one replaced it), so
            // whatever `fire` does next arms a new one.
            {
                let mut timers = engine
                    .inner
                    .timers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if timers
                    .get(&id)
                    .is_some_and(|(h, _)| h.id() == tokio::task::id())
                {
                    timers.remove(&id);
                }
            }
            // Run detached: the command re-arms the timer, which aborts this task.
            tokio::spawn(async move { engine.fire(&id).await });
        });
        // Inserted under the lock the task takes when it wakes, so it always finds itself.
        timers.insert(conv.id.clone(), (handle.abort_handle(), at));
    }

    pub(super) async fn fire(&self, id: &str) {
        let Some(entry) = self.convs().get(id).cloned() else {
            return;
        };
        let due = {
            let conv = entry.lock().await;
            let due = conv.deadlines.due(Timestamp::now());
            if due.is_empty() {
                // Woken before a deadline that moved later: wait for it now.
                self.schedule(&conv);
            }
            due
        };
        for cmd in due {
            match self.run(id, cmd, None, |_| Ok(())).await {
                Ok(_) | Err(EngineError::Rejected(_)) => {}
                Err(e) => tracing::error!("timer of {id}: {e}"),
            }
        }
    }
}

impl Engine {
    /// On PostgreSQL: the loop that claims the timers due (of any replica's conversations)
    /// and fires them (`replicated`). It sleeps until the next timer, a second at most, or
    /// until a local write sets one.
    pub(super) fn start_shared_timers(&self) {
        let engine = self.clone();
        tokio::spawn(async move {
            let Some(r) = &engine.inner.replicated else {
                return;
            };
            loop {
                match r.claim_timers().await {
                    Ok(ids) => {
                        for id in ids {
                            let engine = engine.clone();
                            tokio::spawn(async move { engine.fire_shared(&id).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming the due timers failed"),
                }
                let wait = r.next_timer().await;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = r.timers_wake.notified() => {}
                }
            }
        });
    }

    /// Fires a claimed timer: the conversation read afresh (another replica may have
    /// written it since this one last did), then what is due on it run as commands.
    async fn fire_shared(&self, id: &str) {
        let entry = match self.conversation(id).await {
            Ok(entry) => entry,
            Err(EngineError::NotFound) => return,
            Err(e) => {
                tracing::warn!(error = %e, "timer of {id}: the conversation was not read");
                return;
            }
        };
        let due = {
            let mut conv = entry.lock().await;
            if let Err(e) = self.reload(&mut conv).await {
                tracing::warn!(error = %e, "timer of {id}: the conversation was not read");
                return;
            }
            conv.deadlines.due(Timestamp::now())
        };
        drop(entry);
        for cmd in due {
            match self.run(id, cmd, None, |_| Ok(())).await {
                Ok(_) | Err(EngineError::Rejected(_)) => {}
                Err(e) => tracing::error!("timer of {id}: {e}"),
            }
        }
    }
}

impl Engine {
    /// Ends conversations still with the bot that saw no visitor for `after` (the server's
    /// `bot_expiry`), so an abandoned widget costs no memory and is not loaded again at the
    /// next start. Sweeps every quarter of `after`, at least every minute.
    pub fn start_expiry(&self, after: Duration) {
        let engine = self.clone();
        let every = (after / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let ended = engine.expire_quiet(after).await;
                if ended > 0 {
                    tracing::info!("{ended} conversations left with the bot expired");
                }
            }
        });
    }

    /// One sweep: how many conversations it ended.
    async fn expire_quiet(&self, after: Duration) -> usize {
        let ids: Vec<String> = self.convs().keys().cloned().collect();
        let mut ended = 0;
        for id in ids {
            let due = {
                let Some(entry) = self.convs().get(&id).cloned() else {
                    continue;
                };
                // Busy means in use: not quiet, so not due. The clone is dropped before the
                // command runs, so a conversation that ends leaves memory (`run`).
                let Ok(conv) = entry.try_lock() else {
                    continue;
                };
                let last = conv
                    .last_visitor_at
                    .map_or(conv.opened_at, |at| at.max(conv.opened_at));
                conv.status == Status::Bot
                    && Duration::try_from(Timestamp::now().duration_since(last))
                        .is_ok_and(|quiet| quiet >= after)
            };
            if !due {
                continue;
            }
            match self
                .run(&id, Command::Expire { after }, None, |_| Ok(()))
                .await
            {
                Ok(_) => ended += 1,
                Err(EngineError::Rejected(_)) => {}
                Err(e) => tracing::error!("expiring {id}: {e}"),
            }
        }
        ended
    }
}
