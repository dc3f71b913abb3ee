//! The engine on PostgreSQL (#17): two engines on one database, as two replicas would run
//! them, each with its own memory of conversations, agents and timers, meeting only in the
//! database. Commands go through each engine's public calls; what they leave is read from
//! the database.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use common::postgres::{self, Postgres};

use livechat::chat::conversation::{Command, Rejection};
use livechat::config::{self, Live};
use livechat::engine::{AgentRef, Engine, EngineError, PresenceGuard, StartSession, VisitorRef};
use livechat::hub::{Hub, Scope};
use livechat::mail::Outbound;
use livechat::mail::outbox::Doorbell;
use livechat::mail::templates::Templates;
use livechat::store::Store;
use livechat::store::postgres::PgStore;

const BOSS: &str = "boss@acme.example";

fn agent(i: usize) -> String {
    common::live::agent_email(i)
}

/// The live chat bundle of the other tests (`common::Bundle::live`), loaded as the server
/// loads it.
fn bundle(agents: usize, max_chats: u32, accept_timeout: &str) -> Arc<config::Bundle> {
    let dir = tempfile::tempdir().unwrap();
    common::Bundle::live(agents)
        .max_chats(max_chats)
        .live_chat(|d| d.accept_timeout(accept_timeout))
        .write(dir.path());
    let bundle = config::load_dir(dir.path(), &|_| None)
        .unwrap()
        .unwrap_or_else(|diags| panic!("the test bundle does not load: {diags:?}"));
    Arc::new(bundle)
}

/// A directory for an engine's files, left for the system to clear (replicas on one
/// database would share theirs; these tests upload none).
fn files_dir() -> std::path::PathBuf {
    tempfile::tempdir().unwrap().keep()
}

/// One engine on the database `url`, as a replica starts it, with every agent of the
/// roster online (a console connected) and accepting chats.
struct Replica {
    engine: Engine,
    _online: Vec<PresenceGuard>,
}

async fn replica(url: &str, bundle: &Arc<config::Bundle>) -> Replica {
    let engine = bare_replica(url, bundle).await;
    let mut online = Vec::new();
    for a in &bundle.roster.agents {
        let email = a.email.as_str().to_string();
        online.push(engine.connect_agent(&email));
        engine.set_accepting(&email, true).await.unwrap();
    }
    Replica {
        engine,
        _online: online,
    }
}

/// A visitor's new conversation on `engine`, asking for a person: it rings the team.
async fn waiting_request(engine: &Engine) -> (VisitorRef, String) {
    let started = engine
        .start_session(StartSession {
            bot: "support".into(),
            token: None,
            page_url: None,
            language: Some("en".into()),
            requested_language: None,
            country: None,
            ip: None,
            allow_new: Box::new(|| true),
        })
        .await
        .unwrap();
    let visitor = engine.visitor(&started.token).await.unwrap();
    engine
        .visitor_command(&visitor, Command::RequestLiveChat { action: None }, None)
        .await
        .unwrap();
    (visitor, started.conversation_id)
}

async fn accept(engine: &Engine, email: &str, id: &str) -> Result<(), EngineError> {
    let who = AgentRef {
        email: email.to_string(),
        admin: false,
    };
    engine
        .agent_command(
            &who,
            id,
            Command::Accept {
                agent: email.to_string(),
            },
            None,
        )
        .await
        .map(|_| ())
}

/// Accept races split across two engines: the same request accepted at once by one agent
/// through each engine. Exactly one accept wins each race, whichever engine it came through:
/// the loser's write found the conversation moved on (the other engine's commit), read it
/// again, and was answered `already_taken`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_races_across_two_engines_have_one_winner_each() {
    const RACES: usize = 300;
    let pg = Postgres::start();
    let url = pg.database("races");
    let bundle = bundle(2, 1000, "10m");
    let a = replica(&url, &bundle).await;
    let b = replica(&url, &bundle).await;
    let mut wins = [0usize; 2];
    let mut tasks = Vec::new();
    for race in 0..RACES {
        let (a, b) = (a.engine.clone(), b.engine.clone());
        tasks.push(tokio::spawn(async move {
            // Each visitor starts on one replica or the other.
            let (_, id) = waiting_request(if race % 2 == 0 { &a } else { &b }).await;
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let (first, second) = tokio::join!(
                async {
                    barrier.wait().await;
                    accept(&a, &agent(0), &id).await
                },
                async {
                    barrier.wait().await;
                    accept(&b, &agent(1), &id).await
                }
            );
            (id, first, second)
        }));
    }
    let mut winners = BTreeMap::new();
    for task in tasks {
        let (id, first, second) = task.await.unwrap();
        match (&first, &second) {
            (Ok(()), Err(EngineError::Rejected(Rejection::AlreadyTaken))) => {
                wins[0] += 1;
                winners.insert(id, agent(0));
            }
            (Err(EngineError::Rejected(Rejection::AlreadyTaken)), Ok(())) => {
                wins[1] += 1;
                winners.insert(id, agent(1));
            }
            other => panic!("race on {id}: not one winner and one `already_taken`: {other:?}"),
        }
    }
    println!(
        "{RACES} accept races: {} won through engine A, {} through engine B",
        wins[0], wins[1]
    );
    let accepted = postgres::events_by_conversation(&url, "livechat.accepted").await;
    assert_eq!(accepted.len(), RACES);
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    let client = postgres::connect(&url).await;
    for row in client
        .query("SELECT id, assignee, status FROM conversations", &[])
        .await
        .unwrap()
    {
        let id: String = row.get(0);
        let assignee: Option<String> = row.get(1);
        assert_eq!(assignee.as_ref(), winners.get(&id), "{id}");
        assert_eq!(row.get::<_, String>(2), "assigned", "{id}");
    }
    // What each engine holds in memory is what the database says: the loser read it again.
    for (id, winner) in winners.iter().take(20) {
        for engine in [&a.engine, &b.engine] {
            let conv = engine.peek(id).await.unwrap();
            assert_eq!(conv.assignee.as_ref(), Some(winner), "{id}");
        }
    }
}

/// `max_chats` across engines: one agent with `max_chats = 2`, 50 waiting requests, and
/// the agent accepting all of them at once, half through each engine. Each engine's memory
/// counts only the chats it gave; the database's count (under the agent's row lock) is
/// what holds: 2 accepted, the rest refused as at capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_chats_holds_across_two_engines() {
    let pg = Postgres::start();
    let url = pg.database("capacity");
    let bundle = bundle(1, 2, "10m");
    let a = replica(&url, &bundle).await;
    let b = replica(&url, &bundle).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        let engine = if i % 2 == 0 { &a.engine } else { &b.engine };
        ids.push(waiting_request(engine).await.1);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(ids.len()));
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let engine = if i % 2 == 0 {
                a.engine.clone()
            } else {
                b.engine.clone()
            };
            let (barrier, id) = (barrier.clone(), id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                accept(&engine, &agent(0), &id).await
            })
        })
        .collect();
    let mut accepted = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(EngineError::Rejected(Rejection::AtCapacity(who))) => {
                assert_eq!(who, agent(0));
                refused += 1;
            }
            Err(e) => panic!("an accept failed otherwise: {e:?}"),
        }
    }
    println!(
        "50 accepts at once by one agent (max_chats 2) through two engines: {accepted} accepted, {refused} at capacity"
    );
    assert_eq!((accepted, refused), (2, 48));
    let client = postgres::connect(&url).await;
    let held: i64 = client
        .query_one(
            "SELECT count(*) FROM conversations WHERE assignee = $1 AND status IN ('assigned', 'chatting')",
            &[&agent(0)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 2);
    assert_eq!(
        postgres::events_by_conversation(&url, "livechat.accepted")
            .await
            .values()
            .sum::<i64>(),
        2
    );
}

/// Shared timers: requests nobody accepts, started on both engines, with a short accept
/// timeout. Both engines claim due timers from the database; each request times out
/// exactly once (one `livechat.timeout`), whichever engine fired it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_timeouts_fire_once_across_two_engines() {
    const REQUESTS: usize = 100;
    let pg = Postgres::start();
    let url = pg.database("timers");
    let bundle = bundle(1, 1000, "2s");
    let a = replica(&url, &bundle).await;
    let b = replica(&url, &bundle).await;
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let engine = if i % 2 == 0 {
            a.engine.clone()
        } else {
            b.engine.clone()
        };
        tasks.push(tokio::spawn(
            async move { waiting_request(&engine).await.1 },
        ));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let started = Instant::now();
    let (timed_out, took) = loop {
        let timed_out = postgres::events_by_conversation(&url, "livechat.timeout").await;
        if timed_out.len() == REQUESTS || started.elapsed() > Duration::from_secs(30) {
            break (timed_out, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A second firing would come within the timer lease; wait past a claim round.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = postgres::events_by_conversation(&url, "livechat.timeout").await;
    println!(
        "{REQUESTS} accept timeouts of 2 s across two engines: {} timed out within {:?}; events per request: {:?}",
        timed_out.len(),
        took,
        again.values().fold(BTreeMap::new(), |mut m, n| {
            *m.entry(*n).or_insert(0) += 1;
            m
        })
    );
    assert_eq!(again.len(), REQUESTS);
    assert!(again.values().all(|n| *n == 1), "{again:?}");
    for id in &ids {
        assert!(again.contains_key(id), "{id} never timed out");
    }
}

/// Publishing through the tailer: a console subscribed to engine B sees the events written
/// through engine A, in `seq` order, with no gap among a conversation's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_console_on_one_engine_sees_what_another_wrote_in_order() {
    let pg = Postgres::start();
    let url = pg.database("publish");
    let bundle = bundle(1, 10, "10m");
    let a = replica(&url, &bundle).await;
    let b = replica(&url, &bundle).await;
    let mut console = b.engine.hub().subscribe(Scope {
        email: BOSS.into(),
        bots: None,
    });
    let (visitor, id) = waiting_request(&a.engine).await;
    accept(&a.engine, &agent(0), &id).await.unwrap();
    for i in 0..10 {
        a.engine
            .visitor_command(
                &visitor,
                Command::VisitorMessage {
                    text: format!("line {i}"),
                    attachments: Vec::new(),
                },
                None,
            )
            .await
            .unwrap();
    }
    let client = postgres::connect(&url).await;
    let stored: Vec<i64> = client
        .query(
            "SELECT seq FROM events WHERE conversation_id = $1 ORDER BY seq",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < stored.len() && Instant::now() < deadline {
        let frame = tokio::time::timeout(Duration::from_secs(5), console.recv())
            .await
            .expect("a frame within 5 s")
            .unwrap();
        if frame.conversation_id.as_deref() == Some(id.as_str())
            && let Some(seq) = frame.seq
        {
            let json: serde_json::Value =
                serde_json::from_str(frame.agent_json.as_ref().unwrap().as_str()).unwrap();
            assert_eq!(json["seq"], seq);
            assert_eq!(json["conversation_id"], id.as_str());
            seen.push(seq);
        }
    }
    assert_eq!(seen, stored, "engine B's console, against the log");
    let texts: Vec<i64> = client
        .query(
            "SELECT count(*) FROM events WHERE conversation_id = $1 AND type = 'message.created' AND data::json->>'author' = 'visitor'",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(texts, [10]);
}

/// One engine on `url` with no console connected: a replica that only visitors reach.
async fn bare_replica(url: &str, bundle: &Arc<config::Bundle>) -> Engine {
    let store = Store::postgres(PgStore::connect(url, 8).await.unwrap());
    let live = Arc::new(ArcSwap::from_pointee(Live {
        bundle: bundle.clone(),
        revision: None,
        error: None,
    }));
    let outbound = Outbound {
        templates: Templates::new(None),
        public_url: "http://chat.example".into(),
        doorbell: Doorbell::default(),
    };
    Engine::open(store, files_dir(), live, Hub::new(), outbound)
        .await
        .unwrap()
}

/// The agents each `livechat.ringing` of a conversation rang, in order, and when each was
/// read.
async fn ringing(url: &str, id: &str) -> Vec<Vec<String>> {
    let client = postgres::connect(url).await;
    client
        .query(
            "SELECT data FROM events WHERE conversation_id = $1 AND type = 'livechat.ringing' ORDER BY seq",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let data: serde_json::Value = serde_json::from_str(r.get(0)).unwrap();
            data["agents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Presence across engines: a request made on an engine no console is connected to rings
/// the agents whose consoles are on other replicas; when one of those replicas falls silent
/// (a stand-in replica's rows: it heartbeats once, then never again, as a killed process),
/// its agent is offline within 20 s of its last heartbeat and the request rings the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_ring_agents_on_other_engines_and_move_on_when_a_replica_falls_silent() {
    let pg = Postgres::start();
    let url = pg.database("presence");
    let bundle = bundle(2, 10, "10m");
    // Agent 0's console is on engine A.
    let a = bare_replica(&url, &bundle).await;
    let _console = a.connect_agent(&agent(0));
    a.set_accepting(&agent(0), true).await.unwrap();
    // Agent 1's console is on a replica that will die: its rows, written as it would.
    let client = postgres::connect(&url).await;
    client
        .batch_execute(&format!(
            "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ('r_doomed', now(), now());
             INSERT INTO agent_sockets (replica, email, sockets) VALUES ('r_doomed', '{}', 1);",
            agent(1)
        ))
        .await
        .unwrap();
    let last_beat = Instant::now();
    // Visitors reach engine B, which no console is connected to.
    let b = bare_replica(&url, &bundle).await;
    for i in 0..2 {
        b.set_accepting(&agent(i), true).await.unwrap();
    }
    let both = vec![agent(0), agent(1)];
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (_, id) = waiting_request(&b).await;
        let rang = ringing(&url, &id).await;
        if rang.last() == Some(&both) {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "engine B never rang both agents online elsewhere: {rang:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // The doomed replica stays silent; the request must move on to agent 0 alone.
    let moved = loop {
        let rang = ringing(&url, &id).await;
        if rang.last() == Some(&vec![agent(0)]) {
            break last_beat.elapsed();
        }
        assert!(
            last_beat.elapsed() < Duration::from_secs(30),
            "the request still rings the silent replica's agent: {rang:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "a silent replica's agent was dropped from a ringing request {moved:?} after its last heartbeat"
    );
    assert!(moved <= Duration::from_secs(21), "{moved:?}");
    assert!(
        moved >= Duration::from_secs(14),
        "dropped before the replica was silent: {moved:?}"
    );
    let conv = b.peek(&id).await.unwrap();
    assert_eq!(conv.status.as_str(), "new");
}
