//! The transition machine, command by command.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use super::testkit::*;
use super::transitions::DEFAULT_LIVE_CHAT;
use super::*;
use crate::chat::flow::tests::bot;
use crate::chat::flow::{self, Pick, Waiting};
use crate::chat::routing::tests::agent;

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
    let c =
        Conversation::start("c1", "support", "v1", Visitor::default(), &w.bot, w.now).conversation;
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
    let mut offer = later.clone();
    offer.deadlines.offer = Some(ts(30));
    assert!(!c.differs_only_in_activity(&offer));
    let mut contact = later.clone();
    contact.contact.insert("company".into(), "Acme".into());
    assert!(!c.differs_only_in_activity(&contact));
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
    assert_eq!(t.events[2].data()["choices"][0]["value"], "Billing");
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
    assert_eq!(step.kind(), EventKind::FlowStep);
    assert_eq!(step.data()["live_chat"]["action"], "desk");
    assert_eq!(step.data()["live_chat"]["label"], "Talk to a person");
    assert_eq!(step.data()["buttons"], json!(["skip"]));
    assert_eq!(c.last_visitor_at, Some(w.now));
    let (c, ev) = w.ok(&c, Command::Skip);
    assert_eq!(said(&ev), [pair("bot", "Thanks for chatting, .")]);
    assert_eq!(ev.last().unwrap().data()["end"], true);
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
fn the_flow_and_agents_fill_contact_fields_and_only_with_values_that_fit() {
    let b = bot(concat!(
        "name = \"B\"\n",
        "[[contact_field]]\nname = \"company\"\nlabel = \"Company\"\n",
        "[[contact_field]]\nname = \"seats\"\nlabel = \"Seats\"\ntype = \"number\"\n",
        "[[step]]\nid = \"c\"\nask = { var = \"contact.company\" }\n",
        "[[step]]\nid = \"s\"\nask = { var = \"contact.seats\" }\n",
        "[[step]]\nid = \"x\"\nsay = \"Thanks\"\n",
    ));
    let w = World::new(b);
    let c = w.start();
    let (c, ev) = w.ok(
        &c,
        Command::Answer {
            text: " Acme ".into(),
        },
    );
    assert_eq!(c.contact["company"], "Acme");
    let updated: Vec<_> = ev
        .iter()
        .filter(|e| e.kind() == EventKind::ContactUpdated)
        .collect();
    assert_eq!(updated.len(), 1);
    assert_eq!(
        updated[0].data(),
        serde_json::json!({"by": "visitor", "fields": {"company": "Acme"}})
    );
    // A free-text answer that is no number stays a variable only.
    let (c, ev) = w.ok(
        &c,
        Command::Answer {
            text: "a few".into(),
        },
    );
    assert!(!c.contact.contains_key("seats"));
    assert!(ev.iter().all(|e| e.kind() != EventKind::ContactUpdated));
    // Agents: every field declared and every value fitting, or nothing at all.
    let set = |fields: &[(&str, &str)]| Command::SetContact {
        by: "ana@acme.example".into(),
        fields: fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    assert_eq!(
        w.code(&c, set(&[("company", "Initech"), ("seats", "many")])),
        "invalid_contact_field"
    );
    assert_eq!(w.code(&c, set(&[("plan", "Pro")])), "invalid_contact_field");
    let (c, _) = w.ok(&c, set(&[("seats", "12"), ("company", "")]));
    assert_eq!(c.contact, [("seats".to_string(), "12".to_string())].into());
    // The flow's next step does not write its older `contact.company` over the agent's
    // edit: only what a transition sets or changes is recorded.
    let (c, ev) = w.ok(
        &c,
        Command::VisitorMessage {
            text: "hello again".into(),
            attachments: Vec::new(),
        },
    );
    assert_eq!(c.contact, [("seats".to_string(), "12".to_string())].into());
    assert!(ev.iter().all(|e| e.kind() != EventKind::ContactUpdated));
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
    assert_eq!(ev[0].data()["notice"], "welcome");
    assert_eq!(ev[1].data(), json!({ "action": "desk", "team": null }));
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
fn an_agent_outside_the_routed_team_cannot_move_a_waiting_request_to_accept_it() {
    let w = World::new(support_bot("", ""));
    let to_team = |by: &str, t: &str| Command::Transfer {
        by: by.into(),
        to: TransferTarget::Team(t.into()),
    };
    let c = w.start();
    let (c, _) = w.ok(
        &c,
        Command::Choose {
            step: None,
            pick: Pick::Value("billing".into()),
        },
    );
    let (c, _) = w.ok(&c, request());
    assert_eq!(c.team.as_deref(), Some("billing"));
    // Bea serves the bot, but not billing: no transfer, no accept, no resolve.
    assert_eq!(w.code(&c, to_team(BEA, "support")), "not_allowed");
    assert_eq!(w.code(&c, accept(BEA)), "not_available");
    let resolve = Command::Resolve {
        by: BEA.into(),
        note: None,
    };
    assert_eq!(w.code(&c, resolve), "not_allowed");
    // The routed team and an admin may move it.
    assert_eq!(
        w.ok(&c, to_team(CID, "support")).0.team.as_deref(),
        Some("support")
    );
    let (moved, _) = w.ok(&c, to_team(ADM, "support"));
    assert_eq!(w.ok(&moved, accept(BEA)).0.assignee.as_deref(), Some(BEA));
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
    assert_eq!(ev[0].data()["author"], "agent");
    assert_eq!(ev[0].data()["agent"], ANA);
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
    assert_eq!(ev[0].data()["text"], "VIP");
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
    assert_eq!(ev.last().unwrap().data()["collect"]["field"], "name");
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
    assert_eq!(ev.last().unwrap().data()["buttons"], json!(["back"]));
    let (c, ev) = w.ok(&c, visitor("Ana"));
    assert_eq!(ev.last().unwrap().data()["collect"]["field"], "email");
    assert_eq!(ev.last().unwrap().data()["buttons"], json!(["back"]));
    let (c, ev) = w.ok(&c, Command::Back);
    assert_eq!(c.status, Status::Bot);
    assert_eq!(c.deadlines, Deadlines::default());
    assert!(c.ringing.is_empty());
    // The step where the visitor asked is shown again, its Live Chat button with it.
    assert_eq!(kinds(&ev), ["message.created", "flow.step"]);
    assert_eq!(said(&ev), [pair("bot", "Want to talk to a person?")]);
    assert_eq!(ev[1].data()["step"], "human");
    assert_eq!(ev[1].data()["live_chat"]["action"], "desk");
    assert_eq!(c.flow.step.as_deref(), Some("human"));
    // What was given stays known: asking again asks only the email.
    assert_eq!(c.name.as_deref(), Some("Ana"));
    let (c, ev) = w.ok(&c, request());
    assert_eq!(c.status, Status::Collecting);
    assert_eq!(ev.last().unwrap().data()["collect"]["field"], "email");
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
    assert_eq!(ev[3].data()["reason"], "closed");
    assert_eq!(ev[3].data()["form"], Value::Null);
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
        .find(|e| e.kind() == EventKind::LivechatOffline)
        .unwrap();
    assert_eq!(offline.data()["reason"], "no_agents");
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
        .find(|e| e.kind() == EventKind::LivechatOffline)
        .unwrap();
    assert_eq!(offline.data()["reason"], "no_agents");
    assert_eq!(offline.data()["form"], "contact");
    let form = ev.last().unwrap();
    assert_eq!(form.kind(), EventKind::FlowStep);
    assert_eq!(form.data()["offline_form"]["id"], "contact");
    assert_eq!(form.data()["offline_form"]["fields"][0]["type"], "email");
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
    assert_eq!(ev[0].kind(), EventKind::FormSubmitted);
    assert_eq!(ev[0].data()["values"]["message"], "Call me");
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
    assert_eq!(ev[0].data()["reason"], "idle");
    assert_eq!((c.status, c.ended_at), (Status::Ended, Some(ts(500))));
    assert_eq!(c.deadlines, Deadlines::default());
    assert_eq!(w.code(&c, visitor("back")), "invalid_state");
    assert_eq!(w.code(&w.start(), Command::IdleTimeout), "invalid_state");
}

#[test]
fn conversations_left_with_the_bot_expire() {
    let mut w = World::new(support_bot("", ""));
    let day = Duration::from_secs(86_400);
    let expire = || Command::Expire { after: day };
    let c = w.start(); // opened at ts(0)
    w.now = ts(86_399);
    assert_eq!(w.code(&c, expire()), "invalid_state");
    // The visitor's activity pushes it back.
    w.now = ts(3_600);
    let (c, _) = w.ok(&c, visitor("anyone there?"));
    w.now = ts(86_400);
    assert_eq!(w.code(&c, expire()), "invalid_state");
    w.now = ts(3_600 + 86_400);
    let (ended, ev) = w.ok(&c, expire());
    assert_eq!(kinds(&ev), ["conversation.ended"]);
    assert_eq!(ev[0].data()["reason"], "expired");
    assert_eq!((ended.status, ended.ended_at), (Status::Ended, Some(w.now)));
    // Only conversations still with the bot: a request, a chat or an ended one stays.
    w.now = ts(10 * 86_400);
    for c in [w.ringing(), w.assigned(ANA), ended] {
        assert_eq!(w.code(&c, expire()), "invalid_state", "{:?}", c.status);
    }
}

#[test]
fn the_visitor_can_end_the_chat() {
    let w = World::new(support_bot("", ""));
    for c in [w.start(), w.ringing(), w.assigned(BEA)] {
        let (c, ev) = w.ok(&c, Command::VisitorEnd);
        assert_eq!(ev[0].data()["reason"], "visitor");
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
    assert_eq!(ev[0].data()["time_to_resolve_secs"], 125);
    assert_eq!(ev[0].data()["note"], "refunded");
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
        ev[0].data(),
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
    assert_eq!(ev[0].data()["comment"], Value::Null);
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
    assert_eq!(ev[1].data()["assignee"], ANA);
    assert_eq!(o.status, Status::Assigned);
    assert_eq!(o.assignee.as_deref(), Some(ANA));
    assert_eq!((o.resolved_at, o.resolve_note.clone()), (None, None));
    assert_eq!(o.deadlines.idle, Some(ts(650)));
    // Ana went offline: back to the queue.
    w.agent_mut(ANA).online = false;
    let (o, ev) = w.ok(&r, visitor("one more thing"));
    assert_eq!(ev[1].data()["assignee"], Value::Null);
    assert_eq!(o.status, Status::New);
    assert_eq!(o.assignee, None);
    assert_eq!(ringing_of(&ev), [BEA]);
    assert_eq!(o.deadlines.accept, Some(ts(140)));
}

#[test]
fn a_reopen_that_would_ring_nobody_takes_the_offline_path_at_once() {
    let mut w = World::new(support_bot("", ""));
    let c = w.assigned(ANA);
    let resolve = Command::Resolve {
        by: ANA.into(),
        note: None,
    };
    let (r, _) = w.ok(&c, resolve);
    // Ana stopped accepting chats and Bea is away: nobody could hear it ring.
    w.agent_mut(ANA).accepting = false;
    w.agent_mut(BEA).online = false;
    let (o, ev) = w.ok(&r, visitor("one more thing"));
    let kinds = kinds(&ev);
    assert!(kinds.contains(&"conversation.reopened"), "{kinds:?}");
    assert!(kinds.contains(&"livechat.offline"), "{kinds:?}");
    assert!(!kinds.contains(&"livechat.ringing"), "{kinds:?}");
    assert_ne!(o.status, Status::New);
    assert!(o.ringing.is_empty());
    assert_eq!(o.deadlines.accept, None);
    let offline = ev
        .iter()
        .find(|e| e.kind().as_str() == "livechat.offline")
        .unwrap();
    assert_eq!(offline.data()["reason"], "no_agents");
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
    assert_eq!(ev[0].data()["takeover"], true);
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
    let c =
        Conversation::start("c", "support", "v", Visitor::default(), &w.bot, w.now).conversation;
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
    assert_eq!(ev[1].data()["previous"], ANA);
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
fn a_transfer_to_a_team_that_would_ring_nobody_is_refused() {
    let mut w = World::new(support_bot("", ""));
    let c = w.assigned(ANA);
    let to_support = Command::Transfer {
        by: ANA.into(),
        to: TransferTarget::Team("support".into()),
    };
    // Bea is the only other one of the team: away, the transfer would ring nobody (Ana
    // gives it away, so it does not ring her).
    w.agent_mut(BEA).online = false;
    assert_eq!(w.code(&c, to_support.clone()), "nobody_to_ring");
    w.agent_mut(BEA).online = true;
    w.agent_mut(BEA).accepting = false;
    assert_eq!(w.code(&c, to_support.clone()), "nobody_to_ring");
    w.agent_mut(BEA).accepting = true;
    let (t, ev) = w.ok(&c, to_support);
    assert_eq!(t.status, Status::New);
    assert_eq!(ringing_of(&ev), [BEA]);
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
    assert_eq!(ev[0].data()["previous"], BEA);
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
    assert_eq!(ev[0].data()["agent"], Value::Null);
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
    assert_eq!(ev[0].data()["offered_to"], ANA);
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

#[test]
fn a_route_by_language_sees_the_browser_language_even_one_the_bot_does_not_speak() {
    let w = World::new(bot(r#"
name = "S"
[[step]]
id = "start"
live_chat = "desk"
[live_chat.desk]
route = [{ when = { language = ["es", "pt"] }, team = "billing" }, { team = "support" }]
"#));
    let start = |lang: &str| {
        let visitor = Visitor {
            language: Some(lang.into()),
            ..Visitor::default()
        };
        Conversation::start("c1", "support", "v1", visitor, &w.bot, w.now).conversation
    };
    let spanish = start("es-MX");
    assert_eq!(spanish.language, "en", "the bot speaks English only");
    assert_eq!(w.ok(&spanish, request()).0.team.as_deref(), Some("billing"));
    assert_eq!(
        w.ok(&start("de"), request()).0.team.as_deref(),
        Some("support")
    );
}

fn end_video(by: &str) -> Command {
    Command::EndVideo { by: by.into() }
}

#[test]
fn a_video_request_rings_agents_who_take_video_and_accepting_starts_the_call() {
    let mut w = World::new(support_bot(
        "modes = [\"text\", \"video\"]\nvideo_message = \"{{ agent.name }} accepted your video call.\"",
        "",
    ));
    // Bea does not take video: only Ana (and the admin's team does not serve support).
    w.agent_mut(BEA).video = false;
    let c = w.start();
    let (c, ev) = w.ok(&c, Command::RequestVideo { action: None });
    assert_eq!(kinds(&ev)[0], "video.requested");
    assert_eq!(ev[0].data()["by"], "visitor");
    assert!(c.video && c.call.is_none());
    assert_eq!(ringing_of(&ev), [ANA]);
    w.now = ts(30);
    let (c, ev) = w.ok(&c, accept(ANA));
    assert!(kinds(&ev).contains(&"video.started"), "{:?}", kinds(&ev));
    assert!(said(&ev).contains(&pair("system", "Ana Lima accepted your video call.")));
    assert_eq!(c.call.as_ref().and_then(|c| c.started_at), Some(ts(30)));
    // The text chat goes on during the call; the visitor hangs up after 95 seconds.
    let (c, _) = w.ok(&c, visitor("can you see me?"));
    w.now = ts(125);
    assert_eq!(w.code(&c, end_video(BEA)), "not_allowed");
    let (c, ev) = w.ok(&c, end_video("visitor"));
    assert_eq!(kinds(&ev), ["video.ended"]);
    assert_eq!(ev[0].data()["duration_secs"], 95);
    assert_eq!(ev[0].data()["reason"], "hangup");
    assert!(c.call.is_none() && !c.video && c.status == Status::Chatting);
    assert_eq!(w.code(&c, end_video("visitor")), "invalid_state");
}

#[test]
fn video_requests_need_an_action_with_video_and_agents_who_take_it() {
    let w = World::new(support_bot("", ""));
    assert_eq!(
        w.code(&w.start(), Command::RequestVideo { action: None }),
        "not_allowed"
    );
    // Nobody takes video: the request goes the offline way at once.
    let mut w = World::new(support_bot("modes = [\"video\"]", ""));
    for a in w.agents.iter_mut() {
        a.video = false;
    }
    // A plain request to a video-only action is a video request.
    let (c, ev) = w.ok(&w.start(), request());
    assert_eq!(kinds(&ev)[0], "video.requested");
    assert!(kinds(&ev).contains(&"livechat.offline"), "{:?}", kinds(&ev));
    assert_eq!((c.status, c.video), (Status::Bot, false));
}

#[test]
fn an_agent_offers_a_call_in_a_chat_and_the_visitor_answers() {
    let mut w = World::new(support_bot("modes = [\"text\", \"video\"]", ""));
    let c = w.assigned(ANA);
    assert_eq!(
        w.code(&c, Command::OfferVideo { agent: BEA.into() }),
        "not_allowed"
    );
    assert_eq!(
        w.code(&c, Command::AnswerVideo { accept: true }),
        "invalid_state"
    );
    let (offered, ev) = w.ok(&c, Command::OfferVideo { agent: ANA.into() });
    assert_eq!(ev[0].data()["by"], ANA);
    // Declined: the chat goes on in text.
    let (c, ev) = w.ok(&offered, Command::AnswerVideo { accept: false });
    assert_eq!(kinds(&ev), ["video.ended"]);
    assert_eq!(ev[0].data()["reason"], "declined");
    assert!(c.call.is_none());
    // Accepted, then the chat is resolved under it: the call ends with it.
    let (c, _) = w.ok(&c, Command::OfferVideo { agent: ANA.into() });
    w.now = ts(10);
    let (c, ev) = w.ok(&c, Command::AnswerVideo { accept: true });
    assert_eq!(kinds(&ev), ["video.started"]);
    w.now = ts(70);
    let (c, ev) = w.ok(
        &c,
        Command::Resolve {
            by: ANA.into(),
            note: None,
        },
    );
    assert_eq!(kinds(&ev)[0], "video.ended");
    assert_eq!(ev[0].data()["reason"], "chat_ended");
    assert_eq!(ev[0].data()["duration_secs"], 60);
    assert!(c.call.is_none());
}

#[test]
fn routing_by_language_sees_the_language_the_visitor_asked_for() {
    let w = World::new(bot(r#"
name = "Sales"
languages = ["en"]
[[step]]
id = "start"
say = "Hi"
live_chat = "desk"
[live_chat.desk]
route = [{ when = { language = ["es", "pt"] }, team = "billing" }]
"#));
    let start = |visitor: Visitor| {
        Conversation::start("c1", "support", "v1", visitor, &w.bot, w.now).conversation
    };
    // The bot speaks English only, yet a browser that asked for Spanish first is routed
    // by Spanish.
    let c = start(Visitor {
        language: Some("en".into()),
        requested_language: Some("es-MX".into()),
        ..Visitor::default()
    });
    assert_eq!(c.language, "en");
    assert_eq!(c.requested_language.as_deref(), Some("es-MX"));
    assert_eq!(w.ok(&c, request()).0.team.as_deref(), Some("billing"));
    // Without a separate request, the preferred language stands for it.
    let c = start(Visitor {
        language: Some("pt".into()),
        ..Visitor::default()
    });
    assert_eq!(c.language, "en");
    assert_eq!(w.ok(&c, request()).0.team.as_deref(), Some("billing"));
    let c = start(Visitor {
        language: Some("en-GB".into()),
        ..Visitor::default()
    });
    assert_eq!(w.ok(&c, request()).0.team, None);
}

#[test]
fn the_first_language_a_browser_asks_for_is_its_most_preferred_tag() {
    assert_eq!(
        first_language("en;q=0.5, es-MX, pt;q=0.8").as_deref(),
        Some("es-MX")
    );
    assert_eq!(first_language("*, fr;q=0.1").as_deref(), Some("fr"));
    assert_eq!(first_language("de;q=0, *"), None);
    assert_eq!(first_language(""), None);
}

#[test]
fn a_handoff_phrase_typed_at_any_bot_step_asks_for_a_person() {
    let w = World::new(bot(r#"
name = "Sales"
languages = ["en", "de"]
handoff_phrases = { en = ["live agent", "a person"], de = ["Mitarbeiter"] }
[[step]]
id = "start"
say = "Hi"
choices = [{ label = "Pricing", goto = "bye" }]
[[step]]
id = "bye"
say = "Bye"
end = true
[live_chat.desk]
"#));
    let c = w.start();
    // Not a choice, but a phrase: the request starts instead of "please pick one".
    let (r, ev) = w.ok(&c, visitor("I want to speak with a LIVE agent, please!"));
    assert!(
        kinds(&ev).contains(&"livechat.requested"),
        "{:?}",
        kinds(&ev)
    );
    assert_ne!(r.status, Status::Bot);
    // Words that merely contain a phrase's letters do not count.
    let (r, ev) = w.ok(&c, visitor("deliver agents"));
    assert_eq!(r.status, Status::Bot);
    assert!(!kinds(&ev).contains(&"livechat.requested"));
    // Another language's phrases hold for a visitor who speaks it.
    let de = Conversation::start(
        "c2",
        "support",
        "v2",
        Visitor {
            language: Some("de-AT".into()),
            ..Visitor::default()
        },
        &w.bot,
        w.now,
    )
    .conversation;
    let (r, _) = w.ok(&de, visitor("Bitte einen Mitarbeiter"));
    assert_ne!(r.status, Status::Bot);
    let (r, _) = w.ok(&c, visitor("Bitte einen Mitarbeiter"));
    assert_eq!(r.status, Status::Bot, "an English conversation");
}
