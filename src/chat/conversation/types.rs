//! What a conversation is: its status, timers, the world a command runs in, and the answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;

use super::commands::{Command, valid_name};
use super::events::{Event, EventData};
use super::language::pick_language;
use super::show::show_flow;
use super::transitions::apply;
use crate::chat::flow::{self, FlowState};
use crate::chat::routing::AgentView;
use crate::config::hours::OpeningHours;
use crate::config::schema::{Bot, Team};
use crate::config::values::is_valid_email;

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
    pub(super) fn live(self) -> bool {
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
    /// The first language the visitor asked for (`es-MX`), whether or not the bot speaks
    /// it: what `route` rules on `language` look at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_language: Option<String>,
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
    /// The current request asks for a video call: it rings only agents who take video,
    /// and accepting it starts the call.
    #[serde(default)]
    pub video: bool,
    /// The video call under way or offered, if any.
    #[serde(default)]
    pub call: Option<Call>,
    /// Contact fields set in this conversation (by the flow or an agent), by field name.
    /// The visitor's profile across conversations is the store's `contact_values`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contact: BTreeMap<String, String>,
}

/// A video call of a conversation: offered (by the agent, not yet answered) or on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Call {
    /// `visitor`, or the email of the agent who offered it.
    pub requested_by: String,
    /// When both sides were in (`None`: offered, not yet answered).
    pub started_at: Option<Timestamp>,
}

/// What the visitor brings when a conversation starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Visitor {
    /// Preferred language (`de`, `de-AT`); the bot's first language when it speaks none.
    pub language: Option<String>,
    /// The first language the visitor asked for (`None`: `language`), for routing.
    pub requested_language: Option<String>,
    pub page_url: Option<String>,
    pub country: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// Conversation variables set before the first step (what `livechat test` cases start
    /// with); `name` and `email` above win over these.
    pub vars: BTreeMap<String, String>,
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
    /// The request would wait with nobody to ring: refused rather than left unheard.
    #[error("{0}")]
    NobodyToRing(String),
    #[error("cannot {command} while the conversation is {status}")]
    InvalidState {
        status: Status,
        command: &'static str,
    },
    #[error("no agent {0}")]
    UnknownAgent(String),
    #[error("{0}")]
    InvalidInput(String),
    /// A contact field that is not declared, or a value that does not fit its type.
    #[error("{0}")]
    InvalidContact(String),
}

impl Rejection {
    /// The stable error code of the API.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::AlreadyTaken => "already_taken",
            Rejection::AtCapacity(_) => "at_capacity",
            Rejection::NotAvailable(_) => "not_available",
            Rejection::NotAllowed(_) => "not_allowed",
            Rejection::NobodyToRing(_) => "nobody_to_ring",
            Rejection::InvalidState { .. } => "invalid_state",
            Rejection::UnknownAgent(_) => "unknown_agent",
            Rejection::InvalidInput(_) => "invalid_input",
            Rejection::InvalidContact(_) => "invalid_contact_field",
        }
    }
}

impl Conversation {
    /// Whether one of the team took part (accepted, was assigned, or took over): what a
    /// rating and the transcript mail need.
    pub fn had_a_person(&self) -> bool {
        self.assigned_at.is_some() || self.assignee.is_some()
    }

    /// Whether `other` is this conversation with at most newer activity: when the visitor
    /// last wrote, and the idle deadline that follows from it. (What every message of a
    /// running chat changes, and nothing else.)
    ///
    /// Asked for every message: compared field by field in place, not on a copy (a clone of
    /// a conversation is a dozen allocations). The pattern names every field, so a field
    /// added to the struct must be placed here too.
    pub fn differs_only_in_activity(&self, other: &Conversation) -> bool {
        let Conversation {
            id,
            bot,
            visitor_id,
            status,
            flow,
            live_chat,
            team,
            assignee,
            ringing,
            muted,
            offered_to,
            offered,
            name,
            email,
            language,
            requested_language,
            page_url,
            country,
            opened_at,
            requested_at,
            assigned_at,
            resolved_at,
            closed_at,
            ended_at,
            last_visitor_at: _,
            resolve_note,
            rating,
            rating_comment,
            deadlines:
                Deadlines {
                    accept,
                    idle: _,
                    offer,
                },
            video,
            call,
            contact,
        } = self;
        *id == other.id
            && *bot == other.bot
            && *visitor_id == other.visitor_id
            && *status == other.status
            && *flow == other.flow
            && *live_chat == other.live_chat
            && *team == other.team
            && *assignee == other.assignee
            && *ringing == other.ringing
            && *muted == other.muted
            && *offered_to == other.offered_to
            && *offered == other.offered
            && *name == other.name
            && *email == other.email
            && *language == other.language
            && *requested_language == other.requested_language
            && *page_url == other.page_url
            && *country == other.country
            && *opened_at == other.opened_at
            && *requested_at == other.requested_at
            && *assigned_at == other.assigned_at
            && *resolved_at == other.resolved_at
            && *closed_at == other.closed_at
            && *ended_at == other.ended_at
            && *resolve_note == other.resolve_note
            && *rating == other.rating
            && *rating_comment == other.rating_comment
            && *accept == other.deadlines.accept
            && *offer == other.deadlines.offer
            && *video == other.video
            && *call == other.call
            && *contact == other.contact
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
        let mut vars = visitor.vars;
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
        let requested_language = visitor
            .requested_language
            .or(visitor.language)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty());
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
            requested_language,
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
            video: false,
            call: None,
            contact: BTreeMap::new(),
        };
        let mut events = vec![EventData::ConversationStarted {
            bot: conv.bot.clone(),
            visitor_id: conv.visitor_id.clone(),
            language: conv.language.clone(),
            page_url: conv.page_url.clone(),
            country: conv.country.clone(),
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

    /// Whether the Live Chat action a request would go to (see `action_for`) is within its
    /// opening hours at `now`: what the caller passes as `Ctx::open`. `true` when the action
    /// has no `hours`, or the bot has no action.
    pub fn within_hours(&self, bot: &Bot, requested: Option<&str>, now: Timestamp) -> bool {
        let Some(action) = self.action_for(bot, requested) else {
            return true;
        };
        match bot.live_chat.get(action).and_then(|a| a.hours.as_ref()) {
            None => true,
            Some(hours) => OpeningHours::parse(hours).is_ok_and(|h| h.is_open(now)),
        }
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
