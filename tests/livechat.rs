//! The Live Chat lifecycle end to end: the real server, real HTTP, real WebSockets.

#[macro_use]
mod common;

use std::time::Duration;

use common::live::{Api, Console};
use common::{Bundle, TestServer};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn start(agents: usize, accept_timeout: &str, idle_timeout: &str) -> TestServer {
    let mut emails: Vec<String> = (0..agents)
        .map(|i| format!("agent{i}@acme.example"))
        .collect();
    emails.push("boss@acme.example".into());
    let emails: Vec<&str> = emails.iter().map(String::as_str).collect();
    Bundle::live(agents)
        .live_chat(|d| d.accept_timeout(accept_timeout).idle_timeout(idle_timeout))
        .serve(&emails)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_to_agent_and_back_then_resolved_and_closed() {
    let server = start(1, "90s", "10m");
    let api = Api::new(&server.url);
    let agent = api.login("agent0@acme.example").await;
    let mut console = api.agent_stream(&agent, 0).await;
    // Online once the socket is subscribed: then it hears the availability change.
    api.wait_agent(&agent, "agent0@acme.example", |a| a["online"] == true)
        .await;
    let (status, _) = api
        .call(
            "PUT",
            "/api/v1/me/availability",
            Some(&agent),
            Some(r#"{"accepting": true}"#),
        )
        .await;
    assert_eq!(status, 200);
    console
        .wait_for(WAIT, "presence", |v| {
            v["type"] == "agent.presence" && v["data"]["accepting"] == true
        })
        .await;

    // The visitor arrives: the bot greets them with choices.
    let session = api.visitor("support").await;
    let token = session["token"].as_str().unwrap().to_string();
    let conv = session["conversation_id"].as_str().unwrap().to_string();
    assert_eq!(session["widget"]["title"], "Chat with us");
    let first = &session["events"];
    assert!(
        first
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "message.created"
                && e["data"]["text"] == "Hi! What can we do for you?"),
        "{first}"
    );
    let mut widget = api.visitor_stream(&token, 0).await;
    widget.event("flow.step", Some(&conv)).await;

    // They pick "Talk to a person" and ask for live chat: the agent's console rings.
    api.post_ok(
        "/api/v1/visitor/actions",
        Some(&token),
        json!({"type": "choice", "index": 0}),
    )
    .await;
    let (status, body) = api
        .post(
            "/api/v1/visitor/actions",
            Some(&token),
            json!({"type": "request_live_chat"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ringing = console.event("livechat.ringing", Some(&conv)).await;
    assert!(
        ringing["data"].to_string().contains("agent0@acme.example"),
        "{ringing}"
    );
    widget
        .wait_for(WAIT, "the handoff message", |v| {
            v["data"]["text"] == "Connecting you to our team…"
        })
        .await;
    let (_, list) = api
        .get("/api/v1/conversations?status=new", Some(&agent))
        .await;
    assert_eq!(list["conversations"][0]["id"], conv.as_str(), "{list}");
    assert_eq!(list["conversations"][0]["bot_name"], "Acme Support");
    assert!(list["last_seq"].as_i64().unwrap() >= ringing["seq"].as_i64().unwrap());
    let (_, me) = api.get("/api/v1/me", Some(&agent)).await;
    assert_eq!(me["agent"]["email"], "agent0@acme.example");
    assert!(
        me["csrf_token"].as_str().is_some_and(|t| t.len() >= 32),
        "{me}"
    );

    // The agent accepts: the visitor is told who joined.
    api.post_ok(
        &format!("/api/v1/conversations/{conv}/accept"),
        Some(&agent),
        json!({}),
    )
    .await;
    widget
        .wait_for(WAIT, "the assigned message", |v| {
            v["data"]["text"] == "Agent 0 has joined the chat."
        })
        .await;

    // Messages both ways, each delivered over the other side's socket.
    let sent = api
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&token),
            json!({"client_id": "v-1", "text": "My invoice is wrong"}),
        )
        .await;
    let got = console
        .wait_for(WAIT, "the visitor's message", |v| {
            v["data"]["text"] == "My invoice is wrong"
        })
        .await;
    assert_eq!(got["data"]["message_id"], sent["message_id"]);
    assert_eq!(got["seq"], sent["seq"]);
    api.post_ok(
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(&agent),
        json!({"client_id": "a-1", "text": "Let me check that for you."}),
    )
    .await;
    let reply = widget
        .wait_for(WAIT, "the agent's reply", |v| {
            v["data"]["text"] == "Let me check that for you."
        })
        .await;
    assert_eq!(reply["data"]["name"], "Agent 0");
    assert!(
        reply["data"].get("agent").is_none(),
        "visitors never see agent emails: {reply}"
    );

    // A note stays internal.
    api.post_ok(
        &format!("/api/v1/conversations/{conv}/notes"),
        Some(&agent),
        json!({"text": "VIP customer"}),
    )
    .await;
    console.event("note.created", Some(&conv)).await;
    // The list shows the newest message of each chat, never a note.
    let (_, mine) = api
        .get("/api/v1/conversations?assignee=me", Some(&agent))
        .await;
    assert_eq!(mine["conversations"][0]["id"], conv.as_str(), "{mine}");
    assert_eq!(
        mine["conversations"][0]["last_message"], "Let me check that for you.",
        "{mine}"
    );

    // Resolve with a note, then close; the visitor sees both, never the note.
    api.post_ok(
        &format!("/api/v1/conversations/{conv}/resolve"),
        Some(&agent),
        json!({"note": "refund issued"}),
    )
    .await;
    let resolved = widget.event("conversation.resolved", Some(&conv)).await;
    assert!(resolved["data"].get("note").is_none(), "{resolved}");

    // The visitor rates the chat, once; the agent's console hears it.
    let rate =
        |rating: &str| json!({"type": "rate", "rating": rating, "comment": "Quick and kind"});
    api.post_ok("/api/v1/visitor/actions", Some(&token), rate("good"))
        .await;
    let rated = console.event("conversation.rated", Some(&conv)).await;
    assert_eq!(
        rated["data"],
        json!({"rating": "good", "comment": "Quick and kind", "agent": "agent0@acme.example"})
    );
    assert_error!(
        api.post("/api/v1/visitor/actions", Some(&token), rate("bad"))
            .await,
        409,
        "invalid_state"
    );
    let (status, body) = api
        .post("/api/v1/visitor/actions", Some(&token), rate("meh"))
        .await;
    assert_eq!(status, 400, "{body}");
    api.post_ok(
        &format!("/api/v1/conversations/{conv}/close"),
        Some(&agent),
        json!({}),
    )
    .await;
    widget.event("conversation.closed", Some(&conv)).await;
    assert!(
        !widget.seen.iter().any(|v| v["type"] == "note.created"
            || v.to_string().contains("VIP customer")
            || v.to_string().contains("agent0@acme.example")),
        "the visitor saw something internal"
    );

    // The details hold it all, in order; the transcript too (without the note).
    let (status, details) = api
        .get(&format!("/api/v1/conversations/{conv}"), Some(&agent))
        .await;
    assert_eq!(status, 200);
    assert_eq!(details["status"], "closed");
    assert_eq!(
        details["rating"],
        json!({"rating": "good", "comment": "Quick and kind"})
    );
    assert_eq!(details["resolve_note"], "refund issued");
    assert_eq!(details["notes"][0]["text"], "VIP customer");
    let texts: Vec<&str> = details["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    let pos = |t: &str| {
        texts
            .iter()
            .position(|x| *x == t)
            .unwrap_or_else(|| panic!("{t} in {texts:?}"))
    };
    assert!(pos("My invoice is wrong") < pos("Let me check that for you."));
    let reply = api
        .request(
            "GET",
            &format!("/api/v1/conversations/{conv}/transcript.csv"),
        )
        .bearer(&agent)
        .send()
        .await;
    assert_eq!(reply.status, 200);
    let csv = reply.text;
    assert!(
        csv.starts_with("time,author,agent,text,attachments\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains("My invoice is wrong") && !csv.contains("VIP customer"),
        "{csv}"
    );

    // The dashboard counts it: one request, accepted, resolved, with its durations.
    let stats = api.get_ok("/api/v1/stats", Some(&agent)).await;
    let total = &stats["total"];
    assert_eq!(total["conversations"], 1, "{stats}");
    assert_eq!(total["live_chat_requests"], 1);
    assert_eq!(total["accepted"], 1);
    assert_eq!(total["resolved"], 1);
    assert_eq!(total["time_to_accept_secs"]["count"], 1);
    assert!(total["messages"]["visitor"].as_u64().unwrap() >= 1);
    assert_eq!(stats["agents"][0]["agent"], "agent0@acme.example");
    assert_eq!(total["ratings"], json!({"good": 1, "bad": 0}), "{stats}");
    assert_eq!(
        stats["agents"][0]["ratings"],
        json!({"good": 1, "bad": 0}),
        "{stats}"
    );
    let (status, _) = api.get("/api/v1/stats?from=tomorrow", Some(&agent)).await;
    assert_eq!(status, 400);

    // Every stream saw strictly increasing sequence numbers.
    for stream in [&console.seen, &widget.seen] {
        let seqs: Vec<i64> = stream.iter().filter_map(|v| v["seq"].as_i64()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_get_the_canned_responses_of_their_bots() {
    let server = Bundle::live(1)
        .file(
            "responses.toml",
            "[[response]]\nshortcut = \"hello\"\ntext = \"Hello! How can I help?\"\n\n\
             [[response]]\nshortcut = \"refund\"\ntext = \"Refunds take 5 days.\"\nbots = [\"support\"]\n",
        )
        .serve(&["agent0@acme.example"]);
    let api = Api::new(&server.url);
    let agent = api.login("agent0@acme.example").await;
    let body = api.get_ok("/api/v1/responses", Some(&agent)).await;
    let shortcuts: Vec<&str> = body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["shortcut"].as_str().unwrap())
        .collect();
    assert_eq!(shortcuts, ["hello", "refund"]);
    let (status, _) = api.get("/api/v1/responses", None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_visitors_see_their_place_in_the_queue() {
    let server = start(1, "90s", "10m");
    let api = Api::new(&server.url);
    let Console {
        token: agent,
        stream: mut console,
        ..
    } = api.go_online("agent0@acme.example").await;
    console
        .wait_for(WAIT, "presence", |v| {
            v["type"] == "agent.presence" && v["data"]["accepting"] == true
        })
        .await;
    let mut visitors = Vec::new();
    for _ in 0..2 {
        let session = api.visitor("support").await;
        let token = session["token"].as_str().unwrap().to_string();
        let conv = session["conversation_id"].as_str().unwrap().to_string();
        let stream = api.visitor_stream(&token, 0).await;
        api.post(
            "/api/v1/visitor/actions",
            Some(&token),
            json!({"type": "request_live_chat"}),
        )
        .await;
        console.event("livechat.ringing", Some(&conv)).await;
        visitors.push((token, conv, stream));
    }
    let (_, first) = api.get("/api/v1/visitor/queue", Some(&visitors[0].0)).await;
    let (_, second) = api.get("/api/v1/visitor/queue", Some(&visitors[1].0)).await;
    assert_eq!(
        (first["position"].as_i64(), second["position"].as_i64()),
        (Some(1), Some(2))
    );
    visitors[1]
        .2
        .wait_for(WAIT, "position 2", |v| {
            v["type"] == "queue.position" && v["data"]["position"] == 2
        })
        .await;
    // The first is taken: the second moves up, and hears it.
    let conv0 = visitors[0].1.clone();
    api.post_ok(
        &format!("/api/v1/conversations/{conv0}/accept"),
        Some(&agent),
        json!({}),
    )
    .await;
    visitors[1]
        .2
        .wait_for(WAIT, "position 1", |v| {
            v["type"] == "queue.position" && v["data"]["position"] == 1
        })
        .await;
    let (_, first) = api.get("/api/v1/visitor/queue", Some(&visitors[0].0)).await;
    assert_eq!(first["position"], 0, "a chat in progress waits for nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_language_list_picks_the_bot_language() {
    let bilingual = r#"name = "Bilingual"
languages = ["en", "de"]

[[step]]
id = "start"
say = { en = "Hello!", de = "Hallo!" }
"#;
    let server = Bundle::live(0).bot("bilingual", bilingual).serve(&[]);
    let api = Api::new(&server.url);
    let start = |accept: &str| {
        let req = api
            .request("POST", "/api/v1/visitor/sessions")
            .header("accept-language", accept)
            .json(json!({"bot": "bilingual"}));
        async move {
            let reply = req.send().await;
            assert_eq!(reply.status, 201);
            reply.body
        }
    };
    // French first, which the bot does not speak: German, the next the browser accepts.
    let session = start("fr-FR,fr;q=0.9,de;q=0.8,en;q=0.7").await;
    assert_eq!(session["widget"]["language"], "de", "{session}");
    assert!(
        session["events"].to_string().contains("Hallo!"),
        "{session}"
    );
    // q=0 refuses a language.
    let session = start("de;q=0,en-GB").await;
    assert_eq!(session["widget"]["language"], "en", "{session}");
    assert!(
        session["events"].to_string().contains("Hello!"),
        "{session}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_export_as_csv_for_a_period_and_the_callers_bots() {
    // A second bot that agent0's team does not serve.
    let other = "name = \"Other\"\n[[step]]\nid = \"start\"\nsay = \"Hi\"\n";
    let server = Bundle::live(1)
        .bot("other", other)
        .serve(&["agent0@acme.example", "boss@acme.example"]);
    let api = Api::new(&server.url);
    let agent = api.login("agent0@acme.example").await;
    let boss = api.login("boss@acme.example").await;
    // A visitor of the support bot writes once; another talks to the other bot.
    let session = api.visitor("support").await;
    let token = session["token"].as_str().unwrap().to_string();
    let conv = session["conversation_id"].as_str().unwrap().to_string();
    let (status, _) = api
        .post(
            "/api/v1/visitor/messages",
            Some(&token),
            json!({"client_id": "x-1", "text": "hello"}),
        )
        .await;
    assert_eq!(status, 200);
    let other = api.visitor("other").await;
    let other = other["conversation_id"].as_str().unwrap().to_string();

    let csv = |token: String, query: &str| {
        let req = api
            .request("GET", &format!("/api/v1/conversations.csv{query}"))
            .bearer(&token);
        async move {
            let reply = req.send().await;
            let disposition = reply.header("content-disposition").map(str::to_string);
            (reply.status, disposition, reply.text)
        }
    };
    // The agent sees the conversations of the bots their teams serve, in the default week.
    let (status, disposition, body) = csv(agent.clone(), "").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        disposition.is_some_and(|d| d.starts_with("attachment; filename=\"conversations-")),
        "{body}"
    );
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one conversation: {body}");
    assert!(lines[0].starts_with("id,bot,status,opened_at,requested_at,"));
    assert!(
        lines[1].starts_with(&format!("{conv},support,bot,")),
        "{body}"
    );
    assert!(
        lines[1].ends_with(",1,0,0,,,,0,0,"),
        "one visitor message, no note, no file, no rating, no video call, no contact field: {body}"
    );
    assert!(!body.contains(&other));
    // An admin sees every bot's; `bot` narrows.
    let (_, _, all) = csv(boss.clone(), "").await;
    assert_eq!(all.lines().count(), 3, "{all}");
    let (_, _, narrowed) = csv(boss, "?bot=other").await;
    assert_eq!(narrowed.lines().count(), 2, "{narrowed}");
    assert!(narrowed.contains(&other), "{narrowed}");
    // A period with nothing in it, a bot that is not the agent's, a period backwards.
    let (status, _, empty) = csv(agent.clone(), "?from=2020-01-01&to=2020-02-01").await;
    assert_eq!((status, empty.lines().count()), (200, 1), "{empty}");
    let (status, _, body) = csv(agent.clone(), "?bot=other").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown_bot"), "{body}");
    let (status, _, body) = csv(agent, "?from=2026-02-01&to=2026-01-01").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_query"), "{body}");
}
