//! Fixtures for the tests of the conversation and of other modules: a support bot, a
//! roster, a `World` to run commands in, and short names for commands.

use jiff::Timestamp;

use super::*;
use crate::chat::flow::tests::bot;
use crate::chat::routing::AgentView;
use crate::chat::routing::tests::{agent, teams};
use crate::config::schema::Role;
use crate::config::schema::{Bot, Team};

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

pub(crate) struct World {
    pub(crate) bot: Bot,
    pub(crate) agents: Vec<AgentView>,
    pub(crate) teams: Vec<Team>,
    pub(crate) open: bool,
    pub(crate) now: Timestamp,
}

impl World {
    pub(crate) fn new(bot: Bot) -> World {
        World {
            bot,
            agents: roster_agents(),
            teams: teams(ROSTER),
            open: true,
            now: ts(0),
        }
    }

    pub(crate) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            now: self.now,
            bot: &self.bot,
            agents: &self.agents,
            teams: &self.teams,
            open: self.open,
        }
    }

    pub(crate) fn start(&self) -> Conversation {
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

    pub(crate) fn ok(&self, conv: &Conversation, cmd: Command) -> (Conversation, Vec<Event>) {
        match apply(conv, cmd.clone(), &self.ctx()) {
            Ok(t) => (t.conversation, t.events),
            Err(e) => panic!("{cmd:?} refused: {e}"),
        }
    }

    pub(crate) fn code(&self, conv: &Conversation, cmd: Command) -> &'static str {
        match apply(conv, cmd.clone(), &self.ctx()) {
            Ok(t) => panic!("{cmd:?} accepted: {:?}", t.events),
            Err(e) => e.code(),
        }
    }

    pub(crate) fn agent_mut(&mut self, email: &str) -> &mut AgentView {
        self.agents.iter_mut().find(|a| a.email == email).unwrap()
    }

    /// A request ringing in the support team.
    pub(crate) fn ringing(&self) -> Conversation {
        let c = self.start();
        self.ok(&c, request()).0
    }

    pub(crate) fn assigned(&self, to: &str) -> Conversation {
        self.ok(&self.ringing(), accept(to)).0
    }
}

pub(crate) fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind().as_str()).collect()
}

pub(crate) fn said(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e.kind() == EventKind::MessageCreated)
        .map(|e| {
            (
                e.data()["author"].as_str().unwrap().to_string(),
                e.data()["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) fn ringing_of(events: &[Event]) -> Vec<String> {
    let e = events
        .iter()
        .rev()
        .find(|e| e.kind() == EventKind::LivechatRinging)
        .expect("a ringing event");
    serde_json::from_value(e.data()["agents"].clone()).unwrap()
}

pub(crate) fn request() -> Command {
    Command::RequestLiveChat { action: None }
}
pub(crate) fn accept(a: &str) -> Command {
    Command::Accept { agent: a.into() }
}
pub(crate) fn visitor(t: &str) -> Command {
    Command::VisitorMessage {
        text: t.into(),
        attachments: Vec::new(),
    }
}
pub(crate) fn agent_says(a: &str, t: &str) -> Command {
    Command::AgentMessage {
        agent: a.into(),
        text: t.into(),
        attachments: Vec::new(),
    }
}
pub(crate) fn pair(a: &str, t: &str) -> (String, String) {
    (a.to_string(), t.to_string())
}

pub(crate) const ANA: &str = "ana@acme.example";
pub(crate) const BEA: &str = "bea@acme.example";
pub(crate) const CID: &str = "cid@acme.example";
pub(crate) const ADM: &str = "adm@acme.example";
