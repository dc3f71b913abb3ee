//! `apply`: one command against a conversation. The commands of visitors, agents and timers
//! each have a file; `handoff` holds the steps they share (ring, offline, collect, assign).

mod agents;
mod contact;
mod handoff;
mod timers;
mod video;
mod visitor;

use std::sync::LazyLock;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::commands::Command;
use super::events::{Author, Event, EventData, Message, Notice, VideoEndReason};
use super::types::{Conversation, Ctx, Rejection, Status, Transition};
use crate::chat::flow::{self, FlowError};
use crate::chat::routing::{self, AgentView};
use crate::chat::text::render_text;
use crate::config::schema::{LiveChat, Text};

/// The settings of a Live Chat action that is not (or no longer) configured, e.g. for a
/// takeover in a bot without one: every key at its default.
pub(super) static DEFAULT_LIVE_CHAT: LazyLock<LiveChat> =
    LazyLock::new(|| toml::from_str("").expect("every Live Chat key has a default"));

/// Runs one command against a conversation: the next state and its events, or why not.
pub fn apply(conv: &Conversation, cmd: Command, ctx: &Ctx<'_>) -> Result<Transition, Rejection> {
    let name = cmd.name();
    let mut tx = Tx {
        conv: conv.clone(),
        events: Vec::new(),
        ctx,
        command: name,
    };
    // The visitor's contact details outlive the conversation: agents may edit them from
    // an archived one too.
    if conv.status == Status::Closed && !matches!(cmd, Command::SetContact { .. }) {
        return Err(tx.invalid_state());
    }
    match cmd {
        Command::VisitorMessage { text, attachments } => tx.visitor_message(text, attachments)?,
        Command::Choose { step, pick } => tx.choose(step, pick)?,
        Command::Answer { text } => tx.answer(text)?,
        Command::Skip => tx.flow_input(flow::skip)?,
        Command::Back if conv.status == Status::Collecting => tx.withdraw_request(),
        Command::Back => tx.flow_input(flow::back)?,
        Command::RequestLiveChat { action } if tx.video_only(action.as_deref()) => {
            tx.request_video(action)?
        }
        Command::RequestLiveChat { action } => {
            tx.conv.video = false;
            tx.request_live_chat(action)?
        }
        Command::SubmitForm { form, values } => tx.submit_form(form, values)?,
        Command::RequestVideo { action } => tx.request_video(action)?,
        Command::OfferVideo { agent } => tx.offer_video(&agent)?,
        Command::AnswerVideo { accept } => tx.answer_video(accept)?,
        Command::EndVideo { by } => tx.end_video(&by, VideoEndReason::Hangup)?,
        Command::Accept { agent } => tx.accept(&agent)?,
        Command::AgentMessage {
            agent,
            text,
            attachments,
        } => tx.agent_message(&agent, text, attachments)?,
        Command::Note { agent, text } => tx.note(&agent, text)?,
        Command::Assign {
            by,
            agent,
            by_admin,
        } => tx.assign(&by, &agent, by_admin)?,
        Command::Unassign { by } => tx.unassign(&by)?,
        Command::Transfer { by, to } => tx.transfer(&by, to)?,
        Command::Takeover { agent } => tx.takeover(&agent)?,
        Command::Mute { agent } => tx.mute(&agent)?,
        Command::Resolve { by, note } => tx.resolve(&by, note)?,
        Command::Close => tx.close()?,
        Command::VisitorEnd => tx.visitor_end()?,
        Command::AcceptTimeout => tx.accept_timeout()?,
        Command::IdleTimeout => tx.idle_timeout()?,
        Command::OfferTimeout => tx.offer_timeout()?,
        Command::Expire { after } => tx.expire(after)?,
        Command::AgentsChanged => tx.agents_changed(),
        Command::Rate { rating, comment } => tx.rate(rating, comment)?,
        Command::SetContact { by, fields } => tx.set_contact(&by, fields)?,
    }
    Ok(Transition {
        conversation: tx.conv,
        events: tx.events,
    })
}

/// One command being applied: the conversation as it becomes, and the events so far.
struct Tx<'c, 'a> {
    conv: Conversation,
    events: Vec<Event>,
    ctx: &'c Ctx<'a>,
    command: &'static str,
}

impl<'c, 'a: 'c> Tx<'c, 'a> {
    // ---- small helpers ------------------------------------------------------------------

    /// The Live Chat action of this conversation (defaults when it has none, or it was
    /// removed from the config).
    fn action(&self) -> &'c LiveChat {
        self.conv
            .live_chat
            .as_ref()
            .and_then(|id| self.ctx.bot.live_chat.get(id))
            .unwrap_or(&DEFAULT_LIVE_CHAT)
    }

    /// Who may take the waiting request now; for a video request, only agents who take
    /// video.
    fn eligible(&self) -> Vec<&'c AgentView> {
        let mut agents = routing::eligible_agents(
            self.ctx.agents,
            self.ctx.teams,
            &self.conv.bot,
            self.conv.team.as_deref(),
            &self.conv.muted,
        );
        if self.conv.video {
            agents.retain(|a| a.video);
        }
        agents
    }

    /// A conversation can only go to someone who can see it: an agent of a team serving
    /// its bot (admins see everything).
    fn require_serves_bot(&self, agent: &AgentView) -> Result<(), Rejection> {
        if agent.is_admin() || routing::serves(agent, self.ctx.teams, &self.conv.bot, None) {
            Ok(())
        } else {
            Err(Rejection::NotAvailable(format!(
                "{} is not in a team serving this bot",
                agent.email
            )))
        }
    }

    fn serves(&self, agent: &AgentView) -> bool {
        routing::serves(
            agent,
            self.ctx.teams,
            &self.conv.bot,
            self.conv.team.as_deref(),
        )
    }

    fn agent(&self, email: &str) -> Result<&'c AgentView, Rejection> {
        self.ctx
            .agents
            .iter()
            .find(|a| a.email == email)
            .ok_or_else(|| Rejection::UnknownAgent(email.to_string()))
    }

    fn is_assignee(&self, email: &str) -> bool {
        self.conv.assignee.as_deref() == Some(email)
    }

    fn require(&self, allowed: &[Status]) -> Result<(), Rejection> {
        if allowed.contains(&self.conv.status) {
            Ok(())
        } else {
            Err(self.invalid_state())
        }
    }

    /// A timer command: in `status`, with its deadline set and passed. A timer that fires
    /// after its deadline moved (someone accepted, the visitor wrote) is stale.
    fn require_due(&self, status: Status, deadline: Option<Timestamp>) -> Result<(), Rejection> {
        match deadline {
            Some(at) if self.conv.status == status && at <= self.ctx.now => Ok(()),
            _ => Err(self.invalid_state()),
        }
    }

    fn invalid_state(&self) -> Rejection {
        Rejection::InvalidState {
            status: self.conv.status,
            command: self.command,
        }
    }

    fn flow_rejection(&self, e: FlowError) -> Rejection {
        match e {
            FlowError::NoSuchChoice => Rejection::InvalidInput(e.to_string()),
            FlowError::NotOffered(_) => Rejection::NotAllowed(e.to_string()),
            FlowError::NotWaiting | FlowError::Stale | FlowError::NothingToGoBackTo => {
                self.invalid_state()
            }
        }
    }

    /// Variables texts render with: the flow's, the visitor's profile, and the agent.
    fn render_ctx(&self, agent: Option<&AgentView>) -> Value {
        let mut m: serde_json::Map<String, Value> = self
            .conv
            .flow
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Some(n) = &self.conv.name {
            m.entry("name").or_insert_with(|| json!(n));
        }
        if let Some(e) = &self.conv.email {
            m.entry("email").or_insert_with(|| json!(e));
        }
        m.insert(
            "visitor".into(),
            json!({ "name": self.conv.name, "email": self.conv.email }),
        );
        if let Some(a) = agent {
            m.insert("agent".into(), json!({ "name": a.name, "email": a.email }));
        }
        m.entry("bot")
            .or_insert_with(|| json!({ "name": self.ctx.bot.header.name.get_ref() }));
        Value::Object(m)
    }

    /// A Live Chat message to the visitor (`notice`: which one, for clients and tests).
    fn notice(&mut self, text: &Text, notice: Notice, agent: Option<&AgentView>) {
        let text = render_text(text, &self.conv.language, &self.render_ctx(agent));
        self.message(Message {
            notice: Some(notice),
            ..Message::new(Author::System, text)
        });
    }

    fn message(&mut self, message: Message) {
        self.emit(EventData::MessageCreated(message));
    }

    fn emit(&mut self, event: EventData) {
        self.events.push(event);
    }
}

/// `now + d`, saturating at the end of time.
fn after(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(d).unwrap_or(Timestamp::MAX)
}
