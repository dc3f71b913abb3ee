//! Visitors: sessions that start and resume, the token and current-conversation caches,
//! visitor commands and offline forms.

use super::*;

impl Engine {
    /// Starts a visitor session, or resumes it when `token` is theirs for this bot.
    pub async fn start_session(&self, req: StartSession) -> Result<Started, EngineError> {
        let bundle = self.bundle();
        let bot = bundle
            .bots
            .get(&req.bot)
            .ok_or_else(|| EngineError::UnknownBot(req.bot.clone()))?
            .clone();
        // A visitor whose last conversation is over (closed, or ended) starts a new one as
        // the same visitor: the same token, and their earlier conversations stay theirs.
        let mut returning = None;
        if let Some(token) = req.token.as_deref().filter(|t| !t.is_empty()) {
            match self.resume(&req.bot, token).await? {
                Resume::Open(resumed) => return Ok(resumed),
                Resume::Over(visitor) => returning = Some((token.to_string(), visitor.id)),
                Resume::Stranger => {}
            }
        }
        if !(req.allow_new)() {
            return Err(EngineError::Limited {
                code: "too_many_sessions",
                message: "too many new chats from this address; try again in a few minutes".into(),
            });
        }
        let now = Timestamp::now();
        let (token, token_hash, visitor_id) = match returning {
            Some((token, visitor_id)) => (token, None, visitor_id),
            None => {
                let (token, hash) = crate::auth::session::new_token();
                (token, Some(hash), wire::new_id("v"))
            }
        };
        // A returning visitor's contact fields come along, so that this conversation's
        // alerts tell them too (the store's rows stay the truth for details and exports).
        let known_contact = if token_hash.is_none() {
            self.inner.store.contact_values(&visitor_id).await?
        } else {
            Default::default()
        };
        let conversation_id = wire::new_id("c");
        let mut transition = Conversation::start(
            conversation_id.clone(),
            req.bot.clone(),
            visitor_id.clone(),
            Visitor {
                language: req.language.clone(),
                requested_language: req.requested_language.clone(),
                page_url: req.page_url.clone(),
                country: req.country.clone(),
                name: None,
                email: None,
                vars: Default::default(),
            },
            &bot,
            now,
        );
        transition.conversation.contact = known_contact
            .into_iter()
            .filter(|(name, _)| bot.header.contact_field(name).is_some())
            .collect();
        let conv = transition.conversation.clone();
        let pending = Arc::new(persist::Pending::new(
            transition.conversation,
            &transition.events,
            &[],
            None,
            true,
            now,
        )?);
        let newcomer = token_hash.map(|token_hash| OwnedVisitor {
            id: visitor_id.clone(),
            token_hash,
            bot: req.bot.clone(),
            name: None,
            email: None,
            language: req.language.clone(),
            country: req.country.clone(),
            ip: req.ip.clone(),
        });
        let seqs = match self.commit(&pending, newcomer, false, None).await? {
            Committed::Stored(seqs) => seqs,
            // A new conversation's id is new: neither can happen to it.
            Committed::Earlier(..) | Committed::Stale | Committed::Full => {
                return Err(EngineError::Store(StoreError::Commit(format!(
                    "conversation {conversation_id} was written before it started"
                ))));
            }
        };
        self.published(&seqs).await;
        let mut events: Vec<Value> = pending
            .frames(&seqs)
            .filter_map(|f| f.visitor_json)
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect();
        drop(pending);
        let language = conv.language.clone();
        self.schedule(&conv);
        self.convs()
            .insert(conv.id.clone(), Arc::new(tokio::sync::Mutex::new(conv)));
        self.known()
            .remember_current(visitor_id.clone(), conversation_id.clone());
        // An agent invited this visitor: their chat is that agent's, opened by the words
        // of the invitation (see `live_visitors`).
        let invited = self.take_invite(&visitor_id);
        if let Some((agent, text)) = invited {
            self.answer_invite(&conversation_id, agent, text).await;
            events = queries::conversation_visitor_events(
                &self.inner.store,
                &conversation_id,
                queries::PAGE,
            )
            .await?;
        }
        self.chat_started(&visitor_id, &conversation_id);
        Ok(Started {
            token,
            visitor_id,
            conversation_id,
            resumed: false,
            language,
            events,
        })
    }

    async fn resume(&self, bot: &str, token: &str) -> Result<Resume, EngineError> {
        let Some(visitor) = self.visitor(token).await.ok() else {
            return Ok(Resume::Stranger);
        };
        if visitor.bot != bot {
            return Ok(Resume::Stranger);
        }
        let id = visitor.id.clone();
        let latest = self.inner.store.latest_conversation_of(&id).await?;
        let Some(conversation_id) = latest else {
            return Ok(Resume::Over(visitor));
        };
        let snapshot = self.peek(&conversation_id).await?;
        if matches!(snapshot.status, Status::Closed | Status::Ended) {
            // A closed or ended conversation takes no more messages: the visitor starts a
            // new one, keeping their identity (and so their history for the agents).
            return Ok(Resume::Over(visitor));
        }
        let events = queries::conversation_visitor_events(
            &self.inner.store,
            &conversation_id,
            queries::PAGE,
        )
        .await?;
        Ok(Resume::Open(Started {
            token: token.to_string(),
            visitor_id: visitor.id,
            conversation_id,
            resumed: true,
            language: snapshot.language,
            events,
        }))
    }

    /// The visitor a bearer token belongs to.
    pub async fn visitor(&self, token: &str) -> Result<VisitorRef, EngineError> {
        let hash = crate::auth::session::token_hash(token);
        let forgets = {
            let known = self.known();
            if let Some(known) = known.tokens.get(&hash) {
                return Ok(known.clone());
            }
            known.forgets
        };
        let key = hash.clone();
        let visitor = self
            .inner
            .store
            .visitor_by_token(&key)
            .await?
            .map(|(id, bot)| VisitorRef { id, bot })
            .ok_or(EngineError::BadToken)?;
        let mut known = self.known();
        if known.forgets == forgets {
            known.remember_token(hash, visitor.clone());
        }
        Ok(visitor)
    }

    pub(super) fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.inner.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The visitor's current conversation (the most recent one).
    pub async fn visitor_conversation(&self, visitor: &VisitorRef) -> Result<String, EngineError> {
        let forgets = {
            let known = self.known();
            if let Some(current) = known.current.get(&visitor.id) {
                return Ok(current.clone());
            }
            known.forgets
        };
        let id = visitor.id.clone();
        let current = self
            .inner
            .store
            .latest_conversation_of(&id)
            .await?
            .ok_or(EngineError::NotFound)?;
        let mut known = self.known();
        if known.forgets == forgets {
            known.remember_current(visitor.id.clone(), current.clone());
        }
        Ok(current)
    }

    /// Runs a visitor's command on their current conversation.
    pub async fn visitor_command(
        &self,
        visitor: &VisitorRef,
        cmd: Command,
        client_id: Option<String>,
    ) -> Result<(String, Outcome), EngineError> {
        let conversation_id = self.visitor_conversation(visitor).await?;
        let owner = visitor.id.clone();
        let outcome = self
            .run(&conversation_id, cmd, client_id, move |conv| {
                if conv.visitor_id == owner {
                    Ok(())
                } else {
                    Err(EngineError::NotFound)
                }
            })
            .await?;
        Ok((conversation_id, outcome))
    }

    /// An offline form sent outside a conversation (the contact page, or the API): stored,
    /// and mailed to the form's recipients, in one transaction.
    pub async fn submit_offline_form(
        &self,
        bot_id: &str,
        form_id: Option<&str>,
        values: std::collections::BTreeMap<String, String>,
        page_url: Option<String>,
        ip: Option<String>,
    ) -> Result<String, EngineError> {
        let bundle = self.bundle();
        let bot = bundle
            .bots
            .get(bot_id)
            .ok_or_else(|| EngineError::UnknownBot(bot_id.to_string()))?;
        let (form_id, form) = match form_id {
            Some(id) => bot.offline_form.get_key_value(id),
            None => bot.offline_form.iter().next(),
        }
        .ok_or(EngineError::NotFound)?;
        let clean =
            crate::chat::form::validate_form(form, &values).map_err(EngineError::InvalidForm)?;
        let now = Timestamp::now();
        let notify_ids: Vec<String> = notify::actions_with_form(bot, form_id)
            .iter()
            .flat_map(|a| a.notify.iter().map(|n| n.get_ref().clone()))
            .collect();
        let language = crate::chat::flow::default_language(bot).to_string();
        let items = notify::form_items(
            &self.inner.outbound,
            &notify::Submission {
                bot_id,
                bot,
                form_id,
                form,
                values: &clean,
                vars: &std::collections::BTreeMap::new(),
                conversation_id: None,
                page_url: page_url.as_deref(),
                language: &language,
                notify: notify_ids,
            },
            now,
        )
        .map_err(|e| EngineError::Store(StoreError::Corrupt(e)))?;
        let submitted = persist::Submitted {
            bot: bot_id,
            form: form_id,
            values: &clean,
            page_url: page_url.as_deref(),
            ip: ip.as_deref(),
        };
        let doorbell = &self.inner.outbound.doorbell;
        let id = self
            .inner
            .store
            .write_submission(&submitted, &items, now, doorbell)
            .await?;
        Ok(id)
    }
}

/// Visitors by token hash, and each visitor's current conversation.
#[derive(Default)]
pub(super) struct Known {
    pub(super) tokens: HashMap<String, VisitorRef>,
    pub(super) current: HashMap<String, String>,
    /// Moved on by every forgetting (an erase, a sweep, notices lost): a lookup in the
    /// store that began before one is not remembered, since it may have read a visitor the
    /// forgetting was about.
    pub(super) forgets: u64,
}

impl Known {
    pub(super) fn remember_token(&mut self, hash: String, visitor: VisitorRef) {
        if self.tokens.len() >= KNOWN_MAX {
            self.tokens.clear();
        }
        self.tokens.insert(hash, visitor);
    }

    pub(super) fn remember_current(&mut self, visitor: String, conversation: String) {
        if self.current.len() >= KNOWN_MAX {
            self.current.clear();
        }
        self.current.insert(visitor, conversation);
    }
}

/// What a visitor's token finds when they come back.
enum Resume {
    /// Their conversation goes on.
    Open(Started),
    /// Theirs is over (closed or ended): a new one, for the same visitor.
    Over(VisitorRef),
    /// Not a visitor of this bot: a new visitor.
    Stranger,
}
