//! The validator and the running conversation agree on which steps a visitor can reach:
//! a step validation calls reachable is reached by some sequence of visitor actions, and
//! no sequence reaches a step validation rejects as unreachable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jiff::Timestamp;
use proptest::prelude::*;

use super::conversation::testkit::ts;
use super::conversation::{
    Author, Command, Conversation, Ctx, Event, EventData, Status, Visitor, apply,
};
use super::flow::tests::bot;
use super::flow::{Pick, Waiting};
use super::routing::AgentView;
use super::routing::tests::{agent, teams};
use crate::config::schema::{Bot, Team};
use crate::config::{Bundle, Sources};

/// The bundle of `tests/fixtures/valid/skip-only-step`: `newsletter` is reached by Skip only.
const SKIP_ONLY: &str = include_str!("../../tests/fixtures/valid/skip-only-step/support.toml");

/// The steps an event shows the visitor: a bot message or a prompt of that step.
fn shown_steps(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            EventData::MessageCreated(m) if m.author == Author::Bot => m.step.clone(),
            EventData::FlowStep(shown) => shown.step().map(str::to_string),
            _ => None,
        })
        .collect()
}

fn start(bot: &Bot) -> (Conversation, Vec<Event>) {
    let t = Conversation::start("c1", "gen", "v1", Visitor::default(), bot, ts(0));
    (t.conversation, t.events)
}

#[test]
fn pressing_skip_reaches_a_step_no_choice_leads_to() {
    let sources = Sources::from([("support.toml".to_string(), SKIP_ONLY.to_string())]);
    assert!(
        Bundle::from_sources(sources, &|_| None).is_ok(),
        "the skip-only bundle validates"
    );
    let b = bot(SKIP_ONLY);
    let ctx = Ctx {
        now: ts(0),
        bot: &b,
        agents: &[],
        teams: &[],
        open: true,
    };
    let (conv, _) = start(&b);
    assert_eq!(conv.flow.step.as_deref(), Some("start"));
    // Neither choice leads to `newsletter`...
    for i in 0..2 {
        let t = apply(&conv, choose(i), &ctx).unwrap();
        assert!(!shown_steps(&t.events).contains(&"newsletter".to_string()));
    }
    // ...the Skip button does.
    let t = apply(&conv, Command::Skip, &ctx).unwrap();
    assert_eq!(t.conversation.status, Status::Bot);
    assert_eq!(t.conversation.flow.step.as_deref(), Some("newsletter"));
    assert_eq!(t.conversation.flow.waiting, Waiting::Answer);
    let said: Vec<&str> = t
        .events
        .iter()
        .filter_map(|e| match e {
            EventData::MessageCreated(m) if m.author == Author::Bot => Some(m.text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(said, ["No problem. Want our newsletter? Leave your email."]);
}

fn choose(i: usize) -> Command {
    Command::Choose {
        step: None,
        pick: Pick::Index(i),
    }
}

/// Every step some sequence of visitor actions shows, with nobody online (requests go
/// offline at once) or with one agent who may accept, or let a request time out.
fn reached_at_runtime(bot: &Bot) -> BTreeSet<String> {
    let nobody: Vec<AgentView> = Vec::new();
    let ana = vec![agent("ana@acme.example", &["support"])];
    let roster: Vec<Team> = teams("[[team]]\nid = \"support\"\nbots = [\"gen\"]\n");
    let form = BTreeMap::from([("email".to_string(), "v@acme.example".to_string())]);
    let mut actions: Vec<Command> = (0..MAX_CHOICES).map(choose).collect();
    actions.extend([
        Command::Answer { text: "x".into() },
        Command::VisitorMessage {
            text: "x".into(),
            attachments: Vec::new(),
        },
        Command::Skip,
        Command::Back,
        Command::RequestLiveChat { action: None },
        Command::SubmitForm {
            form: "contact".into(),
            values: form,
        },
        Command::Accept {
            agent: "ana@acme.example".into(),
        },
        Command::Resolve {
            by: "ana@acme.example".into(),
            note: None,
        },
    ]);

    let (conv, events) = start(bot);
    let mut reached: BTreeSet<String> = shown_steps(&events).into_iter().collect();
    // Where the flow waits and the conversation's status decide what can happen next; the
    // variables and the history only change texts and where `back` returns to, a step
    // already seen.
    let key = |c: &Conversation| (c.flow.step.clone(), c.flow.waiting.clone(), c.status);
    let mut seen = vec![key(&conv)];
    let mut todo = VecDeque::from([conv]);
    while let Some(conv) = todo.pop_front() {
        // Everything happens at once, except the timers, which fire when they are due.
        let mut moves: Vec<(Timestamp, Command)> =
            actions.iter().map(|a| (ts(0), a.clone())).collect();
        if let Some(at) = conv.deadlines.earliest() {
            moves.extend(conv.deadlines.due(at).into_iter().map(|c| (at, c)));
        }
        for agents in [&nobody, &ana] {
            for (now, action) in &moves {
                let ctx = Ctx {
                    now: *now,
                    bot,
                    agents,
                    teams: &roster,
                    open: true,
                };
                let Ok(t) = apply(&conv, action.clone(), &ctx) else {
                    continue;
                };
                reached.extend(shown_steps(&t.events));
                if !seen.contains(&key(&t.conversation)) {
                    seen.push(key(&t.conversation));
                    todo.push_back(t.conversation);
                }
            }
        }
    }
    reached
}

/// The steps `livechat validate` does not report as unreachable.
fn reachable_by_validation(src: &str, bot: &Bot) -> BTreeSet<String> {
    let sources = Sources::from([("gen.toml".to_string(), src.to_string())]);
    let unreachable: Vec<String> = match Bundle::from_sources(sources, &|_| None) {
        Ok(_) => Vec::new(),
        Err(diags) => diags
            .iter()
            .filter_map(|d| d.message.strip_prefix("step `"))
            .filter_map(|m| m.split_once("` is unreachable"))
            .map(|(id, _)| id.to_string())
            .collect(),
    };
    bot.steps
        .iter()
        .map(|s| s.id.get_ref().clone())
        .filter(|id| !unreachable.contains(id))
        .collect()
}

const MAX_STEPS: usize = 7;
const MAX_CHOICES: usize = 3;

#[derive(Debug, Clone)]
enum Kind {
    Say,
    /// Each choice's `goto`, if any.
    Choices(Vec<Option<usize>>),
    Ask,
    LiveChat,
}

#[derive(Debug, Clone)]
struct StepSpec {
    kind: Kind,
    /// Adds `ask`, and `live_chat`: a step that waits in two ways is an error of its own,
    /// but validation still checks reachability and the runtime still runs it.
    also_ask: bool,
    also_live_chat: bool,
    /// A `goto`: a step index, or one past the last step for a step that does not exist.
    goto: Option<usize>,
    skip: bool,
    back: bool,
    end: bool,
}

fn target() -> impl Strategy<Value = Option<usize>> {
    prop::option::weighted(0.5, 0..=MAX_STEPS)
}

fn step_spec() -> impl Strategy<Value = StepSpec> {
    let kind = prop_oneof![
        2 => Just(Kind::Say),
        3 => prop::collection::vec(target(), 1..=MAX_CHOICES).prop_map(Kind::Choices),
        2 => Just(Kind::Ask),
        1 => Just(Kind::LiveChat),
    ];
    (
        kind,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.3, 0..=MAX_STEPS),
        prop::bool::weighted(0.4),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(kind, also_ask, also_live_chat, goto, skip, back, end)| StepSpec {
                kind,
                also_ask,
                also_live_chat,
                goto,
                skip,
                back,
                end,
            },
        )
}

/// The bot file: steps `s0`, `s1`, …, each saying its own id so that the runtime shows
/// when it runs; `form` gives the live chat an offline form.
fn bot_toml(steps: &[StepSpec], form: bool) -> String {
    let id = |t: usize| {
        if t < steps.len() {
            format!("s{t}")
        } else {
            "nowhere".to_string()
        }
    };
    let mut out = String::from("name = \"Gen\"\n");
    for (i, s) in steps.iter().enumerate() {
        out.push_str(&format!("\n[[step]]\nid = \"s{i}\"\nsay = \"s{i}\"\n"));
        if let Kind::Choices(gotos) = &s.kind {
            let choices: Vec<String> = gotos
                .iter()
                .enumerate()
                .map(|(c, goto)| match goto {
                    Some(t) => format!("{{ label = \"c{c}\", goto = \"{}\" }}", id(*t)),
                    None => format!("{{ label = \"c{c}\" }}"),
                })
                .collect();
            out.push_str(&format!("choices = [{}]\n", choices.join(", ")));
        }
        if matches!(s.kind, Kind::Ask) || s.also_ask {
            out.push_str(&format!("ask = {{ var = \"v{i}\" }}\n"));
        }
        if matches!(s.kind, Kind::LiveChat) || s.also_live_chat {
            out.push_str("live_chat = \"desk\"\n");
        }
        let buttons: Vec<&str> = [(s.skip, "\"skip\""), (s.back, "\"back\"")]
            .into_iter()
            .filter_map(|(on, b)| on.then_some(b))
            .collect();
        if !buttons.is_empty() {
            out.push_str(&format!("buttons = [{}]\n", buttons.join(", ")));
        }
        if let Some(t) = s.goto {
            out.push_str(&format!("goto = \"{}\"\n", id(t)));
        }
        if s.end {
            out.push_str("end = true\n");
        }
    }
    out.push_str("\n[live_chat.desk]\n");
    if form {
        out.push_str(
            "offline_form = \"contact\"\n\n[offline_form.contact]\nemail_to = [\"desk@acme.example\"]\n\
             fields = [{ name = \"email\", label = \"Email\", type = \"email\", required = true }]\n",
        );
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn validation_and_the_runtime_reach_the_same_steps(
        steps in prop::collection::vec(step_spec(), 1..=MAX_STEPS),
        form in any::<bool>(),
    ) {
        let src = bot_toml(&steps, form);
        let b = bot(&src);
        let validated = reachable_by_validation(&src, &b);
        let ran = reached_at_runtime(&b);
        prop_assert_eq!(&validated, &ran, "reachable by validation, left; at runtime, right:\n{}", src);
    }
}
