//! The validator and the running conversation agree on which steps a visitor can reach.

use super::conversation::tests::ts;
use super::conversation::{Command, Conversation, Ctx, Event, EventKind, Status, Visitor, apply};
use super::flow::tests::bot;
use super::flow::{Pick, Waiting};
use crate::config::schema::Bot;
use crate::config::{Bundle, Sources};

/// The bundle of `tests/fixtures/valid/skip-only-step`: `newsletter` is reached by Skip only.
const SKIP_ONLY: &str = include_str!("../../tests/fixtures/valid/skip-only-step/support.toml");

/// The steps an event shows the visitor: a bot message or a prompt of that step.
fn shown_steps(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| match e.kind {
            EventKind::MessageCreated => e.data["author"] == "bot",
            EventKind::FlowStep => true,
            _ => false,
        })
        .filter_map(|e| e.data["step"].as_str().map(str::to_string))
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
        .filter(|e| e.data["author"] == "bot")
        .filter_map(|e| e.data["text"].as_str())
        .collect();
    assert_eq!(said, ["No problem. Want our newsletter? Leave your email."]);
}

fn choose(i: usize) -> Command {
    Command::Choose {
        step: None,
        pick: Pick::Index(i),
    }
}
