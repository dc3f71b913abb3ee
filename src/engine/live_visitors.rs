//! Visitors online: page views the widget reports, the visitors active now (in memory,
//! capped, expiring), and an agent's invitation to chat.
//!
//! A page view gives a visitor a token without a conversation (the `visitors` row only),
//! so the widget keeps one token across pages and a chat they start later is theirs. The
//! registry of who is online is memory only: a restart forgets it, and the visitor's next
//! page view brings them back (their widget's socket alone does not). Agents hear it as `visitor.active` and
//! `visitor.left` frames, scoped to the bots they serve; visitors never see those.

use std::collections::VecDeque;
use std::time::Instant;

use super::*;
use crate::store::pageviews::NewPageView;

/// A visitor counts as online this long after their last sign of life (a page view, their
/// widget's socket opening or closing), and for as long as their widget's socket is open.
pub const ACTIVE_FOR: Duration = Duration::from_secs(120);
/// An invitation waits this long for the visitor's reply.
const INVITE_FOR: Duration = Duration::from_secs(600);
/// Pages remembered per visitor online, the current one included.
const RECENT_PAGES: usize = 3;
/// What the registry keeps of an address, title or referrer (the store keeps them whole):
/// a bound on the memory one visitor online takes.
const KEEP_BYTES: usize = 512;
/// How often visitors who left are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);

/// The agent frames.
pub const VISITOR_ACTIVE: &str = "visitor.active";
pub const VISITOR_LEFT: &str = "visitor.left";
/// The visitor frame that carries an invitation.
pub const VISITOR_INVITE: &str = "invite";

/// A page view, as the widget reports it (sizes checked by the caller).
pub struct PageView {
    pub bot: String,
    pub token: Option<String>,
    pub url: String,
    pub title: Option<String>,
    pub referrer: Option<String>,
    pub language: Option<String>,
    pub country: Option<String>,
    /// Asked only when a new visitor would be made: false refuses it (`too_many_sessions`).
    pub allow_new: Box<dyn FnOnce() -> bool + Send>,
}

/// What a page view answers.
pub struct Viewed {
    pub token: String,
    pub visitor_id: String,
    /// A new visitor: the token is new.
    pub created: bool,
    /// The visitor's conversation the widget would resume (not closed or ended).
    pub conversation_id: Option<String>,
    /// An invitation waiting for them: `{text, name}`.
    pub invite: Option<Value>,
}

#[derive(Clone)]
struct Page {
    url: String,
    title: Option<String>,
    at: Timestamp,
}

#[derive(Clone)]
struct Invite {
    agent: String,
    name: String,
    text: String,
    at: Instant,
}

#[derive(Clone)]
struct Entry {
    bot: String,
    first_seen: Timestamp,
    last_seen: Timestamp,
    alive_at: Instant,
    recent: VecDeque<Page>,
    pages: u32,
    referrer: Option<String>,
    language: Option<String>,
    country: Option<String>,
    sockets: u32,
    conversation: Option<String>,
    invite: Option<Invite>,
}

impl Entry {
    fn gone(&self, now: Instant) -> bool {
        self.sockets == 0 && now.duration_since(self.alive_at) >= ACTIVE_FOR
    }

    fn invite(&self) -> Option<&Invite> {
        self.invite.as_ref().filter(|i| i.at.elapsed() < INVITE_FOR)
    }
}

/// Who is online, by visitor id.
pub(super) struct Online {
    max: usize,
    entries: HashMap<String, Entry>,
    /// Set once a page view found the registry full (logged once).
    full_logged: bool,
}

impl Default for Online {
    fn default() -> Self {
        Online {
            max: 5000,
            entries: HashMap::new(),
            full_logged: false,
        }
    }
}

/// Holds a visitor's place online while their widget's socket is open.
pub struct Listening {
    engine: Engine,
    visitor_id: String,
    /// Whether this socket was counted (the visitor was in the registry when it opened):
    /// only a counted socket is taken off the count when it closes.
    counted: bool,
}

impl Drop for Listening {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut online = self.engine.online();
        if let Some(e) = online.entries.get_mut(&self.visitor_id) {
            e.sockets = e.sockets.saturating_sub(1);
            e.alive_at = Instant::now();
        }
    }
}

impl Engine {
    fn online(&self) -> std::sync::MutexGuard<'_, Online> {
        self.inner.online.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts following visitors online (at most `max`) and sweeping page views older than
    /// `retention`.
    pub fn start_live_visitors(&self, max: usize, retention: Duration) {
        self.online().max = max;
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                engine.expire_online();
            }
        });
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::settings::retention_sweep_every(retention));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match engine.sweep_pageviews(retention).await {
                    Ok((0, 0)) => {}
                    Ok((views, visitors)) => tracing::info!(
                        "page view retention: deleted {views} page views, {visitors} visitors \
                         who only browsed"
                    ),
                    Err(e) => tracing::error!("page view sweep failed (tried again later): {e}"),
                }
            }
        });
    }

    /// Deletes page views older than `keep`, and visitors left with nothing; how many of each.
    pub async fn sweep_pageviews(&self, keep: Duration) -> Result<(usize, usize), EngineError> {
        let cutoff = Timestamp::now() - jiff::SignedDuration::try_from(keep).unwrap_or_default();
        let cutoff = persist::stamp(cutoff);
        let swept = self.inner.store.sweep_pageviews(&cutoff).await?;
        for id in &swept.visitor_ids {
            self.forget_everywhere(id);
            self.leave_live(id);
        }
        Ok((swept.pageviews, swept.visitor_ids.len()))
    }

    /// Records a page view: the visitor (made when the token names none of this bot), the
    /// stored row, and their place online.
    pub async fn page_view(&self, view: PageView) -> Result<Viewed, EngineError> {
        if !self.bundle().bots.contains_key(&view.bot) {
            return Err(EngineError::UnknownBot(view.bot));
        }
        let mut known = None;
        if let Some(token) = view.token.as_deref().filter(|t| !t.is_empty())
            && let Ok(v) = self.visitor(token).await
            && v.bot == view.bot
        {
            known = Some((token.to_string(), v));
        }
        let now = Timestamp::now();
        let (token, visitor, new_hash) = match known {
            Some((token, v)) => (token, v, None),
            None => {
                if !(view.allow_new)() {
                    return Err(EngineError::Limited {
                        code: "too_many_sessions",
                        message: "too many new visitors from this address; try again in a few \
                                  minutes"
                            .into(),
                    });
                }
                let (token, hash) = crate::auth::session::new_token();
                let v = VisitorRef {
                    id: wire::new_id("v"),
                    bot: view.bot.clone(),
                };
                (token, v, Some(hash))
            }
        };
        let created = new_hash.is_some();
        let new_visitor = new_hash.as_deref().map(|token_hash| persist::NewVisitor {
            id: &visitor.id,
            token_hash,
            bot: &visitor.bot,
            name: None,
            email: None,
            language: view.language.as_deref(),
            country: view.country.as_deref(),
            ip: None,
        });
        let stored = NewPageView {
            visitor_id: &visitor.id,
            url: &view.url,
            title: view.title.as_deref(),
            referrer: view.referrer.as_deref(),
        };
        self.inner
            .store
            .record_page_view(new_visitor.as_ref(), &stored, &persist::stamp(now))
            .await?;
        let conversation_id = if created {
            None
        } else {
            self.resumable(&visitor).await?
        };
        let page = Page {
            url: clip(view.url),
            title: view.title.map(clip),
            at: now,
        };
        let invite = {
            let mut online = self.online();
            let max = online.max;
            let full = online.entries.len() >= max;
            match online.entries.get_mut(&visitor.id) {
                Some(e) => {
                    e.last_seen = now;
                    e.alive_at = Instant::now();
                    e.pages = e.pages.saturating_add(1);
                    if e.recent.len() >= RECENT_PAGES {
                        e.recent.pop_front();
                    }
                    e.recent.push_back(page);
                    if view.language.is_some() {
                        e.language = view.language;
                    }
                    e.conversation = conversation_id.clone();
                    e.invite().map(|i| json!({"text": i.text, "name": i.name}))
                }
                None if full => {
                    if !online.full_logged {
                        online.full_logged = true;
                        tracing::warn!(
                            "{max} visitors online: more are stored but not listed \
                             (limits.visitors_online)"
                        );
                    }
                    None
                }
                None => {
                    online.entries.insert(
                        visitor.id.clone(),
                        Entry {
                            bot: visitor.bot.clone(),
                            first_seen: now,
                            last_seen: now,
                            alive_at: Instant::now(),
                            recent: VecDeque::from([page]),
                            pages: 1,
                            referrer: view.referrer.map(clip),
                            language: view.language,
                            country: view.country,
                            sockets: 0,
                            conversation: conversation_id.clone(),
                            invite: None,
                        },
                    );
                    None
                }
            }
        };
        self.publish_online(&visitor.id);
        Ok(Viewed {
            token,
            visitor_id: visitor.id,
            created,
            conversation_id,
            invite,
        })
    }

    /// The visitor's latest conversation, if the widget would resume it (not closed or
    /// ended).
    async fn resumable(&self, visitor: &VisitorRef) -> Result<Option<String>, EngineError> {
        let id = match self.visitor_conversation(visitor).await {
            Ok(id) => id,
            Err(EngineError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let conv = match self.peek(&id).await {
            Ok(c) => c,
            Err(EngineError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok((!matches!(conv.status, Status::Closed | Status::Ended)).then_some(id))
    }

    /// Marks the visitor online while their widget's socket is open.
    pub fn visitor_listening(&self, visitor: &VisitorRef) -> Listening {
        let mut online = self.online();
        let entry = online.entries.get_mut(&visitor.id);
        let counted = entry.is_some();
        if let Some(e) = entry {
            e.sockets += 1;
            e.alive_at = Instant::now();
        }
        Listening {
            engine: self.clone(),
            visitor_id: visitor.id.clone(),
            counted,
        }
    }

    /// Visitors online on the bots the agent serves, the most recently seen first.
    pub fn visitors_online(&self, agent: &AgentRef) -> Vec<Value> {
        let bots = self.bots_of(agent);
        let now = Instant::now();
        let mut found: Vec<(String, Entry)> = self
            .online()
            .entries
            .iter()
            .filter(|(_, e)| !e.gone(now))
            .filter(|(_, e)| bots.as_ref().is_none_or(|b| b.contains(&e.bot)))
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        found.sort_by_key(|(_, e)| std::cmp::Reverse(e.last_seen));
        found
            .iter()
            .map(|(id, e)| self.online_json(id, e))
            .collect()
    }

    fn online_json(&self, id: &str, e: &Entry) -> Value {
        let now = Timestamp::now();
        let current = e.recent.back();
        let mut v = json!({
            "visitor_id": id,
            "bot": e.bot,
            "url": current.map(|p| p.url.as_str()),
            "title": current.and_then(|p| p.title.as_deref()),
            "pages": e.pages,
            "recent_pages": e.recent.iter().rev().map(|p| json!({
                "url": p.url,
                "title": p.title,
                "at": p.at.to_string(),
            })).collect::<Vec<_>>(),
            "referrer": e.referrer,
            "language": e.language,
            "first_seen_at": e.first_seen.to_string(),
            "last_seen_at": e.last_seen.to_string(),
            "time_on_site_secs": now.duration_since(e.first_seen).as_secs().max(0),
            "connected": e.sockets > 0,
            "chatting": e.conversation.as_deref().is_some_and(|c| self.in_play(c)),
            "conversation_id": e.conversation,
            "invited_by": e.invite().map(|i| i.agent.as_str()),
        });
        if let Some(country) = &e.country {
            v["country"] = json!(country);
        }
        v
    }

    /// Whether a conversation is in play (with the bot, waiting or with a person).
    fn in_play(&self, id: &str) -> bool {
        self.convs().get(id).is_some_and(|entry| {
            entry.try_lock().map_or(true, |c| {
                !matches!(c.status, Status::Resolved | Status::Ended | Status::Closed)
            })
        })
    }

    /// Tells the consoles how the visitor is now.
    fn publish_online(&self, visitor_id: &str) {
        let Some(entry) = self.online().entries.get(visitor_id).cloned() else {
            return;
        };
        let json = json!({
            "type": VISITOR_ACTIVE,
            "at": Timestamp::now().to_string(),
            "data": self.online_json(visitor_id, &entry),
        });
        self.inner.hub.publish(Frame {
            bot: Some(entry.bot),
            agent_json: Some(json.to_string().into()),
            kind: Some(VISITOR_ACTIVE),
            ..Frame::default()
        });
    }

    fn publish_left(&self, visitor_id: &str, bot: String) {
        let json = json!({
            "type": VISITOR_LEFT,
            "at": Timestamp::now().to_string(),
            "data": {"visitor_id": visitor_id},
        });
        self.inner.hub.publish(Frame {
            bot: Some(bot),
            agent_json: Some(json.to_string().into()),
            kind: Some(VISITOR_LEFT),
            ..Frame::default()
        });
    }

    /// Drops visitors who left, and tells the consoles.
    fn expire_online(&self) {
        let now = Instant::now();
        let gone: Vec<(String, String)> = {
            let mut online = self.online();
            let gone: Vec<(String, String)> = online
                .entries
                .iter()
                .filter(|(_, e)| e.gone(now))
                .map(|(id, e)| (id.clone(), e.bot.clone()))
                .collect();
            for (id, _) in &gone {
                online.entries.remove(id);
            }
            if online.entries.len() < online.max {
                online.full_logged = false;
            }
            gone
        };
        for (id, bot) in gone {
            self.publish_left(&id, bot);
        }
    }

    /// The visitor is no longer online (erased, or swept).
    pub(super) fn leave_live(&self, visitor_id: &str) {
        let gone = self.online().entries.remove(visitor_id);
        if let Some(e) = gone {
            self.publish_left(visitor_id, e.bot);
        }
    }

    /// A conversation of the visitor started: it now chats.
    pub(super) fn chat_started(&self, visitor_id: &str, conversation_id: &str) {
        let listed = match self.online().entries.get_mut(visitor_id) {
            Some(e) => {
                e.conversation = Some(conversation_id.to_string());
                e.invite = None;
                true
            }
            None => false,
        };
        if listed {
            self.publish_online(visitor_id);
        }
    }

    /// The invitation waiting for the visitor, taken (a conversation answers it).
    pub(super) fn take_invite(&self, visitor_id: &str) -> Option<(String, String)> {
        let mut online = self.online();
        let e = online.entries.get_mut(visitor_id)?;
        let invite = e.invite().map(|i| (i.agent.clone(), i.text.clone()));
        e.invite = None;
        invite
    }

    /// The invited conversation: the agent takes it and says what the invitation said.
    /// Refused by the core (the agent went offline, is full), it stays with the bot.
    pub(super) async fn answer_invite(&self, conversation_id: &str, agent: String, text: String) {
        let took = self
            .run(
                conversation_id,
                Command::Takeover {
                    agent: agent.clone(),
                },
                None,
                |_| Ok(()),
            )
            .await;
        if let Err(e) = took {
            tracing::info!("an invited chat stays with the bot: {agent} could not take it: {e}");
            return;
        }
        let said = self
            .run(
                conversation_id,
                Command::AgentMessage {
                    agent,
                    text,
                    attachments: Vec::new(),
                },
                None,
                |_| Ok(()),
            )
            .await;
        if let Err(e) = said {
            tracing::warn!("the invitation's text was not added to {conversation_id}: {e}");
        }
    }

    /// An agent invites a visitor online to chat. `NotFound` when the visitor is not
    /// online on a bot the agent serves; `Conflict` when they chat already, cannot hear it,
    /// or the agent cannot take the chat.
    pub async fn invite_visitor(
        &self,
        agent: &AgentRef,
        visitor_id: &str,
        text: String,
    ) -> Result<(), EngineError> {
        let bots = self.bots_of(agent);
        let entry = self
            .online()
            .entries
            .get(visitor_id)
            .filter(|e| !e.gone(Instant::now()))
            .filter(|e| bots.as_ref().is_none_or(|b| b.contains(&e.bot)))
            .cloned()
            .ok_or(EngineError::NotFound)?;
        let visitor = VisitorRef {
            id: visitor_id.to_string(),
            bot: entry.bot.clone(),
        };
        if self.resumable(&visitor).await?.is_some() {
            return Err(conflict(
                "visitor_chatting",
                "this visitor has a conversation already; open it instead",
            ));
        }
        let email = agent.email.to_lowercase();
        let me = self
            .agent_views()
            .iter()
            .find(|a| a.email == email)
            .cloned()
            .ok_or_else(|| conflict("agent_offline", "only agents of the roster invite"))?;
        if !me.online {
            return Err(conflict(
                "agent_offline",
                "open the console first: the visitor's reply comes to you there",
            ));
        }
        if !me.has_capacity() {
            return Err(conflict(
                "at_capacity",
                "you have as many chats as you may (max_chats)",
            ));
        }
        if entry.sockets == 0 {
            return Err(conflict(
                "visitor_unreachable",
                "the visitor's widget is not connected now (closed, or on a page without it)",
            ));
        }
        let invite = Invite {
            agent: me.email.clone(),
            name: me.name.clone(),
            text,
            at: Instant::now(),
        };
        let payload = json!({
            "type": VISITOR_INVITE,
            "at": Timestamp::now().to_string(),
            "data": {"text": invite.text, "name": invite.name},
        });
        {
            let mut online = self.online();
            let Some(e) = online.entries.get_mut(visitor_id) else {
                return Err(EngineError::NotFound);
            };
            e.invite = Some(invite);
        }
        self.inner.hub.publish(Frame {
            visitor_id: Some(visitor_id.to_string()),
            visitor_json: Some(payload.to_string().into()),
            kind: Some(VISITOR_INVITE),
            ..Frame::default()
        });
        self.publish_online(visitor_id);
        Ok(())
    }
}

/// At most `KEEP_BYTES` of `s`, cut at a character boundary.
fn clip(mut s: String) -> String {
    if s.len() > KEEP_BYTES {
        let mut end = KEEP_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn conflict(code: &'static str, message: &str) -> EngineError {
    EngineError::Conflict {
        code,
        message: message.to_string(),
    }
}
