//! The state replicas share on PostgreSQL (#17), written by two replicas at once on a real
//! server: first accept wins (a versioned write), `max_chats` holds under concurrent accepts
//! (the agent's row lock), a refused transition writes nothing, timers and the outbox are
//! claimed for a lease and a replica that dies holding claims delays them, loses nothing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::postgres::{Postgres, connect, pairs};
use livechat::store::postgres::PgStore;
use livechat::store::postgres::conversations::{self, ConversationRow, Guard, Refused};
use livechat::store::postgres::log::{LogWriter, NewEvent, Transition};
use livechat::store::postgres::outbox::{self, NewItem, Outcome};

fn row(id: &str) -> ConversationRow {
    ConversationRow {
        id: id.into(),
        visitor_id: format!("v-{id}"),
        bot: "support".into(),
        status: "new".into(),
        assignee: None,
        team: None,
        created_at: "2026-12-02T17:00:00Z".into(),
        updated_at: "2026-12-02T17:00:00Z".into(),
        requested_at: Some("2026-12-02T17:00:00Z".into()),
        state: "{}".into(),
    }
}

fn event(conversation: &str, kind: &str, data: &str) -> NewEvent {
    NewEvent {
        conversation_id: Some(conversation.into()),
        bot: Some("support".into()),
        kind: kind.into(),
        at: "2026-12-02T17:00:00Z".into(),
        visitor_visible: true,
        data: data.into(),
        client_id: None,
    }
}

/// A replica's task, given a minute and a half: a scene that goes wrong fails, not hangs.
async fn within<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(90), task)
        .await
        .expect("the replica's task did not end within 90 s")
        .unwrap()
}

/// Two replicas (each its pool and log writer) on a new database.
async fn replicas(pg: &Postgres, name: &str) -> (String, [(PgStore, LogWriter); 2]) {
    let url = pg.database(name);
    let a = PgStore::connect(&url, 8).await.unwrap();
    let b = PgStore::connect(&url, 8).await.unwrap();
    let (la, lb) = (LogWriter::start(&a, 2), LogWriter::start(&b, 2));
    (url, [(a, la), (b, lb)])
}

/// Requests `n` conversations (each a new row and its `conversation.requested` event).
async fn requested(log: &LogWriter, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}{i:04}");
        let guard = Guard {
            row: row(&id),
            version: 0,
            max_chats: None,
            due_at: None,
            client_id: None,
        };
        log.transition(guard, vec![event(&id, "conversation.requested", "{}")])
            .await
            .unwrap()
            .unwrap();
        ids.push(id);
    }
    ids
}

/// An agent's accept as the engine would make it on a replica: read the conversation,
/// refuse unless it waits, write it assigned at the version read. `Ok(true)`: won.
async fn accept(
    store: &PgStore,
    log: &LogWriter,
    id: &str,
    agent: &str,
    max_chats: u32,
    stale: &AtomicUsize,
) -> Result<bool, Refused> {
    loop {
        let (version, mut row) = {
            let client = store.pool().get().await.unwrap();
            conversations::load(&client, id).await.unwrap().unwrap()
        };
        if row.status != "new" {
            return Ok(false); // already taken: 409 already_taken
        }
        row.status = "assigned".into();
        row.assignee = Some(agent.into());
        let guard = Guard {
            row,
            version,
            max_chats: Some(max_chats),
            due_at: None,
            client_id: None,
        };
        let data = format!(r#"{{"agent":"{agent}"}}"#);
        match log
            .transition(guard, vec![event(id, "conversation.accepted", &data)])
            .await
            .unwrap()
        {
            Ok(_) => return Ok(true),
            // Another replica wrote it since: read it again and decide again.
            Err(Refused::Stale) => {
                stale.fetch_add(1, Ordering::Relaxed);
            }
            Err(refused) => return Err(refused),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_accept_races_across_two_replicas_have_one_winner_each() {
    let pg = Postgres::start();
    let (url, replicas) = replicas(&pg, "races").await;
    let replicas = Arc::new(replicas);
    let ids = requested(&replicas[0].1, "c", 1000).await;
    let stale = Arc::new(AtomicUsize::new(0));
    let mut races = Vec::new();
    for id in &ids {
        for (r, agent) in [(0, "ana@example.com"), (1, "bo@example.com")] {
            let (replicas, id, stale) = (Arc::clone(&replicas), id.clone(), Arc::clone(&stale));
            races.push(tokio::spawn(async move {
                let (store, log) = &replicas[r];
                let won = accept(store, log, &id, agent, 10_000, &stale)
                    .await
                    .unwrap();
                (id, agent, won)
            }));
        }
    }
    let mut winners = std::collections::BTreeMap::new();
    for race in races {
        let (id, agent, won) = race.await.unwrap();
        if won {
            assert!(
                winners.insert(id.clone(), agent).is_none(),
                "{id} won twice"
            );
        }
    }
    assert_eq!(winners.len(), 1000, "every conversation has a winner");
    let client = connect(&url).await;
    for r in client
        .query(
            "SELECT id, assignee, status, version FROM conversations",
            &[],
        )
        .await
        .unwrap()
    {
        let id: String = r.get(0);
        assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some(winners[&id]));
        assert_eq!(r.get::<_, String>(2), "assigned");
        assert_eq!(r.get::<_, i64>(3), 2, "{id}: requested, then accepted once");
    }
    let accepted: Vec<(String, i64)> = client
        .query(
            "SELECT conversation_id, count(*) FROM events
             WHERE type = 'conversation.accepted' GROUP BY conversation_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(accepted.len(), 1000);
    assert!(
        accepted.iter().all(|(_, n)| *n == 1),
        "one accepted event each"
    );
    let row = client
        .query_one("SELECT max(seq), count(*) FROM events", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i64>>(0), Some(row.get::<_, i64>(1)));
    let ana = winners
        .values()
        .filter(|a| **a == "ana@example.com")
        .count();
    let stale = stale.load(Ordering::Relaxed);
    println!(
        "1000 races: ana (replica a) won {ana}, bo (replica b) {}; {stale} writes found the version moved and read again",
        1000 - ana
    );
    // The races were real: some writes were refused for a version another replica moved.
    assert!(stale > 0, "no write ever lost a race");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_chats_holds_under_fifty_concurrent_accepts_from_two_replicas() {
    let pg = Postgres::start();
    let (url, replicas) = replicas(&pg, "max_chats").await;
    let replicas = Arc::new(replicas);
    let ids = requested(&replicas[1].1, "m", 50).await;
    let stale = Arc::new(AtomicUsize::new(0));
    let accepts: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (replicas, id, stale) = (Arc::clone(&replicas), id.clone(), Arc::clone(&stale));
            tokio::spawn(async move {
                let (store, log) = &replicas[i % 2];
                accept(store, log, &id, "cy@example.com", 2, &stale).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for accept in accepts {
        outcomes.push(accept.await.unwrap());
    }
    let won = outcomes.iter().filter(|o| **o == Ok(true)).count();
    let full = outcomes
        .iter()
        .filter(|o| **o == Err(Refused::AgentFull))
        .count();
    assert_eq!((won, full), (2, 48), "{outcomes:?}");
    let client = connect(&url).await;
    let active = async || {
        client
            .query_one(
                "SELECT count(*) FROM conversations
                 WHERE assignee = 'cy@example.com' AND status IN ('assigned', 'chatting')",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(active().await, 2);

    // Resolving one frees a place: the next accept is taken, the one after refused again.
    let (store, log) = &replicas[0];
    let mine = client
        .query_one(
            "SELECT id FROM conversations WHERE assignee = 'cy@example.com' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get::<_, String>(0);
    let (version, mut resolved) = {
        let c = store.pool().get().await.unwrap();
        conversations::load(&c, &mine).await.unwrap().unwrap()
    };
    resolved.status = "resolved".into();
    let guard = Guard {
        row: resolved,
        version,
        max_chats: Some(2),
        due_at: None,
        client_id: None,
    };
    log.transition(guard, vec![event(&mine, "conversation.resolved", "{}")])
        .await
        .unwrap()
        .unwrap();
    let waiting: Vec<String> = client
        .query(
            "SELECT id FROM conversations WHERE status = 'new' ORDER BY id LIMIT 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        accept(store, log, &waiting[0], "cy@example.com", 2, &stale).await,
        Ok(true)
    );
    assert_eq!(
        accept(store, log, &waiting[1], "cy@example.com", 2, &stale).await,
        Err(Refused::AgentFull)
    );
    assert_eq!(active().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_transition_writes_nothing_and_its_group_goes_on() {
    let pg = Postgres::start();
    let (url, replicas) = replicas(&pg, "refused").await;
    let (store, log) = &replicas[0];
    let ids = requested(log, "r", 2).await;
    let (version, row0) = {
        let c = store.pool().get().await.unwrap();
        conversations::load(&c, &ids[0]).await.unwrap().unwrap()
    };
    // Two writes at the version read, sent together: one is written, the other finds the
    // version moved; a write of another conversation beside them (in the same group or not)
    // is not held back by the refusal.
    let mut first = row0.clone();
    first.status = "assigned".into();
    first.assignee = Some("ana@example.com".into());
    let mut second = row0.clone();
    second.status = "assigned".into();
    second.assignee = Some("bo@example.com".into());
    let (_, mut other) = {
        let c = store.pool().get().await.unwrap();
        conversations::load(&c, &ids[1]).await.unwrap().unwrap()
    };
    other.status = "bot".into();
    let guard = |row: ConversationRow, version| Guard {
        row,
        version,
        max_chats: Some(5),
        due_at: None,
        client_id: None,
    };
    let (a, b, c) = tokio::join!(
        log.transition(
            guard(first, version),
            vec![event(&ids[0], "conversation.accepted", "a")]
        ),
        log.transition(
            guard(second, version),
            vec![event(&ids[0], "conversation.accepted", "b")]
        ),
        log.transition(
            guard(other, 1),
            vec![event(&ids[1], "conversation.bot", "c")]
        ),
    );
    // Which of the two writes of the same version commits first is the committers' race;
    // exactly one of them is written.
    let (winner, agent) = match (a.unwrap(), b.unwrap()) {
        (Ok(_), Err(Refused::Stale)) => ("a", "ana@example.com"),
        (Err(Refused::Stale), Ok(_)) => ("b", "bo@example.com"),
        other => panic!("not one winner: {other:?}"),
    };
    assert!(c.unwrap().is_ok());
    let client = connect(&url).await;
    let mut data: Vec<String> = client
        .query("SELECT data FROM events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    data.sort();
    assert_eq!(data, [winner, "c", "{}", "{}"]);
    let (version, now) = {
        let c = store.pool().get().await.unwrap();
        conversations::load(&c, &ids[0]).await.unwrap().unwrap()
    };
    assert_eq!((version, now.assignee.as_deref()), (2, Some(agent)));
    // A new conversation with an id already taken is refused the same way.
    let taken = Guard {
        row: row(&ids[1]),
        version: 0,
        max_chats: None,
        due_at: None,
        client_id: None,
    };
    assert_eq!(
        log.transition(taken, vec![]).await.unwrap(),
        Err(Refused::Stale)
    );
}

/// A replica's timer: fires the accept timeout of conversation `id` if it is still due (the
/// conversation still waits), as a guarded transition. `true` if this call wrote it.
async fn fire(store: &PgStore, log: &LogWriter, id: &str) -> bool {
    loop {
        let (version, mut row) = {
            let c = store.pool().get().await.unwrap();
            conversations::load(&c, id).await.unwrap().unwrap()
        };
        if row.status != "new" {
            return false; // fired already: nothing due
        }
        row.status = "bot".into();
        let guard = Guard {
            row,
            version,
            max_chats: None,
            due_at: None,
            client_id: None,
        };
        match log
            .transition(guard, vec![event(id, "livechat.timeout", "{}")])
            .await
            .unwrap()
        {
            Ok(_) => return true,
            Err(Refused::Stale) => continue,
            Err(refused) => panic!("{refused:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_accept_timeouts_fire_once_each_when_a_replica_dies_holding_claims() {
    use livechat::store::postgres::timers;
    use std::time::{Duration, Instant};

    let pg = Postgres::start();
    let (url, replicas) = replicas(&pg, "timers").await;
    let replicas = Arc::new(replicas);
    let due = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2)).to_string();
    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = format!("t{i:04}");
        let guard = Guard {
            row: row(&id),
            version: 0,
            max_chats: None,
            due_at: Some(due.clone()),
            client_id: None,
        };
        replicas[i % 2]
            .1
            .transition(guard, vec![event(&id, "conversation.requested", "{}")])
            .await
            .unwrap()
            .unwrap();
        ids.push(id);
    }
    const LEASE: Duration = Duration::from_secs(1);
    // Replica A fires until it has fired 300, then claims a batch and dies with it.
    let a = {
        let replicas = Arc::clone(&replicas);
        tokio::spawn(async move {
            let (store, log) = &replicas[0];
            let mut fired = Vec::new();
            loop {
                let c = store.pool().get().await.unwrap();
                let claimed = timers::claim(&c, "a", LEASE, 25).await.unwrap();
                drop(c);
                if fired.len() >= 300 && !claimed.is_empty() {
                    return (fired, claimed); // killed holding these claims
                }
                for id in claimed {
                    if fire(store, log, &id).await {
                        fired.push(id);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Replica B fires until every conversation has timed out.
    let b = {
        let replicas = Arc::clone(&replicas);
        let url = url.clone();
        tokio::spawn(async move {
            let (store, log) = &replicas[1];
            let client = connect(&url).await;
            let started = Instant::now();
            let mut fired = Vec::new();
            loop {
                let c = store.pool().get().await.unwrap();
                let claimed = timers::claim(&c, "b", LEASE, 25).await.unwrap();
                drop(c);
                for id in claimed {
                    if fire(store, log, &id).await {
                        fired.push(id);
                    }
                }
                let left: i64 = client
                    .query_one(
                        "SELECT count(*) FROM conversations WHERE status = 'new'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if left == 0 {
                    return fired;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{left} still wait"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (fired_a, held) = within(a).await;
    let fired_b = within(b).await;
    assert!(!held.is_empty());
    // What A held when it died, B fired once the lease had run out.
    for id in &held {
        assert!(
            fired_b.contains(id),
            "{id}, claimed by the dead replica, was not fired by b"
        );
    }
    // A second firing finds nothing due and writes nothing.
    for id in fired_a.iter().take(20) {
        assert!(!fire(&replicas[1].0, &replicas[1].1, id).await);
    }
    let client = connect(&url).await;
    let timeouts: Vec<(String, i64)> = client
        .query(
            "SELECT conversation_id, count(*) FROM events
             WHERE type = 'livechat.timeout' GROUP BY conversation_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(timeouts.len(), 1000, "every conversation timed out");
    assert!(timeouts.iter().all(|(_, n)| *n == 1), "exactly once each");
    assert_eq!(fired_a.len() + fired_b.len(), 1000);
    let left: i64 = client
        .query_one("SELECT count(*) FROM timers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let c = replicas[0].0.pool().get().await.unwrap();
    assert_eq!(timers::next_due(&c).await.unwrap(), None);
    println!(
        "1000 timeouts: replica a fired {} and died holding {} claims, replica b fired {} (those {} among them); 1 timeout event each",
        fired_a.len(),
        held.len(),
        fired_b.len(),
        held.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_offline_forms_are_all_delivered_when_a_replica_dies_mid_delivery() {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    let pg = Postgres::start();
    let (url, replicas) = replicas(&pg, "outbox").await;
    let replicas = Arc::new(replicas);
    // Each form: a new conversation, its event and its mail, written together.
    for i in 0..200 {
        let id = format!("f{i:03}");
        let guard = Guard {
            row: row(&id),
            version: 0,
            max_chats: None,
            due_at: None,
            client_id: None,
        };
        let transition = Transition {
            guard: Some(guard),
            events: vec![event(&id, "form.submitted", "{}")],
            outbox: vec![NewItem {
                id: format!("mail-{id}"),
                kind: "mail".into(),
                payload: format!(r#"{{"to":["team@example.com"],"subject":"form {id}"}}"#),
            }],
            ..Transition::default()
        };
        replicas[i % 2].1.write(transition).await.unwrap().unwrap();
    }
    // What the SMTP server accepted, in order (a mail accepted twice is there twice).
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    const LEASE: Duration = Duration::from_secs(1);
    // Replica A delivers until 60 are sent, then dies in the middle of a batch: one mail
    // accepted by the server but not recorded, the rest of the batch not tried.
    let a = {
        let (replicas, accepted) = (Arc::clone(&replicas), Arc::clone(&accepted));
        tokio::spawn(async move {
            let store = &replicas[0].0;
            let mut sent = 0;
            loop {
                let c = store.pool().get().await.unwrap();
                let batch = outbox::claim(&c, "a", LEASE, 10).await.unwrap();
                if sent >= 60 && batch.len() >= 2 {
                    accepted.lock().unwrap().push(batch[0].id.clone());
                    return (sent, batch);
                }
                for due in batch {
                    accepted.lock().unwrap().push(due.id.clone());
                    assert!(
                        outbox::record(&c, &due.id, "a", &Outcome::Sent)
                            .await
                            .unwrap()
                    );
                    sent += 1;
                }
                drop(c);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let b = {
        let (replicas, accepted, url) = (Arc::clone(&replicas), Arc::clone(&accepted), url.clone());
        tokio::spawn(async move {
            let store = &replicas[1].0;
            let client = connect(&url).await;
            let started = Instant::now();
            let mut sent = Vec::new();
            loop {
                let c = store.pool().get().await.unwrap();
                for due in outbox::claim(&c, "b", LEASE, 10).await.unwrap() {
                    accepted.lock().unwrap().push(due.id.clone());
                    assert!(
                        outbox::record(&c, &due.id, "b", &Outcome::Sent)
                            .await
                            .unwrap()
                    );
                    sent.push(due.id);
                }
                drop(c);
                let pending: i64 = client
                    .query_one("SELECT count(*) FROM outbox WHERE status = 'pending'", &[])
                    .await
                    .unwrap()
                    .get(0);
                if pending == 0 {
                    return sent;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{pending} still pending"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let (sent_a, held) = within(a).await;
    let sent_b = within(b).await;
    // The dead replica's claims were delivered by the other (the first of them twice: at
    // least once, never lost).
    for due in &held {
        assert!(
            sent_b.contains(&due.id),
            "{} was held by the dead replica",
            due.id
        );
    }
    let accepted = accepted.lock().unwrap().clone();
    let unique: std::collections::BTreeSet<&String> = accepted.iter().collect();
    assert_eq!(unique.len(), 200, "every mail reached the server");
    assert_eq!(
        accepted.len(),
        201,
        "one mail twice: the one accepted but not recorded"
    );
    let client = connect(&url).await;
    let statuses = pairs(
        &client,
        "SELECT status, count(*) FROM outbox GROUP BY status",
    )
    .await;
    assert_eq!(
        statuses,
        [("sent".to_string(), 200)],
        "none dead, none pending"
    );
    // A late record by the replica whose lease ran out changes nothing.
    let c = replicas[0].0.pool().get().await.unwrap();
    assert!(
        !outbox::record(&c, &held[0].id, "a", &Outcome::Sent)
            .await
            .unwrap()
    );
    println!(
        "200 forms: replica a sent {sent_a} and died holding {} claims (one of them accepted, not recorded); replica b sent {}; the server accepted {} mails, 200 distinct; 0 dead",
        held.len(),
        sent_b.len(),
        accepted.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_waits_its_backoff_and_a_dead_letter_stays_dead() {
    use std::time::Duration;

    let pg = Postgres::start();
    let (url, replicas) = replicas(&pg, "backoff").await;
    let (store, log) = &replicas[0];
    let item = |id: &str| NewItem {
        id: id.into(),
        kind: "webhook".into(),
        payload: "{}".into(),
    };
    log.write(Transition {
        outbox: vec![item("w1"), item("w2")],
        ..Transition::default()
    })
    .await
    .unwrap()
    .unwrap();
    let c = store.pool().get().await.unwrap();
    let mut claimed = outbox::claim(&c, "a", Duration::from_secs(30), 10)
        .await
        .unwrap();
    claimed.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        claimed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["w1", "w2"]
    );
    assert!(claimed.iter().all(|d| d.attempts == 0));
    // Leased: nobody else gets them.
    assert!(
        outbox::claim(&c, "b", Duration::from_secs(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retry = Outcome::Retry {
        error: "503 from the receiver".into(),
        after: Duration::from_millis(1500),
    };
    assert!(outbox::record(&c, "w1", "a", &retry).await.unwrap());
    let dead = Outcome::Dead {
        error: "410 gone".into(),
    };
    assert!(outbox::record(&c, "w2", "a", &dead).await.unwrap());
    // Not due before its backoff; due after it, with its attempt counted.
    assert!(
        outbox::claim(&c, "b", Duration::from_secs(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let again = outbox::claim(&c, "b", Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("w1", 1));
    let client = connect(&url).await;
    let row = client
        .query_one("SELECT status, last_error FROM outbox WHERE id = 'w2'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "dead");
    assert_eq!(row.get::<_, String>(1), "410 gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_replica_dies_is_offline_within_twenty_seconds() {
    use livechat::store::postgres::presence::{self, HEARTBEAT, SILENT};
    use std::time::{Duration, Instant};

    let pg = Postgres::start();
    let (url, replicas) = replicas(&pg, "presence").await;
    let (a, b) = (&replicas[0].0, &replicas[1].0);
    {
        let c = a.pool().get().await.unwrap();
        // Counts before the first heartbeat are refused: the replica has no row yet.
        assert!(
            presence::set_sockets(&c, "a", "ana@example.com", 2)
                .await
                .is_err()
        );
        assert!(
            presence::heartbeat(&c, "a").await.unwrap(),
            "the first heartbeat makes the row"
        );
        assert!(!presence::heartbeat(&c, "a").await.unwrap());
        presence::set_sockets(&c, "a", "ana@example.com", 2)
            .await
            .unwrap();
        presence::set_sockets(&c, "a", "bo@example.com", 1)
            .await
            .unwrap();
    }
    let c = b.pool().get().await.unwrap();
    presence::heartbeat(&c, "b").await.unwrap();
    presence::set_sockets(&c, "b", "bo@example.com", 1)
        .await
        .unwrap();
    presence::set_sockets(&c, "b", "cy@example.com", 1)
        .await
        .unwrap();
    presence::set_sockets(&c, "b", "cy@example.com", 0)
        .await
        .unwrap();
    assert_eq!(
        presence::online(&c, SILENT).await.unwrap(),
        ["ana@example.com", "bo@example.com"]
    );
    drop(c);
    // Replica a dies: no heartbeat from now on. Replica b heartbeats and sweeps at its pace.
    let died = Instant::now();
    let offline = loop {
        tokio::time::sleep(HEARTBEAT).await;
        let mut c = b.pool().get().await.unwrap();
        presence::heartbeat(&c, "b").await.unwrap();
        let gone = presence::sweep(&mut c, SILENT).await.unwrap();
        if !gone.is_empty() {
            break gone;
        }
        assert!(died.elapsed() < Duration::from_secs(40), "never swept");
    };
    let after = died.elapsed();
    // Bo keeps a socket on b: still online. Ana was only on a.
    assert_eq!(offline, ["ana@example.com"]);
    assert!(after <= SILENT + HEARTBEAT, "offline after {after:?}");
    let mut c = b.pool().get().await.unwrap();
    assert_eq!(
        presence::online(&c, SILENT).await.unwrap(),
        ["bo@example.com"]
    );
    assert!(presence::sweep(&mut c, SILENT).await.unwrap().is_empty());
    // Replica a was only paused: its next heartbeat says its row was made anew, it writes
    // its counts again, and Ana is online again.
    {
        let c = a.pool().get().await.unwrap();
        assert!(
            presence::heartbeat(&c, "a").await.unwrap(),
            "a learns it was swept"
        );
        presence::set_sockets(&c, "a", "ana@example.com", 2)
            .await
            .unwrap();
    }
    assert_eq!(
        presence::online(&c, SILENT).await.unwrap(),
        ["ana@example.com", "bo@example.com"]
    );
    println!(
        "an agent on a replica that died: offline after {after:.1?} (heartbeat {HEARTBEAT:?}, silent after {SILENT:?})"
    );

    // Two replicas sweeping the same silent replica at once report its agent once.
    let client = connect(&url).await;
    client
        .batch_execute(
            "INSERT INTO replicas VALUES ('c', now() - interval '1 hour', now() - interval '1 hour');
             INSERT INTO agent_sockets VALUES ('c', 'dee@example.com', 1);",
        )
        .await
        .unwrap();
    let sweeps: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                let mut c = store.pool().get().await.unwrap();
                presence::sweep(&mut c, SILENT).await.unwrap()
            })
        })
        .collect();
    let mut reported = Vec::new();
    for sweep in sweeps {
        reported.extend(sweep.await.unwrap());
    }
    assert_eq!(reported, ["dee@example.com"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_and_a_session_made_on_one_replica_hold_on_the_other() {
    use livechat::auth::pg;
    use livechat::auth::session::token_hash;

    let pg_server = Postgres::start();
    let (url, replicas) = replicas(&pg_server, "auth").await;
    let (a, b) = (&replicas[0].0, &replicas[1].0);
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    let mut ca = a.pool().get().await.unwrap();
    let cb = b.pool().get().await.unwrap();

    assert_eq!(
        pg::set_password(
            &mut ca,
            "ana@acme.example",
            "$argon2id$first",
            at("2025-03-01T09:00:00Z")
        )
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        pg::password_hash(&cb, "ana@acme.example")
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$first")
    );
    assert_eq!(
        pg::password_hash(&cb, "bo@acme.example").await.unwrap(),
        None
    );
    assert!(
        pg::with_password(&cb)
            .await
            .unwrap()
            .contains("ana@acme.example")
    );

    // Signed in through a, known to b: the same agent, CSRF token and expiry.
    let old = pg::create_session(&mut ca, "ana@acme.example", at("2025-01-01T00:00:00Z"))
        .await
        .unwrap();
    let s = pg::create_session(&mut ca, "ana@acme.example", at("2025-03-01T10:00:00Z"))
        .await
        .unwrap();
    let found = pg::find_session(&cb, &s.token_hash).await.unwrap().unwrap();
    assert_eq!(found.agent_email, "ana@acme.example");
    assert_eq!(found.csrf_token, s.csrf_token);
    assert_eq!(found.expires_at, at("2025-03-15T10:00:00Z"));
    // The expired one went at this login; the token itself is no key.
    assert_eq!(pg::find_session(&cb, &old.token_hash).await.unwrap(), None);
    assert_eq!(pg::find_session(&cb, &s.token).await.unwrap(), None);
    assert_eq!(s.token_hash, token_hash(&s.token));

    // Logged out through b: gone for a too.
    assert!(pg::delete_session(&cb, &s.token_hash).await.unwrap());
    assert!(!pg::delete_session(&cb, &s.token_hash).await.unwrap());
    assert_eq!(pg::find_session(&ca, &s.token_hash).await.unwrap(), None);

    // A new password ends every session of the agent and uses up their open invitations.
    let now = at("2025-03-02T00:00:00Z");
    pg::create_session(&mut ca, "ana@acme.example", now)
        .await
        .unwrap();
    pg::create_session(&mut ca, "ana@acme.example", now)
        .await
        .unwrap();
    let bo = pg::create_session(&mut ca, "bo@acme.example", now)
        .await
        .unwrap();
    let client = connect(&url).await;
    client
        .execute(
            "INSERT INTO invites (token_hash, agent_email, created_at, expires_at)
             VALUES ('h', 'ana@acme.example', '2025-03-01T00:00:00Z', '2025-03-08T00:00:00Z')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        pg::set_password(&mut ca, "ana@acme.example", "$argon2id$second", now)
            .await
            .unwrap(),
        2
    );
    assert!(
        pg::find_session(&cb, &bo.token_hash)
            .await
            .unwrap()
            .is_some()
    );
    let used: Option<String> = client
        .query_one("SELECT used_at FROM invites WHERE token_hash = 'h'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(used.as_deref(), Some("2025-03-02T00:00:00Z"));
    assert_eq!(
        pg::password_hash(&cb, "ana@acme.example")
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$second")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_together_invite_each_new_agent_once_and_redeem_a_link_once() {
    use livechat::auth::pg as auth;
    use livechat::auth::session::token_hash;
    use livechat::config::Roster;
    use livechat::mail::outbox::Doorbell;
    use livechat::mail::templates::Templates;
    use livechat::mail::{Outbound, pg as invites};

    let pg_server = Postgres::start();
    let (url, replicas) = replicas(&pg_server, "invites").await;
    let (a, b) = (replicas[0].0.clone(), replicas[1].0.clone());
    let roster: Roster = toml::from_str(
        r#"
        [[agent]]
        name = "Ana"
        email = "Ana@acme.example"
        role = "admin"
        teams = []
        [[agent]]
        name = "Bo"
        email = "bo@acme.example"
        role = "agent"
        teams = []
        [[agent]]
        name = "Cy"
        email = "cy@acme.example"
        role = "agent"
        teams = []
        "#,
    )
    .unwrap();
    let out = Outbound {
        templates: Templates::new(None),
        public_url: "http://chat.acme.example".into(),
        doorbell: Doorbell::default(),
    };
    let now = jiff::Timestamp::now();
    {
        let mut c = a.pool().get().await.unwrap();
        auth::set_password(&mut c, "ana@acme.example", "$phc-ana", now)
            .await
            .unwrap();
    }
    // Both replicas start (or reload) at once: Bo and Cy are invited once each.
    let runs: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            let (roster, out) = (roster.clone(), out.clone());
            tokio::spawn(async move {
                let mut c = store.pool().get().await.unwrap();
                invites::invite_new_agents(&mut c, &roster, &out)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut queued = 0;
    for run in runs {
        queued += run.await.unwrap();
    }
    assert_eq!(queued, 2);
    let client = connect(&url).await;
    let count = async |sql: &str| -> i64 { client.query_one(sql, &[]).await.unwrap().get(0) };
    assert_eq!(count("SELECT count(*) FROM invites").await, 2);
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE kind = 'mail'").await,
        2
    );
    let payload: String = client
        .query_one(
            "SELECT payload FROM outbox WHERE payload LIKE '%bo@acme.example%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        payload.contains("http://chat.acme.example/set-password?token="),
        "{payload}"
    );
    {
        let mut c = b.pool().get().await.unwrap();
        assert_eq!(
            invites::invite_new_agents(&mut c, &roster, &out)
                .await
                .unwrap(),
            0
        );
    }

    // One link used through both replicas at once: one password set.
    let token = "a-link-in-two-tabs";
    let expires = now
        .saturating_add(jiff::SignedDuration::from_hours(1))
        .unwrap();
    client
        .execute(
            "INSERT INTO invites (token_hash, agent_email, created_at, expires_at)
             VALUES ($1, 'dee@acme.example', $2, $3)",
            &[&token_hash(token), &now.to_string(), &expires.to_string()],
        )
        .await
        .unwrap();
    let redeems: Vec<_> = [(a.clone(), "$phc-1"), (b.clone(), "$phc-2")]
        .into_iter()
        .map(|(store, phc)| {
            tokio::spawn(async move {
                let mut c = store.pool().get().await.unwrap();
                invites::redeem(&mut c, token, "dee@acme.example", phc)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = Vec::new();
    for redeem in redeems {
        won.push(redeem.await.unwrap());
    }
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let c = a.pool().get().await.unwrap();
    let phc = auth::password_hash(&c, "dee@acme.example").await.unwrap();
    let expected = if won[0] { "$phc-1" } else { "$phc-2" };
    assert_eq!(phc.as_deref(), Some(expected));
    assert_eq!(invites::find(&c, token).await.unwrap(), None, "used up");
    // An expired link, or one for someone else, sets nothing.
    let old = "an-old-link";
    let past = now
        .saturating_sub(jiff::SignedDuration::from_hours(1))
        .unwrap();
    client
        .execute(
            "INSERT INTO invites (token_hash, agent_email, created_at, expires_at)
             VALUES ($1, 'eve@acme.example', $2, $3)",
            &[&token_hash(old), &past.to_string(), &past.to_string()],
        )
        .await
        .unwrap();
    let mut c = b.pool().get().await.unwrap();
    assert!(
        !invites::redeem(&mut c, old, "eve@acme.example", "$x")
            .await
            .unwrap()
    );
    assert!(
        !invites::redeem(&mut c, token, "dee@acme.example", "$x")
            .await
            .unwrap()
    );
    assert!(
        !invites::redeem(&mut c, "", "dee@acme.example", "$x")
            .await
            .unwrap()
    );
    assert_eq!(
        auth::password_hash(&c, "eve@acme.example").await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_retried_through_either_replica_is_written_once() {
    let pg = Postgres::start();
    let (url, replicas) = replicas(&pg, "retries").await;
    let replicas = Arc::new(replicas);
    let ids = requested(&replicas[0].1, "k", 1).await;
    let id = ids[0].clone();
    // A visitor's message as the engine writes it: at the version read, with the client's id.
    let send = async |r: usize, client_id: &str, text: &str| -> Result<i64, Refused> {
        let (store, log) = &replicas[r];
        loop {
            let (version, row) = {
                let c = store.pool().get().await.unwrap();
                conversations::load(&c, &id).await.unwrap().unwrap()
            };
            // JSON, as a stored event's data always is (the search index reads its text).
            let data = format!(r#"{{"text":"{text}"}}"#);
            let mut message = event(&id, "message.created", &data);
            message.client_id = Some(client_id.into());
            let guard = Guard {
                row,
                version,
                max_chats: None,
                due_at: None,
                client_id: Some(client_id.into()),
            };
            match log.transition(guard, vec![message]).await.unwrap() {
                Ok(seqs) => return Ok(seqs.start),
                Err(Refused::Stale) => continue,
                Err(refused) => return Err(refused),
            }
        }
    };
    let first = send(0, "k-1", "hello").await.unwrap();
    // The retry (the answer was lost) through the other replica: the first's seq, nothing new.
    assert_eq!(
        send(1, "k-1", "hello").await,
        Err(Refused::Duplicate { seq: first })
    );
    // Another message is written as usual.
    let second = send(1, "k-2", "anyone there?").await.unwrap();
    assert!(second > first);
    // The same client id sent through both replicas at once: written once, the other
    // answered with its seq.
    let (x, y) = tokio::join!(send(0, "k-3", "again"), send(1, "k-3", "again"));
    let written = match (x, y) {
        (Ok(seq), Err(Refused::Duplicate { seq: dup }))
        | (Err(Refused::Duplicate { seq: dup }), Ok(seq)) => {
            assert_eq!(seq, dup);
            seq
        }
        other => panic!("not once: {other:?}"),
    };
    let client = connect(&url).await;
    let rows = pairs(
        &client,
        "SELECT client_id, seq FROM events WHERE client_id IS NOT NULL ORDER BY seq",
    )
    .await;
    assert_eq!(
        rows,
        [
            ("k-1".to_string(), first),
            ("k-2".to_string(), second),
            ("k-3".to_string(), written)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_loading_one_bundle_at_once_record_one_revision() {
    use livechat::config::{self, Bundle};
    use livechat::deploy::{Loaded, record_loaded_pg};
    use livechat::store::postgres::revisions;

    let pg = Postgres::start();
    let (_url, replicas) = replicas(&pg, "revisions").await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots");
    let bundle = config::load_dir(&examples, &|_| Some(String::new()))
        .unwrap()
        .unwrap();
    // Both replicas start on the same bundle at the same moment.
    let starts: Vec<_> = replicas
        .iter()
        .map(|(store, _)| {
            let (store, bundle) = (store.clone(), bundle.clone());
            tokio::spawn(async move {
                let mut c = store.pool().get().await.unwrap();
                record_loaded_pg(&mut c, &bundle, "startup", false)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for start in starts {
        numbers.push(start.await.unwrap().live().number);
    }
    assert_eq!(numbers, [1, 1], "one revision, live for both");
    // An edit: the next number, planned against the first.
    let mut sources = bundle.sources.clone();
    let (file, text) = sources
        .iter()
        .next()
        .map(|(f, t)| (f.clone(), t.clone()))
        .unwrap();
    sources.insert(file, format!("# edited\n{text}"));
    let edited = Bundle::from_sources(sources, &|_| Some(String::new())).unwrap();
    let mut c = replicas[1].0.pool().get().await.unwrap();
    let second = record_loaded_pg(&mut c, &edited, "watch", true)
        .await
        .unwrap();
    assert!(
        matches!(&second, Loaded::Live(r) if r.number == 2),
        "{second:?}"
    );
    assert_eq!(
        revisions::latest(&c).await.unwrap().unwrap().hash,
        edited.hash
    );
    let list = revisions::list(&c).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|r| (r.number, r.source.as_str()))
            .collect::<Vec<_>>(),
        [(2, "watch"), (1, "startup")]
    );
    let first = revisions::get(&c, 1).await.unwrap().unwrap();
    assert_eq!(first.bundle, bundle.sources);
    assert!(revisions::get(&c, 3).await.unwrap().is_none());
    // Loading the live bundle again records nothing.
    assert_eq!(
        record_loaded_pg(&mut c, &edited, "watch", true)
            .await
            .unwrap(),
        Loaded::Live(second.live().clone())
    );
}

/// The example bundle, and that bundle with its first file edited (`# edit {n}` on top).
fn example_bundles(edits: usize) -> Vec<livechat::config::Bundle> {
    use livechat::config::{self, Bundle};
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots");
    let first = config::load_dir(&examples, &|_| Some(String::new()))
        .unwrap()
        .unwrap();
    let mut bundles = vec![first.clone()];
    for n in 1..=edits {
        let mut sources = first.sources.clone();
        let (file, text) = sources
            .iter()
            .next()
            .map(|(f, t)| (f.clone(), t.clone()))
            .unwrap();
        sources.insert(file, format!("# edit {n}\n{text}"));
        bundles.push(Bundle::from_sources(sources, &|_| Some(String::new())).unwrap());
    }
    bundles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_on_an_earlier_bundle_does_not_record_it_over_the_live_one_but_an_edit_does() {
    use livechat::deploy::{Loaded, record_loaded_pg};
    use livechat::store::postgres::revisions;

    let pg = Postgres::start();
    let (_url, replicas) = replicas(&pg, "older").await;
    let bundles = example_bundles(2);
    let (v1, v2, v3) = (&bundles[0], &bundles[1], &bundles[2]);
    let mut a = replicas[0].0.pool().get().await.unwrap();
    let mut b = replicas[1].0.pool().get().await.unwrap();
    // A started on v1, then B on v2 (a new deploy): revisions 1 and 2.
    let first = record_loaded_pg(&mut a, v1, "startup", false)
        .await
        .unwrap();
    assert!(
        matches!(&first, Loaded::Live(r) if r.number == 1),
        "{first:?}"
    );
    let second = record_loaded_pg(&mut b, v2, "startup", false)
        .await
        .unwrap();
    assert!(
        matches!(&second, Loaded::Live(r) if r.number == 2),
        "{second:?}"
    );
    // A restarts on v1, revision 1 (an old image during a rollout): v2 stays live, and A
    // learns it is behind.
    match record_loaded_pg(&mut a, v1, "startup", false)
        .await
        .unwrap()
    {
        Loaded::Behind { loaded, live } => {
            assert_eq!((loaded, live.number, &live.hash), (1, 2, &v2.hash));
        }
        other => panic!("A on v1 while v2 is live: {other:?}"),
    }
    let latest = revisions::latest(&a).await.unwrap().unwrap();
    assert_eq!((latest.number, &latest.hash), (2, &v2.hash));

    // A on v1 and B on v3 (new) start together, five times: whichever comes last, v3 is
    // recorded once and stays live, and v1 is never recorded again.
    for round in 0..5 {
        let starts = [(0, v1.clone()), (1, v3.clone())].map(|(r, bundle)| {
            let store = replicas[r].0.clone();
            tokio::spawn(async move {
                let mut c = store.pool().get().await.unwrap();
                record_loaded_pg(&mut c, &bundle, "startup", false)
                    .await
                    .unwrap()
            })
        });
        let [on_v1, on_v3] = starts;
        let (on_v1, on_v3) = (within(on_v1).await, within(on_v3).await);
        assert!(
            matches!(&on_v1, Loaded::Behind { loaded: 1, .. }),
            "round {round}: {on_v1:?}"
        );
        assert!(
            matches!(&on_v3, Loaded::Live(r) if r.number == 3),
            "round {round}: {on_v3:?}"
        );
        let latest = revisions::latest(&a).await.unwrap().unwrap();
        assert_eq!(
            (latest.number, &latest.hash),
            (3, &v3.hash),
            "round {round}"
        );
    }
    assert_eq!(revisions::list(&a).await.unwrap().len(), 3);

    // An admin edits a running replica's directory back to v1 (a reverted commit): that is
    // an edit, recorded anew and live, as on SQLite.
    let reverted = record_loaded_pg(&mut a, v1, "watch", true).await.unwrap();
    assert!(
        matches!(&reverted, Loaded::Live(r) if r.number == 4 && r.hash == v1.hash),
        "{reverted:?}"
    );
}
