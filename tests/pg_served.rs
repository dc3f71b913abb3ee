//! Replicas as operators run them (#17): two `livechat serve` processes on one real
//! PostgreSQL, a real nginx in front of both (`packaging/nginx.conf`'s upstream with two
//! servers), clients over HTTP and WebSocket. A replica dies by `kill -9`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::live::{Api, Console, agent_email, set_password_with};
use common::nginx::Nginx;
use common::postgres::{self, Postgres};
use common::smtp::{SmtpServer, header};
use common::{Bundle, TestServer};
use serde_json::{Value, json};

/// A replica of `bundle` on the database `url`, with limits for one test client making
/// many visitors, and `env` besides.
fn replica(bundle: &Bundle, url: &str, env: &[(String, String)]) -> TestServer {
    let mut all = vec![
        ("LIVECHAT_DATABASE_URL", url),
        ("LIVECHAT_SESSIONS_PER_ADDRESS", "100000"),
    ];
    all.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    bundle.serve_with(&[], &all)
}

/// Two replicas of `bundle` on a new database of `pg` and nginx in front of them; each agent
/// of the bundle gets the test password through the command line, on the same database.
async fn replicas(pg: &Postgres, name: &str, bundle: Bundle) -> (TestServer, TestServer, Nginx) {
    replicas_with(pg, name, bundle, Vec::new()).await
}

/// As [`replicas`], with `env` for both replicas.
async fn replicas_with(
    pg: &Postgres,
    name: &str,
    bundle: Bundle,
    env: Vec<(String, String)>,
) -> (TestServer, TestServer, Nginx) {
    pg.database(name);
    let url = pg.uri(name);
    let (a, b, nginx) = tokio::task::spawn_blocking(move || {
        let a = replica(&bundle, &url, &env);
        let b = replica(&bundle, &url, &env);
        let upstreams = [
            a.url.trim_start_matches("http://"),
            b.url.trim_start_matches("http://"),
        ];
        let nginx = Nginx::start(&upstreams);
        (a, b, nginx)
    })
    .await
    .unwrap();
    let env = vec![("LIVECHAT_DATABASE_URL".to_string(), pg.uri(name))];
    let roster = std::fs::read_to_string(a.bots_dir.join("agents.toml")).unwrap();
    for i in (0..4).filter(|i| roster.contains(&agent_email(*i))) {
        set_password_with(&a.bots_dir, &a.data_dir, &agent_email(i), &env);
    }
    (a, b, nginx)
}

/// Agent `i` online (a console socket) and accepting chats on `server`.
async fn console_on(server: &TestServer, i: usize) -> Console {
    Api::new(&server.url).go_online(&agent_email(i)).await
}

/// Until `api` (any replica) sees agent `i` as `pred` says.
async fn wait_agent(api: &Api, token: &str, i: usize, pred: impl Fn(&Value) -> bool) {
    api.wait_agent(token, &agent_email(i), pred).await
}

/// Until replica A sees agent 1 (whose console is on B) and B sees agent 0 (on A) online
/// and accepting.
async fn each_sees_the_other(a: &TestServer, ana: &Console, b: &TestServer, ben: &Console) {
    let ready = |v: &Value| v["online"] == true && v["accepting"] == true;
    wait_agent(&Api::new(&a.url), &ana.token, 1, ready).await;
    wait_agent(&Api::new(&b.url), &ben.token, 0, ready).await;
}

/// A visitor through nginx whose request rings the team; answers their conversation.
async fn waiting_request(front: &Api) -> String {
    let session = front.session("support").await;
    front.request_live_chat(&session.token).await;
    session.conv
}

/// 1,000 accept races split across the replicas: each request is made through nginx and
/// accepted at once by agent 0 through replica A and agent 1 through replica B. Exactly
/// one accept wins each (200), the other is answered `409 already_taken`, and the log
/// holds one `livechat.accepted` per conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_races_across_replicas_behind_nginx_have_one_winner_each() {
    const RACES: usize = 1000;
    const AT_ONCE: usize = 25;
    let pg = Postgres::start();
    let (a, b, nginx) = replicas(&pg, "races", Bundle::live(2).max_chats(1000)).await;
    let ana = console_on(&a, 0).await;
    let ben = console_on(&b, 1).await;
    let (api_a, api_b, front) = (Api::new(&a.url), Api::new(&b.url), Api::new(&nginx.url));
    each_sees_the_other(&a, &ana, &b, &ben).await;
    let started = Instant::now();
    let mut wins = [0usize; 2];
    let mut winners: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..RACES / AT_ONCE {
        let tasks: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let (api_a, api_b, front) = (api_a.clone(), api_b.clone(), front.clone());
                let (ta, tb) = (ana.token.clone(), ben.token.clone());
                tokio::spawn(async move {
                    let id = waiting_request(&front).await;
                    let barrier = Arc::new(tokio::sync::Barrier::new(2));
                    let (first, second) = tokio::join!(
                        async {
                            barrier.wait().await;
                            api_a.act(&ta, &id, "accept", json!({})).await
                        },
                        async {
                            barrier.wait().await;
                            api_b.act(&tb, &id, "accept", json!({})).await
                        }
                    );
                    (id, first, second)
                })
            })
            .collect();
        for task in tasks {
            let (id, (s1, b1), (s2, b2)) = task.await.unwrap();
            let winner = match (s1, s2) {
                (200, 409) if b2["error"]["code"] == "already_taken" => 0,
                (409, 200) if b1["error"]["code"] == "already_taken" => 1,
                _ => panic!("round {round}, {id}: not one winner: {s1} {b1} / {s2} {b2}"),
            };
            wins[winner] += 1;
            winners.insert(id, agent_email(winner));
        }
    }
    println!(
        "{RACES} accept races through nginx and two replicas in {:?}: {} won through replica A, {} through replica B",
        started.elapsed(),
        wins[0],
        wins[1]
    );
    let accepted = postgres::events_by_conversation(&pg.url("races"), "livechat.accepted").await;
    assert_eq!(accepted.len(), RACES);
    assert!(
        accepted.values().all(|n| *n == 1),
        "a conversation accepted twice"
    );
    let client = postgres::connect(&pg.url("races")).await;
    for row in client
        .query("SELECT id, assignee FROM conversations", &[])
        .await
        .unwrap()
    {
        let id: String = row.get(0);
        assert_eq!(
            row.get::<_, Option<String>>(1).as_ref(),
            winners.get(&id),
            "{id}"
        );
    }
}

/// `max_chats` across replicas: agent 0 (two chats at most) accepts 50 waiting requests at
/// once, each accept sent through nginx to whichever replica it picks. Two are accepted,
/// 48 refused `409 at_capacity`, and the database holds two chats of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_chats_holds_across_replicas_behind_nginx() {
    let pg = Postgres::start();
    let (a, _b, nginx) = replicas(&pg, "capacity", Bundle::live(1).max_chats(2)).await;
    let ana = console_on(&a, 0).await;
    let front = Api::new(&nginx.url);
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(waiting_request(&front).await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(ids.len()));
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (front, token, id, barrier) = (
                front.clone(),
                ana.token.clone(),
                id.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                front.act(&token, &id, "accept", json!({})).await
            })
        })
        .collect();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        let key = match status {
            200 => "accepted".to_string(),
            _ => format!("{status} {}", body["error"]["code"].as_str().unwrap_or("?")),
        };
        *answers.entry(key).or_default() += 1;
    }
    println!("50 accepts at once by an agent of max_chats 2, through nginx: {answers:?}");
    assert_eq!(answers.get("accepted"), Some(&2), "{answers:?}");
    assert_eq!(answers.get("409 at_capacity"), Some(&48), "{answers:?}");
    let client = postgres::connect(&pg.url("capacity")).await;
    let held: i64 = client
        .query_one(
            "SELECT count(*) FROM conversations WHERE assignee = $1 AND status IN ('assigned', 'chatting')",
            &[&agent_email(0)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 2);
}

/// 1,000 requests nobody accepts, two-second accept timeouts, made through nginx; replica A
/// is killed with `kill -9` a second later, holding what it holds (timers it may have
/// claimed among them). Every request times out exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_timeouts_fire_once_each_when_a_replica_is_killed_halfway() {
    const REQUESTS: usize = 1000;
    let pg = Postgres::start();
    let bundle = Bundle::live(1).live_chat(|d| d.accept_timeout("2s"));
    let (mut a, b, nginx) = replicas(&pg, "timers", bundle).await;
    // Agent 0 online on B, so that requests ring (and wait) rather than being refused.
    let _ana = console_on(&b, 0).await;
    let front = Api::new(&nginx.url);
    wait_agent(&Api::new(&a.url), &_ana.token, 0, |v| {
        v["online"] == true && v["accepting"] == true
    })
    .await;
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..REQUESTS {
        let front = front.clone();
        tasks.push(tokio::spawn(async move { waiting_request(&front).await }));
        if tasks.len() == 50 {
            for t in tasks.drain(..) {
                ids.push(t.await.unwrap());
            }
        }
    }
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let made = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = made.elapsed();
    // Requests still waiting when A died (the first ones made may have timed out already).
    let pending = REQUESTS
        - postgres::events_by_conversation(&pg.url("timers"), "livechat.timeout")
            .await
            .len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (timed_out, took) = loop {
        let timed_out =
            postgres::events_by_conversation(&pg.url("timers"), "livechat.timeout").await;
        if timed_out.len() >= REQUESTS || Instant::now() > deadline {
            break (timed_out, made.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // A second firing would come within a lease (10 s) of the first claim.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = postgres::events_by_conversation(&pg.url("timers"), "livechat.timeout").await;
    let spread = again.values().fold(BTreeMap::new(), |mut m, n| {
        *m.entry(*n).or_insert(0usize) += 1;
        m
    });
    println!(
        "{REQUESTS} accept timeouts of 2 s, replica A killed {killed:?} after the last request with {pending} still waiting: {} timed out within {took:?} of it; timeouts per request: {spread:?}",
        timed_out.len()
    );
    assert!(
        pending > 0,
        "every request had timed out before the kill: it proves nothing"
    );
    assert_eq!(again.len(), REQUESTS, "some requests never timed out");
    assert!(again.values().all(|n| *n == 1), "{spread:?}");
    for id in &ids {
        assert!(again.contains_key(id), "{id}");
    }
    drop(b);
}

/// An agent whose replica dies: agent 0's console is on replica A, agent 1's on replica B,
/// and ten requests made through nginx ring both. A is killed with `kill -9`; replica B
/// reports agent 0 offline within 20 s, and the requests then ring agent 1 alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_whose_replica_dies_is_offline_within_20_s_and_requests_ring_others() {
    let pg = Postgres::start();
    let (mut a, b, nginx) = replicas(&pg, "presence", Bundle::live(2)).await;
    let ana = console_on(&a, 0).await;
    let ben = console_on(&b, 1).await;
    let (api_b, front) = (Api::new(&b.url), Api::new(&nginx.url));
    each_sees_the_other(&a, &ana, &b, &ben).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(waiting_request(&front).await);
    }
    let both = json!([agent_email(0), agent_email(1)]);
    let rang = |v: &Value| v["agents"].clone();
    for id in &ids {
        let ringing = last_ringing(&pg, id).await;
        assert_eq!(rang(&ringing), both, "{id}");
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    drop(ana);
    let offline = loop {
        let view = api_b.agent_view(&ben.token, &agent_email(0)).await;
        if view["online"] == false {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "agent 0 still online: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The requests move on (B routes them again when presence changes).
    let deadline = Instant::now() + Duration::from_secs(5);
    for id in &ids {
        loop {
            let ringing = last_ringing(&pg, id).await;
            if rang(&ringing) == json!([agent_email(1)]) {
                break;
            }
            assert!(Instant::now() < deadline, "{id} still rings: {ringing}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "replica A killed: agent 0 offline on replica B after {offline:?}, and 10 requests ring agent 1 alone"
    );
    assert!(offline <= Duration::from_secs(21), "{offline:?}");
}

/// The newest `livechat.ringing` data of a conversation.
async fn last_ringing(pg: &Postgres, id: &str) -> Value {
    let client = postgres::connect(&pg.url("presence")).await;
    let data: String = client
        .query_one(
            "SELECT data FROM events WHERE conversation_id = $1 AND type = 'livechat.ringing' ORDER BY seq DESC LIMIT 1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    serde_json::from_str(&data).unwrap()
}

/// 200 offline forms posted through nginx while nobody is online, their mails delivered by
/// both replicas' outbox workers to a real SMTP server; replica A is killed with `kill -9`
/// once 40 mails have arrived, with mails still waiting. Every form's mail arrives (what A
/// held comes from B once A's claim runs out: at least once), and the outbox ends with
/// every item sent, none dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_forms_are_all_mailed_when_a_replica_dies_mid_delivery() {
    const FORMS: usize = 200;
    let pg = Postgres::start();
    let smtp = SmtpServer::start();
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = smtp.settings(conf_dir.path(), "outbox_retry = \"200ms\"");
    // Two hundred visitors from two hundred addresses (one may send five forms in ten
    // minutes): the test client stands for a CDN in front of nginx, and both are trusted to
    // name the client in `X-Forwarded-For`.
    let env = vec![
        (
            "LIVECHAT_CONFIG".to_string(),
            conf.to_str().unwrap().to_string(),
        ),
        (
            "LIVECHAT_TRUSTED_PROXIES".to_string(),
            format!("{}/32,127.0.0.1/32", common::nginx::NGINX_ADDR),
        ),
    ];
    let (mut a, b, nginx) = replicas_with(&pg, "forms", Bundle::live(1), env).await;
    let front = Api::new(&nginx.url);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..FORMS {
        let front = front.clone();
        tasks.push(tokio::spawn(async move {
            let email = format!("visitor{i}@example.com");
            let message = format!("Form {i}: please call me back.");
            let reply = front
                .request("POST", "/bots/support/contact")
                .header("x-forwarded-for", &format!("10.0.{i}.1"))
                .form(&[("email", email.as_str()), ("message", message.as_str())])
                .send()
                .await;
            assert_eq!(reply.status, 200, "form {i}: {}", reply.text);
        }));
        // 50 at a time: nginx here has 256 connections, two for each request it proxies.
        if tasks.len() == 50 {
            for task in tasks.drain(..) {
                task.await.unwrap();
            }
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let posted = started.elapsed();
    let count = |status: &'static str| {
        let url = pg.url("forms");
        async move {
            let client = postgres::connect(&url).await;
            client
                .query_one(
                    "SELECT count(*) FROM outbox WHERE status = $1 AND payload LIKE '%offline_form%'",
                    &[&status],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let arrived = tokio::task::spawn_blocking({
        let maildir = smtp.maildir.clone();
        move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let n = std::fs::read_dir(maildir.join("new")).map_or(0, |d| d.count());
                if n >= 40 || Instant::now() > deadline {
                    return n;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })
    .await
    .unwrap();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = started.elapsed();
    let waiting = count("pending").await;
    assert!(arrived >= 40, "only {arrived} mails arrived in a minute");
    assert!(
        waiting > 0,
        "every mail was out before the kill: it proves nothing"
    );
    // What A held waits out its claim (the outbox's lease, 60 s), then B sends it.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mails = loop {
        let mails = tokio::task::block_in_place(|| smtp.mails_of("offline_form"));
        let distinct: std::collections::BTreeSet<String> =
            mails.iter().filter_map(|m| header(m, "Reply-To")).collect();
        if distinct.len() >= FORMS || Instant::now() > deadline {
            break mails;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let all_sent = started.elapsed();
    let mut per_form: BTreeMap<String, usize> = BTreeMap::new();
    for mail in &mails {
        *per_form
            .entry(header(mail, "Reply-To").expect("a Reply-To"))
            .or_default() += 1;
    }
    for i in 0..FORMS {
        assert!(
            per_form.contains_key(&format!("visitor{i}@example.com")),
            "form {i} was never mailed"
        );
    }
    assert_eq!(per_form.len(), FORMS, "{per_form:?}");
    // The worker records a delivery right after the server accepts it: the items still
    // pending may lag the mails by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count("sent").await < FORMS as i64 {
        assert!(Instant::now() < deadline, "not every item recorded sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = postgres::connect(&pg.url("forms")).await;
    let statuses = postgres::pairs(
        &client,
        "SELECT status, count(*) FROM outbox WHERE payload LIKE '%offline_form%' GROUP BY status",
    )
    .await;
    assert_eq!(
        statuses,
        [("sent".to_string(), FORMS as i64)],
        "none dead, none pending"
    );
    let twice = per_form.values().filter(|n| **n > 1).count();
    println!(
        "{FORMS} offline forms through nginx in {posted:?}; replica A killed at {killed:?} with {arrived} mails arrived and {waiting} items pending; all {FORMS} mailed by {all_sent:?} ({} mails in all, {twice} forms mailed twice: at least once); outbox: {statuses:?}",
        mails.len()
    );
    drop(b);
}
