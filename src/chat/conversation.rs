//! The conversation lifecycle as one pure state machine.
//!
//! `bot` → (the visitor asks for a person: `collecting` name and email if the Live Chat
//! action wants them) → `new` (rings every eligible agent, or offers to one in `auto` mode)
//! → `assigned` (accepted, assigned, transferred) → `chatting` (the first message after
//! assignment; the bot is paused) → `resolved` → `closed` (final). Side exits: accept
//! timeout and "nobody online" fall back to the bot (offline form or next step); a silent
//! visitor or the visitor's own "end" → `ended`; a visitor writing to a resolved chat
//! reopens it.
//!
//! `apply` takes the conversation, a command and the world as the caller sees it now (the
//! current bot config, the agents with their presence and load, the clock, business hours)
//! and returns the next conversation and the events to persist and publish — or a
//! `Rejection` with a stable code, and then nothing happened. Deadlines for the timers are
//! part of the returned conversation (`deadlines`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::flow::{self, FlowError, FlowState, Output, Pick, Waiting};
use super::form::validate_form;
use super::routing::{self, AgentView};
use super::text::render_text;
use crate::config::schema::{
    AskKind, Assignment, Bot, ButtonKind, ChatMode, CollectField, FieldKind, FlowButton, LiveChat,
    Team, Text,
};
use crate::config::values::is_valid_email;

/// Longest message or note accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// Longest name accepted when collecting one before a live chat.
pub const MAX_NAME_CHARS: usize = 200;
/// Said when a collected name or email does not fit.
pub const COLLECT_RETRY: &str = "Sorry, that doesn't look right. Please try again.";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The bot leads (also after a live chat request nobody answered).
    Bot,
    /// A person was asked for; the name or email the Live Chat action collects is asked.
    Collecting,
    /// Waiting for an agent: ringing (or offered, in `auto` mode).
    New,
    /// An agent has it; nobody has written since.
    Assigned,
    /// Agent and visitor talk; the bot is paused.
    Chatting,
    /// Done, with an optional note; a visitor message reopens it.
    Resolved,
    /// Archived. Final: every command is refused.
    Closed,
    /// The visitor went silent (idle timeout) or ended the chat.
    Ended,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Bot,
        Status::Collecting,
        Status::New,
        Status::Assigned,
        Status::Chatting,
        Status::Resolved,
        Status::Closed,
        Status::Ended,
    ];

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Bot => "bot",
            Status::Collecting => "collecting",
            Status::New => "new",
            Status::Assigned => "assigned",
            Status::Chatting => "chatting",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
            Status::Ended => "ended",
        }
    }

    /// Counts toward the assignee's `max_chats` (the caller's `AgentView::active_chats`).
    pub fn holds_agent(self) -> bool {
        matches!(self, Status::Assigned | Status::Chatting)
    }

    /// A live chat is under way: the idle timer runs.
    fn live(self) -> bool {
        matches!(
            self,
            Status::Collecting | Status::New | Status::Assigned | Status::Chatting
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When the timers fire. The engine schedules each that is set and sends the matching
/// command when it is due (`due`); a command whose deadline has moved is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deadlines {
    /// Nobody accepted by then → `AcceptTimeout`.
    pub accept: Option<Timestamp>,
    /// The visitor silent until then → `IdleTimeout`.
    pub idle: Option<Timestamp>,
    /// `auto` mode: the offered agent did not accept by then → `OfferTimeout`.
    pub offer: Option<Timestamp>,
}

impl Deadlines {
    /// The timeout commands due at `now`, earliest first.
    pub fn due(&self, now: Timestamp) -> Vec<Command> {
        let mut due: Vec<(Timestamp, Command)> = [
            (self.offer, Command::OfferTimeout),
            (self.accept, Command::AcceptTimeout),
            (self.idle, Command::IdleTimeout),
        ]
        .into_iter()
        .filter_map(|(at, cmd)| at.filter(|at| *at <= now).map(|at| (at, cmd)))
        .collect();
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().map(|(_, cmd)| cmd).collect()
    }

    /// The earliest deadline set, if any.
    pub fn earliest(&self) -> Option<Timestamp> {
        [self.accept, self.idle, self.offer]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Stored as JSON in `conversations.state`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conversation {
    pub id: String,
    /// The bot's id.
    pub bot: String,
    pub visitor_id: String,
    pub status: Status,
    pub flow: FlowState,
    /// The Live Chat action of the current (or last) request.
    pub live_chat: Option<String>,
    /// The team the request rings (routing or transfer); `None`: every team serving the bot.
    pub team: Option<String>,
    /// The agent (email) who has the conversation.
    pub assignee: Option<String>,
    /// The agents ringing now (in `auto` mode: the one it is offered to).
    pub ringing: BTreeSet<String>,
    /// Agents who muted this request: it no longer rings for them ("awaiting").
    pub muted: BTreeSet<String>,
    /// `auto` mode: the agent the request is offered to now.
    pub offered_to: Option<String>,
    /// `auto` mode: agents offered in this round; the next offer goes to someone else.
    pub offered: BTreeSet<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// One of the bot's languages.
    pub language: String,
    pub page_url: Option<String>,
    pub country: Option<String>,
    pub opened_at: Timestamp,
    /// The current live chat request (or takeover) began.
    pub requested_at: Option<Timestamp>,
    /// The current assignee got it.
    pub assigned_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub last_visitor_at: Option<Timestamp>,
    pub resolve_note: Option<String>,
    /// How the visitor rated the chat, once it was over (one rating a conversation).
    #[serde(default)]
    pub rating: Option<Rating>,
    /// What the visitor wrote with their rating.
    #[serde(default)]
    pub rating_comment: Option<String>,
    pub deadlines: Deadlines,
}

/// What the visitor brings when a conversation starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visitor {
    /// Preferred language (`de`, `de-AT`); the bot's first language when it speaks none.
    pub language: Option<String>,
    pub page_url: Option<String>,
    pub country: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The visitor writes.
    VisitorMessage {
        text: String,
    },
    /// The visitor clicks a choice (`step`: the step it belongs to, to catch stale clicks).
    Choose {
        step: Option<String>,
        pick: Pick,
    },
    /// The visitor answers the question asked (a step's `ask`, or a collected field).
    Answer {
        text: String,
    },
    Skip,
    Back,
    /// The visitor asks for a person; `action` defaults to the one of the step the flow is
    /// at, else the bot's first.
    RequestLiveChat {
        action: Option<String>,
    },
    /// The visitor sends the offline form shown to them.
    SubmitForm {
        form: String,
        values: BTreeMap<String, String>,
    },
    Accept {
        agent: String,
    },
    AgentMessage {
        agent: String,
        text: String,
    },
    /// An internal note, never shown to the visitor.
    Note {
        agent: String,
        text: String,
    },
    /// Admins assign anyone; agents only themselves.
    Assign {
        by: String,
        agent: String,
        by_admin: bool,
    },
    /// The assignee gives the conversation back to the queue.
    Unassign {
        by: String,
    },
    Transfer {
        by: String,
        to: TransferTarget,
    },
    /// An agent takes a conversation from the bot.
    Takeover {
        agent: String,
    },
    /// Stop ringing for this agent only.
    Mute {
        agent: String,
    },
    Resolve {
        by: String,
        note: Option<String>,
    },
    Close,
    VisitorEnd,
    AcceptTimeout,
    IdleTimeout,
    OfferTimeout,
    /// Agents' presence, availability or load changed, or the config was reloaded: ring
    /// (or offer) anew for a waiting request.
    AgentsChanged,
    /// The visitor rates a chat a person had with them, once it is over.
    Rate {
        rating: Rating,
        comment: Option<String>,
    },
}

/// A visitor's rating of a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Good,
    Bad,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Good => "good",
            Rating::Bad => "bad",
        }
    }
}

/// The longest rating comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::VisitorMessage { .. } => "visitor message",
            Command::Choose { .. } => "choose",
            Command::Answer { .. } => "answer",
            Command::Skip => "skip",
            Command::Back => "back",
            Command::RequestLiveChat { .. } => "request live chat",
            Command::SubmitForm { .. } => "submit form",
            Command::Accept { .. } => "accept",
            Command::AgentMessage { .. } => "agent message",
            Command::Note { .. } => "note",
            Command::Assign { .. } => "assign",
            Command::Unassign { .. } => "unassign",
            Command::Transfer { .. } => "transfer",
            Command::Takeover { .. } => "takeover",
            Command::Mute { .. } => "mute",
            Command::Resolve { .. } => "resolve",
            Command::Close => "close",
            Command::VisitorEnd => "end",
            Command::AcceptTimeout => "accept timeout",
            Command::IdleTimeout => "idle timeout",
            Command::OfferTimeout => "offer timeout",
            Command::AgentsChanged => "agents changed",
            Command::Rate { .. } => "rate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// An agent's email.
    Agent(String),
    /// A team id.
    Team(String),
}

/// The world as the caller sees it when the command runs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub now: Timestamp,
    /// The conversation's bot, as configured now.
    pub bot: &'a Bot,
    /// Every agent of the roster, with presence and load.
    pub agents: &'a [AgentView],
    /// The roster's teams (which bots each serves).
    pub teams: &'a [Team],
    /// Within the opening hours of the Live Chat action the request goes to
    /// (`Conversation::action_for` names it); `true` when it has no `hours`.
    pub open: bool,
}

/// The new state and what happened, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub conversation: Conversation,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub data: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    ConversationStarted,
    MessageCreated,
    FlowStep,
    LivechatRequested,
    LivechatRinging,
    LivechatAccepted,
    LivechatTimeout,
    LivechatOffline,
    ConversationAssigned,
    ConversationTransferred,
    ConversationResolved,
    ConversationClosed,
    ConversationReopened,
    ConversationEnded,
    NoteCreated,
    FormSubmitted,
    ConversationRated,
}

impl EventKind {
    pub const ALL: [EventKind; 17] = [
        EventKind::ConversationStarted,
        EventKind::MessageCreated,
        EventKind::FlowStep,
        EventKind::LivechatRequested,
        EventKind::LivechatRinging,
        EventKind::LivechatAccepted,
        EventKind::LivechatTimeout,
        EventKind::LivechatOffline,
        EventKind::ConversationAssigned,
        EventKind::ConversationTransferred,
        EventKind::ConversationResolved,
        EventKind::ConversationClosed,
        EventKind::ConversationReopened,
        EventKind::ConversationEnded,
        EventKind::NoteCreated,
        EventKind::FormSubmitted,
        EventKind::ConversationRated,
    ];

    /// The event type name of the API (`docs/api.md`): a contract.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ConversationStarted => "conversation.started",
            EventKind::MessageCreated => "message.created",
            EventKind::FlowStep => "flow.step",
            EventKind::LivechatRequested => "livechat.requested",
            EventKind::LivechatRinging => "livechat.ringing",
            EventKind::LivechatAccepted => "livechat.accepted",
            EventKind::LivechatTimeout => "livechat.timeout",
            EventKind::LivechatOffline => "livechat.offline",
            EventKind::ConversationAssigned => "conversation.assigned",
            EventKind::ConversationTransferred => "conversation.transferred",
            EventKind::ConversationResolved => "conversation.resolved",
            EventKind::ConversationClosed => "conversation.closed",
            EventKind::ConversationReopened => "conversation.reopened",
            EventKind::ConversationEnded => "conversation.ended",
            EventKind::NoteCreated => "note.created",
            EventKind::FormSubmitted => "form.submitted",
            EventKind::ConversationRated => "conversation.rated",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("another agent has already taken this conversation")]
    AlreadyTaken,
    #[error("{0} already has as many chats as they may hold")]
    AtCapacity(String),
    #[error("{0}")]
    NotAvailable(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("cannot {command} while the conversation is {status}")]
    InvalidState {
        status: Status,
        command: &'static str,
    },
    #[error("no agent {0}")]
    UnknownAgent(String),
    #[error("{0}")]
    InvalidInput(String),
}

impl Rejection {
    /// The stable error code of the API.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::AlreadyTaken => "already_taken",
            Rejection::AtCapacity(_) => "at_capacity",
            Rejection::NotAvailable(_) => "not_available",
            Rejection::NotAllowed(_) => "not_allowed",
            Rejection::InvalidState { .. } => "invalid_state",
            Rejection::UnknownAgent(_) => "unknown_agent",
            Rejection::InvalidInput(_) => "invalid_input",
        }
    }
}

/// The settings of a Live Chat action that is not (or no longer) configured, e.g. for a
/// takeover in a bot without one: every key at its default.
static DEFAULT_LIVE_CHAT: LazyLock<LiveChat> =
    LazyLock::new(|| toml::from_str("").expect("every Live Chat key has a default"));

impl Conversation {
    /// Whether `other` is this conversation with at most newer activity: when the visitor
    /// last wrote, and the idle deadline that follows from it. (What every message of a
    /// running chat changes, and nothing else.)
    pub fn differs_only_in_activity(&self, other: &Conversation) -> bool {
        let mut same = self.clone();
        same.last_visitor_at = other.last_visitor_at;
        same.deadlines.idle = other.deadlines.idle;
        same == *other
    }

    /// A new conversation: `conversation.started`, then the bot's first steps.
    pub fn start(
        id: impl Into<String>,
        bot_id: impl Into<String>,
        visitor_id: impl Into<String>,
        visitor: Visitor,
        bot: &Bot,
        now: Timestamp,
    ) -> Transition {
        let language = pick_language(bot, visitor.language.as_deref());
        let mut vars = BTreeMap::new();
        let name = visitor
            .name
            .filter(|n| valid_name(n))
            .map(|n| n.trim().to_string());
        let email = visitor
            .email
            .filter(|e| is_valid_email(e.trim()))
            .map(|e| e.trim().to_string());
        if let Some(n) = &name {
            vars.insert("name".to_string(), n.clone());
        }
        if let Some(e) = &email {
            vars.insert("email".to_string(), e.clone());
        }
        let (flow_state, outputs) = flow::start_with(bot, &language, vars);
        let conv = Conversation {
            id: id.into(),
            bot: bot_id.into(),
            visitor_id: visitor_id.into(),
            status: Status::Bot,
            flow: flow_state,
            live_chat: None,
            team: None,
            assignee: None,
            ringing: BTreeSet::new(),
            muted: BTreeSet::new(),
            offered_to: None,
            offered: BTreeSet::new(),
            name,
            email,
            language,
            page_url: visitor.page_url,
            country: visitor.country,
            opened_at: now,
            requested_at: None,
            assigned_at: None,
            resolved_at: None,
            closed_at: None,
            ended_at: None,
            last_visitor_at: None,
            resolve_note: None,
            rating: None,
            rating_comment: None,
            deadlines: Deadlines::default(),
        };
        let mut events = vec![Event {
            kind: EventKind::ConversationStarted,
            data: json!({
                "bot": conv.bot,
                "visitor_id": conv.visitor_id,
                "language": conv.language,
                "page_url": conv.page_url,
                "country": conv.country,
            }),
        }];
        show_flow(bot, &conv.flow, &conv.language, outputs, &mut events);
        Transition {
            conversation: conv,
            events,
        }
    }

    /// Runs one command. See `apply`.
    pub fn apply(&self, cmd: Command, ctx: &Ctx<'_>) -> Result<Transition, Rejection> {
        apply(self, cmd, ctx)
    }

    /// The Live Chat action a request would go to: `requested` if given, else the one of
    /// the step the flow waits at, else the bot's first. The caller computes `Ctx::open`
    /// for it.
    pub fn action_for<'b>(&self, bot: &'b Bot, requested: Option<&str>) -> Option<&'b str> {
        if let Some(r) = requested {
            return bot.live_chat.get_key_value(r).map(|(k, _)| k.as_str());
        }
        let at_step = self
            .flow
            .step
            .as_ref()
            .and_then(|id| bot.steps.iter().find(|s| s.id.get_ref() == id))
            .and_then(|s| s.live_chat.as_ref())
            .and_then(|a| bot.live_chat.get_key_value(a.get_ref()));
        at_step
            .or_else(|| bot.live_chat.iter().next())
            .map(|(k, _)| k.as_str())
    }
}

/// Where a waiting request stands in its queue: 1 for the oldest `new` request of the same
/// bot and team, 2 for the next… `0` when `conv` is not waiting.
pub fn queue_position<'a>(
    conv: &Conversation,
    all_new: impl IntoIterator<Item = &'a Conversation>,
) -> usize {
    if conv.status != Status::New {
        return 0;
    }
    let key = |c: &Conversation| (c.requested_at, c.id.clone());
    let mine = key(conv);
    1 + all_new
        .into_iter()
        .filter(|c| {
            c.status == Status::New
                && c.id != conv.id
                && c.bot == conv.bot
                && c.team == conv.team
                && key(c) < mine
        })
        .count()
}

/// Runs one command against a conversation: the next state and its events, or why not.
pub fn apply(conv: &Conversation, cmd: Command, ctx: &Ctx<'_>) -> Result<Transition, Rejection> {
    let name = cmd.name();
    let mut tx = Tx {
        conv: conv.clone(),
        events: Vec::new(),
        ctx,
        command: name,
    };
    if conv.status == Status::Closed {
        return Err(tx.invalid_state());
    }
    match cmd {
        Command::VisitorMessage { text } => tx.visitor_message(text)?,
        Command::Choose { step, pick } => tx.choose(step, pick)?,
        Command::Answer { text } => tx.answer(text)?,
        Command::Skip => tx.flow_input(flow::skip)?,
        Command::Back if conv.status == Status::Collecting => tx.withdraw_request(),
        Command::Back => tx.flow_input(flow::back)?,
        Command::RequestLiveChat { action } => tx.request_live_chat(action)?,
        Command::SubmitForm { form, values } => tx.submit_form(form, values)?,
        Command::Accept { agent } => tx.accept(&agent)?,
        Command::AgentMessage { agent, text } => tx.agent_message(&agent, text)?,
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
        Command::AgentsChanged => tx.agents_changed(),
        Command::Rate { rating, comment } => tx.rate(rating, comment)?,
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
    // ---- visitor ------------------------------------------------------------------------

    fn visitor_message(&mut self, text: String) -> Result<(), Rejection> {
        let text = message_text(&text)?;
        self.require(&[
            Status::Bot,
            Status::Collecting,
            Status::New,
            Status::Assigned,
            Status::Chatting,
            Status::Resolved,
        ])?;
        self.visitor_said(&text);
        match self.conv.status {
            Status::Bot => {
                let (state, outputs) =
                    flow::text(self.ctx.bot, &self.conv.flow, &self.conv.language, &text);
                self.set_flow(state, outputs);
            }
            Status::Collecting => self.collect_answer(&text),
            Status::Assigned => self.conv.status = Status::Chatting,
            Status::Resolved => self.reopen(),
            _ => {}
        }
        Ok(())
    }

    fn choose(&mut self, step: Option<String>, pick: Pick) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        let (state, outputs) = flow::choose(
            self.ctx.bot,
            &self.conv.flow,
            &self.conv.language,
            step.as_deref(),
            &pick,
        )
        .map_err(|e| self.flow_rejection(e))?;
        self.conv.last_visitor_at = Some(self.ctx.now);
        self.set_flow(state, outputs);
        Ok(())
    }

    fn answer(&mut self, text: String) -> Result<(), Rejection> {
        let text = message_text(&text)?;
        match self.conv.status {
            Status::Collecting => {
                self.visitor_said(&text);
                self.collect_answer(&text);
                Ok(())
            }
            Status::Bot => {
                let (state, outputs) =
                    flow::answer(self.ctx.bot, &self.conv.flow, &self.conv.language, &text)
                        .map_err(|e| self.flow_rejection(e))?;
                self.visitor_said(&text);
                self.set_flow(state, outputs);
                Ok(())
            }
            _ => Err(self.invalid_state()),
        }
    }

    /// `skip` and `back`: flow navigation while the bot leads.
    fn flow_input(
        &mut self,
        f: impl Fn(&Bot, &FlowState, &str) -> Result<flow::Flow, FlowError>,
    ) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        let (state, outputs) = f(self.ctx.bot, &self.conv.flow, &self.conv.language)
            .map_err(|e| self.flow_rejection(e))?;
        self.conv.last_visitor_at = Some(self.ctx.now);
        self.set_flow(state, outputs);
        Ok(())
    }

    /// `back` while the name or email for a person is asked: the visitor takes the request
    /// back and is where they asked again, that step shown anew (its Live Chat button, or
    /// its choices). What they gave so far stays known.
    fn withdraw_request(&mut self) {
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Bot;
        c.last_visitor_at = Some(self.ctx.now);
        c.deadlines = Deadlines::default();
        let (state, outputs) = flow::again(self.ctx.bot, &c.flow, &c.language);
        self.set_flow(state, outputs);
    }

    fn request_live_chat(&mut self, action: Option<String>) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        let Some(action_id) = self
            .conv
            .action_for(self.ctx.bot, action.as_deref())
            .map(str::to_string)
        else {
            return Err(match action {
                Some(a) => Rejection::InvalidInput(format!("no Live Chat action `{a}`")),
                None => Rejection::NotAllowed("this bot offers no live chat".into()),
            });
        };
        let now = self.ctx.now;
        self.conv.live_chat = Some(action_id.clone());
        let a = self.action();
        let c = &mut self.conv;
        c.requested_at = Some(now);
        c.assigned_at = None;
        c.resolved_at = None;
        c.resolve_note = None;
        c.last_visitor_at = Some(now);
        c.muted.clear();
        c.offered.clear();
        c.offered_to = None;
        c.ringing.clear();
        c.team = routing::route(
            a,
            &c.flow.vars,
            c.page_url.as_deref(),
            &c.language,
            c.country.as_deref(),
        );
        self.notice(&a.welcome_message, "welcome", None);
        self.emit(
            EventKind::LivechatRequested,
            json!({ "action": action_id, "team": self.conv.team }),
        );
        self.touch_idle();
        // Nobody to talk to: say so at once rather than ask for a name first.
        if let Some(reason) = self.offline_reason() {
            self.offline(reason);
        } else if let Some(field) = self.missing_field() {
            self.conv.status = Status::Collecting;
            self.ask_collect(field);
        } else {
            self.connect();
        }
        Ok(())
    }

    fn submit_form(
        &mut self,
        form_id: String,
        values: BTreeMap<String, String>,
    ) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        if self.conv.flow.waiting != Waiting::OfflineForm(form_id.clone()) {
            return Err(Rejection::InvalidState {
                status: self.conv.status,
                command: "submit this form",
            });
        }
        let lang = self.conv.language.clone();
        if let Some(form) = self.ctx.bot.offline_form.get(&form_id) {
            let clean = validate_form(form, &values).map_err(|errs| {
                Rejection::InvalidInput(
                    errs.iter()
                        .map(|e| format!("{} {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            let c = &mut self.conv;
            if c.name.is_none() {
                c.name = clean.get("name").cloned();
            }
            if c.email.is_none() {
                c.email = clean.get("email").cloned().filter(|e| is_valid_email(e));
            }
            self.emit(
                EventKind::FormSubmitted,
                json!({ "form": form_id, "values": clean }),
            );
            let thanks = render_text(&form.thank_you, &lang, &self.render_ctx(None));
            self.message("bot", thanks, json!({}));
        }
        self.conv.last_visitor_at = Some(self.ctx.now);
        let (state, outputs) = flow::resume_after_live_chat(self.ctx.bot, &self.conv.flow, &lang);
        self.set_flow(state, outputs);
        Ok(())
    }

    fn visitor_end(&mut self) -> Result<(), Rejection> {
        self.require(&[
            Status::Bot,
            Status::Collecting,
            Status::New,
            Status::Assigned,
            Status::Chatting,
        ])?;
        self.conv.last_visitor_at = Some(self.ctx.now);
        self.end("visitor");
        Ok(())
    }

    // ---- agents -------------------------------------------------------------------------

    fn accept(&mut self, email: &str) -> Result<(), Rejection> {
        match self.conv.status {
            Status::New => {}
            // A retried accept by the winner changes nothing.
            Status::Assigned | Status::Chatting if self.is_assignee(email) => return Ok(()),
            Status::Assigned | Status::Chatting => return Err(Rejection::AlreadyTaken),
            _ => return Err(self.invalid_state()),
        }
        let agent = self.agent(email)?;
        self.may_accept(agent)?;
        self.emit(EventKind::LivechatAccepted, json!({ "agent": agent.email }));
        self.assign_to(agent, &agent.email, None);
        Ok(())
    }

    /// Whether `agent` may take this waiting request: room for one more chat, a member of
    /// the team it rings, "Accept chats" on, and in `auto` mode the one it is offered to.
    /// Muting does not matter: a muted request still waits under "awaiting".
    fn may_accept(&self, agent: &AgentView) -> Result<(), Rejection> {
        if !agent.has_capacity() {
            return Err(Rejection::AtCapacity(agent.email.clone()));
        }
        if !self.serves(agent) {
            return Err(Rejection::NotAvailable(format!(
                "{} is not in a team this request is routed to",
                agent.email
            )));
        }
        if !agent.accepting {
            return Err(Rejection::NotAvailable(format!(
                "{} is not accepting chats",
                agent.email
            )));
        }
        if self.action().assignment == Assignment::Auto
            && self.conv.offered_to.as_deref() != Some(agent.email.as_str())
        {
            return Err(Rejection::NotAvailable(
                "this request is offered to another agent".into(),
            ));
        }
        Ok(())
    }

    fn agent_message(&mut self, email: &str, text: String) -> Result<(), Rejection> {
        let text = message_text(&text)?;
        let agent = self.agent(email)?;
        self.require(&[Status::Assigned, Status::Chatting])?;
        if !self.is_assignee(email) {
            return Err(Rejection::NotAllowed(
                "only the assigned agent writes to the visitor".into(),
            ));
        }
        self.conv.status = Status::Chatting;
        self.message(
            "agent",
            text,
            json!({ "agent": agent.email, "name": agent.name }),
        );
        Ok(())
    }

    fn note(&mut self, email: &str, text: String) -> Result<(), Rejection> {
        let text = message_text(&text)?;
        let agent = self.agent(email)?;
        self.emit(
            EventKind::NoteCreated,
            json!({ "agent": agent.email, "name": agent.name, "text": text }),
        );
        Ok(())
    }

    fn assign(&mut self, by: &str, email: &str, by_admin: bool) -> Result<(), Rejection> {
        if !by_admin && by != email {
            return Err(Rejection::NotAllowed(
                "only admins assign conversations to others".into(),
            ));
        }
        let agent = self.agent(email)?;
        self.require(&[Status::New, Status::Assigned, Status::Chatting])?;
        if self.is_assignee(email) {
            return Ok(());
        }
        if !by_admin {
            // Assigning oneself is accepting.
            return self.accept(email);
        }
        self.require_serves_bot(agent)?;
        if !agent.has_capacity() {
            return Err(Rejection::AtCapacity(agent.email.clone()));
        }
        let previous = self.conv.assignee.clone();
        self.assign_to(agent, by, previous);
        Ok(())
    }

    fn unassign(&mut self, by: &str) -> Result<(), Rejection> {
        self.require(&[Status::Assigned, Status::Chatting])?;
        if !self.is_assignee(by) {
            return Err(Rejection::NotAllowed(
                "only the assigned agent unassigns themselves".into(),
            ));
        }
        // They gave it back: it does not ring for them again.
        self.conv.muted.insert(by.to_string());
        self.emit(
            EventKind::ConversationAssigned,
            json!({ "agent": null, "previous": by, "by": by }),
        );
        self.enter_new();
        Ok(())
    }

    fn transfer(&mut self, by: &str, to: TransferTarget) -> Result<(), Rejection> {
        let from = self.agent(by)?;
        self.require(&[Status::New, Status::Assigned, Status::Chatting])?;
        if self.conv.assignee.is_some() && !self.is_assignee(by) && !from.is_admin() {
            return Err(Rejection::NotAllowed(
                "only the assigned agent or an admin transfers".into(),
            ));
        }
        let previous = self.conv.assignee.clone();
        match to {
            TransferTarget::Agent(email) => {
                let agent = self.agent(&email)?;
                if self.is_assignee(&email) {
                    return Err(Rejection::InvalidInput(format!(
                        "{email} already has this conversation"
                    )));
                }
                self.require_serves_bot(agent)?;
                if !agent.has_capacity() {
                    return Err(Rejection::AtCapacity(agent.email.clone()));
                }
                if !(agent.accepting && agent.online) {
                    return Err(Rejection::NotAvailable(format!("{email} is not available")));
                }
                self.emit(
                    EventKind::ConversationTransferred,
                    json!({ "by": by, "from": previous, "agent": agent.email, "team": null }),
                );
                self.assign_to(agent, by, previous);
            }
            TransferTarget::Team(team) => {
                let Some(found) = self.ctx.teams.iter().find(|t| *t.id.get_ref() == team) else {
                    return Err(Rejection::InvalidInput(format!("no team `{team}`")));
                };
                // A team that does not serve the bot could not see the conversation.
                if !found.bots.iter().any(|b| *b.get_ref() == self.conv.bot) {
                    return Err(Rejection::NotAvailable(format!(
                        "team `{team}` does not serve this bot"
                    )));
                }
                if let Some(p) = &previous {
                    self.conv.muted.insert(p.clone());
                }
                self.conv.team = Some(team.clone());
                self.emit(
                    EventKind::ConversationTransferred,
                    json!({ "by": by, "from": previous, "agent": null, "team": team }),
                );
                let a = self.action();
                self.notice(&a.handoff_message, "handoff", None);
                self.enter_new();
            }
        }
        Ok(())
    }

    fn takeover(&mut self, email: &str) -> Result<(), Rejection> {
        let agent = self.agent(email)?;
        self.require(&[Status::Bot, Status::Collecting])?;
        if !agent.has_capacity() {
            return Err(Rejection::AtCapacity(agent.email.clone()));
        }
        let serves_bot = routing::serves(agent, self.ctx.teams, &self.conv.bot, None);
        if !serves_bot && !agent.is_admin() {
            return Err(Rejection::NotAvailable(format!(
                "{email} is not in a team serving this bot"
            )));
        }
        let now = self.ctx.now;
        if self.conv.status == Status::Bot {
            self.conv.live_chat = self.conv.action_for(self.ctx.bot, None).map(str::to_string);
            self.conv.requested_at = Some(now);
            self.conv.resolved_at = None;
            self.conv.resolve_note = None;
        }
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Chatting;
        c.assignee = Some(agent.email.clone());
        c.assigned_at = Some(now);
        self.emit(
            EventKind::ConversationAssigned,
            json!({ "agent": agent.email, "name": agent.name, "by": agent.email, "takeover": true }),
        );
        let a = self.action();
        self.notice(&a.takeover_message, "takeover", Some(agent));
        self.touch_idle();
        Ok(())
    }

    fn mute(&mut self, email: &str) -> Result<(), Rejection> {
        self.agent(email)?;
        self.require(&[Status::New])?;
        if !self.conv.muted.insert(email.to_string()) {
            return Ok(());
        }
        if self.conv.offered_to.as_deref() == Some(email) {
            // Muting an offer declines it: offer to the next agent.
            self.conv.offered_to = None;
            self.conv.deadlines.offer = None;
        }
        self.ring(false);
        Ok(())
    }

    fn resolve(&mut self, by: &str, note: Option<String>) -> Result<(), Rejection> {
        let agent = self.agent(by)?;
        self.require(&[
            Status::Collecting,
            Status::New,
            Status::Assigned,
            Status::Chatting,
        ])?;
        let allowed = agent.is_admin()
            || match &self.conv.assignee {
                Some(a) => a == by,
                None => self.serves(agent),
            };
        if !allowed {
            return Err(Rejection::NotAllowed(
                "only the assigned agent or an admin resolves this conversation".into(),
            ));
        }
        let note = optional_text(note, MAX_MESSAGE_CHARS, "the note")?;
        let now = self.ctx.now;
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Resolved;
        c.resolved_at = Some(now);
        c.resolve_note = note.clone();
        c.deadlines = Deadlines::default();
        let secs = c.requested_at.map(|r| now.duration_since(r).as_secs());
        self.emit(
            EventKind::ConversationResolved,
            json!({ "by": by, "note": note, "time_to_resolve_secs": secs }),
        );
        Ok(())
    }

    fn close(&mut self) -> Result<(), Rejection> {
        self.require(&[Status::Resolved, Status::Ended, Status::Bot])?;
        self.clear_waiting();
        self.conv.status = Status::Closed;
        self.conv.closed_at = Some(self.ctx.now);
        self.conv.deadlines = Deadlines::default();
        self.emit(EventKind::ConversationClosed, json!({}));
        Ok(())
    }

    /// Once a chat a person had is over (resolved or ended; a closed one takes nothing any
    /// more), the visitor may rate it, once.
    fn rate(&mut self, rating: Rating, comment: Option<String>) -> Result<(), Rejection> {
        self.require(&[Status::Resolved, Status::Ended])?;
        let had_a_person = self.conv.assigned_at.is_some() || self.conv.assignee.is_some();
        if !had_a_person || self.conv.rating.is_some() {
            return Err(self.invalid_state());
        }
        let comment = optional_text(comment, MAX_COMMENT_CHARS, "the comment")?;
        self.conv.rating = Some(rating);
        self.conv.rating_comment = comment.clone();
        self.emit(
            EventKind::ConversationRated,
            json!({ "rating": rating.as_str(), "comment": comment, "agent": self.conv.assignee }),
        );
        Ok(())
    }

    // ---- timers -------------------------------------------------------------------------

    fn accept_timeout(&mut self) -> Result<(), Rejection> {
        self.require_due(Status::New, self.conv.deadlines.accept)?;
        let a = self.action();
        self.notice(&a.timeout_message, "timeout", None);
        self.emit(
            EventKind::LivechatTimeout,
            json!({ "action": self.conv.live_chat, "team": self.conv.team }),
        );
        self.back_to_bot();
        Ok(())
    }

    fn idle_timeout(&mut self) -> Result<(), Rejection> {
        self.require_due(self.conv.status, self.conv.deadlines.idle)?;
        if !self.conv.status.live() {
            return Err(self.invalid_state());
        }
        self.end("idle");
        Ok(())
    }

    fn offer_timeout(&mut self) -> Result<(), Rejection> {
        self.require_due(Status::New, self.conv.deadlines.offer)?;
        self.conv.offered_to = None;
        self.conv.deadlines.offer = None;
        self.ring(true);
        Ok(())
    }

    fn agents_changed(&mut self) {
        if self.conv.status == Status::New {
            self.ring(false);
        }
    }

    // ---- the steps the commands share ---------------------------------------------------

    /// `None` when someone can take the request now; else why not (`closed`: outside the
    /// opening hours, `no_agents`: nobody eligible).
    fn offline_reason(&self) -> Option<&'static str> {
        if !self.ctx.open {
            Some("closed")
        } else if self.eligible().is_empty() {
            Some("no_agents")
        } else {
            None
        }
    }

    /// The first field of `collect` not known yet.
    fn missing_field(&self) -> Option<CollectField> {
        self.action()
            .collect
            .iter()
            .map(|f| *f.get_ref())
            .find(|f| match f {
                CollectField::Name => self.conv.name.is_none(),
                CollectField::Email => self.conv.email.is_none(),
            })
    }

    fn ask_collect(&mut self, field: CollectField) {
        let a = self.action();
        let (prompt, name, kind) = match field {
            CollectField::Name => (&a.name_prompt, "name", "text"),
            CollectField::Email => (&a.email_prompt, "email", "email"),
        };
        let text = render_text(prompt, &self.conv.language, &self.render_ctx(None));
        self.message("bot", text, json!({ "collect": name }));
        self.emit(EventKind::FlowStep, collect_step(name, kind));
    }

    fn collect_answer(&mut self, text: &str) {
        let Some(field) = self.missing_field() else {
            // The action no longer collects it (config changed): go on.
            return self.finish_collecting();
        };
        let value = text.trim().to_string();
        let ok = match field {
            CollectField::Name => valid_name(&value),
            CollectField::Email => is_valid_email(&value),
        };
        if !ok {
            self.message("bot", COLLECT_RETRY.to_string(), json!({}));
            let (name, kind) = match field {
                CollectField::Name => ("name", "text"),
                CollectField::Email => ("email", "email"),
            };
            self.emit(EventKind::FlowStep, collect_step(name, kind));
            return;
        }
        let var = match field {
            CollectField::Name => {
                self.conv.name = Some(value.clone());
                "name"
            }
            CollectField::Email => {
                self.conv.email = Some(value.clone());
                "email"
            }
        };
        self.conv.flow.vars.insert(var.to_string(), value);
        match self.missing_field() {
            Some(next) => self.ask_collect(next),
            None => self.finish_collecting(),
        }
    }

    fn finish_collecting(&mut self) {
        match self.offline_reason() {
            Some(reason) => self.offline(reason),
            None => self.connect(),
        }
    }

    /// Someone can take it: the handoff message, then ring.
    fn connect(&mut self) {
        let a = self.action();
        self.notice(&a.handoff_message, "handoff", None);
        self.enter_new();
    }

    /// Nobody can take it: the offline message, then the offline form or the flow.
    fn offline(&mut self, reason: &'static str) {
        let a = self.action();
        self.notice(&a.offline_message, "offline", None);
        let form = self.offline_form().map(|(id, _)| id.to_string());
        self.emit(
            EventKind::LivechatOffline,
            json!({ "action": self.conv.live_chat, "reason": reason, "form": form }),
        );
        self.back_to_bot();
    }

    /// The action's offline form, if it has one that exists.
    fn offline_form(&self) -> Option<(&'c str, &'c crate::config::schema::OfflineForm)> {
        let id = self.action().offline_form.as_ref()?;
        self.ctx
            .bot
            .offline_form
            .get_key_value(id.get_ref())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The live chat did not happen: the bot leads again, with the offline form shown if
    /// the action has one, else the flow going on.
    fn back_to_bot(&mut self) {
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Bot;
        c.assignee = None;
        c.deadlines = Deadlines::default();
        let lang = c.language.clone();
        match self.offline_form() {
            Some((id, form)) => {
                self.conv.flow = flow::pause_for_offline_form(&self.conv.flow, id);
                let ctx = self.render_ctx(None);
                let fields: Vec<Value> = form
                    .fields
                    .iter()
                    .map(|f| {
                        json!({
                            "name": f.name.get_ref(),
                            "label": render_text(&f.label, &lang, &ctx),
                            "type": field_kind(f.kind),
                            "required": f.required,
                            "max": f.max,
                            "options": f.options,
                        })
                    })
                    .collect();
                self.emit(
                    EventKind::FlowStep,
                    json!({
                        "step": self.conv.flow.step,
                        "offline_form": {
                            "id": id,
                            "title": render_text(&form.title, &lang, &ctx),
                            "intro": form.intro.as_ref().map(|t| render_text(t, &lang, &ctx)),
                            "fields": fields,
                        },
                        "buttons": ["skip"],
                    }),
                );
            }
            None => {
                let (state, outputs) =
                    flow::resume_after_live_chat(self.ctx.bot, &self.conv.flow, &lang);
                self.set_flow(state, outputs);
            }
        }
    }

    /// Waits for an agent: rings (or offers), with the accept deadline.
    fn enter_new(&mut self) {
        let accept = after(self.ctx.now, self.action().accept_timeout.get());
        let c = &mut self.conv;
        c.status = Status::New;
        c.assignee = None;
        c.offered_to = None;
        c.offered.clear();
        c.deadlines.offer = None;
        c.deadlines.accept = Some(accept);
        self.ring(true);
    }

    /// Works out who rings now and says so when it changed (or always, with `announce`).
    /// In `auto` mode a standing offer stays while its agent is still eligible; otherwise
    /// the request is offered to the least-loaded eligible agent not offered yet in this
    /// round (a new round starts when everyone was).
    fn ring(&mut self, announce: bool) {
        let eligible = self.eligible();
        let now = self.ctx.now;
        let a = self.action();
        let ringing: BTreeSet<String> = match a.assignment {
            Assignment::Ring => {
                // (An action switched from `auto` to `ring` mid-request drops its offer.)
                self.conv.offered_to = None;
                self.conv.deadlines.offer = None;
                eligible.iter().map(|a| a.email.clone()).collect()
            }
            Assignment::Auto => {
                let c = &mut self.conv;
                let standing = c
                    .offered_to
                    .as_ref()
                    .filter(|o| eligible.iter().any(|a| &&a.email == o))
                    .cloned();
                let offer = standing.or_else(|| {
                    let pick = routing::least_loaded(&eligible, &c.offered).or_else(|| {
                        c.offered.clear();
                        routing::least_loaded(&eligible, &c.offered)
                    })?;
                    c.offered.insert(pick.email.clone());
                    c.deadlines.offer = Some(after(now, a.offer_timeout.get()));
                    Some(pick.email.clone())
                });
                if offer.is_none() {
                    c.deadlines.offer = None;
                }
                c.offered_to = offer.clone();
                offer.into_iter().collect()
            }
        };
        if announce || ringing != self.conv.ringing {
            self.conv.ringing = ringing;
            self.emit(
                EventKind::LivechatRinging,
                json!({
                    "agents": self.conv.ringing,
                    "team": self.conv.team,
                    "offered_to": self.conv.offered_to,
                }),
            );
        }
    }

    /// Gives the conversation to `agent`: `conversation.assigned` and the assigned message.
    fn assign_to(&mut self, agent: &AgentView, by: &str, previous: Option<String>) {
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Assigned;
        c.assignee = Some(agent.email.clone());
        c.assigned_at = Some(self.ctx.now);
        c.deadlines.accept = None;
        c.deadlines.offer = None;
        self.emit(
            EventKind::ConversationAssigned,
            json!({ "agent": agent.email, "name": agent.name, "by": by, "previous": previous }),
        );
        let a = self.action();
        self.notice(&a.assigned_message, "assigned", Some(agent));
    }

    /// A visitor message on a resolved conversation: back to its agent if they can take
    /// it (online, accepting, room for it), else to the queue.
    fn reopen(&mut self) {
        self.conv.resolved_at = None;
        self.conv.resolve_note = None;
        // A new wait: those who muted (or gave back) an earlier one are rung again.
        self.conv.muted.clear();
        let back_to = self
            .conv
            .assignee
            .as_ref()
            .and_then(|email| self.ctx.agents.iter().find(|a| &a.email == email))
            .filter(|a| a.available());
        self.emit(
            EventKind::ConversationReopened,
            json!({ "assignee": back_to.map(|a| &a.email) }),
        );
        self.touch_idle();
        match back_to {
            Some(_) => self.conv.status = Status::Assigned,
            None => self.enter_new(),
        }
    }

    fn end(&mut self, reason: &str) {
        self.clear_waiting();
        self.conv.status = Status::Ended;
        self.conv.ended_at = Some(self.ctx.now);
        self.conv.deadlines = Deadlines::default();
        self.emit(EventKind::ConversationEnded, json!({ "reason": reason }));
    }

    /// Stops ringing and offering.
    fn clear_waiting(&mut self) {
        self.conv.ringing.clear();
        self.conv.offered_to = None;
        self.conv.offered.clear();
    }

    /// A message from the visitor: recorded, and the idle timer starts over.
    fn visitor_said(&mut self, text: &str) {
        self.conv.last_visitor_at = Some(self.ctx.now);
        if self.conv.status.live() {
            self.touch_idle();
        }
        self.message("visitor", text.to_string(), json!({}));
    }

    fn touch_idle(&mut self) {
        self.conv.deadlines.idle = Some(after(self.ctx.now, self.action().idle_timeout.get()));
    }

    fn set_flow(&mut self, state: FlowState, outputs: Vec<Output>) {
        self.conv.flow = state;
        // `ask` answers for `name` and `email` fill the visitor's profile.
        if let Some(name) = self.conv.flow.vars.get("name").filter(|n| valid_name(n)) {
            self.conv.name = Some(name.clone());
        }
        if let Some(email) = self
            .conv
            .flow
            .vars
            .get("email")
            .filter(|e| is_valid_email(e))
        {
            self.conv.email = Some(email.clone());
        }
        show_flow(
            self.ctx.bot,
            &self.conv.flow,
            &self.conv.language,
            outputs,
            &mut self.events,
        );
    }

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

    fn eligible(&self) -> Vec<&'c AgentView> {
        routing::eligible_agents(
            self.ctx.agents,
            self.ctx.teams,
            &self.conv.bot,
            self.conv.team.as_deref(),
            &self.conv.muted,
        )
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
    fn notice(&mut self, text: &Text, notice: &str, agent: Option<&AgentView>) {
        let text = render_text(text, &self.conv.language, &self.render_ctx(agent));
        self.message("system", text, json!({ "notice": notice }));
    }

    fn message(&mut self, author: &str, text: String, extra: Value) {
        self.events.push(message_event(author, text, extra));
    }

    fn emit(&mut self, kind: EventKind, data: Value) {
        self.events.push(Event { kind, data });
    }
}

fn message_event(author: &str, text: String, extra: Value) -> Event {
    let mut data = json!({ "author": author, "text": text });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    Event {
        kind: EventKind::MessageCreated,
        data,
    }
}

/// The events for what the flow shows: bot messages, `flow.step` prompts, the visitor's
/// picked choice, the Live Chat button, the end of the flow.
fn show_flow(
    bot: &Bot,
    state: &FlowState,
    lang: &str,
    outputs: Vec<Output>,
    events: &mut Vec<Event>,
) {
    for out in outputs {
        let event = match out {
            Output::Say { step, text } => message_event("bot", text, json!({ "step": step })),
            Output::Chosen { step, label, value } => {
                message_event("visitor", label, json!({ "step": step, "value": value }))
            }
            Output::Prompt(p) => Event {
                kind: EventKind::FlowStep,
                data: json!({
                    "step": p.step,
                    "choices": p.choices.iter()
                        .map(|c| json!({ "label": c.label, "value": c.value }))
                        .collect::<Vec<_>>(),
                    "ask": p.ask.map(|a| json!({
                        "var": a.var, "type": ask_kind(a.kind), "max": a.max,
                    })),
                    "link": p.link.map(|l| json!({ "label": l.label, "url": l.url })),
                    "buttons": buttons(&p.buttons),
                }),
            },
            Output::LiveChat { action } => {
                let step = state
                    .step
                    .as_ref()
                    .and_then(|id| bot.steps.iter().find(|s| s.id.get_ref() == id));
                let step_buttons: Vec<FlowButton> = step
                    .map(|s| s.buttons.iter().map(|b| *b.get_ref()).collect())
                    .unwrap_or_default();
                let a = bot.live_chat.get(&action).unwrap_or(&DEFAULT_LIVE_CHAT);
                let ctx = flow::vars_json(bot, &state.vars);
                Event {
                    kind: EventKind::FlowStep,
                    data: json!({
                        "step": state.step,
                        "live_chat": {
                            "action": action,
                            "label": render_text(&a.button.label, lang, &ctx),
                            "style": match a.button.style {
                                ButtonKind::Primary => "primary",
                                ButtonKind::Secondary => "secondary",
                            },
                            "modes": a.modes.iter().map(|m| match m.get_ref() {
                                ChatMode::Text => "text",
                                ChatMode::Video => "video",
                            }).collect::<Vec<_>>(),
                        },
                        "buttons": buttons(&step_buttons),
                    }),
                }
            }
            Output::End => Event {
                kind: EventKind::FlowStep,
                data: json!({ "step": null, "end": true }),
            },
        };
        events.push(event);
    }
}

/// The `flow.step` of a collected field: the visitor answers with a message, or goes
/// `back` to where they asked for a person (like any question of the flow).
fn collect_step(field: &str, kind: &str) -> Value {
    json!({ "step": null, "collect": { "field": field, "type": kind }, "buttons": ["back"] })
}

fn buttons(b: &[FlowButton]) -> Vec<&'static str> {
    b.iter()
        .map(|b| match b {
            FlowButton::Skip => "skip",
            FlowButton::Back => "back",
        })
        .collect()
}

fn ask_kind(k: AskKind) -> &'static str {
    match k {
        AskKind::Text => "text",
        AskKind::Email => "email",
        AskKind::Phone => "phone",
        AskKind::Number => "number",
    }
}

fn field_kind(k: FieldKind) -> &'static str {
    match k {
        FieldKind::Text => "text",
        FieldKind::Email => "email",
        FieldKind::Phone => "phone",
        FieldKind::Textarea => "textarea",
        FieldKind::Select => "select",
    }
}

/// Message text, trimmed: not empty, not longer than `MAX_MESSAGE_CHARS`.
fn message_text(text: &str) -> Result<String, Rejection> {
    let t = text.trim();
    if t.is_empty() {
        Err(Rejection::InvalidInput("the message is empty".into()))
    } else if t.chars().count() > MAX_MESSAGE_CHARS {
        Err(Rejection::InvalidInput(format!(
            "the message is longer than {MAX_MESSAGE_CHARS} characters"
        )))
    } else {
        Ok(t.to_string())
    }
}

fn valid_name(name: &str) -> bool {
    let n = name.trim();
    !n.is_empty() && n.chars().count() <= MAX_NAME_CHARS
}

/// The bot language for a visitor's preference: exact, else by its primary subtag
/// (`de-AT` → `de`), else the bot's first language.
pub fn pick_language(bot: &Bot, wanted: Option<&str>) -> String {
    wanted
        .and_then(|w| match_language(bot, w))
        .unwrap_or_else(|| flow::default_language(bot).to_string())
}

/// The bot language that is `wanted`, or its primary subtag; `None` if the bot has neither.
fn match_language(bot: &Bot, wanted: &str) -> Option<String> {
    let wanted = wanted.trim();
    if wanted.is_empty() {
        return None;
    }
    let langs = || bot.header.languages.iter().map(|l| l.get_ref());
    let primary = wanted.split(['-', '_']).next().unwrap_or(wanted);
    langs()
        .find(|l| l.eq_ignore_ascii_case(wanted))
        .or_else(|| langs().find(|l| l.eq_ignore_ascii_case(primary)))
        .cloned()
}

/// The visitor's language from a browser's `Accept-Language` list: the most preferred tag
/// (by `q`, then order) that the bot speaks, else the most preferred tag at all (kept as the
/// visitor's language, and [`pick_language`] then falls back to the bot's first). Tags
/// with `q=0` and `*` are never chosen.
pub fn preferred_language(bot: &Bot, accept: &str) -> Option<String> {
    let mut tags: Vec<(f32, &str)> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let tag = pieces.next()?.trim();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            (!tag.is_empty() && tag != "*" && q > 0.0).then_some((q, tag))
        })
        .collect();
    // Stable: equal weights keep the browser's order.
    tags.sort_by(|a, b| b.0.total_cmp(&a.0));
    tags.iter()
        .find(|(_, tag)| match_language(bot, tag).is_some())
        .or(tags.first())
        .map(|(_, tag)| tag.to_string())
}

/// An optional free text (a closing note, a rating comment): trimmed, `None` when empty,
/// refused when longer than `max` characters.
fn optional_text(
    text: Option<String>,
    max: usize,
    what: &str,
) -> Result<Option<String>, Rejection> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > max => {
            Err(Rejection::InvalidInput(format!("{what} is too long")))
        }
        Some(t) => Ok(Some(t.to_string())),
    }
}

/// `now + d`, saturating at the end of time.
fn after(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(d).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chat::flow::tests::bot;
    use crate::chat::routing::tests::{agent, teams};
    use crate::config::schema::Role;

    pub(crate) fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    pub(crate) const ROSTER: &str = r#"
[[team]]
id = "support"
bots = ["support"]
[[team]]
id = "billing"
[[team]]
id = "night"
"#;

    /// The support bot; `extra` goes into `[live_chat.desk]`, `tail` after it.
    pub(crate) fn support_bot(extra: &str, tail: &str) -> Bot {
        bot(&format!(
            r#"
name = "Support"
languages = ["en", "de"]
[[step]]
id = "start"
say = {{ en = "Hi! What can we do for you?", de = "Hallo!" }}
choices = [
  {{ label = "Billing", set = {{ topic = "billing" }}, goto = "human" }},
  {{ label = "Something else", goto = "human" }},
]
[[step]]
id = "human"
say = "Want to talk to a person?"
live_chat = "desk"
buttons = ["skip"]
[[step]]
id = "bye"
say = "Thanks for chatting, {{{{ name }}}}."

[live_chat.desk]
route = [{{ when = {{ topic = "billing" }}, team = "billing" }}]
{extra}

[offline_form.contact]
email_to = ["desk@acme.example"]
fields = [
  {{ name = "email", label = "Email", type = "email", required = true }},
  {{ name = "message", label = "Message", type = "textarea", required = true }},
]
{tail}
"#
        ))
    }

    pub(crate) fn roster_agents() -> Vec<AgentView> {
        let mut ana = agent("ana@acme.example", &["support", "billing"]);
        ana.name = "Ana Lima".into();
        let bea = agent("bea@acme.example", &["support"]);
        let cid = agent("cid@acme.example", &["billing"]);
        let mut adm = agent("adm@acme.example", &["night"]);
        adm.role = Role::Admin;
        vec![ana, bea, cid, adm]
    }

    struct World {
        bot: Bot,
        agents: Vec<AgentView>,
        teams: Vec<Team>,
        open: bool,
        now: Timestamp,
    }

    impl World {
        fn new(bot: Bot) -> World {
            World {
                bot,
                agents: roster_agents(),
                teams: teams(ROSTER),
                open: true,
                now: ts(0),
            }
        }

        fn ctx(&self) -> Ctx<'_> {
            Ctx {
                now: self.now,
                bot: &self.bot,
                agents: &self.agents,
                teams: &self.teams,
                open: self.open,
            }
        }

        fn start(&self) -> Conversation {
            Conversation::start(
                "c1",
                "support",
                "v1",
                Visitor::default(),
                &self.bot,
                self.now,
            )
            .conversation
        }

        fn ok(&self, conv: &Conversation, cmd: Command) -> (Conversation, Vec<Event>) {
            match apply(conv, cmd.clone(), &self.ctx()) {
                Ok(t) => (t.conversation, t.events),
                Err(e) => panic!("{cmd:?} refused: {e}"),
            }
        }

        fn code(&self, conv: &Conversation, cmd: Command) -> &'static str {
            match apply(conv, cmd.clone(), &self.ctx()) {
                Ok(t) => panic!("{cmd:?} accepted: {:?}", t.events),
                Err(e) => e.code(),
            }
        }

        fn agent_mut(&mut self, email: &str) -> &mut AgentView {
            self.agents.iter_mut().find(|a| a.email == email).unwrap()
        }

        /// A request ringing in the support team.
        fn ringing(&self) -> Conversation {
            let c = self.start();
            self.ok(&c, request()).0
        }

        fn assigned(&self, to: &str) -> Conversation {
            self.ok(&self.ringing(), accept(to)).0
        }
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    fn said(events: &[Event]) -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| e.kind == EventKind::MessageCreated)
            .map(|e| {
                (
                    e.data["author"].as_str().unwrap().to_string(),
                    e.data["text"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn ringing_of(events: &[Event]) -> Vec<String> {
        let e = events
            .iter()
            .rev()
            .find(|e| e.kind == EventKind::LivechatRinging)
            .expect("a ringing event");
        serde_json::from_value(e.data["agents"].clone()).unwrap()
    }

    fn request() -> Command {
        Command::RequestLiveChat { action: None }
    }
    fn accept(a: &str) -> Command {
        Command::Accept { agent: a.into() }
    }
    fn visitor(t: &str) -> Command {
        Command::VisitorMessage { text: t.into() }
    }
    fn agent_says(a: &str, t: &str) -> Command {
        Command::AgentMessage {
            agent: a.into(),
            text: t.into(),
        }
    }
    fn pair(a: &str, t: &str) -> (String, String) {
        (a.to_string(), t.to_string())
    }

    const ANA: &str = "ana@acme.example";
    const BEA: &str = "bea@acme.example";
    const CID: &str = "cid@acme.example";
    const ADM: &str = "adm@acme.example";

    #[test]
    fn the_browser_language_list_is_read_by_preference() {
        let b = support_bot("", ""); // speaks en, de
        let pick = |accept: &str| {
            let tag = preferred_language(&b, accept);
            (tag.clone(), pick_language(&b, tag.as_deref()))
        };
        let some = |t: &str, l: &str| (Some(t.to_string()), l.to_string());
        assert_eq!(pick("fr-FR,fr;q=0.9,de;q=0.8,en;q=0.7"), some("de", "de"));
        assert_eq!(pick("de-AT"), some("de-AT", "de"));
        assert_eq!(pick("en;q=0.5, de-CH;q=0.8"), some("de-CH", "de"));
        assert_eq!(pick("de;q=0, en"), some("en", "en"));
        assert_eq!(pick("fr, it;q=0.5"), some("fr", "en"));
        assert_eq!(pick("*"), (None, "en".to_string()));
        assert_eq!(pick(""), (None, "en".to_string()));
        assert_eq!(pick("de;q=nonsense"), (None, "en".to_string()));
    }

    #[test]
    fn activity_alone_is_told_apart_from_other_changes() {
        let w = World::new(support_bot("", ""));
        let c = Conversation::start("c1", "support", "v1", Visitor::default(), &w.bot, w.now)
            .conversation;
        let mut later = c.clone();
        later.last_visitor_at = Some(ts(60));
        later.deadlines.idle = Some(ts(600));
        assert!(c.differs_only_in_activity(&later));
        assert!(c.differs_only_in_activity(&c));
        let mut assigned = later.clone();
        assigned.assignee = Some("ana@acme.example".into());
        assert!(!c.differs_only_in_activity(&assigned));
        let mut accept = later.clone();
        accept.deadlines.accept = Some(ts(30));
        assert!(!c.differs_only_in_activity(&accept));
    }

    #[test]
    fn a_conversation_starts_with_the_bot() {
        let w = World::new(support_bot("", ""));
        let t = Conversation::start(
            "c1",
            "support",
            "v1",
            Visitor {
                language: Some("de-AT".into()),
                ..Visitor::default()
            },
            &w.bot,
            w.now,
        );
        assert_eq!(
            kinds(&t.events),
            ["conversation.started", "message.created", "flow.step"]
        );
        assert_eq!(said(&t.events), [pair("bot", "Hallo!")]);
        assert_eq!(t.events[2].data["choices"][0]["value"], "Billing");
        let c = t.conversation;
        assert_eq!((c.status, c.language.as_str()), (Status::Bot, "de"));
        assert_eq!(c.flow.step.as_deref(), Some("start"));
        assert_eq!(c.opened_at, w.now);
        assert_eq!(c.deadlines, Deadlines::default());
    }

    #[test]
    fn a_known_visitor_name_renders_in_the_flow() {
        let b = bot("name = \"B\"\n[[step]]\nid = \"a\"\nsay = \"Hi {{ name }}\"\n");
        let t = Conversation::start(
            "c",
            "b",
            "v",
            Visitor {
                name: Some(" Ana ".into()),
                email: Some("bad".into()),
                language: Some("xx".into()),
                ..Visitor::default()
            },
            &b,
            ts(0),
        );
        assert_eq!(said(&t.events), [pair("bot", "Hi Ana")]);
        assert_eq!(t.conversation.name.as_deref(), Some("Ana"));
        assert_eq!(t.conversation.email, None);
        assert_eq!(t.conversation.language, "en");
    }

    #[test]
    fn the_flow_runs_through_commands_while_the_bot_leads() {
        let w = World::new(support_bot("", ""));
        let c = w.start();
        let (c, ev) = w.ok(
            &c,
            Command::Choose {
                step: Some("start".into()),
                pick: Pick::Index(1),
            },
        );
        assert_eq!(
            said(&ev),
            [
                pair("visitor", "Something else"),
                pair("bot", "Want to talk to a person?")
            ]
        );
        let step = ev.last().unwrap();
        assert_eq!(step.kind, EventKind::FlowStep);
        assert_eq!(step.data["live_chat"]["action"], "desk");
        assert_eq!(step.data["live_chat"]["label"], "Talk to a person");
        assert_eq!(step.data["buttons"], json!(["skip"]));
        assert_eq!(c.last_visitor_at, Some(w.now));
        let (c, ev) = w.ok(&c, Command::Skip);
        assert_eq!(said(&ev), [pair("bot", "Thanks for chatting, .")]);
        assert_eq!(ev.last().unwrap().data["end"], true);
        assert_eq!(c.flow.waiting, Waiting::Done);
        // After the end, messages are only recorded.
        let (_, ev) = w.ok(&c, visitor("hello?"));
        assert_eq!(said(&ev), [pair("visitor", "hello?")]);
        assert_eq!(w.code(&c, Command::Skip), "invalid_state");
        assert_eq!(w.code(&c, Command::Back), "invalid_state");
    }

    #[test]
    fn flow_input_errors_map_to_codes() {
        let w = World::new(support_bot("", ""));
        let c = w.start();
        let choose = |pick| Command::Choose { step: None, pick };
        assert_eq!(w.code(&c, choose(Pick::Index(5))), "invalid_input");
        assert_eq!(
            w.code(
                &c,
                Command::Choose {
                    step: Some("human".into()),
                    pick: Pick::Index(0)
                }
            ),
            "invalid_state"
        );
        assert_eq!(w.code(&c, Command::Skip), "not_allowed");
        assert_eq!(
            w.code(&c, Command::Answer { text: "x".into() }),
            "invalid_state"
        );
        assert_eq!(w.code(&c, visitor("   ")), "invalid_input");
        assert_eq!(
            w.code(&c, visitor(&"x".repeat(MAX_MESSAGE_CHARS + 1))),
            "invalid_input"
        );
        // Free text that is no choice: the prompt again.
        let (c2, ev) = w.ok(&c, visitor("refund please"));
        assert_eq!(said(&ev)[1], pair("bot", flow::CHOOSE_AGAIN));
        assert_eq!(c2.flow, c.flow);
        let r = w.ringing();
        assert_eq!(w.code(&r, choose(Pick::Index(0))), "invalid_state");
        assert_eq!(w.code(&r, Command::Skip), "invalid_state");
        assert_eq!(w.code(&r, Command::Back), "invalid_state");
    }

    #[test]
    fn answers_fill_the_visitor_profile() {
        let b = bot(
            "name = \"B\"\n[[step]]\nid = \"n\"\nask = { var = \"name\" }\n[[step]]\nid = \"e\"\nask = { var = \"email\", type = \"email\" }\n[[step]]\nid = \"x\"\nsay = \"Thanks {{ name }}\"\n",
        );
        let w = World::new(b);
        let c = w.start();
        let (c, ev) = w.ok(&c, Command::Answer { text: "Ana".into() });
        assert_eq!(said(&ev), [pair("visitor", "Ana")]);
        assert_eq!(c.name.as_deref(), Some("Ana"));
        let (c, ev) = w.ok(&c, visitor("nope"));
        assert_eq!(
            said(&ev)[1],
            pair("bot", "Sorry, that doesn't look right. Please try again.")
        );
        assert_eq!(c.email, None);
        let (c, ev) = w.ok(
            &c,
            Command::Answer {
                text: "ana@x.example".into(),
            },
        );
        assert_eq!(c.email.as_deref(), Some("ana@x.example"));
        assert_eq!(said(&ev)[1], pair("bot", "Thanks Ana"));
    }

    #[test]
    fn a_request_rings_every_eligible_agent() {
        let w = World::new(support_bot("", ""));
        let c = w.start();
        let (c, ev) = w.ok(&c, request());
        assert_eq!(
            kinds(&ev),
            [
                "message.created",
                "livechat.requested",
                "message.created",
                "livechat.ringing"
            ]
        );
        assert_eq!(
            said(&ev),
            [
                pair("system", "Let me find someone for you."),
                pair("system", "Connecting you to our team…")
            ]
        );
        assert_eq!(ev[0].data["notice"], "welcome");
        assert_eq!(ev[1].data, json!({ "action": "desk", "team": null }));
        // Support serves the bot: Ana and Bea ring; Cid (billing) and the admin (night) not.
        assert_eq!(ringing_of(&ev), [ANA, BEA]);
        assert_eq!(c.status, Status::New);
        assert_eq!(c.live_chat.as_deref(), Some("desk"));
        assert_eq!(c.requested_at, Some(w.now));
        assert_eq!(c.deadlines.accept, Some(ts(90)));
        assert_eq!(c.deadlines.idle, Some(ts(600)));
        assert_eq!(c.deadlines.offer, None);
        assert_eq!(w.code(&c, request()), "invalid_state");
    }

    #[test]
    fn routing_picks_the_team_that_rings() {
        let w = World::new(support_bot("", ""));
        let c = w.start();
        let (c, _) = w.ok(
            &c,
            Command::Choose {
                step: None,
                pick: Pick::Value("billing".into()),
            },
        );
        let (c, ev) = w.ok(&c, request());
        assert_eq!(c.team.as_deref(), Some("billing"));
        assert_eq!(ringing_of(&ev), [ANA, CID]);
        // Only members of the routed team may accept.
        assert_eq!(w.code(&c, accept(BEA)), "not_available");
        assert_eq!(w.ok(&c, accept(CID)).0.assignee.as_deref(), Some(CID));
    }

    #[test]
    fn request_needs_a_live_chat_action() {
        let w = World::new(support_bot("", ""));
        let c = w.start();
        let bad = Command::RequestLiveChat {
            action: Some("nope".into()),
        };
        assert_eq!(w.code(&c, bad), "invalid_input");
        let plain = World::new(bot("name = \"B\"\n[[step]]\nid = \"a\"\nsay = \"x\"\n"));
        let c = plain.start();
        assert_eq!(plain.code(&c, request()), "not_allowed");
    }

    #[test]
    fn first_accept_wins() {
        let w = World::new(support_bot("", ""));
        let c = w.ringing();
        let (c, ev) = w.ok(&c, accept(ANA));
        assert_eq!(
            kinds(&ev),
            [
                "livechat.accepted",
                "conversation.assigned",
                "message.created"
            ]
        );
        assert_eq!(said(&ev), [pair("system", "Ana Lima has joined the chat.")]);
        assert_eq!(c.status, Status::Assigned);
        assert_eq!(c.assignee.as_deref(), Some(ANA));
        assert_eq!(c.assigned_at, Some(w.now));
        assert_eq!(c.deadlines.accept, None);
        assert!(c.ringing.is_empty());
        assert_eq!(w.code(&c, accept(BEA)), "already_taken");
        // The winner retrying changes nothing.
        let (c2, ev) = w.ok(&c, accept(ANA));
        assert_eq!((c2, ev), (c, vec![]));
    }

    #[test]
    fn accept_checks_the_agent() {
        let mut w = World::new(support_bot("", ""));
        let c = w.ringing();
        assert_eq!(w.code(&c, accept("who@acme.example")), "unknown_agent");
        assert_eq!(w.code(&c, accept(CID)), "not_available");
        w.agent_mut(BEA).accepting = false;
        assert_eq!(w.code(&c, accept(BEA)), "not_available");
        w.agent_mut(ANA).active_chats = 3;
        assert_eq!(w.code(&c, accept(ANA)), "at_capacity");
        assert_eq!(w.code(&w.start(), accept(ANA)), "invalid_state");
    }

    #[test]
    fn the_first_message_after_assignment_starts_chatting() {
        let w = World::new(support_bot("", ""));
        let c = w.assigned(ANA);
        let (c1, ev) = w.ok(&c, agent_says(ANA, "Hi, I'm Ana."));
        assert_eq!(c1.status, Status::Chatting);
        assert_eq!(ev[0].data["author"], "agent");
        assert_eq!(ev[0].data["agent"], ANA);
        let (c2, _) = w.ok(&c, visitor("hello"));
        assert_eq!(c2.status, Status::Chatting);
        // The bot stays paused: no flow output for the visitor's message.
        let (_, ev) = w.ok(&c2, visitor("billing"));
        assert_eq!(kinds(&ev), ["message.created"]);
        assert_eq!(w.code(&c1, agent_says(BEA, "me too")), "not_allowed");
        assert_eq!(w.code(&w.ringing(), agent_says(ANA, "hi")), "invalid_state");
        assert_eq!(w.code(&c1, agent_says(ANA, "")), "invalid_input");
    }

    #[test]
    fn notes_are_internal_and_allowed_until_closed() {
        let w = World::new(support_bot("", ""));
        let c = w.start();
        let note = |a: &str| Command::Note {
            agent: a.into(),
            text: "VIP".into(),
        };
        let (_, ev) = w.ok(&c, note(CID));
        assert_eq!(kinds(&ev), ["note.created"]);
        assert_eq!(ev[0].data["text"], "VIP");
        assert_eq!(w.code(&c, note("x@y.example")), "unknown_agent");
    }

    #[test]
    fn collecting_asks_for_missing_fields_first() {
        let w = World::new(support_bot("collect = [\"name\", \"email\"]", ""));
        let c = w.start();
        let (c, ev) = w.ok(&c, request());
        assert_eq!(c.status, Status::Collecting);
        assert_eq!(
            said(&ev),
            [
                pair("system", "Let me find someone for you."),
                pair("bot", "May I have your name?")
            ]
        );
        assert_eq!(ev.last().unwrap().data["collect"]["field"], "name");
        assert_eq!(c.deadlines.idle, Some(ts(600)));
        let (c, ev) = w.ok(&c, visitor("Ana"));
        assert_eq!(c.name.as_deref(), Some("Ana"));
        assert_eq!(
            said(&ev),
            [
                pair("visitor", "Ana"),
                pair("bot", "And your email address, in case we get cut off?")
            ]
        );
        let (c, ev) = w.ok(
            &c,
            Command::Answer {
                text: "not-an-email".into(),
            },
        );
        assert_eq!(c.status, Status::Collecting);
        assert_eq!(said(&ev)[1], pair("bot", COLLECT_RETRY));
        let (c, ev) = w.ok(
            &c,
            Command::Answer {
                text: "ana@x.example".into(),
            },
        );
        assert_eq!(c.email.as_deref(), Some("ana@x.example"));
        assert_eq!(c.flow.vars["email"], "ana@x.example");
        assert_eq!(c.status, Status::New);
        assert_eq!(ringing_of(&ev), [ANA, BEA]);
        assert_eq!(c.deadlines.accept, Some(ts(90)));
        // Skip does not apply while collecting (Back does: see below).
        let (c, _) = w.ok(&w.start(), request());
        assert_eq!(w.code(&c, Command::Skip), "invalid_state");
    }

    #[test]
    fn back_while_collecting_takes_the_request_back_to_where_it_was_made() {
        let w = World::new(support_bot("collect = [\"name\", \"email\"]", ""));
        let (c, _) = w.ok(
            &w.start(),
            Command::Choose {
                step: None,
                pick: Pick::Index(0),
            },
        );
        let (c, ev) = w.ok(&c, request());
        // The name question offers Back, like the flow's own questions.
        assert_eq!(ev.last().unwrap().data["buttons"], json!(["back"]));
        let (c, ev) = w.ok(&c, visitor("Ana"));
        assert_eq!(ev.last().unwrap().data["collect"]["field"], "email");
        assert_eq!(ev.last().unwrap().data["buttons"], json!(["back"]));
        let (c, ev) = w.ok(&c, Command::Back);
        assert_eq!(c.status, Status::Bot);
        assert_eq!(c.deadlines, Deadlines::default());
        assert!(c.ringing.is_empty());
        // The step where the visitor asked is shown again, its Live Chat button with it.
        assert_eq!(kinds(&ev), ["message.created", "flow.step"]);
        assert_eq!(said(&ev), [pair("bot", "Want to talk to a person?")]);
        assert_eq!(ev[1].data["step"], "human");
        assert_eq!(ev[1].data["live_chat"]["action"], "desk");
        assert_eq!(c.flow.step.as_deref(), Some("human"));
        // What was given stays known: asking again asks only the email.
        assert_eq!(c.name.as_deref(), Some("Ana"));
        let (c, ev) = w.ok(&c, request());
        assert_eq!(c.status, Status::Collecting);
        assert_eq!(ev.last().unwrap().data["collect"]["field"], "email");
        // Back is for the visitor waiting on a question, not once a request rings.
        let (c, _) = w.ok(
            &c,
            Command::Answer {
                text: "ana@x.example".into(),
            },
        );
        assert_eq!(c.status, Status::New);
        assert_eq!(w.code(&c, Command::Back), "invalid_state");
    }

    #[test]
    fn known_fields_are_not_asked_again() {
        let w = World::new(support_bot("collect = [\"name\", \"email\"]", ""));
        let c = Conversation::start(
            "c",
            "support",
            "v",
            Visitor {
                name: Some("Ana".into()),
                email: Some("ana@x.example".into()),
                ..Visitor::default()
            },
            &w.bot,
            w.now,
        )
        .conversation;
        let (c, _) = w.ok(&c, request());
        assert_eq!(c.status, Status::New);
    }

    #[test]
    fn outside_hours_the_offline_message_comes_at_once_and_the_flow_goes_on() {
        let mut w = World::new(support_bot("collect = [\"name\"]", ""));
        w.open = false;
        let c = w.start();
        let (c, _) = w.ok(
            &c,
            Command::Choose {
                step: None,
                pick: Pick::Index(1),
            },
        );
        let (c, ev) = w.ok(&c, request());
        assert_eq!(
            kinds(&ev),
            [
                "message.created",
                "livechat.requested",
                "message.created",
                "livechat.offline",
                "message.created",
                "flow.step"
            ]
        );
        assert_eq!(ev[3].data["reason"], "closed");
        assert_eq!(ev[3].data["form"], Value::Null);
        assert_eq!(
            said(&ev)[1..],
            [
                pair("system", "We're offline at the moment."),
                pair("bot", "Thanks for chatting, .")
            ]
        );
        assert_eq!(c.status, Status::Bot);
        assert_eq!(c.deadlines, Deadlines::default());
        assert_eq!(c.flow.waiting, Waiting::Done);
    }

    #[test]
    fn agents_leaving_while_collecting_means_offline() {
        let mut w = World::new(support_bot("collect = [\"name\"]", ""));
        let c = w.start();
        let (c, _) = w.ok(&c, request());
        assert_eq!(c.status, Status::Collecting);
        for a in &mut w.agents {
            a.online = false;
        }
        let (c, ev) = w.ok(&c, visitor("Ana"));
        let offline = ev
            .iter()
            .find(|e| e.kind == EventKind::LivechatOffline)
            .unwrap();
        assert_eq!(offline.data["reason"], "no_agents");
        assert_eq!(c.status, Status::Bot);
        assert_eq!(c.name.as_deref(), Some("Ana"));
    }

    #[test]
    fn with_nobody_available_the_offline_form_is_shown_and_can_be_sent() {
        let mut w = World::new(support_bot("offline_form = \"contact\"", ""));
        for a in &mut w.agents {
            a.accepting = false;
        }
        let c = w.start();
        let (c, _) = w.ok(
            &c,
            Command::Choose {
                step: None,
                pick: Pick::Index(1),
            },
        );
        let (c, ev) = w.ok(&c, request());
        let offline = ev
            .iter()
            .find(|e| e.kind == EventKind::LivechatOffline)
            .unwrap();
        assert_eq!(offline.data["reason"], "no_agents");
        assert_eq!(offline.data["form"], "contact");
        let form = ev.last().unwrap();
        assert_eq!(form.kind, EventKind::FlowStep);
        assert_eq!(form.data["offline_form"]["id"], "contact");
        assert_eq!(form.data["offline_form"]["fields"][0]["type"], "email");
        assert_eq!(c.status, Status::Bot);
        assert_eq!(c.flow.waiting, Waiting::OfflineForm("contact".into()));
        assert_eq!(c.flow.step.as_deref(), Some("human"));

        let submit = |values: &[(&str, &str)]| Command::SubmitForm {
            form: "contact".into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        assert_eq!(w.code(&c, submit(&[("email", "nope")])), "invalid_input");
        let wrong = Command::SubmitForm {
            form: "other".into(),
            values: BTreeMap::new(),
        };
        assert_eq!(w.code(&c, wrong), "invalid_state");
        let (c2, ev) = w.ok(
            &c,
            submit(&[("email", "ana@x.example"), ("message", "Call me")]),
        );
        assert_eq!(ev[0].kind, EventKind::FormSubmitted);
        assert_eq!(ev[0].data["values"]["message"], "Call me");
        assert_eq!(
            said(&ev),
            [
                pair("bot", "Thanks — we'll get back to you by email."),
                pair("bot", "Thanks for chatting, .")
            ]
        );
        assert_eq!(c2.email.as_deref(), Some("ana@x.example"));
        assert_eq!(c2.flow.waiting, Waiting::Done);
        // Or the visitor dismisses the form.
        let (c3, ev) = w.ok(&c, Command::Skip);
        assert_eq!(said(&ev), [pair("bot", "Thanks for chatting, .")]);
        assert_eq!(c3.flow.waiting, Waiting::Done);
        // Asking again from the form is allowed.
        let (c4, _) = w.ok(&c, request());
        assert_eq!(c4.status, Status::Bot);
    }

    #[test]
    fn accept_timeout_falls_back_to_the_bot() {
        let mut w = World::new(support_bot("accept_timeout = \"30s\"", ""));
        let c = w.start();
        let (c, _) = w.ok(
            &c,
            Command::Choose {
                step: None,
                pick: Pick::Index(1),
            },
        );
        let (c, _) = w.ok(&c, request());
        assert_eq!(c.deadlines.accept, Some(ts(30)));
        w.now = ts(29);
        assert_eq!(w.code(&c, Command::AcceptTimeout), "invalid_state");
        w.now = ts(30);
        let (c2, ev) = w.ok(&c, Command::AcceptTimeout);
        assert_eq!(kinds(&ev)[..2], ["message.created", "livechat.timeout"]);
        assert_eq!(
            said(&ev),
            [
                pair("system", "Sorry, nobody is free right now."),
                pair("bot", "Thanks for chatting, .")
            ]
        );
        assert_eq!(c2.status, Status::Bot);
        assert_eq!(c2.deadlines, Deadlines::default());
        assert!(c2.ringing.is_empty());
        // A timer that fires after the accept is stale.
        let (taken, _) = w.ok(&c, accept(ANA));
        assert_eq!(w.code(&taken, Command::AcceptTimeout), "invalid_state");
    }

    #[test]
    fn accept_timeout_shows_the_offline_form_when_there_is_one() {
        let mut w = World::new(support_bot("offline_form = \"contact\"", ""));
        let c = w.ringing();
        w.now = ts(90);
        let (c, ev) = w.ok(&c, Command::AcceptTimeout);
        assert_eq!(
            kinds(&ev),
            ["message.created", "livechat.timeout", "flow.step"]
        );
        assert_eq!(c.flow.waiting, Waiting::OfflineForm("contact".into()));
        // Requested mid-flow (at `start`): dismissing the form shows `start` again.
        let (c, ev) = w.ok(&c, Command::Skip);
        assert_eq!(c.flow.step.as_deref(), Some("start"));
        assert_eq!(said(&ev), [pair("bot", "Hi! What can we do for you?")]);
    }

    #[test]
    fn idle_visitors_end_the_chat() {
        let mut w = World::new(support_bot("idle_timeout = \"5m\"", ""));
        let c = w.assigned(ANA);
        assert_eq!(c.deadlines.idle, Some(ts(300)));
        w.now = ts(200);
        let (c, _) = w.ok(&c, visitor("still here"));
        assert_eq!(c.deadlines.idle, Some(ts(500)));
        // Agent messages do not count.
        w.now = ts(400);
        let (c, _) = w.ok(&c, agent_says(ANA, "hello?"));
        assert_eq!(c.deadlines.idle, Some(ts(500)));
        w.now = ts(300);
        assert_eq!(w.code(&c, Command::IdleTimeout), "invalid_state");
        w.now = ts(500);
        let (c, ev) = w.ok(&c, Command::IdleTimeout);
        assert_eq!(kinds(&ev), ["conversation.ended"]);
        assert_eq!(ev[0].data["reason"], "idle");
        assert_eq!((c.status, c.ended_at), (Status::Ended, Some(ts(500))));
        assert_eq!(c.deadlines, Deadlines::default());
        assert_eq!(w.code(&c, visitor("back")), "invalid_state");
        assert_eq!(w.code(&w.start(), Command::IdleTimeout), "invalid_state");
    }

    #[test]
    fn the_visitor_can_end_the_chat() {
        let w = World::new(support_bot("", ""));
        for c in [w.start(), w.ringing(), w.assigned(BEA)] {
            let (c, ev) = w.ok(&c, Command::VisitorEnd);
            assert_eq!(ev[0].data["reason"], "visitor");
            assert_eq!(c.status, Status::Ended);
            assert_eq!(w.code(&c, Command::VisitorEnd), "invalid_state");
        }
    }

    #[test]
    fn resolve_records_the_time_to_resolve_and_a_note() {
        let mut w = World::new(support_bot("", ""));
        let c = w.assigned(ANA);
        let resolve = |by: &str, note: Option<&str>| Command::Resolve {
            by: by.into(),
            note: note.map(str::to_string),
        };
        assert_eq!(w.code(&c, resolve(BEA, None)), "not_allowed");
        w.now = ts(125);
        let (r, ev) = w.ok(&c, resolve(ANA, Some(" refunded ")));
        assert_eq!(kinds(&ev), ["conversation.resolved"]);
        assert_eq!(ev[0].data["time_to_resolve_secs"], 125);
        assert_eq!(ev[0].data["note"], "refunded");
        assert_eq!(r.status, Status::Resolved);
        assert_eq!(r.resolved_at, Some(ts(125)));
        assert_eq!(r.resolve_note.as_deref(), Some("refunded"));
        assert_eq!(r.deadlines, Deadlines::default());
        assert_eq!(w.code(&r, resolve(ANA, None)), "invalid_state");
        // An admin may resolve anyone's; a new request can be resolved without chatting.
        let (r2, _) = w.ok(&c, resolve(ADM, Some("  ")));
        assert_eq!(r2.resolve_note, None);
        let (r3, _) = w.ok(&w.ringing(), resolve(BEA, None));
        assert_eq!(r3.status, Status::Resolved);
        assert_eq!(w.code(&w.ringing(), resolve(CID, None)), "not_allowed");
        // A request still collecting the visitor's name can be resolved too.
        let collecting = World::new(support_bot("collect = [\"name\"]", ""));
        let (c, _) = collecting.ok(&collecting.start(), request());
        assert_eq!(c.status, Status::Collecting);
        let (r4, _) = collecting.ok(&c, resolve(BEA, None));
        assert_eq!(
            (r4.status, r4.deadlines),
            (Status::Resolved, Deadlines::default())
        );
        assert_eq!(w.code(&w.start(), resolve(ANA, None)), "invalid_state");
    }

    #[test]
    fn a_chat_a_person_had_can_be_rated_once_when_it_is_over() {
        let w = World::new(support_bot("", ""));
        let rate = |rating: Rating, comment: Option<&str>| Command::Rate {
            rating,
            comment: comment.map(str::to_string),
        };
        let chatting = w.assigned(ANA);
        // Not while it runs, and not when no person had it.
        assert_eq!(w.code(&chatting, rate(Rating::Good, None)), "invalid_state");
        let (ended_in_queue, _) = w.ok(&w.ringing(), Command::VisitorEnd);
        assert_eq!(
            w.code(&ended_in_queue, rate(Rating::Good, None)),
            "invalid_state"
        );
        let (resolved, _) = w.ok(
            &chatting,
            Command::Resolve {
                by: ANA.into(),
                note: None,
            },
        );
        let (rated, ev) = w.ok(&resolved, rate(Rating::Bad, Some("  too slow ")));
        assert_eq!(kinds(&ev), ["conversation.rated"]);
        assert_eq!(
            ev[0].data,
            json!({"rating": "bad", "comment": "too slow", "agent": ANA})
        );
        assert_eq!(rated.rating, Some(Rating::Bad));
        assert_eq!(rated.rating_comment.as_deref(), Some("too slow"));
        assert_eq!(rated.status, Status::Resolved);
        assert_eq!(w.code(&rated, rate(Rating::Good, None)), "invalid_state");
        // Ended by the visitor mid-chat: rateable too; an overlong comment is refused.
        let (ended, _) = w.ok(&chatting, Command::VisitorEnd);
        let long = "x".repeat(MAX_COMMENT_CHARS + 1);
        assert_eq!(
            w.code(&ended, rate(Rating::Good, Some(&long))),
            "invalid_input"
        );
        let (rated, ev) = w.ok(&ended, rate(Rating::Good, Some(" ")));
        assert_eq!(ev[0].data["comment"], Value::Null);
        assert_eq!(rated.rating, Some(Rating::Good));
    }

    #[test]
    fn a_visitor_message_reopens_a_resolved_chat() {
        let mut w = World::new(support_bot("", ""));
        let c = w.assigned(ANA);
        let (r, _) = w.ok(
            &c,
            Command::Resolve {
                by: ANA.into(),
                note: Some("done".into()),
            },
        );
        w.now = ts(50);
        let (o, ev) = w.ok(&r, visitor("one more thing"));
        assert_eq!(kinds(&ev), ["message.created", "conversation.reopened"]);
        assert_eq!(ev[1].data["assignee"], ANA);
        assert_eq!(o.status, Status::Assigned);
        assert_eq!(o.assignee.as_deref(), Some(ANA));
        assert_eq!((o.resolved_at, o.resolve_note.clone()), (None, None));
        assert_eq!(o.deadlines.idle, Some(ts(650)));
        // Ana went offline: back to the queue.
        w.agent_mut(ANA).online = false;
        let (o, ev) = w.ok(&r, visitor("one more thing"));
        assert_eq!(ev[1].data["assignee"], Value::Null);
        assert_eq!(o.status, Status::New);
        assert_eq!(o.assignee, None);
        assert_eq!(ringing_of(&ev), [BEA]);
        assert_eq!(o.deadlines.accept, Some(ts(140)));
    }

    #[test]
    fn a_reopened_chat_rings_those_who_muted_it_before() {
        let mut w = World::new(support_bot("", ""));
        let (m, _) = w.ok(&w.ringing(), Command::Mute { agent: ANA.into() });
        let (a, _) = w.ok(&m, accept(BEA));
        let resolve = Command::Resolve {
            by: BEA.into(),
            note: None,
        };
        let (r, _) = w.ok(&a, resolve);
        w.agent_mut(BEA).online = false;
        let (o, ev) = w.ok(&r, visitor("one more thing"));
        assert_eq!(o.status, Status::New);
        assert!(o.muted.is_empty());
        assert_eq!(ringing_of(&ev), [ANA]);
    }

    #[test]
    fn closed_is_final() {
        let mut w = World::new(support_bot("", ""));
        let c = w.assigned(ANA);
        assert_eq!(w.code(&c, Command::Close), "invalid_state");
        let (r, _) = w.ok(
            &c,
            Command::Resolve {
                by: ANA.into(),
                note: None,
            },
        );
        w.now = ts(10);
        let (closed, ev) = w.ok(&r, Command::Close);
        assert_eq!(kinds(&ev), ["conversation.closed"]);
        assert_eq!(closed.closed_at, Some(ts(10)));
        for cmd in [
            Command::Close,
            visitor("hi"),
            accept(ANA),
            Command::Note {
                agent: ANA.into(),
                text: "x".into(),
            },
            Command::AgentsChanged,
            Command::IdleTimeout,
            Command::VisitorEnd,
        ] {
            assert_eq!(w.code(&closed, cmd), "invalid_state");
        }
        // Bot-only and ended conversations can be archived too.
        assert_eq!(w.ok(&w.start(), Command::Close).0.status, Status::Closed);
    }

    #[test]
    fn takeover_pauses_the_bot() {
        let mut w = World::new(support_bot("", ""));
        let c = w.start();
        w.now = ts(5);
        let (t, ev) = w.ok(&c, Command::Takeover { agent: ANA.into() });
        assert_eq!(kinds(&ev), ["conversation.assigned", "message.created"]);
        assert_eq!(ev[0].data["takeover"], true);
        assert_eq!(
            said(&ev),
            [pair("system", "Ana Lima has taken over the conversation.")]
        );
        assert_eq!(t.status, Status::Chatting);
        assert_eq!(t.assignee.as_deref(), Some(ANA));
        assert_eq!((t.requested_at, t.assigned_at), (Some(ts(5)), Some(ts(5))));
        assert_eq!(t.live_chat.as_deref(), Some("desk"));
        assert_eq!(t.deadlines.idle, Some(ts(605)));
        // The bot stays quiet.
        let (_, ev) = w.ok(&t, visitor("Billing"));
        assert_eq!(kinds(&ev), ["message.created"]);
        assert_eq!(
            w.code(&c, Command::Takeover { agent: CID.into() }),
            "not_available"
        );
        assert_eq!(
            w.code(&w.ringing(), Command::Takeover { agent: ANA.into() }),
            "invalid_state"
        );
        // Admins may take over any bot conversation.
        assert_eq!(
            w.ok(&c, Command::Takeover { agent: ADM.into() }).0.status,
            Status::Chatting
        );
        w.agent_mut(BEA).active_chats = 3;
        assert_eq!(
            w.code(&c, Command::Takeover { agent: BEA.into() }),
            "at_capacity"
        );
    }

    #[test]
    fn takeover_in_a_bot_without_live_chat_uses_default_texts() {
        let w = World::new(bot(
            "name = \"B\"\n[[step]]\nid = \"a\"\nask = { var = \"q\" }\n",
        ));
        let c = Conversation::start("c", "support", "v", Visitor::default(), &w.bot, w.now)
            .conversation;
        let (t, ev) = w.ok(&c, Command::Takeover { agent: BEA.into() });
        assert_eq!(
            said(&ev),
            [pair("system", "bea has taken over the conversation.")]
        );
        assert_eq!(t.live_chat, None);
        assert_eq!(t.deadlines.idle, Some(ts(600)));
    }

    #[test]
    fn transfer_to_an_agent_or_a_team() {
        let w = World::new(support_bot("", ""));
        let c = w.assigned(ANA);
        let to_agent = |by: &str, a: &str| Command::Transfer {
            by: by.into(),
            to: TransferTarget::Agent(a.into()),
        };
        let to_team = |by: &str, t: &str| Command::Transfer {
            by: by.into(),
            to: TransferTarget::Team(t.into()),
        };
        let (t, ev) = w.ok(&c, to_agent(ANA, BEA));
        assert_eq!(
            kinds(&ev),
            [
                "conversation.transferred",
                "conversation.assigned",
                "message.created"
            ]
        );
        assert_eq!(ev[1].data["previous"], ANA);
        assert_eq!(t.assignee.as_deref(), Some(BEA));
        assert_eq!(t.status, Status::Assigned);
        assert_eq!(w.code(&c, to_agent(BEA, CID)), "not_allowed");
        assert_eq!(w.code(&c, to_agent(ANA, ANA)), "invalid_input");
        assert_eq!(w.code(&c, to_agent(ANA, "x@y.example")), "unknown_agent");

        // Nobody can take it in a team that does not serve the bot.
        assert_eq!(w.code(&c, to_agent(ANA, CID)), "not_available");
        assert_eq!(w.code(&c, to_team(ANA, "billing")), "not_available");

        let (t, ev) = w.ok(&c, to_team(ANA, "support"));
        assert_eq!(t.status, Status::New);
        assert_eq!(t.team.as_deref(), Some("support"));
        assert_eq!(t.assignee, None);
        assert!(t.muted.contains(ANA));
        // Ana gave it away: only Bea rings.
        assert_eq!(ringing_of(&ev), [BEA]);
        assert_eq!(t.deadlines.accept, Some(ts(90)));
        assert_eq!(w.code(&c, to_team(ANA, "nope")), "invalid_input");
        // An admin may transfer someone else's conversation.
        assert_eq!(
            w.ok(&c, to_team(ADM, "support")).0.team.as_deref(),
            Some("support")
        );
        assert_eq!(w.code(&w.start(), to_team(ANA, "support")), "invalid_state");
    }

    #[test]
    fn transfer_to_an_unavailable_or_full_agent_is_refused() {
        let mut w = World::new(support_bot("", ""));
        let c = w.assigned(ANA);
        let to_bea = Command::Transfer {
            by: ANA.into(),
            to: TransferTarget::Agent(BEA.into()),
        };
        w.agent_mut(BEA).online = false;
        assert_eq!(w.code(&c, to_bea.clone()), "not_available");
        w.agent_mut(BEA).online = true;
        w.agent_mut(BEA).active_chats = 3;
        assert_eq!(w.code(&c, to_bea), "at_capacity");
    }

    #[test]
    fn mute_stops_ringing_for_one_agent_only() {
        let w = World::new(support_bot("", ""));
        let c = w.ringing();
        let mute = |a: &str| Command::Mute { agent: a.into() };
        let (m, ev) = w.ok(&c, mute(ANA));
        assert_eq!(ringing_of(&ev), [BEA]);
        assert_eq!(m.status, Status::New);
        assert_eq!(m.deadlines, c.deadlines);
        // Muting twice, or muting someone who was not ringing, announces nothing new.
        assert_eq!(w.ok(&m, mute(ANA)).1, vec![]);
        assert_eq!(w.ok(&m, mute(CID)).1, vec![]);
        // The muted request waits under "awaiting": Ana can still take it.
        assert_eq!(w.ok(&m, accept(ANA)).0.assignee.as_deref(), Some(ANA));
        assert_eq!(w.code(&w.start(), mute(ANA)), "invalid_state");
    }

    #[test]
    fn assign_and_unassign() {
        let w = World::new(support_bot("", ""));
        let c = w.ringing();
        let assign = |by: &str, a: &str, by_admin| Command::Assign {
            by: by.into(),
            agent: a.into(),
            by_admin,
        };
        assert_eq!(w.code(&c, assign(ANA, BEA, false)), "not_allowed");
        // Assigning oneself is accepting.
        let (s, ev) = w.ok(&c, assign(BEA, BEA, false));
        assert_eq!(kinds(&ev)[0], "livechat.accepted");
        assert_eq!(s.assignee.as_deref(), Some(BEA));
        assert_eq!(w.code(&s, assign(ANA, ANA, false)), "already_taken");
        // Admins assign anyone who can see the conversation: an agent of a team serving
        // the bot. Cid's team does not, so the conversation cannot go to Cid.
        assert_eq!(w.code(&s, assign(ADM, CID, true)), "not_available");
        let (a, ev) = w.ok(&s, assign(ADM, ANA, true));
        assert_eq!(kinds(&ev), ["conversation.assigned", "message.created"]);
        assert_eq!(ev[0].data["previous"], BEA);
        assert_eq!(a.assignee.as_deref(), Some(ANA));
        assert_eq!(
            w.code(&s, assign(ADM, "x@y.example", true)),
            "unknown_agent"
        );
        assert_eq!(w.code(&w.start(), assign(ADM, ANA, true)), "invalid_state");

        assert_eq!(
            w.code(&a, Command::Unassign { by: BEA.into() }),
            "not_allowed"
        );
        let (u, ev) = w.ok(&a, Command::Unassign { by: ANA.into() });
        assert_eq!(kinds(&ev), ["conversation.assigned", "livechat.ringing"]);
        assert_eq!(ev[0].data["agent"], Value::Null);
        assert_eq!(u.status, Status::New);
        assert_eq!(u.assignee, None);
        assert!(u.muted.contains(ANA));
        assert_eq!(ringing_of(&ev), [BEA]);
        assert_eq!(
            w.code(&u, Command::Unassign { by: ANA.into() }),
            "invalid_state"
        );
    }

    #[test]
    fn admin_assign_respects_capacity() {
        let mut w = World::new(support_bot("", ""));
        let c = w.ringing();
        w.agent_mut(ANA).active_chats = 3;
        let cmd = Command::Assign {
            by: ADM.into(),
            agent: ANA.into(),
            by_admin: true,
        };
        assert_eq!(w.code(&c, cmd), "at_capacity");
    }

    #[test]
    fn auto_assignment_offers_to_one_agent_at_a_time() {
        let mut w = World::new(support_bot(
            "assignment = \"auto\"\noffer_timeout = \"20s\"",
            "",
        ));
        w.agent_mut(ANA).active_chats = 1;
        let c = w.ringing();
        // Bea has fewer chats than Ana.
        assert_eq!(c.offered_to.as_deref(), Some(BEA));
        assert_eq!(c.ringing, BTreeSet::from([BEA.to_string()]));
        assert_eq!(c.deadlines.offer, Some(ts(20)));
        assert_eq!(w.code(&c, accept(ANA)), "not_available");
        w.now = ts(19);
        assert_eq!(w.code(&c, Command::OfferTimeout), "invalid_state");
        w.now = ts(20);
        let (c, ev) = w.ok(&c, Command::OfferTimeout);
        assert_eq!(ev[0].data["offered_to"], ANA);
        assert_eq!(c.deadlines.offer, Some(ts(40)));
        assert_eq!(w.code(&c, accept(BEA)), "not_available");
        // Everyone was offered: a new round.
        w.now = ts(40);
        let (c, _) = w.ok(&c, Command::OfferTimeout);
        assert_eq!(c.offered_to.as_deref(), Some(BEA));
        // Muting an offer declines it.
        let (c, ev) = w.ok(&c, Command::Mute { agent: BEA.into() });
        assert_eq!(ringing_of(&ev), [ANA]);
        let (c, _) = w.ok(&c, accept(ANA));
        assert_eq!(c.offered_to, None);
        assert_eq!(c.deadlines.offer, None);
        assert_eq!(w.code(&c, Command::OfferTimeout), "invalid_state");
    }

    #[test]
    fn auto_assignment_without_anyone_waits_for_agents() {
        let mut w = World::new(support_bot("assignment = \"auto\"", ""));
        let c = w.ringing();
        let (c, _) = w.ok(&c, Command::Mute { agent: BEA.into() });
        let (c, ev) = w.ok(&c, Command::Mute { agent: ANA.into() });
        assert_eq!(ringing_of(&ev), Vec::<String>::new());
        assert_eq!((c.offered_to.clone(), c.deadlines.offer), (None, None));
        w.agents.push(agent("dan@acme.example", &["support"]));
        let (c, ev) = w.ok(&c, Command::AgentsChanged);
        assert_eq!(ringing_of(&ev), ["dan@acme.example"]);
        assert_eq!(c.offered_to.as_deref(), Some("dan@acme.example"));
    }

    #[test]
    fn switching_an_action_from_auto_to_ring_drops_the_offer() {
        let mut w = World::new(support_bot("assignment = \"auto\"", ""));
        let c = w.ringing();
        assert!(c.offered_to.is_some());
        w.bot = support_bot("", "");
        let (c, ev) = w.ok(&c, Command::AgentsChanged);
        assert_eq!(ringing_of(&ev), [ANA, BEA]);
        assert_eq!((c.offered_to, c.deadlines.offer), (None, None));
    }

    #[test]
    fn agents_changed_rings_anew() {
        let mut w = World::new(support_bot("", ""));
        let c = w.ringing();
        assert_eq!(w.ok(&c, Command::AgentsChanged).1, vec![]);
        w.agent_mut(BEA).accepting = false;
        let (c2, ev) = w.ok(&c, Command::AgentsChanged);
        assert_eq!(ringing_of(&ev), [ANA]);
        assert_eq!(c2.deadlines, c.deadlines);
        // Elsewhere it is a no-op.
        let s = w.start();
        assert_eq!(w.ok(&s, Command::AgentsChanged), (s, vec![]));
    }

    #[test]
    fn a_removed_live_chat_action_falls_back_to_defaults() {
        let mut w = World::new(support_bot("welcome_message = \"Custom\"", ""));
        let c = w.ringing();
        w.bot.live_chat.clear();
        w.now = ts(90);
        let (c, ev) = w.ok(&c, Command::AcceptTimeout);
        assert_eq!(
            said(&ev)[0],
            pair("system", "Sorry, nobody is free right now.")
        );
        assert_eq!(c.status, Status::Bot);
    }

    #[test]
    fn queue_positions_count_older_requests_of_the_same_queue() {
        let mut w = World::new(support_bot("", ""));
        let a = w.ringing();
        w.now = ts(1);
        let mut b = w.ringing();
        b.id = "c2".into();
        w.now = ts(2);
        let mut other_team = w.ringing();
        other_team.id = "c3".into();
        other_team.team = Some("billing".into());
        let all = [a.clone(), b.clone(), other_team.clone()];
        assert_eq!(queue_position(&a, &all), 1);
        assert_eq!(queue_position(&b, &all), 2);
        assert_eq!(queue_position(&other_team, &all), 1);
        assert_eq!(queue_position(&w.start(), &all), 0);
    }

    #[test]
    fn due_timers_come_earliest_first() {
        let d = Deadlines {
            accept: Some(ts(90)),
            idle: Some(ts(60)),
            offer: Some(ts(200)),
        };
        assert_eq!(d.due(ts(59)), vec![]);
        assert_eq!(
            d.due(ts(100)),
            vec![Command::IdleTimeout, Command::AcceptTimeout]
        );
        assert_eq!(d.earliest(), Some(ts(60)));
    }

    #[test]
    fn names_and_codes_are_stable() {
        let names: BTreeSet<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), EventKind::ALL.len());
        assert!(names.contains("livechat.ringing") && names.contains("note.created"));
        let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            statuses,
            [
                "bot",
                "collecting",
                "new",
                "assigned",
                "chatting",
                "resolved",
                "closed",
                "ended"
            ]
        );
        let e = Rejection::InvalidState {
            status: Status::Closed,
            command: "accept",
        };
        assert_eq!(
            e.to_string(),
            "cannot accept while the conversation is closed"
        );
        assert_eq!(Rejection::AlreadyTaken.code(), "already_taken");
        assert_eq!(
            DEFAULT_LIVE_CHAT.accept_timeout.get(),
            Duration::from_secs(90)
        );
    }
}
