//! The Live Chat lifecycle as visitors and agents meet it, over the real server's HTTP and
//! WebSockets: the timeout and offline paths, idle end, the race to accept, capacity, resume
//! after a disconnect, idempotent writes, and the hand-overs (takeover, transfer, unassign,
//! mute, reopen).

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::live::{Api, Console, Session, Stream, agent_email};
use common::{Bundle, TestServer};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
const BOSS: &str = "boss@acme.example";

/// A server on `Bundle::live` with `agents` agents of `max_chats` each; every agent (and the
/// admin) has the test password.
fn start(agents: usize, max_chats: u32, accept_timeout: &str, idle_timeout: &str) -> TestServer {
    start_with(agents, max_chats, accept_timeout, idle_timeout, &[])
}

/// `start`, with environment variables for the server.
fn start_with(
    agents: usize,
    max_chats: u32,
    accept_timeout: &str,
    idle_timeout: &str,
    env: &[(&str, &str)],
) -> TestServer {
    let mut emails: Vec<String> = (0..agents).map(agent_email).collect();
    emails.push(BOSS.to_string());
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    Bundle::live(agents)
        .max_chats(max_chats)
        .live_chat(|d| d.accept_timeout(accept_timeout).idle_timeout(idle_timeout))
        .serve_with(&emails, env)
}

fn seq(v: &Value) -> i64 {
    v["seq"].as_i64().unwrap_or_else(|| panic!("no seq in {v}"))
}

/// The position of the first event in `events` that fits `pred`.
fn position(events: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    events
        .iter()
        .position(pred)
        .unwrap_or_else(|| panic!("no {what} in {events:#?}"))
}

fn is_notice(e: &Value, notice: &str) -> bool {
    e["type"] == "message.created" && e["data"]["notice"] == notice
}

fn ids(list: &Value) -> Vec<String> {
    list["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn strictly_increasing(events: &[Value]) -> bool {
    events.windows(2).all(|w| seq(&w[0]) < seq(&w[1]))
}

/// Posts the offline form; answers (status, body).
async fn submit_form(api: &Api, token: &str, form: &str, values: Value) -> (u16, Value) {
    api.post(
        "/api/v1/visitor/actions",
        Some(token),
        json!({"type": "form", "form": form, "values": values}),
    )
    .await
}

/// The same agent command from every console at once, released together by a barrier.
/// Answers (email, status, body) per console.
async fn all_at_once(api: &Api, consoles: &[Console], path: &str) -> Vec<(String, u16, Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(consoles.len()));
    let tasks: Vec<_> = consoles
        .iter()
        .map(|c| {
            let api = api.clone();
            let barrier = barrier.clone();
            let token = c.token.clone();
            let email = c.email.clone();
            let path = path.to_string();
            tokio::spawn(async move {
                barrier.wait().await;
                let (status, body) = api.post(&path, Some(&token), json!({})).await;
                (email, status, body)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

// ---- 1. Nobody accepts: the timeout path -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_request_times_out_and_the_offline_form_reaches_the_agent() {
    let server = start(1, 2, "1s", "10m");
    let api = Api::new(&server.url);
    let mut agent = api.go_online(&agent_email(0)).await;
    let v = api.session("support").await;
    let mut widget = api.visitor_stream(&v.token, 0).await;

    let asked = Instant::now();
    api.request_live_chat(&v.token).await;
    let ringing = agent.stream.event("livechat.ringing", Some(&v.conv)).await;
    assert_eq!(ringing["data"]["agents"], json!([agent_email(0)]));

    // Nobody accepts within the second: the visitor is told, then offered the form.
    let timeout = widget.event("livechat.timeout", Some(&v.conv)).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(950),
        "timed out after only {:?}",
        asked.elapsed()
    );
    let form_step = widget
        .wait_for(WAIT, "the offline form", |e| {
            e["type"] == "flow.step" && e["data"]["offline_form"].is_object()
        })
        .await;
    let form = &form_step["data"]["offline_form"];
    assert_eq!(form["id"], "contact", "{form_step}");
    let fields: Vec<(&str, bool)> = form["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["required"] == true))
        .collect();
    assert_eq!(fields, [("email", true), ("message", true)]);
    let seen = widget.events();
    let told = position(&seen, "the timeout message", |e| is_notice(e, "timeout"));
    assert_eq!(
        seen[told]["data"]["text"],
        "Sorry, nobody is free right now."
    );
    assert!(seq(&seen[told]) < seq(&timeout) && seq(&timeout) < seq(&form_step));

    // The console stops ringing: the request left the queue.
    agent.stream.event("livechat.timeout", Some(&v.conv)).await;
    let (_, waiting) = api
        .get("/api/v1/conversations?status=new", Some(&agent.token))
        .await;
    assert!(!ids(&waiting).contains(&v.conv), "{waiting}");
    let details = api.details(&agent.token, &v.conv).await;
    assert_eq!(details["status"], "bot");
    assert_eq!(details["ringing"], json!([]));
    assert_eq!(details["assignee"], Value::Null);

    // Values that do not fit are refused with a clear code, and nothing is stored.
    let before = api.history(&v.token, 0).await;
    let bad = [
        (
            json!({"email": "not an email", "message": "Call me"}),
            "email",
        ),
        (json!({"email": "ada@example.com"}), "message"),
        (
            json!({"email": "ada@example.com", "message": "   "}),
            "message",
        ),
        (json!({"message": "Call me"}), "email"),
        (
            json!({"email": "ada@example.com", "message": "Hi", "phone": "12"}),
            "phone",
        ),
        (
            json!({"email": "ada@example.com", "message": "x".repeat(2001)}),
            "message",
        ),
    ];
    for (values, field) in bad {
        let (status, body) = submit_form(&api, &v.token, "contact", values.clone()).await;
        assert_error!((status, &body), 400, "invalid_input", "{values}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "the error names `{field}`: {body}"
        );
    }
    assert_error!(
        submit_form(&api, &v.token, "contact", json!({"email": 5})).await,
        400,
        "invalid_body"
    );
    assert_error!(
        submit_form(
            &api,
            &v.token,
            "survey",
            json!({"email": "ada@example.com", "message": "Hi"}),
        )
        .await,
        409,
        "invalid_state"
    );
    assert_eq!(
        api.history(&v.token, 0).await,
        before,
        "a refused form changed the log"
    );
    assert_eq!(api.details(&agent.token, &v.conv).await["forms"], json!([]));

    // A good submission: the visitor is thanked, the agent sees the answers.
    let (status, body) = submit_form(
        &api,
        &v.token,
        "contact",
        json!({"email": " ada@example.com ", "message": "Please call me back."}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    widget.event("form.submitted", Some(&v.conv)).await;
    widget
        .wait_for(WAIT, "the thank-you", |e| {
            e["data"]["text"] == "Thanks — we'll get back to you by email."
        })
        .await;
    let submitted = agent.stream.event("form.submitted", Some(&v.conv)).await;
    assert_eq!(submitted["data"]["values"]["email"], "ada@example.com");
    let details = api.details(&agent.token, &v.conv).await;
    let forms = details["forms"].as_array().unwrap();
    assert_eq!(forms.len(), 1, "{details}");
    assert_eq!(forms[0]["form"], "contact");
    assert_eq!(
        forms[0]["values"],
        json!({"email": "ada@example.com", "message": "Please call me back."})
    );
    assert_eq!(details["visitor"]["email"], "ada@example.com");

    // The form is answered: sending it again is refused and stores nothing more.
    assert_error!(
        submit_form(
            &api,
            &v.token,
            "contact",
            json!({"email": "ada@example.com", "message": "Again"}),
        )
        .await,
        409,
        "invalid_state"
    );
    assert_eq!(
        api.details(&agent.token, &v.conv).await["forms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// ---- 2. Nobody there: the offline path at once -------------------------------------------

/// Asks for a person and checks the offline path ran before the answer came back.
async fn assert_offline_at_once(api: &Api, v: &Session, agent_token: &str) {
    let asked = api.request_live_chat(&v.token).await;
    // Persist, then answer: everything the request did is in the log already.
    let events: Vec<Value> = api
        .history(&v.token, 0)
        .await
        .into_iter()
        .filter(|e| seq(e) <= seq(&asked))
        .collect();
    let requested = position(&events, "livechat.requested", |e| {
        e["type"] == "livechat.requested"
    });
    let message = position(&events, "the offline message", |e| is_notice(e, "offline"));
    let offline = position(&events, "livechat.offline", |e| {
        e["type"] == "livechat.offline"
    });
    let form = position(&events, "the offline form", |e| {
        e["type"] == "flow.step" && e["data"]["offline_form"]["id"] == "contact"
    });
    assert!(
        requested < message && message < offline && offline < form,
        "{events:#?}"
    );
    assert_eq!(
        events[message]["data"]["text"],
        "We're offline at the moment."
    );
    assert_eq!(events[offline]["data"]["reason"], "no_agents");
    assert_eq!(events[offline]["data"]["form"], "contact");
    assert!(
        !events.iter().any(|e| e["type"] == "livechat.ringing"),
        "{events:#?}"
    );
    let details = api.details(agent_token, &v.conv).await;
    assert_eq!(details["status"], "bot", "{details}");
    assert_eq!(details["ringing"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_online_or_accepting_means_offline_message_and_form_at_once() {
    let server = start(1, 2, "90s", "10m");
    let api = Api::new(&server.url);
    let boss = api.login(BOSS).await;

    // Nobody has the console open.
    let v = api.session("support").await;
    let mut widget = api.visitor_stream(&v.token, 0).await;
    assert_offline_at_once(&api, &v, &boss).await;
    let offline = widget.event("livechat.offline", Some(&v.conv)).await;
    assert_eq!(offline["data"]["form"], "contact");
    widget
        .wait_for(WAIT, "the offline form on the socket", |e| {
            e["data"]["offline_form"]["id"] == "contact"
        })
        .await;

    // The agent's console is open, but "Accept chats" is off.
    let token = api.login(&agent_email(0)).await;
    let mut console = api.agent_stream(&token, 0).await;
    api.set_accepting(&token, false).await;
    api.wait_agent(&token, &agent_email(0), |a| a["online"] == true)
        .await;
    let w = api.session("support").await;
    assert_offline_at_once(&api, &w, &boss).await;

    // Turned on, the next request rings instead.
    api.set_accepting(&token, true).await;
    let x = api.session("support").await;
    api.request_live_chat(&x.token).await;
    let ringing = console.event("livechat.ringing", Some(&x.conv)).await;
    assert_eq!(ringing["data"]["agents"], json!([agent_email(0)]));
    assert!(
        !console
            .seen
            .iter()
            .any(|e| e["type"] == "livechat.ringing" && e["conversation_id"] == w.conv.as_str()),
        "the request made while not accepting rang"
    );
}

// ---- 3. A silent visitor: the chat ends by itself -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_visitor_ends_the_chat_and_each_message_pushes_the_end_back() {
    let server = start(1, 2, "90s", "2s");
    let api = Api::new(&server.url);
    let mut agent = api.go_online(&agent_email(0)).await;
    let v = api.session("support").await;
    let mut widget = api.visitor_stream(&v.token, 0).await;

    let asked = Instant::now();
    api.request_live_chat(&v.token).await;
    api.act_ok(&agent.token, &v.conv, "accept", json!({})).await;

    // The visitor writes a second in: the idle deadline moves from asked+2s to wrote+2s.
    let early = widget
        .quiet(Duration::from_millis(1000).saturating_sub(asked.elapsed()))
        .await;
    assert!(
        !early.iter().any(|e| e["type"] == "conversation.ended"),
        "{early:#?}"
    );
    let wrote = Instant::now();
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&v.token),
        json!({"client_id": "still-here", "text": "Still there?"}),
    )
    .await;

    // Past the first deadline (asked + 2s, plus half a second) the chat goes on.
    let until = Duration::from_millis(2500).saturating_sub(asked.elapsed());
    let around = widget.quiet(until).await;
    assert!(
        !around.iter().any(|e| e["type"] == "conversation.ended"),
        "ended at the first deadline although the visitor wrote: {around:#?}"
    );
    assert_eq!(
        api.details(&agent.token, &v.conv).await["status"],
        "chatting"
    );

    // Then silence: it ends, for the reason "idle", on both sides, not before wrote + 2s.
    let ended = widget.event("conversation.ended", Some(&v.conv)).await;
    assert!(
        wrote.elapsed() >= Duration::from_millis(1950),
        "ended {:?} after the visitor's message",
        wrote.elapsed()
    );
    assert_eq!(ended["data"]["reason"], "idle");
    let ended = agent
        .stream
        .event("conversation.ended", Some(&v.conv))
        .await;
    assert_eq!(ended["data"]["reason"], "idle");
    let details = api.details(&agent.token, &v.conv).await;
    assert_eq!(details["status"], "ended");
    assert!(details["ended_at"].is_string(), "{details}");
    // The agent's seat is free again.
    api.wait_agent(&agent.token, &agent_email(0), |a| a["active_chats"] == 0)
        .await;
    let ends = api
        .history(&v.token, 0)
        .await
        .into_iter()
        .filter(|e| e["type"] == "conversation.ended")
        .count();
    assert_eq!(ends, 1);

    // The ended chat takes no more messages…
    assert_error!(
        api.post(
            "/api/v1/visitor/messages",
            Some(&v.token),
            json!({"text": "Hello again"}),
        )
        .await,
        409,
        "invalid_state"
    );
    // …but the visitor coming back (with their token) starts a new conversation, as the
    // same visitor, and can talk again.
    let (status, back) = api
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "support", "token": v.token}),
        )
        .await;
    assert!(status == 200 || status == 201, "{back}");
    assert_ne!(back["conversation_id"], v.conv.as_str(), "{back}");
    assert_eq!(back["token"], v.token.as_str());
    let body = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&v.token),
            json!({"text": "Hello again"}),
        )
        .await;
    assert_eq!(body["conversation_id"], back["conversation_id"]);
    let earlier = api
        .details(&agent.token, back["conversation_id"].as_str().unwrap())
        .await["earlier_conversations"]
        .clone();
    assert_eq!(earlier[0]["id"], v.conv.as_str(), "{earlier}");
}

// ---- 4. Twenty agents race to accept -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_agents_accept_at_once_and_exactly_one_wins() {
    const AGENTS: usize = 20;
    let server = start(AGENTS, 10, "90s", "10m");
    let api = Api::new(&server.url);
    let mut consoles = Vec::new();
    for i in 0..AGENTS {
        consoles.push(api.go_online(&agent_email(i)).await);
    }
    let everyone: Vec<String> = {
        let mut all: Vec<String> = (0..AGENTS).map(agent_email).collect();
        all.sort();
        all
    };

    for round in 0..3 {
        let v = api.session("support").await;
        api.request_live_chat(&v.token).await;
        // One request rings every console, and each of them lists all twenty.
        for c in consoles.iter_mut() {
            let ringing = c.stream.event("livechat.ringing", Some(&v.conv)).await;
            assert_eq!(ringing["data"]["agents"], json!(everyone), "round {round}");
        }

        let path = format!("/api/v1/conversations/{}/accept", v.conv);
        let results = all_at_once(&api, &consoles, &path).await;
        let winners: Vec<&String> = results
            .iter()
            .filter(|(_, status, _)| *status == 200)
            .map(|(email, _, _)| email)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:#?}");
        let winner = winners[0].clone();
        for (email, status, body) in &results {
            if *email != winner {
                assert_error!((*status, body), 409, "already_taken", "{email}");
            }
        }

        let details = api.details(&consoles[0].token, &v.conv).await;
        assert_eq!(details["assignee"], winner.as_str(), "{details}");
        assert_eq!(details["status"], "assigned");
        // Every console learns who took it (and stops ringing).
        for c in consoles.iter_mut() {
            let accepted = c.stream.event("livechat.accepted", Some(&v.conv)).await;
            assert_eq!(accepted["data"]["agent"], winner.as_str());
        }
        // The visitor is told once, with the winner's name.
        let n: usize = winner
            .trim_start_matches("agent")
            .trim_end_matches("@acme.example")
            .parse()
            .unwrap();
        let history = api.history(&v.token, 0).await;
        let joined: Vec<&Value> = history
            .iter()
            .filter(|e| is_notice(e, "assigned"))
            .collect();
        assert_eq!(joined.len(), 1, "{history:#?}");
        assert_eq!(
            joined[0]["data"]["text"],
            format!("Agent {n} has joined the chat.")
        );
        let accepted = history
            .iter()
            .filter(|e| e["type"] == "livechat.accepted")
            .count();
        assert_eq!(accepted, 1);
    }
}

// ---- 5. Capacity holds under concurrency ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_with_room_for_two_accepts_five_at_once_and_gets_two() {
    let server = start(1, 2, "90s", "10m");
    let api = Api::new(&server.url);
    let mut agent = api.go_online(&agent_email(0)).await;
    let mut visitors = Vec::new();
    for _ in 0..5 {
        let v = api.session("support").await;
        api.request_live_chat(&v.token).await;
        let ringing = agent.stream.event("livechat.ringing", Some(&v.conv)).await;
        assert_eq!(ringing["data"]["agents"], json!([agent_email(0)]));
        visitors.push(v);
    }

    let barrier = Arc::new(tokio::sync::Barrier::new(visitors.len()));
    let tasks: Vec<_> = visitors
        .iter()
        .map(|v| {
            let (api, barrier, token) = (api.clone(), barrier.clone(), agent.token.clone());
            let path = format!("/api/v1/conversations/{}/accept", v.conv);
            let conv = v.conv.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let (status, body) = api.post(&path, Some(&token), json!({})).await;
                (conv, status, body)
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let won: Vec<String> = results
        .iter()
        .filter(|(_, s, _)| *s == 200)
        .map(|(c, _, _)| c.clone())
        .collect();
    assert_eq!(won.len(), 2, "{results:#?}");
    for (conv, status, body) in &results {
        if !won.contains(conv) {
            assert_error!((*status, body), 409, "at_capacity");
        }
    }
    let view = api.agent_view(&agent.token, &agent_email(0)).await;
    assert_eq!(view["active_chats"], 2, "{view}");
    assert_eq!(view["max_chats"], 2, "{view}");
    let (_, mine) = api
        .get("/api/v1/conversations?assignee=me", Some(&agent.token))
        .await;
    let mut mine = ids(&mine);
    mine.sort();
    let mut expected = won.clone();
    expected.sort();
    assert_eq!(mine, expected);
    let waiting: Vec<&Session> = visitors.iter().filter(|v| !won.contains(&v.conv)).collect();
    for v in &waiting {
        let d = api.details(&agent.token, &v.conv).await;
        assert_eq!(d["status"], "new", "{d}");
        assert_eq!(d["assignee"], Value::Null);
    }

    // A full agent no longer rings for the requests still waiting; resolving one frees a
    // seat, and they ring again. (The last ringing of each says who rings now.)
    let rings_now = |seen: &[Value], conv: &str| {
        seen.iter()
            .rev()
            .find(|e| e["type"] == "livechat.ringing" && e["conversation_id"] == conv)
            .map(|e| e["data"]["agents"].clone())
    };
    let all_ring = |who: Value| {
        let convs: Vec<String> = waiting.iter().map(|v| v.conv.clone()).collect();
        move |seen: &[Value]| {
            convs
                .iter()
                .all(|c| rings_now(seen, c).as_ref() == Some(&who))
        }
    };
    agent
        .stream
        .wait_until(WAIT, "the ringing to stop", all_ring(json!([])))
        .await;
    api.act_ok(&agent.token, &won[0], "resolve", json!({}))
        .await;
    agent
        .stream
        .wait_until(WAIT, "ringing again", all_ring(json!([agent_email(0)])))
        .await;
    api.act_ok(&agent.token, &waiting[0].conv, "accept", json!({}))
        .await;
    assert_error!(
        api.act(&agent.token, &waiting[1].conv, "accept", json!({}))
            .await,
        409,
        "at_capacity"
    );
    let view = api.agent_view(&agent.token, &agent_email(0)).await;
    assert_eq!(view["active_chats"], 2, "{view}");
}

// ---- 6. Resume after a disconnect ------------------------------------------------------------

/// Visitor messages `from..to` (with an agent reply after every third); answers the `seq`
/// of each write.
async fn traffic(
    api: Api,
    visitor: String,
    agent: String,
    conv: String,
    from: usize,
    to: usize,
) -> Vec<i64> {
    let mut seqs = Vec::new();
    for i in from..to {
        let body = api
            .post_ok(
                "/api/v1/visitor/messages",
                Some(&visitor),
                json!({"client_id": format!("v-{i}"), "text": format!("visitor {i}")}),
            )
            .await;
        seqs.push(seq(&body));
        if i % 3 == 0 {
            let body = api
                .act_ok(
                    &agent,
                    &conv,
                    "messages",
                    json!({"client_id": format!("a-{i}"), "text": format!("agent {i}")}),
                )
                .await;
            seqs.push(seq(&body));
        }
    }
    seqs
}

/// Reads a stream up to `text`, then closes it: answers the events it saw.
async fn leave_at(mut stream: Stream, text: &str) -> Vec<Value> {
    stream
        .wait_for(WAIT, text, |e| e["data"]["text"] == text)
        .await;
    let seen = stream.events();
    stream.close().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_history_resume_after_a_disconnect_without_gaps_or_repeats() {
    // The visitor writes 70 messages as fast as they are answered, far faster than a
    // person: their message limit (`tests/limits.rs`) is raised.
    let env = [("LIVECHAT_MESSAGE_BURST", "1000")];
    let server = start_with(1, 2, "90s", "10m", &env);
    let api = Api::new(&server.url);
    let Console {
        token: agent,
        stream: console,
        ..
    } = api.go_online(&agent_email(0)).await;
    let v = api.session("support").await;
    let widget = api.visitor_stream(&v.token, 0).await;
    api.request_live_chat(&v.token).await;
    api.act_ok(&agent, &v.conv, "accept", json!({})).await;
    let run = |from, to| {
        tokio::spawn(traffic(
            api.clone(),
            v.token.clone(),
            agent.clone(),
            v.conv.clone(),
            from,
            to,
        ))
    };

    // Both sides read part of the traffic, then drop their sockets while it goes on.
    let first = run(0, 30);
    let (console_before, widget_before) = tokio::join!(
        leave_at(console, "visitor 8"),
        leave_at(widget, "visitor 12")
    );
    let n_console = console_before.iter().map(seq).max().unwrap();
    let n_widget = widget_before.iter().map(seq).max().unwrap();
    // More traffic while they are away; then more while they come back.
    let second = run(30, 50);
    let mut answered = first.await.unwrap();
    answered.extend(second.await.unwrap());
    let third = run(50, 70);
    let (mut console_after, mut widget_after) = tokio::join!(
        api.agent_stream(&agent, n_console),
        api.visitor_stream(&v.token, n_widget)
    );
    answered.extend(third.await.unwrap());
    let last = *answered.iter().max().unwrap();
    console_after.until_seq(WAIT, last).await;
    widget_after.until_seq(WAIT, last).await;

    // The full log, as fresh streams from the start replay it.
    let mut console_full = api.agent_stream(&agent, 0).await;
    console_full.until_seq(WAIT, last).await;
    let mut widget_full = api.visitor_stream(&v.token, 0).await;
    widget_full.until_seq(WAIT, last).await;

    for (who, before, n, after, full) in [
        (
            "console",
            &console_before,
            n_console,
            console_after.events(),
            console_full.events(),
        ),
        (
            "widget",
            &widget_before,
            n_widget,
            widget_after.events(),
            widget_full.events(),
        ),
    ] {
        assert!(strictly_increasing(&full), "{who}: the log is out of order");
        let (head, tail): (Vec<Value>, Vec<Value>) = full.into_iter().partition(|e| seq(e) <= n);
        assert_eq!(before, &head, "{who}: what it saw before leaving");
        assert!(tail.len() > 20, "{who}: it missed little: {}", tail.len());
        assert_eq!(
            after, tail,
            "{who}: what it got after coming back (after={n})"
        );
        // Every write answered is there exactly once.
        for s in &answered {
            let times = before.iter().chain(&after).filter(|e| seq(e) == *s).count();
            assert_eq!(times, 1, "{who}: seq {s} seen {times} times");
        }
    }
    // The history endpoint answers the same events as the visitor's socket.
    assert_eq!(api.history(&v.token, n_widget).await, widget_after.events());
    let tail = api.history(&v.token, last - 1).await;
    assert_eq!(tail.iter().map(seq).collect::<Vec<_>>(), [last]);
    assert_eq!(api.history(&v.token, last).await, Vec::<Value>::new());
}

// ---- 7. Retried writes ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_client_id_stores_one_message_and_answers_the_same() {
    let server = start(1, 2, "90s", "10m");
    let api = Api::new(&server.url);
    let agent = api.go_online(&agent_email(0)).await;
    let v = api.session("support").await;
    let say = |client_id: &str, text: &str| json!({"client_id": client_id, "text": text});
    let count = |events: &[Value], text: &str| {
        events
            .iter()
            .filter(|e| e["type"] == "message.created" && e["data"]["text"] == text)
            .count()
    };

    // While the bot leads (it answers too), a retry answers the visitor's message again.
    let first = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&v.token),
            say("r-1", "hello?"),
        )
        .await;
    let again = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&v.token),
            say("r-1", "hello?"),
        )
        .await;
    assert_eq!(again["message_id"], first["message_id"]);
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(
        (first["duplicate"].clone(), again["duplicate"].clone()),
        (json!(false), json!(true))
    );
    let history = api.history(&v.token, 0).await;
    assert_eq!(count(&history, "hello?"), 1, "{history:#?}");
    let stored = history
        .iter()
        .find(|e| e["data"]["text"] == "hello?")
        .unwrap();
    assert_eq!(stored["data"]["message_id"], first["message_id"]);
    assert_eq!(
        stored["seq"], first["seq"],
        "the answered seq is the message's"
    );
    // A retry is recognised by its client_id, not its text.
    let (_, other) = api
        .post(
            "/api/v1/visitor/messages",
            Some(&v.token),
            say("r-2", "hello?"),
        )
        .await;
    assert_ne!(other["message_id"], first["message_id"]);
    let (_, changed) = api
        .post(
            "/api/v1/visitor/messages",
            Some(&v.token),
            say("r-1", "something else"),
        )
        .await;
    assert_eq!(changed["message_id"], first["message_id"]);
    let history = api.history(&v.token, 0).await;
    assert_eq!(count(&history, "hello?"), 2);
    assert_eq!(count(&history, "something else"), 0);

    // In a live chat: the same write sent twice at once, by each side.
    api.request_live_chat(&v.token).await;
    api.act_ok(&agent.token, &v.conv, "accept", json!({})).await;
    let twice = |path: String, token: String, body: Value| {
        let api = api.clone();
        async move {
            let a = tokio::spawn({
                let (api, path, token, body) =
                    (api.clone(), path.clone(), token.clone(), body.clone());
                async move { api.post(&path, Some(&token), body).await }
            });
            let b = tokio::spawn(async move { api.post(&path, Some(&token), body).await });
            (a.await.unwrap(), b.await.unwrap())
        }
    };
    let ((s1, b1), (s2, b2)) = twice(
        "/api/v1/visitor/messages".into(),
        v.token.clone(),
        say("v-same", "My order is late"),
    )
    .await;
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    assert_eq!(b1["message_id"], b2["message_id"]);
    assert_eq!(b1["seq"], b2["seq"]);
    let ((s1, b1), (s2, b2)) = twice(
        format!("/api/v1/conversations/{}/messages", v.conv),
        agent.token.clone(),
        say("a-same", "Let me look"),
    )
    .await;
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    assert_eq!(b1["message_id"], b2["message_id"]);
    assert_eq!(b1["seq"], b2["seq"]);
    let again = api
        .act_ok(
            &agent.token,
            &v.conv,
            "messages",
            say("a-same", "Let me look"),
        )
        .await;
    assert_eq!(again["message_id"], b1["message_id"]);
    assert_eq!(again["duplicate"], true);

    let details = api.details(&agent.token, &v.conv).await;
    let texts: Vec<&str> = details["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts.iter().filter(|t| **t == "My order is late").count(),
        1,
        "{texts:?}"
    );
    assert_eq!(
        texts.iter().filter(|t| **t == "Let me look").count(),
        1,
        "{texts:?}"
    );
    let history = api.history(&v.token, 0).await;
    assert_eq!(count(&history, "My order is late"), 1);
    assert_eq!(count(&history, "Let me look"), 1);

    // A note too: retried, it is stored once.
    let note = api
        .act_ok(&agent.token, &v.conv, "notes", say("n-1", "Call them back"))
        .await;
    let again = api
        .act_ok(&agent.token, &v.conv, "notes", say("n-1", "Call them back"))
        .await;
    assert_eq!(again["message_id"], note["message_id"]);
    assert_eq!(again["seq"], note["seq"]);
    assert_eq!(again["duplicate"], true);
    let notes = api.details(&agent.token, &v.conv).await["notes"].clone();
    assert_eq!(notes.as_array().unwrap().len(), 1, "{notes}");

    // Each side's ids are its own: the visitor's "1" and the agent's "1" are two messages.
    let mine = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&v.token),
            say("1", "Visitor one"),
        )
        .await;
    let theirs = api
        .act_ok(&agent.token, &v.conv, "messages", say("1", "Agent one"))
        .await;
    assert_ne!(
        theirs["message_id"], mine["message_id"],
        "the agent's message was dropped"
    );
    let history = api.history(&v.token, 0).await;
    assert_eq!(count(&history, "Visitor one"), 1);
    assert_eq!(count(&history, "Agent one"), 1);
}

// ---- 8. Hand-overs --------------------------------------------------------------------------

const BILLERS: [&str; 2] = ["biller0@acme.example", "biller1@acme.example"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_transfer_unassign_mute_and_reopen() {
    let server = Bundle::live(2)
        .max_chats(3)
        .team("billing", &["support"])
        .agent("Biller 0", BILLERS[0], "billing")
        .agent("Biller 1", BILLERS[1], "billing")
        .serve(&[&agent_email(0), &agent_email(1), BILLERS[0], BILLERS[1]]);
    let api = Api::new(&server.url);
    let mut a0 = api.go_online(&agent_email(0)).await;
    let mut a1 = api.go_online(&agent_email(1)).await;
    let mut b0 = api.go_online(BILLERS[0]).await;
    let mut b1 = api.go_online(BILLERS[1]).await;
    let v = api.session("support").await;
    let mut widget = api.visitor_stream(&v.token, 0).await;
    let visitor_says = |client_id: &str, text: &str| {
        let api = api.clone();
        let token = v.token.clone();
        let body = json!({"client_id": client_id, "text": text});
        async move {
            api.post_ok("/api/v1/visitor/messages", Some(&token), body)
                .await
        }
    };
    let a0_token = a0.token.clone();
    let status_of = |conv: &str| {
        let api = api.clone();
        let (token, conv) = (a0_token.clone(), conv.to_string());
        async move { api.details(&token, &conv).await }
    };

    // Agent 0 takes the conversation from the bot; the visitor is told, the bot pauses.
    api.act_ok(&a0.token, &v.conv, "takeover", json!({})).await;
    let told = widget
        .wait_for(WAIT, "the takeover message", |e| is_notice(e, "takeover"))
        .await;
    assert_eq!(
        told["data"]["text"],
        "Agent 0 has taken over the conversation."
    );
    let d = status_of(&v.conv).await;
    assert_eq!(
        (d["status"].as_str(), d["assignee"].as_str()),
        (Some("chatting"), Some(agent_email(0).as_str()))
    );
    assert_error!(
        api.act(&a1.token, &v.conv, "takeover", json!({})).await,
        409,
        "invalid_state"
    );
    let before = visitor_says("t-1", "Are you a person?").await;
    let after = api.history(&v.token, seq(&before) - 1).await;
    assert_eq!(
        after.len(),
        1,
        "the bot answered a taken-over chat: {after:#?}"
    );
    a0.stream
        .wait_for(WAIT, "the visitor's message", |e| {
            e["data"]["text"] == "Are you a person?"
        })
        .await;

    // Agent 0 hands it to agent 1.
    api.act_ok(
        &a0.token,
        &v.conv,
        "transfer",
        json!({"agent": agent_email(1)}),
    )
    .await;
    let moved = a1
        .stream
        .event("conversation.transferred", Some(&v.conv))
        .await;
    assert_eq!(moved["data"]["agent"], agent_email(1));
    assert_eq!(moved["data"]["from"], agent_email(0));
    widget
        .wait_for(WAIT, "agent 1 joining", |e| {
            e["data"]["text"] == "Agent 1 has joined the chat."
        })
        .await;
    assert_eq!(status_of(&v.conv).await["assignee"], agent_email(1));
    assert_error!(
        api.act(&a0.token, &v.conv, "messages", json!({"text": "Still me"}))
            .await,
        403,
        "not_allowed"
    );
    api.act_ok(
        &a1.token,
        &v.conv,
        "messages",
        json!({"client_id": "x-1", "text": "Agent 1 here"}),
    )
    .await;
    widget
        .wait_for(WAIT, "agent 1's message", |e| {
            e["data"]["text"] == "Agent 1 here"
        })
        .await;

    // Agent 1 sends it to the billing team: it rings the billers only.
    api.act_ok(&a1.token, &v.conv, "transfer", json!({"team": "billing"}))
        .await;
    let ringing = b0.stream.event("livechat.ringing", Some(&v.conv)).await;
    assert_eq!(ringing["data"]["agents"], json!(BILLERS));
    assert_eq!(ringing["data"]["team"], "billing");
    widget
        .wait_for(WAIT, "the handoff message", |e| is_notice(e, "handoff"))
        .await;
    let d = status_of(&v.conv).await;
    assert_eq!(
        (d["status"].as_str(), d["team"].as_str()),
        (Some("new"), Some("billing")),
        "{d}"
    );
    assert_eq!(d["assignee"], Value::Null);
    assert_error!(
        api.act(&a0.token, &v.conv, "accept", json!({})).await,
        409,
        "not_available"
    );

    // Biller 0 accepts, then gives it back: it rings biller 1 only.
    api.act_ok(&b0.token, &v.conv, "accept", json!({})).await;
    api.act_ok(&b0.token, &v.conv, "unassign", json!({})).await;
    let ringing = b1
        .stream
        .wait_for(WAIT, "ringing without biller 0", |e| {
            e["type"] == "livechat.ringing"
                && e["conversation_id"] == v.conv.as_str()
                && e["data"]["agents"] == json!([BILLERS[1]])
        })
        .await;
    assert_eq!(ringing["data"]["team"], "billing");
    let d = status_of(&v.conv).await;
    assert_eq!(
        (d["status"].as_str(), d["assignee"].clone()),
        (Some("new"), Value::Null)
    );
    b0.stream
        .event("conversation.assigned", Some(&v.conv))
        .await;

    // A second request: agent 0 mutes it; it keeps ringing for agent 1 only.
    let w = api.session("support").await;
    api.request_live_chat(&w.token).await;
    let ringing = a1.stream.event("livechat.ringing", Some(&w.conv)).await;
    assert_eq!(
        ringing["data"]["agents"],
        json!([agent_email(0), agent_email(1)])
    );
    let (status, body) = api.act(&a0.token, &w.conv, "mute", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let ringing = a1
        .stream
        .wait_for(WAIT, "ringing without agent 0", |e| {
            e["type"] == "livechat.ringing" && e["conversation_id"] == w.conv.as_str()
        })
        .await;
    assert_eq!(ringing["data"]["agents"], json!([agent_email(1)]));
    let d = status_of(&w.conv).await;
    assert_eq!(d["status"], "new");
    assert_eq!(d["muted"], json!([agent_email(0)]));
    assert_eq!(d["ringing"], json!([agent_email(1)]));
    // Muted is not refused: it waits for them under "awaiting", and they may still take it.
    let (_, awaiting) = api
        .get("/api/v1/conversations?status=new", Some(&a0.token))
        .await;
    assert!(ids(&awaiting).contains(&w.conv), "{awaiting}");
    api.act_ok(&a1.token, &w.conv, "accept", json!({})).await;
    // Resolved, then reopened while agent 1 is away: it waits again, and this time it
    // rings agent 0, the only one available (their mute was for the earlier wait).
    api.act_ok(&a1.token, &w.conv, "resolve", json!({})).await;
    api.set_accepting(&a1.token, false).await;
    api.post_ok(
        "/api/v1/visitor/messages",
        Some(&w.token),
        json!({"text": "It broke again"}),
    )
    .await;
    let d = status_of(&w.conv).await;
    assert_eq!(d["status"], "new", "{d}");
    assert_eq!(d["ringing"], json!([agent_email(0)]), "{d}");
    api.act_ok(&a0.token, &w.conv, "accept", json!({})).await;
    api.set_accepting(&a1.token, true).await;

    // Biller 1 takes the first one and resolves it; the visitor writes again: it reopens,
    // back to biller 1, who is still available.
    api.act_ok(&b1.token, &v.conv, "accept", json!({})).await;
    api.act_ok(&b1.token, &v.conv, "resolve", json!({"note": "sorted"}))
        .await;
    widget.event("conversation.resolved", Some(&v.conv)).await;
    assert_eq!(status_of(&v.conv).await["status"], "resolved");
    visitor_says("t-2", "Sorry, one more thing").await;
    let reopened = widget.event("conversation.reopened", Some(&v.conv)).await;
    assert!(reopened["data"].get("assignee").is_none(), "{reopened}");
    b1.stream
        .wait_for(WAIT, "the message that reopened it", |e| {
            e["data"]["text"] == "Sorry, one more thing"
        })
        .await;
    let reopened = b1
        .stream
        .event("conversation.reopened", Some(&v.conv))
        .await;
    assert_eq!(reopened["data"]["assignee"], BILLERS[1]);
    let d = status_of(&v.conv).await;
    assert_eq!(
        (d["status"].as_str(), d["assignee"].as_str()),
        (Some("assigned"), Some(BILLERS[1])),
        "{d}"
    );
    assert_eq!(d["resolve_note"], Value::Null);
    assert_eq!(d["resolved_at"], Value::Null);
    api.act_ok(&b1.token, &v.conv, "messages", json!({"text": "Of course"}))
        .await;
    widget
        .wait_for(WAIT, "the reply after reopening", |e| {
            e["data"]["text"] == "Of course"
        })
        .await;
}

/// `assignment = "auto"`: the request is offered to one agent at a time, the least loaded
/// first, and passes to the next when the offer times out; only the offered agent may take
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_assignment_offers_one_agent_at_a_time_then_the_next() {
    let server = Bundle::live(2)
        .live_chat(|d| {
            d.accept_timeout("30s")
                .set("assignment", "\"auto\"")
                .set("offer_timeout", "\"1s\"")
        })
        .serve(&[&agent_email(0), &agent_email(1)]);
    let api = Api::new(&server.url);
    let mut first = api.go_online(&agent_email(0)).await;
    let second = api.go_online(&agent_email(1)).await;
    let v = api.session("support").await;
    api.request_live_chat(&v.token).await;

    // Both have no chats: the tie goes by email, so agent 0 is offered it first.
    let offer = first.stream.event("livechat.ringing", Some(&v.conv)).await;
    assert_eq!(
        offer["data"]["offered_to"],
        agent_email(0).as_str(),
        "{offer}"
    );
    let (status, body) = api.act(&second.token, &v.conv, "accept", json!({})).await;
    assert_error!(
        (status, body),
        409,
        "not_available",
        "only the offered agent may take it"
    );

    // Agent 0 lets the offer run out: it passes to agent 1, who takes it.
    let passed = first
        .stream
        .wait_for(WAIT, "the offer to pass on", |e| {
            e["type"] == "livechat.ringing" && e["data"]["offered_to"] == agent_email(1).as_str()
        })
        .await;
    assert_eq!(passed["conversation_id"], v.conv.as_str());
    api.act_ok(&second.token, &v.conv, "accept", json!({}))
        .await;
    let details = api.details(&second.token, &v.conv).await;
    assert_eq!(details["assignee"], agent_email(1).as_str());
}
