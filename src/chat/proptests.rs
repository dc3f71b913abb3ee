//! Random command sequences against random agents and several conversations at once,
//! checking what must hold whatever happens.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use proptest::prelude::*;

use super::conversation::testkit::{ROSTER, support_bot, ts};
use super::conversation::{
    Command, Conversation, Ctx, Event, EventKind, Status, TransferTarget, Visitor, apply,
};
use super::flow::Pick;
use super::routing::AgentView;
use super::routing::tests::teams;
use crate::config::schema::{Bot, Role, Team};

/// The event names of `docs/api.md`, spelled out here so that a renamed event fails.
const API_EVENTS: [&str; 16] = [
    "conversation.started",
    "message.created",
    "flow.step",
    "livechat.requested",
    "livechat.ringing",
    "livechat.accepted",
    "livechat.timeout",
    "livechat.offline",
    "conversation.assigned",
    "conversation.transferred",
    "conversation.resolved",
    "conversation.closed",
    "conversation.reopened",
    "conversation.ended",
    "note.created",
    "form.submitted",
];

#[derive(Debug, Clone)]
struct AgentSpec {
    teams: Vec<&'static str>,
    accepting: bool,
    online: bool,
    max_chats: u32,
    admin: bool,
}

fn agent_spec() -> impl Strategy<Value = AgentSpec> {
    (
        prop::bool::weighted(0.75),
        prop::sample::subsequence(vec!["billing", "night"], 0..=1),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.8),
        // Mostly one chat each, so that capacity is often reached.
        prop_oneof![3 => Just(1u32), 1 => Just(2u32)],
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(support, others, accepting, online, max_chats, admin)| AgentSpec {
                teams: support
                    .then_some("support")
                    .into_iter()
                    .chain(others)
                    .chain((!support).then_some("night"))
                    .collect(),
                accepting,
                online,
                max_chats,
                admin,
            },
        )
}

/// One step: (conversation, operation, agent a, agent b, seconds to wait first).
type Op = (usize, u8, usize, usize, u16);

fn op() -> impl Strategy<Value = Op> {
    // Weighted so that conversations get far before they end: the terminal commands
    // (close, end) are rare, requests and accepts common.
    const WEIGHTS: [(u8, usize); 26] = [
        (0, 4),
        (1, 3),
        (2, 2),
        (3, 1),
        (4, 1),
        (5, 6),
        (6, 1),
        (7, 6),
        (8, 3),
        (9, 1),
        (10, 3),
        (11, 2),
        (12, 2),
        (13, 2),
        (14, 3),
        (15, 2),
        (16, 3),
        (17, 1),
        (18, 1),
        (19, 1),
        (20, 1),
        (21, 1),
        (22, 1),
        (23, 3),
        (24, 2),
        (25, 2),
    ];
    let kinds: Vec<u8> = WEIGHTS
        .iter()
        .flat_map(|(k, w)| std::iter::repeat_n(*k, *w))
        .collect();
    let wait = prop_oneof![8 => 0u16..10, 1 => 0u16..400];
    (
        0usize..7,
        prop::sample::select(kinds),
        0usize..8,
        0usize..8,
        wait,
    )
}

struct Sim {
    bot: Bot,
    teams: Vec<Team>,
    specs: Vec<AgentSpec>,
    convs: Vec<Conversation>,
    now: Timestamp,
}

impl Sim {
    fn email(&self, i: usize) -> String {
        // One index past the roster is someone unknown.
        if i % (self.specs.len() + 1) == self.specs.len() {
            "nobody@acme.example".into()
        } else {
            format!("a{}@acme.example", i % (self.specs.len() + 1))
        }
    }

    fn spec_index(&self, i: usize) -> Option<usize> {
        let i = i % (self.specs.len() + 1);
        (i < self.specs.len()).then_some(i)
    }

    /// Agents as the engine would see them: load counted over every conversation.
    fn agents(&self) -> Vec<AgentView> {
        self.specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let email = format!("a{i}@acme.example");
                AgentView {
                    active_chats: self.active(&email),
                    email,
                    name: format!("Agent {i}"),
                    role: if s.admin { Role::Admin } else { Role::Agent },
                    teams: s.teams.iter().map(|t| t.to_string()).collect(),
                    accepting: s.accepting,
                    online: s.online,
                    max_chats: s.max_chats,
                    video: true,
                }
            })
            .collect()
    }

    fn active(&self, email: &str) -> u32 {
        self.convs
            .iter()
            .filter(|c| c.status.holds_agent() && c.assignee.as_deref() == Some(email))
            .count() as u32
    }

    fn command(&self, conv: usize, kind: u8, a: usize, b: usize) -> Command {
        let (ea, eb) = (self.email(a), self.email(b));
        let admin = self.spec_index(a).is_some_and(|i| self.specs[i].admin);
        let texts = ["hello", "Billing", "Ana", "ana@acme.example", "2"];
        match kind {
            0 => Command::VisitorMessage {
                text: texts[b % texts.len()].into(),
                attachments: Vec::new(),
            },
            1 => Command::Choose {
                step: None,
                pick: Pick::Index(b % 3),
            },
            2 => Command::Answer {
                text: texts[b % texts.len()].into(),
            },
            3 => Command::Skip,
            4 => Command::Back,
            5 => Command::RequestLiveChat { action: None },
            6 => Command::SubmitForm {
                form: "contact".into(),
                values: BTreeMap::from([
                    ("email".to_string(), "v@acme.example".to_string()),
                    ("message".to_string(), format!("from {conv}")),
                ]),
            },
            7 => Command::Accept { agent: ea },
            8 => Command::AgentMessage {
                agent: ea,
                text: "hi".into(),
                attachments: Vec::new(),
            },
            9 => Command::Note {
                agent: ea,
                text: "note".into(),
            },
            10 => Command::Assign {
                by: ea,
                agent: eb,
                by_admin: admin,
            },
            11 => Command::Unassign { by: ea },
            12 => Command::Transfer {
                by: ea,
                to: TransferTarget::Agent(eb),
            },
            13 => Command::Transfer {
                by: ea,
                to: TransferTarget::Team(["support", "billing", "night"][b % 3].into()),
            },
            14 => Command::Takeover { agent: ea },
            15 => Command::Mute { agent: ea },
            16 => Command::Resolve {
                by: ea,
                note: b.is_multiple_of(2).then(|| "done".into()),
            },
            17 => Command::Close,
            18 => Command::VisitorEnd,
            19 => Command::AcceptTimeout,
            20 => Command::IdleTimeout,
            21 => Command::OfferTimeout,
            22 => Command::Expire {
                after: std::time::Duration::from_secs(300),
            },
            _ => Command::AgentsChanged,
        }
    }

    /// Applies one command and checks the invariants of the step.
    fn run(&mut self, conv: usize, cmd: Command) -> Result<(), TestCaseError> {
        let agents = self.agents();
        let ctx = Ctx {
            now: self.now,
            bot: &self.bot,
            agents: &agents,
            teams: &self.teams,
            open: true,
        };
        let before = self.convs[conv].clone();
        match apply(&before, cmd.clone(), &ctx) {
            Ok(t) => {
                prop_assert!(
                    before.status != Status::Closed,
                    "{cmd:?} changed a closed conversation"
                );
                check_events(&t.events)?;
                self.convs[conv] = t.conversation;
            }
            Err(e) => {
                if before.status == Status::Closed {
                    prop_assert_eq!(e.code(), "invalid_state");
                }
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for (i, s) in self.specs.iter().enumerate() {
            let email = format!("a{i}@acme.example");
            prop_assert!(
                self.active(&email) <= s.max_chats,
                "{email} holds {} chats, max {}",
                self.active(&email),
                s.max_chats
            );
        }
        for c in &self.convs {
            check_conversation(c)?;
        }
        Ok(())
    }
}

fn check_events(events: &[Event]) -> Result<(), TestCaseError> {
    for e in events {
        prop_assert!(API_EVENTS.contains(&e.kind().as_str()), "{}", e.kind());
        prop_assert!(e.data().is_object(), "{e:?}");
        if e.kind() == EventKind::MessageCreated {
            let data = e.data();
            let author = data["author"].as_str().unwrap_or("");
            prop_assert!(
                ["visitor", "bot", "agent", "system"].contains(&author),
                "{e:?}"
            );
            prop_assert!(e.data()["text"].is_string(), "{e:?}");
        }
    }
    Ok(())
}

fn check_conversation(c: &Conversation) -> Result<(), TestCaseError> {
    use Status::*;
    // One assignee exactly while assigned or chatting; none while the bot leads or it waits.
    match c.status {
        Assigned | Chatting => prop_assert!(c.assignee.is_some(), "{c:#?}"),
        Bot | Collecting | New => prop_assert!(c.assignee.is_none(), "{c:#?}"),
        Resolved | Closed | Ended => {}
    }
    // Timestamps in order, whichever are set.
    let times = [c.requested_at, c.assigned_at, c.resolved_at, c.closed_at];
    let set: Vec<Timestamp> = times.iter().flatten().copied().collect();
    prop_assert!(set.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    prop_assert!(set.iter().all(|t| c.opened_at <= *t));
    // Timers: the accept timer runs exactly while waiting for an agent; none when done.
    prop_assert_eq!(c.deadlines.accept.is_some(), c.status == New, "{:#?}", c);
    if c.status != New {
        prop_assert!(c.deadlines.offer.is_none() && c.ringing.is_empty() && c.offered_to.is_none());
    }
    if matches!(c.status, Bot | Resolved | Closed | Ended) {
        prop_assert!(c.deadlines.idle.is_none(), "{c:#?}");
    }
    prop_assert!(c.ringing.is_disjoint(&c.muted), "{c:#?}");
    if let Some(o) = &c.offered_to {
        prop_assert!(c.ringing.contains(o) && c.deadlines.offer.is_some());
    }
    prop_assert!(c.closed_at.is_some() == (c.status == Closed));
    Ok(())
}

fn make_bot(auto: bool, collect: bool, form: bool) -> Bot {
    let mut extra =
        String::from("accept_timeout = \"60s\"\nidle_timeout = \"5m\"\noffer_timeout = \"20s\"\n");
    if auto {
        extra.push_str("assignment = \"auto\"\n");
    }
    if collect {
        extra.push_str("collect = [\"name\", \"email\"]\n");
    }
    if form {
        extra.push_str("offline_form = \"contact\"\n");
    }
    support_bot(&extra, "")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_any_command_sequence(
        specs in prop::collection::vec(agent_spec(), 1..4),
        auto in any::<bool>(),
        collect in any::<bool>(),
        form in any::<bool>(),
        n_convs in 2usize..7,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let bot = make_bot(auto, collect, form);
        let convs = (0..n_convs)
            .map(|i| {
                Conversation::start(format!("c{i}"), "support", format!("v{i}"), Visitor::default(), &bot, ts(0))
                    .conversation
            })
            .collect();
        let mut sim = Sim { bot, teams: teams(ROSTER), specs, convs, now: ts(0) };
        sim.check()?;
        for (conv, kind, a, b, wait) in ops {
            let conv = conv % n_convs;
            sim.now = sim.now.checked_add(jiff::SignedDuration::from_secs(wait.into())).unwrap();
            match kind {
                23 => {
                    // A timer fires: jump to the earliest deadline and run what is due.
                    if let Some(at) = sim.convs[conv].deadlines.earliest() {
                        sim.now = sim.now.max(at);
                    }
                    for cmd in sim.convs[conv].deadlines.due(sim.now) {
                        sim.run(conv, cmd)?;
                    }
                }
                24 | 25 => {
                    if let Some(i) = sim.spec_index(a) {
                        let s = &mut sim.specs[i];
                        if kind == 24 { s.accepting = !s.accepting } else { s.online = !s.online }
                        for c in 0..n_convs {
                            sim.run(c, Command::AgentsChanged)?;
                        }
                    }
                }
                _ => {
                    let cmd = sim.command(conv, kind, a, b);
                    sim.run(conv, cmd)?;
                }
            }
        }
        // Whatever was assigned can always be wound down and closed.
        let closed: BTreeSet<usize> = (0..n_convs).filter(|i| sim.convs[*i].status == Status::Closed).collect();
        for i in closed {
            let cmd = Command::VisitorMessage {
                text: "hello?".into(),
                attachments: Vec::new(),
            };
            sim.run(i, cmd)?;
            prop_assert_eq!(sim.convs[i].status, Status::Closed);
        }
    }
}
