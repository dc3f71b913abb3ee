//! Presence: which agents are online and accepting, what each holds, who is typing, and
//! each visitor's place in the queue.

use super::*;

impl Engine {
    /// The "Accept chats" toggle.
    pub async fn set_accepting(&self, email: &str, accepting: bool) -> Result<(), EngineError> {
        let email = email.to_lowercase();
        self.inner
            .store
            .set_accepting(&email, accepting, Timestamp::now())
            .await?;
        self.inner.toggles.fetch_add(1, Ordering::AcqRel);
        let changed = {
            let mut p = self.presence();
            if accepting {
                p.accepting.insert(email.clone())
            } else {
                p.accepting.remove(&email)
            }
        };
        if changed {
            self.publish_presence(&email);
            self.agents_changed();
        }
        Ok(())
    }

    /// The "Take video calls" toggle: off, video requests do not ring this agent. Stored
    /// beside "Accept chats" (on PostgreSQL every replica reads it with the shared presence).
    pub async fn set_video(&self, email: &str, video: bool) -> Result<(), EngineError> {
        let email = email.to_lowercase();
        self.inner
            .store
            .set_video(&email, video, Timestamp::now())
            .await?;
        self.inner.toggles.fetch_add(1, Ordering::AcqRel);
        let changed = {
            let mut p = self.presence();
            if video {
                p.no_video.remove(&email)
            } else {
                p.no_video.insert(email.clone())
            }
        };
        if changed {
            self.publish_presence(&email);
            self.agents_changed();
        }
        Ok(())
    }

    /// Marks the agent online while the returned guard lives (one per open event socket).
    pub fn connect_agent(&self, email: &str) -> PresenceGuard {
        let email = email.to_lowercase();
        let first = {
            let mut p = self.presence();
            let n = p.sockets.entry(email.clone()).or_default();
            *n += 1;
            *n == 1
        };
        if first {
            self.publish_presence(&email);
            self.agents_changed();
            self.sockets_changed();
        }
        PresenceGuard {
            engine: self.clone(),
            email,
        }
    }

    /// Every roster agent with presence and load, as routing sees them. Every command
    /// on a conversation asks (a message too); the list is made again only after the
    /// presence or the roster changed.
    pub fn agent_views(&self) -> Arc<Vec<AgentView>> {
        let bundle = self.bundle();
        // Read before presence is: a change that lands meanwhile has moved it on, and what
        // is made now is not kept as current.
        let generation = self.inner.presence_changes.load(Ordering::Acquire);
        if let Some(views) = self
            .inner
            .agent_views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && views.0 == generation
            && Arc::ptr_eq(&views.1, &bundle)
        {
            return views.2.clone();
        }
        let views = Arc::new(self.make_agent_views(&bundle));
        *self
            .inner
            .agent_views
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((generation, bundle, views.clone()));
        views
    }

    fn make_agent_views(&self, bundle: &Bundle) -> Vec<AgentView> {
        let p = self
            .inner
            .presence
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        bundle
            .roster
            .agents
            .iter()
            .map(|a| {
                let email = a.email.as_str().to_lowercase();
                let mut view = AgentView::of(
                    a,
                    p.sockets.get(&email).copied().unwrap_or(0) > 0 || p.remote.contains(&email),
                    p.accepting.contains(&email),
                    p.load.get(&email).map_or(0, |s| s.len() as u32),
                );
                view.video = !p.no_video.contains(&email);
                view
            })
            .collect()
    }

    pub(super) fn publish_presence(&self, email: &str) {
        let view = self
            .agent_views()
            .iter()
            .find(|a| a.email == email)
            .cloned();
        let Some(a) = view else { return };
        let json = json!({
            "type": "agent.presence",
            "at": Timestamp::now().to_string(),
            "data": {
                "agent": a.email,
                "name": a.name,
                "online": a.online,
                "accepting": a.accepting,
                "active_chats": a.active_chats,
                "max_chats": a.max_chats,
                "video": a.video,
            }
        });
        self.inner.hub.publish(Frame {
            agent_json: Some(json.to_string().into()),
            kind: Some("agent.presence"),
            ..Frame::default()
        });
    }

    /// Tells every waiting request that agents changed: it rings (or is offered) anew.
    pub fn agents_changed(&self) {
        // Only the waiting requests' ids (and those of conversations busy with a command,
        // checked again below): an accept changes an agent's load and comes here, and
        // copying the id of every conversation in memory each time was most of what 1,000
        // chats' accepts allocated.
        let waiting: Vec<String> = self
            .convs()
            .iter()
            .filter(|(_, entry)| !matches!(entry.try_lock(), Ok(c) if c.status != Status::New))
            .map(|(id, _)| id.clone())
            .collect();
        let engine = self.clone();
        tokio::spawn(async move {
            for id in waiting {
                let Some(entry) = engine.convs().get(&id).cloned() else {
                    continue;
                };
                if entry.lock().await.status != Status::New {
                    continue;
                }
                drop(entry);
                if let Err(e) = engine
                    .run(&id, Command::AgentsChanged, None, |_| Ok(()))
                    .await
                    && !matches!(e, EngineError::Rejected(_))
                {
                    tracing::warn!("re-ringing {id}: {e}");
                }
            }
        });
    }

    /// Publishes an ephemeral typing signal (never stored).
    pub fn typing(&self, conv: &Conversation, from_visitor: bool, name: Option<&str>) {
        let json = json!({
            "type": "typing",
            "conversation_id": conv.id,
            "at": Timestamp::now().to_string(),
            "data": { "from": if from_visitor { "visitor" } else { "agent" }, "name": name },
        })
        .to_string();
        let json = crate::hub::Text::from(json);
        self.inner.hub.publish(Frame {
            seq: None,
            conversation_id: Some(conv.id.clone()),
            bot: Some(conv.bot.clone()),
            visitor_id: Some(conv.visitor_id.clone()),
            agent_json: Some(json.clone()),
            visitor_json: (!from_visitor).then_some(json),
            kind: Some("typing"),
            to_agent: None,
        });
    }

    /// Passes a call's signalling (an offer, an answer, an ICE candidate, a mute) between
    /// the conversation's visitor and the agent who has it, and to nobody else: false when
    /// the conversation has no call or the sender is not one of its two sides.
    pub fn signal(
        &self,
        conv: &Conversation,
        from_visitor: bool,
        sender: &str,
        data: &Value,
    ) -> bool {
        let Some(agent) = conv.assignee.as_deref() else {
            return false;
        };
        if conv.call.is_none() || (!from_visitor && agent != sender) {
            return false;
        }
        let json = json!({
            "type": "signal",
            "conversation_id": conv.id,
            "at": Timestamp::now().to_string(),
            "data": { "from": if from_visitor { "visitor" } else { "agent" }, "signal": data },
        })
        .to_string();
        let (agent_json, visitor_json) = if from_visitor {
            (Some(json.into()), None)
        } else {
            (None, Some(json.into()))
        };
        self.inner.hub.publish(Frame {
            seq: None,
            conversation_id: Some(conv.id.clone()),
            bot: Some(conv.bot.clone()),
            visitor_id: Some(conv.visitor_id.clone()),
            agent_json,
            visitor_json,
            kind: Some("signal"),
            to_agent: Some(agent.to_string()),
        });
        true
    }

    /// The visitor's place among the waiting requests of their bot and team (1 = next),
    /// or 0 when their conversation is not waiting.
    pub async fn queue_position(&self, conversation_id: &str) -> Result<usize, EngineError> {
        let conv = self.peek(conversation_id).await?;
        let waiting = self.waiting(&conv.bot).await;
        Ok(crate::chat::conversation::queue_position(
            &conv,
            waiting.iter(),
        ))
    }

    pub(super) async fn waiting(&self, bot: &str) -> Vec<Conversation> {
        let entries: Vec<_> = self.convs().values().cloned().collect();
        let mut waiting = Vec::new();
        for entry in entries {
            let c = entry.lock().await;
            if c.status == Status::New && c.bot == bot {
                waiting.push(c.clone());
            }
        }
        waiting
    }

    /// Tells every waiting visitor of `bot` their place in the queue (ephemeral frames).
    pub(super) fn publish_queue(&self, bot: String) {
        let engine = self.clone();
        tokio::spawn(async move {
            let waiting = engine.waiting(&bot).await;
            for conv in &waiting {
                let position = crate::chat::conversation::queue_position(conv, waiting.iter());
                let in_queue = waiting.iter().filter(|c| c.team == conv.team).count();
                let json = json!({
                    "type": "queue.position",
                    "conversation_id": conv.id,
                    "at": Timestamp::now().to_string(),
                    "data": { "position": position, "waiting": in_queue },
                })
                .to_string();
                engine.inner.hub.publish(Frame {
                    conversation_id: Some(conv.id.clone()),
                    bot: Some(conv.bot.clone()),
                    visitor_id: Some(conv.visitor_id.clone()),
                    visitor_json: Some(json.into()),
                    kind: Some("queue.position"),
                    ..Frame::default()
                });
            }
        });
    }

    /// Keeps the per-agent load in step; true when an agent's load changed, so that waiting
    /// requests ring anew (an agent who is full stops ringing, one with room rings again).
    pub(super) fn update_load(&self, before: &Conversation, after: &Conversation) -> bool {
        let held_before = before
            .assignee
            .clone()
            .filter(|_| before.status.holds_agent());
        let held_after = after
            .assignee
            .clone()
            .filter(|_| after.status.holds_agent());
        if held_before == held_after {
            return false;
        }
        let mut p = self.presence();
        if let Some(agent) = &held_before {
            p.load.entry(agent.clone()).or_default().remove(&after.id);
        }
        if let Some(agent) = &held_after {
            p.load
                .entry(agent.clone())
                .or_default()
                .insert(after.id.clone());
        }
        drop(p);
        // The team panel shows each agent's chats in hand.
        for agent in [held_before, held_after].into_iter().flatten() {
            self.publish_presence(&agent);
        }
        true
    }
}

#[derive(Default)]
pub(super) struct Presence {
    /// Open agent event sockets per agent.
    pub(super) sockets: HashMap<String, usize>,
    /// "Accept chats" is on.
    pub(super) accepting: HashSet<String>,
    /// Conversations each agent holds (assigned or chatting).
    pub(super) load: HashMap<String, BTreeSet<String>>,
    /// Agents who switched "Take video calls" off (stored; on PostgreSQL read with the
    /// shared presence).
    pub(super) no_video: HashSet<String>,
    /// On PostgreSQL: agents with a socket on any live replica, as last read.
    pub(super) remote: HashSet<String>,
}

/// Removes the agent's socket from presence when dropped.
pub struct PresenceGuard {
    engine: Engine,
    email: String,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let last = {
            let mut p = self.engine.presence();
            let n = p.sockets.entry(self.email.clone()).or_default();
            *n = n.saturating_sub(1);
            *n == 0
        };
        if last {
            self.engine.publish_presence(&self.email);
            self.engine.agents_changed();
            self.engine.sockets_changed();
        }
    }
}

/// How often a replica reads who is online and what each agent holds, across replicas.
const CLUSTER_REFRESH: Duration = Duration::from_secs(1);

impl Engine {
    /// On PostgreSQL, the presence loop wakes to write this replica's socket counts.
    fn sockets_changed(&self) {
        if let Some(r) = &self.inner.replicated {
            r.presence_wake.notify_one();
        }
    }

    /// On PostgreSQL: presence across replicas. The loop heartbeats this replica's row and
    /// sweeps the silent ones (`postgres::presence`), writes how many sockets of each agent
    /// this replica holds when that changes, and every second reads who is online anywhere
    /// and what each agent holds. When that changed, the waiting requests are routed again
    /// (`agents_changed`): an agent whose replica died is offline within 20 s of its last
    /// heartbeat, and their requests ring the others.
    pub(super) fn start_shared_presence(&self) {
        let engine = self.clone();
        tokio::spawn(async move {
            let Some(r) = &engine.inner.replicated else {
                return;
            };
            let mut written: HashMap<String, usize> = HashMap::new();
            let mut beat: Option<std::time::Instant> = None;
            loop {
                if beat.is_none_or(|at| at.elapsed() >= crate::store::postgres::presence::HEARTBEAT)
                {
                    match r.heartbeat().await {
                        Ok((fresh, gone)) => {
                            beat = Some(std::time::Instant::now());
                            if fresh {
                                // A new row (first, or swept while this replica was away):
                                // every count is written again.
                                written.clear();
                            }
                            if !gone.is_empty() {
                                tracing::info!(agents = ?gone, "agents offline: their server stopped answering");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "this server's heartbeat failed"),
                    }
                }
                let now: HashMap<String, usize> = engine
                    .inner
                    .presence
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sockets
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(e, n)| (e.clone(), *n))
                    .collect();
                let changed: Vec<(String, usize)> = now
                    .iter()
                    .filter(|(e, n)| written.get(*e) != Some(n))
                    .map(|(e, n)| (e.clone(), *n))
                    .chain(
                        written
                            .keys()
                            .filter(|e| !now.contains_key(*e))
                            .map(|e| (e.clone(), 0)),
                    )
                    .collect();
                if !changed.is_empty() {
                    match r.write_sockets(&changed).await {
                        Ok(()) => written = now,
                        Err(e) => {
                            tracing::warn!(error = %e, "writing this server's agent sockets failed")
                        }
                    }
                }
                let toggles = engine.inner.toggles.load(Ordering::Acquire);
                match r.cluster().await {
                    Ok(cluster) => engine.take_cluster(cluster, toggles),
                    Err(e) => tracing::warn!(error = %e, "reading presence across servers failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(CLUSTER_REFRESH) => {}
                    _ = r.presence_wake.notified() => {}
                }
            }
        });
    }

    /// Takes what the database says of every agent: online somewhere, accepting chats, and
    /// the chats each holds (replacing this replica's count, which misses what other
    /// replicas gave them). `toggles` is `Inner::toggles` from before the reading began: a
    /// toggle made here since is newer than the reading's, which is then not taken for the
    /// toggles (the next reading has it).
    pub(super) fn take_cluster(&self, mut cluster: super::replicated::Cluster, toggles: u64) {
        let changed: BTreeSet<String> = {
            let p = self
                .inner
                .presence
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if self.inner.toggles.load(Ordering::Acquire) != toggles {
                cluster.accepting = p.accepting.clone();
                cluster.no_video = p.no_video.clone();
            }
            let online = p.remote.symmetric_difference(&cluster.online).cloned();
            let accepting = p
                .accepting
                .symmetric_difference(&cluster.accepting)
                .cloned();
            let video = p.no_video.symmetric_difference(&cluster.no_video).cloned();
            let held = p
                .load
                .keys()
                .chain(cluster.load.keys())
                .filter(|a| {
                    let count =
                        |m: &HashMap<String, BTreeSet<String>>| m.get(*a).map_or(0, |s| s.len());
                    count(&p.load) != count(&cluster.load)
                })
                .cloned();
            online.chain(accepting).chain(video).chain(held).collect()
        };
        if changed.is_empty() {
            return;
        }
        {
            let mut p = self.presence();
            p.remote = cluster.online;
            p.load = cluster.load;
            p.accepting = cluster.accepting;
            p.no_video = cluster.no_video;
        }
        for agent in &changed {
            self.publish_presence(agent);
        }
        // Every waiting request of the database, not only those this replica holds: the
        // replica that held one may be the one that died.
        let engine = self.clone();
        tokio::spawn(async move {
            let Some(r) = &engine.inner.replicated else {
                return;
            };
            let waiting = match r.waiting().await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the waiting requests failed");
                    return;
                }
            };
            for id in waiting {
                if let Err(e) = engine
                    .run(&id, Command::AgentsChanged, None, |_| Ok(()))
                    .await
                    && !matches!(e, EngineError::Rejected(_) | EngineError::NotFound)
                {
                    tracing::warn!("re-ringing {id}: {e}");
                }
            }
        });
    }
}
