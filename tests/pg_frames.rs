//! Ephemeral frames across replicas (#17): two `livechat serve` processes on one real
//! PostgreSQL (the harness of `tests/common/postgres.rs`), each talked to at its own URL. A
//! visitor's socket on one replica and the console of the agent who has their chat on the
//! other: typing and a video call's signalling cross both ways, a signal too large for a
//! notification included, and an agent's read mark reaches their console on the other
//! replica only; an agent of another bot hears none of it; and a socket on the replica
//! that made a frame gets it once, not again when it comes back from the database.

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use common::bundle::bot;
use common::live::{Api, Console, Stream, agent_email, set_password_with};
use common::postgres::{self, Postgres};
use common::{Bundle, TestServer};
use livechat::store::postgres::PgStore;
use livechat::store::postgres::frames;

/// Within this a frame made on one replica reaches a socket on the other.
const CROSSES: Duration = Duration::from_secs(5);

/// How long a socket is watched for a frame that must not come (a second copy, a frame of
/// another bot's conversation). A copy through the database comes within milliseconds.
const QUIET: Duration = Duration::from_millis(1500);

/// The agent of the other bot: team `shop` serves bot `sales` only.
const SAM: &str = "sam@acme.example";

/// The bundle's admin.
const BOSS: &str = "boss@acme.example";

/// Bot `support` (team `desk`: agents 0 and 1) with video calls, and bot `sales` (team
/// `shop`: Sam).
fn bundle() -> Bundle {
    Bundle::live(2)
        .live_chat(|d| d.set("modes", r#"["text", "video"]"#))
        .bot("sales", bot("Sales", "Hello from sales"))
        .team("shop", &["sales"])
        .agent("Sam", SAM, "shop")
}

/// Two replicas of [`bundle`] on a new database of `pg`; every agent's password set through
/// the command line, on that database.
async fn replicas(pg: &Postgres, name: &str) -> (TestServer, TestServer) {
    pg.database(name);
    let url = pg.uri(name);
    let (a, b) = tokio::task::spawn_blocking(move || {
        let env = [
            ("LIVECHAT_DATABASE_URL", url.as_str()),
            ("LIVECHAT_SESSIONS_PER_ADDRESS", "1000"),
        ];
        let bundle = bundle();
        (bundle.serve_with(&[], &env), bundle.serve_with(&[], &env))
    })
    .await
    .unwrap();
    let env = vec![("LIVECHAT_DATABASE_URL".to_string(), pg.uri(name))];
    for email in [
        agent_email(0),
        agent_email(1),
        SAM.to_string(),
        BOSS.to_string(),
    ] {
        set_password_with(&a.bots_dir, &a.data_dir, &email, &env);
    }
    (a, b)
}

/// A client frame on `stream`'s socket.
async fn send(stream: &mut Stream, frame: Value) {
    stream
        .ws
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The frames of type `kind` among `frames`.
fn of(kind: &str, frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["type"] == kind)
        .cloned()
        .collect()
}

/// Waits for the frame of type `kind` in `conv` that `pred` accepts on `stream`, then
/// watches it for [`QUIET`]: no second frame of that type may come. Answers the frame.
async fn once(
    stream: &mut Stream,
    what: &str,
    kind: &str,
    conv: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let got = stream
        .wait_for(CROSSES, what, |f| {
            f["type"] == kind && f["conversation_id"] == conv && pred(f)
        })
        .await;
    let more = of(kind, &stream.quiet(QUIET).await);
    assert!(more.is_empty(), "{what} came again: {more:?}");
    got
}

/// The other agent's console (`sam`): nothing of bot `support` came, nor any signal.
async fn hears_nothing(sam: &mut Console, what: &str) {
    // What is waiting on the socket is read at once.
    sam.stream.quiet(Duration::from_millis(300)).await;
    let wrong: Vec<&Value> = sam
        .stream
        .seen
        .iter()
        .filter(|f| f["type"] == "typing" || f["type"] == "signal")
        .collect();
    assert!(wrong.is_empty(), "{what}: Sam heard {wrong:?}");
}

/// A signal's SDP of `bytes` bytes or a little more, lines as a browser writes them.
fn sdp(bytes: usize) -> String {
    let mut text = String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n");
    let mut n = 0;
    while text.len() < bytes {
        text.push_str(&format!(
            "a=candidate:{n} 1 udp 2122260223 192.168.1.{} 5{n:04} typ host generation 0\r\n",
            n % 250
        ));
        n += 1;
    }
    text
}

/// One visitor's call across the replicas. The visitor's socket is on `here`, where
/// `onlooker` (another agent of the bot) has their console too; `agent`, on `there`,
/// accepts the video request and has the call. Typing and signalling cross both ways, a
/// signal of ~15 KB (over the 7,900 bytes a notification carries) among them; every frame
/// reaches each socket allowed to see it once. Answers the visitor's conversation.
async fn a_call_across(
    here: &TestServer,
    there: &TestServer,
    agent: &mut Console,
    onlooker: &mut Console,
    sam: &mut Console,
) -> String {
    let (api_here, api_there) = (Api::new(&here.url), Api::new(&there.url));
    let visitor = api_here.session("support").await;
    let mut widget = api_here.visitor_stream(&visitor.token, 0).await;
    let conv = visitor.conv.as_str();
    let (status, reply) = api_here
        .post(
            "/api/v1/visitor/actions",
            Some(&visitor.token),
            json!({"type": "request_video"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    agent.stream.event("livechat.ringing", Some(conv)).await;
    api_there
        .act_ok(&agent.token, conv, "accept", json!({}))
        .await;
    widget.event("video.started", Some(conv)).await;
    agent.stream.event("video.started", Some(conv)).await;

    // The visitor types here: the agent there hears it, and the onlooker, here, once.
    send(&mut widget, json!({"type": "typing"})).await;
    let from_visitor = |f: &Value| f["data"]["from"] == "visitor";
    once(
        &mut agent.stream,
        "the visitor's typing",
        "typing",
        conv,
        from_visitor,
    )
    .await;
    once(
        &mut onlooker.stream,
        "the visitor's typing (same replica)",
        "typing",
        conv,
        from_visitor,
    )
    .await;

    // The agent types there: the visitor here hears it once, with the agent's name; the
    // agent's own console, on the replica that made it, once too.
    send(
        &mut agent.stream,
        json!({"type": "typing", "conversation_id": conv}),
    )
    .await;
    let from_agent = |f: &Value| f["data"]["from"] == "agent";
    let typing = once(
        &mut widget,
        "the agent's typing",
        "typing",
        conv,
        from_agent,
    )
    .await;
    assert!(typing["data"]["name"].is_string(), "{typing}");
    once(
        &mut agent.stream,
        "the agent's own typing (same replica)",
        "typing",
        conv,
        from_agent,
    )
    .await;
    once(
        &mut onlooker.stream,
        "the agent's typing (other replica)",
        "typing",
        conv,
        from_agent,
    )
    .await;

    // The call's signalling: an offer from the agent there, an answer and a candidate from
    // the visitor here. Each reaches the other side only, once.
    send(
        &mut agent.stream,
        json!({"type": "signal", "conversation_id": conv, "data": {"sdp": "offer-1"}}),
    )
    .await;
    let offer = once(&mut widget, "the agent's offer", "signal", conv, |_| true).await;
    assert_eq!(
        offer["data"],
        json!({"from": "agent", "signal": {"sdp": "offer-1"}})
    );
    send(
        &mut widget,
        json!({"type": "signal", "data": {"sdp": "answer-1"}}),
    )
    .await;
    let answer = once(
        &mut agent.stream,
        "the visitor's answer",
        "signal",
        conv,
        |_| true,
    )
    .await;
    assert_eq!(
        answer["data"],
        json!({"from": "visitor", "signal": {"sdp": "answer-1"}})
    );
    send(
        &mut widget,
        json!({"type": "signal", "data": {"candidate": "c-1"}}),
    )
    .await;
    let candidate = once(
        &mut agent.stream,
        "the visitor's candidate",
        "signal",
        conv,
        |_| true,
    )
    .await;
    assert_eq!(candidate["data"]["signal"], json!({"candidate": "c-1"}));

    // An offer too large for a notification (the socket takes 16 KiB at most).
    let big = sdp(15_000);
    send(
        &mut agent.stream,
        json!({"type": "signal", "conversation_id": conv, "data": {"sdp": big}}),
    )
    .await;
    let got = once(
        &mut widget,
        "the agent's large offer",
        "signal",
        conv,
        |f| {
            f["data"]["signal"]["sdp"]
                .as_str()
                .is_some_and(|s| s.len() > 1000)
        },
    )
    .await;
    assert_eq!(got["data"]["signal"]["sdp"].as_str(), Some(big.as_str()));
    let big = sdp(14_500);
    send(&mut widget, json!({"type": "signal", "data": {"sdp": big}})).await;
    let got = once(
        &mut agent.stream,
        "the visitor's large answer",
        "signal",
        conv,
        |f| {
            f["data"]["signal"]["sdp"]
                .as_str()
                .is_some_and(|s| s.len() > 1000)
        },
    )
    .await;
    assert_eq!(got["data"]["signal"]["sdp"].as_str(), Some(big.as_str()));
    println!(
        "signals of {} and {} bytes of SDP crossed the replicas",
        sdp(15_000).len(),
        big.len()
    );

    // The onlooker has no part in this call: none of its signals reached them.
    let seen: Vec<Value> = of("signal", &onlooker.stream.seen)
        .into_iter()
        .filter(|f| f["conversation_id"] == conv)
        .collect();
    assert!(seen.is_empty(), "the onlooker got signals: {seen:?}");
    hears_nothing(sam, "a call of bot support").await;
    visitor.conv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typing_and_call_signalling_cross_replicas_once_and_in_scope() {
    let pg = Postgres::start();
    let (a, b) = replicas(&pg, "frames").await;
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    let mut ana = api_b.go_online(&agent_email(0)).await; // on B
    let mut ben = api_a.go_online(&agent_email(1)).await; // on A
    let mut sam = api_b.go_online(SAM).await; // on B, another bot
    // Each replica sees the other's agent online before a request rings them.
    let ready = |v: &Value| v["online"] == true && v["accepting"] == true;
    api_a.wait_agent(&ben.token, &agent_email(0), ready).await;
    api_b.wait_agent(&ana.token, &agent_email(1), ready).await;

    // A visitor on A, Ana's console on B; Ben watches on A.
    let first = a_call_across(&a, &b, &mut ana, &mut ben, &mut sam).await;
    // The reverse: a visitor on B, Ben's console on A; Ana watches on B.
    a_call_across(&b, &a, &mut ben, &mut ana, &mut sam).await;

    // Ana marks her chat read through replica A (as another tab of hers would): her
    // console on B hears it, once; Ben, who may see the chat too, does not.
    let (status, mark) = api_a
        .post(
            &format!("/api/v1/conversations/{first}/read"),
            Some(&ana.token),
            json!({"seq": 1_000_000}),
        )
        .await;
    assert_eq!(status, 200, "{mark}");
    let read = once(
        &mut ana.stream,
        "Ana's read mark",
        "conversation.read",
        &first,
        |_| true,
    )
    .await;
    assert_eq!(read["data"]["seq"], mark["seq"], "{read}");
    assert_eq!(read["data"]["agent"], agent_email(0), "{read}");
    let marks = of("conversation.read", &ben.stream.quiet(QUIET).await);
    assert!(marks.is_empty(), "Ben got Ana's read mark: {marks:?}");
    let marks = of(
        "conversation.read",
        &sam.stream.quiet(Duration::from_millis(300)).await,
    );
    assert!(marks.is_empty(), "Sam got Ana's read mark: {marks:?}");

    // A waiting visitor's place in the queue is made by the replica whose command moved the
    // queue (A, where they ask for a person, #17 publishes it after the request's events)
    // and reaches each of their sockets once: the tab on A at once, and not again when the
    // relay's notification comes back to A; the tab on B through the relay.
    let visitor = api_a.session("support").await;
    let mut tab_a = api_a.visitor_stream(&visitor.token, 0).await;
    let mut tab_b = api_b.visitor_stream(&visitor.token, 0).await;
    let (status, reply) = api_a
        .post(
            "/api/v1/visitor/actions",
            Some(&visitor.token),
            json!({"type": "request_live_chat"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    for (tab, what) in [(&mut tab_a, "on A"), (&mut tab_b, "on B")] {
        let what = format!("the visitor's place in the queue, {what}");
        let place = once(tab, &what, "queue.position", &visitor.conv, |_| true).await;
        assert_eq!(place["data"]["position"], 1, "{what}: {place}");
    }

    // Ana switches "Take video calls" off through A: B, which holds her console, lists her
    // so and tells her console; on again, both say so again.
    for video in [false, true] {
        let (status, body) = api_a
            .call(
                "PUT",
                "/api/v1/me/availability",
                Some(&ana.token),
                Some(&json!({ "video": video }).to_string()),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        ana.stream
            .wait_for(CROSSES, "Ana's video toggle on B", |f| {
                f["type"] == "agent.presence"
                    && f["data"]["agent"] == agent_email(0)
                    && f["data"]["video"] == video
            })
            .await;
        for api in [&api_a, &api_b] {
            api.wait_agent(&ben.token, &agent_email(0), |v| v["video"] == video)
                .await;
        }
    }

    // The large signals went through the table; its rows are kept for a minute only.
    let client = postgres::connect(&pg.url("frames")).await;
    let stored: i64 = client
        .query_one("SELECT count(*) FROM ephemeral_frames", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 4, "two large signals each way");
    // The replicas' sweep deletes the rows older than a minute: two made so here.
    client
        .execute(
            "UPDATE ephemeral_frames SET at = at - interval '2 minutes'
             WHERE id IN (SELECT id FROM ephemeral_frames ORDER BY id LIMIT 2)",
            &[],
        )
        .await
        .unwrap();
    let store = PgStore::connect(&pg.url("frames"), 1).await.unwrap();
    let swept = frames::sweep(&store.pool().get().await.unwrap())
        .await
        .unwrap();
    assert_eq!(swept, 2);
    for server in [&a, &b] {
        let metrics = Api::new(&server.url)
            .request("GET", "/metrics")
            .send()
            .await;
        assert_eq!(metrics.status, 200);
        assert!(
            metrics
                .text
                .contains("livechat_ephemeral_frames_dropped_total 0"),
            "{}",
            metrics.text
        );
    }
}

/// The admin `boss` erases the visitor through `api`; answers the reply.
async fn erase(api: &Api, boss: &str, visitor_id: &str) -> Value {
    let (status, body) = api
        .call(
            "DELETE",
            &format!("/api/v1/visitors/{visitor_id}"),
            Some(boss),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A visitor message with `token` through `api` is refused: `401 invalid_token`.
async fn refused(api: &Api, token: &str, what: &str) {
    let (status, body) = api
        .post(
            "/api/v1/visitor/messages",
            Some(token),
            json!({ "text": "still there?" }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token")),
        "{what}: {body}"
    );
}

/// An admin's erase through replica A reaches what replica B holds of the visitor, who
/// chatted through B only: B ends their socket and refuses their token from then on (a
/// replica keeps tokens it looked up), has dropped their chat (Ana's load there, the
/// conversation), Ana's console on B is told, and nothing of the visitor is written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erase_through_one_replica_leaves_nothing_of_the_visitor_on_the_other() {
    let pg = Postgres::start();
    let (a, b) = replicas(&pg, "erase").await;
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    let mut ana = api_b.go_online(&agent_email(0)).await;
    let started = api_b.visitor("support").await;
    let token = started["token"].as_str().unwrap().to_string();
    let conv = started["conversation_id"].as_str().unwrap().to_string();
    let visitor_id = started["visitor_id"].as_str().unwrap().to_string();
    let mut tab = api_b.visitor_stream(&token, 0).await;
    let say = |text: &str| json!({ "text": text });
    api_b
        .post_ok(
            "/api/v1/visitor/messages",
            Some(&token),
            say("my order 8812"),
        )
        .await;
    api_b.request_live_chat(&token).await;
    api_b.act_ok(&ana.token, &conv, "accept", json!({})).await;
    api_b
        .post_ok("/api/v1/visitor/messages", Some(&token), say("thanks"))
        .await;
    api_b
        .wait_agent(&ana.token, &agent_email(0), |v| v["active_chats"] == 1)
        .await;

    let boss = api_a.login(BOSS).await;
    let body = erase(&api_a, &boss, &visitor_id).await;
    assert_eq!(body["erased"]["conversations"], 1, "{body}");

    let told = tab
        .wait_for(CROSSES, "the erase, on the visitor's socket on B", |f| {
            f["type"] == "error"
        })
        .await;
    assert_eq!(told["error"]["code"], "visitor_erased", "{told}");
    ana.stream
        .wait_for(CROSSES, "conversation.erased on Ana's console on B", |f| {
            f["type"] == "conversation.erased" && f["conversation_id"] == conv
        })
        .await;
    // B looked the token up before the erase; it is refused there now, as on A.
    for (api, at) in [(&api_b, "B"), (&api_a, "A")] {
        refused(api, &token, &format!("a message through {at}")).await;
        let (status, body) = api
            .get("/api/v1/visitor/history?after=0", Some(&token))
            .await;
        assert_eq!(status, 401, "the history through {at}: {body}");
        let (status, body) = api
            .get(&format!("/api/v1/conversations/{conv}"), Some(&ana.token))
            .await;
        assert_eq!(status, 404, "the conversation through {at}: {body}");
    }
    // B no longer counts the chat as Ana's.
    api_b
        .wait_agent(&ana.token, &agent_email(0), |v| v["active_chats"] == 0)
        .await;

    // A notice lost: a second visitor chats through B, then the replicas' listening
    // sessions are ended and the visitor erased through A at once, before they listen again
    // (a second later). Listening again, B reads its copies again and looks tokens up
    // afresh: the token is refused there too.
    let second = api_b.visitor("support").await;
    let token = second["token"].as_str().unwrap().to_string();
    let visitor_id = second["visitor_id"].as_str().unwrap().to_string();
    api_b
        .post_ok("/api/v1/visitor/messages", Some(&token), say("hello again"))
        .await;
    let client = postgres::connect(&pg.url("erase")).await;
    assert_eq!(
        postgres::end_tailers(&client).await,
        2,
        "one listening session a replica"
    );
    erase(&api_a, &boss, &visitor_id).await;
    let again = "listening to the other servers again";
    assert!(
        b.logged(again, Duration::from_secs(10)).is_some(),
        "B never listened again"
    );
    refused(&api_b, &token, "a message through B after a lost notice").await;

    for table in ["conversations", "visitors"] {
        let left: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table} after the erase and the refused calls");
    }
}

/// A returning visitor's new conversation, started through replica A, is their current one
/// on replica B too, which had remembered the old one: a message through B goes to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_conversation_through_one_replica_is_the_visitors_on_the_other() {
    let pg = Postgres::start();
    let (a, b) = replicas(&pg, "again").await;
    let (api_a, api_b) = (Api::new(&a.url), Api::new(&b.url));
    let first = api_b.session("support").await;
    let say = |text: &str| json!({ "text": text });
    let reply = api_b
        .post_ok("/api/v1/visitor/messages", Some(&first.token), say("hello"))
        .await;
    assert_eq!(reply["conversation_id"], first.conv, "{reply}");
    api_b
        .post_ok(
            "/api/v1/visitor/actions",
            Some(&first.token),
            json!({"type": "end"}),
        )
        .await;
    let (status, again) = api_a
        .post(
            "/api/v1/visitor/sessions",
            None,
            json!({"bot": "support", "token": first.token}),
        )
        .await;
    assert_eq!((status, &again["resumed"]), (201, &json!(false)), "{again}");
    let second = again["conversation_id"].as_str().unwrap().to_string();
    assert_ne!(second, first.conv);
    // B hears of the start through its tailer, a moment after A answered.
    let deadline = tokio::time::Instant::now() + CROSSES;
    loop {
        let (status, reply) = api_b
            .post(
                "/api/v1/visitor/messages",
                Some(&first.token),
                say("me again"),
            )
            .await;
        if status == 200 && reply["conversation_id"] == second {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B still sends the visitor's messages elsewhere: {status} {reply}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
