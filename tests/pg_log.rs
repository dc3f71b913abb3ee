//! The event log on PostgreSQL (#17), on a real PostgreSQL server: the order readers see
//! under concurrent replicas, the proof of why the counter row is there (the same load on an
//! identity column skips events), the tailer, rollbacks and migrations run by replicas that
//! start together.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::postgres::{Postgres, connect, end_tailers};
use livechat::store::postgres::log::{LogWriter, NewEvent, StoredEvent, append};
use livechat::store::postgres::tailer::{self, Tailer};
use livechat::store::postgres::{PgError, PgStore, migrations};
use tokio::sync::mpsc;

/// How long the writers of the ordering tests write.
const LOAD: Duration = Duration::from_secs(10);
/// Writing tasks per replica.
const WRITERS: usize = 8;

fn event(writer: usize, n: usize) -> NewEvent {
    NewEvent {
        conversation_id: Some(format!("c{writer}")),
        bot: Some("support".into()),
        kind: "message.created".into(),
        at: "2026-12-02T16:00:00Z".into(),
        visitor_visible: true,
        // JSON, as every stored event's data is (the search index reads its `text`).
        data: format!(r#"{{"text":"{writer}:{n}"}}"#),
        client_id: n.is_multiple_of(2).then(|| format!("k{writer}-{n}")),
    }
}

/// A reader as naive as a tailer without the counter row would be: it polls `seq > last`
/// on its own connection until `stop`, then once more, and returns every `seq` it saw in
/// the order it saw them. What it never saw below its `last` it has skipped for good.
fn poll_reader(
    url: String,
    table: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let client = connect(&url).await;
        let query = format!("SELECT seq FROM {table} WHERE seq > $1 ORDER BY seq");
        let mut seen = Vec::new();
        let mut last = 0i64;
        loop {
            let done = stop.load(Ordering::SeqCst);
            for row in client.query(&query, &[&last]).await.unwrap() {
                let seq: i64 = row.get(0);
                seen.push(seq);
                last = last.max(seq);
            }
            if done {
                return seen;
            }
        }
    })
}

/// What a reader saw against what the table holds: (skipped, duplicated, out of order).
fn tally(seen: &[i64], stored: &[i64]) -> (usize, usize, usize) {
    let unique: HashSet<i64> = seen.iter().copied().collect();
    let skipped = stored.iter().filter(|s| !unique.contains(s)).count();
    let duplicated = seen.len() - unique.len();
    let out_of_order = seen.windows(2).filter(|w| w[1] <= w[0]).count();
    (skipped, duplicated, out_of_order)
}

async fn stored_seqs(client: &tokio_postgres::Client, table: &str) -> Vec<i64> {
    client
        .query(&format!("SELECT seq FROM {table} ORDER BY seq"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Collects what a tailer hands over.
fn collect(
    mut pages: mpsc::Receiver<Vec<StoredEvent>>,
) -> tokio::task::JoinHandle<Vec<StoredEvent>> {
    tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(page) = pages.recv().await {
            all.extend(page);
        }
        all
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_appending_through_the_counter_row_leave_no_reader_behind() {
    let pg = Postgres::start();
    let url = pg.database("counter");
    let replicas = [
        PgStore::connect(&url, 8).await.unwrap(),
        PgStore::connect(&url, 8).await.unwrap(),
    ];
    let mut tailers = Vec::new();
    for store in &replicas {
        let (tx, rx) = mpsc::channel(64);
        let tailer = Tailer::start(store.clone(), 0, Duration::from_secs(1), tx, None);
        tailers.push((tailer, collect(rx)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = poll_reader(url.clone(), "events", Arc::clone(&stop));

    let started = Instant::now();
    let mut writers = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        let log = LogWriter::start(store, 2);
        for w in 0..WRITERS {
            let log = log.clone();
            let writer = r * WRITERS + w;
            writers.push(tokio::spawn(async move {
                let mut appended: Vec<(Range<i64>, Vec<String>)> = Vec::new();
                let mut n = 0;
                while started.elapsed() < LOAD {
                    let batch: Vec<NewEvent> =
                        (0..1 + n % 4).map(|i| event(writer, n + i)).collect();
                    n += batch.len();
                    let data = batch.iter().map(|e| e.data.clone()).collect();
                    let seqs = log.append(batch).await.unwrap();
                    appended.push((seqs, data));
                }
                appended
            }));
        }
    }
    let mut expected: BTreeMap<i64, String> = BTreeMap::new();
    let mut appends = 0;
    for writer in writers {
        for (seqs, data) in writer.await.unwrap() {
            appends += 1;
            assert_eq!(seqs.end - seqs.start, data.len() as i64);
            for (seq, data) in seqs.zip(data) {
                assert!(
                    expected.insert(seq, data).is_none(),
                    "seq {seq} given twice"
                );
            }
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();

    let client = connect(&url).await;
    let stored = stored_seqs(&client, "events").await;
    let total = stored.len() as i64;
    let (max, count): (Option<i64>, i64) = {
        let row = client
            .query_one("SELECT max(seq), count(*) FROM events", &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(total > 1000, "only {total} events in {LOAD:?}");
    assert_eq!(max, Some(count), "max(seq) = count(*)");
    assert_eq!(stored, (1..=total).collect::<Vec<_>>());
    // Every append got the numbers its events were stored under.
    assert_eq!(expected.len() as i64, total);
    for row in client
        .query("SELECT seq, data FROM events ORDER BY seq", &[])
        .await
        .unwrap()
    {
        let seq: i64 = row.get(0);
        assert_eq!(
            expected.get(&seq),
            Some(&row.get::<_, String>(1)),
            "seq {seq}"
        );
    }
    let (skipped, duplicated, out_of_order) = tally(&seen, &stored);
    println!(
        "counter row: {total} events in {appends} appends by {} writers in {:.1} s ({:.0} events/s); \
         a reader polling seq > last: {skipped} skipped, {duplicated} duplicated, {out_of_order} out of order",
        2 * WRITERS,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    assert_eq!((skipped, duplicated, out_of_order), (0, 0, 0));

    // Each replica's tailer handed over the whole log, in order, once.
    for (i, (tailer, collected)) in tailers.into_iter().enumerate() {
        tokio::time::timeout(Duration::from_secs(30), tailer.caught_up(total))
            .await
            .unwrap_or_else(|_| panic!("tailer {i} stopped at {}", tailer.position()))
            .unwrap();
        tailer.stop();
        let got: Vec<i64> = collected.await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(got, stored, "tailer {i}");
    }
}

/// The proof of why the log has a counter row: the same load with `seq` an identity column
/// (numbers handed out at insert, commits in another order) leaves a polling reader behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_load_on_an_identity_column_skips_events() {
    let pg = Postgres::start();
    let url = pg.database("identity");
    let setup = connect(&url).await;
    setup
        .batch_execute(
            "CREATE TABLE identity_events (
                 seq  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 data text NOT NULL
             )",
        )
        .await
        .unwrap();
    let replicas = [
        PgStore::connect(&url, 8).await.unwrap(),
        PgStore::connect(&url, 8).await.unwrap(),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let reader = poll_reader(url.clone(), "identity_events", Arc::clone(&stop));
    let started = Instant::now();
    let mut writers = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for w in 0..WRITERS {
            let pool = store.pool().clone();
            let writer = r * WRITERS + w;
            writers.push(tokio::spawn(async move {
                let mut n = 0;
                while started.elapsed() < LOAD {
                    let data: Vec<String> = (0..1 + n % 4)
                        .map(|i| format!("{writer}:{}", n + i))
                        .collect();
                    n += data.len();
                    let mut client = pool.get().await.unwrap();
                    let tx = client.transaction().await.unwrap();
                    tx.execute(
                        "INSERT INTO identity_events (data) SELECT unnest($1::text[])",
                        &[&data],
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                }
            }));
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let stored = stored_seqs(&setup, "identity_events").await;
    let (skipped, duplicated, out_of_order) = tally(&seen, &stored);
    println!(
        "identity column: {} events; a reader polling seq > last: {skipped} skipped, {duplicated} duplicated, {out_of_order} out of order",
        stored.len()
    );
    assert!(skipped > 0, "no event skipped: the proof did not reproduce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tailer_wakes_on_notify_and_after_a_reconnect_reads_what_it_missed() {
    let pg = Postgres::start();
    let url = pg.database("tailer");
    let store = PgStore::connect(&url, 4).await.unwrap();
    let log = LogWriter::start(&store, 1);
    let (tx, mut rx) = mpsc::channel(64);
    // A poll of an hour: whatever arrives within the test came by NOTIFY or by the re-read
    // after connecting again.
    let tailer = Tailer::start(store.clone(), 0, Duration::from_secs(3600), tx, None);
    let mut got: Vec<i64> = Vec::new();
    let mut take = async |until: i64, got: &mut Vec<i64>| {
        while got.last().copied().unwrap_or(0) < until {
            let page = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("the tailer did not hand over {until}; it has {got:?}"))
                .unwrap();
            got.extend(page.iter().map(|e| e.seq));
        }
    };
    // Listening is set up a moment after the start; the first events are read either way
    // (the tailer reads once it listens).
    assert_eq!(
        log.append((0..5).map(|n| event(0, n)).collect())
            .await
            .unwrap(),
        1..6
    );
    take(5, &mut got).await;
    assert_eq!(
        log.append((5..7).map(|n| event(0, n)).collect())
            .await
            .unwrap(),
        6..8
    );
    take(7, &mut got).await;

    let client = connect(&url).await;
    assert_eq!(end_tailers(&client).await, 1);
    // Appended while the tailer is away (it waits a second before connecting again).
    assert_eq!(
        log.append((7..10).map(|n| event(0, n)).collect())
            .await
            .unwrap(),
        8..11
    );
    take(10, &mut got).await;
    assert_eq!(got, (1..=10).collect::<Vec<_>>());
    // The position moves once a page is handed over, just after the receiver has it.
    tokio::time::timeout(Duration::from_secs(5), tailer.caught_up(10))
        .await
        .expect("the position follows what was handed over")
        .unwrap();
    assert_eq!(tailer.position(), 10);
    tailer.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_gives_its_numbers_back() {
    let pg = Postgres::start();
    let url = pg.database("rollback");
    let store = PgStore::connect(&url, 4).await.unwrap();
    {
        let mut client = store.pool().get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let events: Vec<NewEvent> = (0..3).map(|n| event(1, n)).collect();
        let refs: Vec<&NewEvent> = events.iter().collect();
        assert_eq!(append(&tx, &refs).await.unwrap(), 1..4);
        tx.rollback().await.unwrap();
    }
    let log = LogWriter::start(&store, 1);
    assert_eq!(
        log.append(vec![event(2, 0), event(2, 1)]).await.unwrap(),
        1..3
    );
    let client = connect(&url).await;
    let row = client
        .query_one("SELECT max(seq), count(*), min(data) FROM events", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i64>>(0), Some(2));
    assert_eq!(row.get::<_, i64>(1), 2);
    assert_eq!(row.get::<_, String>(2), r#"{"text":"2:0"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once_and_an_older_build_is_refused() {
    let pg = Postgres::start();
    let url = pg.database("migrations");
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url, 2).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap();
    }
    let client = connect(&url).await;
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=migrations::latest()).collect::<Vec<_>>());
    let mut again = connect(&url).await;
    assert_eq!(
        migrations::run(&mut again).await.unwrap(),
        Vec::<i32>::new()
    );

    // A schema from a newer build: this one must not write to it.
    client
        .execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(migrations::latest() + 1)],
        )
        .await
        .unwrap();
    match PgStore::connect(&url, 2).await {
        Err(PgError::NewerSchema { found, known }) => {
            assert_eq!(
                (found, known),
                (migrations::latest() + 1, migrations::latest())
            );
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_frames_reach_every_replica_and_an_oversized_one_is_refused() {
    use livechat::store::postgres::frames::{self, FrameError, MAX_PAYLOAD};

    let pg = Postgres::start();
    let url = pg.database("frames");
    let a = PgStore::connect(&url, 2).await.unwrap();
    let b = PgStore::connect(&url, 2).await.unwrap();
    let mut listening = Vec::new();
    for store in [&a, &b] {
        let (events, _events_rx) = mpsc::channel(8);
        let (frames, frames_rx) = mpsc::channel(8);
        let tailer = Tailer::start(
            store.clone(),
            0,
            Duration::from_secs(3600),
            events,
            Some(frames),
        );
        listening.push((tailer, frames_rx, _events_rx));
    }
    // Listening starts a moment after the tailer does; a frame sent before is lost (best
    // effort, as designed), so send until both have one. Each tailer also says that it
    // listens (`LISTENING`).
    let c = a.pool().get().await.unwrap();
    let frame = r#"{"type":"typing","conversation_id":"c1","by":"visitor"}"#;
    for (_, frames_rx, _) in &mut listening {
        let (mut listened, mut got) = (false, None);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !listened || got.is_none() {
                if got.is_none() {
                    frames::publish(&c, frame).await.unwrap();
                }
                match tokio::time::timeout(Duration::from_millis(200), frames_rx.recv()).await {
                    Ok(Some(p)) if p == tailer::LISTENING => listened = true,
                    Ok(Some(p)) if got.is_none() => got = Some(p),
                    _ => {}
                }
            }
        })
        .await
        .expect("the frame reached the replica, which said it listens");
        assert_eq!(got.as_deref(), Some(frame));
    }
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_PAYLOAD));
    assert!(matches!(
        frames::publish(&c, &big).await,
        Err(FrameError::TooLarge(n)) if n == big.len()
    ));
    for (tailer, _, _) in listening {
        tailer.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_gone_is_told_apart_from_a_bad_statement() {
    let pg = Postgres::start();
    let url = pg.database("errors");
    let store = PgStore::connect(&url, 2).await.unwrap();
    let client = store.pool().get().await.unwrap();
    let wrong_type = client
        .query("SELECT $1::int", &[&"not a number"])
        .await
        .map_err(PgError::from)
        .unwrap_err();
    assert!(!wrong_type.is_unavailable(), "{wrong_type}");
    let syntax = client
        .batch_execute("SELEC 1")
        .await
        .map_err(PgError::from)
        .unwrap_err();
    assert!(!syntax.is_unavailable(), "{syntax}");
    // The server ends this connection (as a restart or a failover would).
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    connect(&url)
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let gone = client
        .batch_execute("SELECT 1")
        .await
        .map_err(PgError::from)
        .unwrap_err();
    assert!(gone.is_unavailable(), "{gone}");
    // No server at all.
    let nowhere = url.replace("dbname=errors", "dbname=errors port=1");
    let refused = PgStore::connect(&nowhere, 1)
        .await
        .err()
        .expect("no server");
    assert!(refused.is_unavailable(), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_postgresql_refuses_fails_alone_not_its_whole_group() {
    let pg = Postgres::start();
    let url = pg.database("poison");
    let store = PgStore::connect(&url, 4).await.unwrap();
    let log = LogWriter::start(&store, 1);
    // Hold the counter row, so that the first append waits in the committer and the next
    // fifty queue up behind it: they are then one group.
    let mut holder = connect(&url).await;
    let hold = holder.transaction().await.unwrap();
    hold.execute("SELECT last FROM seq_counter FOR UPDATE", &[])
        .await
        .unwrap();
    let first = {
        let log = log.clone();
        tokio::spawn(async move { log.append(vec![event(0, 0)]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut queued = Vec::new();
    for n in 1..=50 {
        let log = log.clone();
        let mut e = event(1, n);
        if n == 25 {
            e.data = "a NUL \u{0} that PostgreSQL refuses in text".into();
        }
        queued.push(tokio::spawn(async move { log.append(vec![e]).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.commit().await.unwrap();
    assert!(first.await.unwrap().is_ok());
    let mut written = 0;
    for (i, append) in queued.into_iter().enumerate() {
        match append.await.unwrap() {
            Ok(_) => written += 1,
            Err(e) => {
                assert_eq!(i + 1, 25, "only the bad job fails: {e}");
                assert!(!e.is_unavailable(), "{e}");
            }
        }
    }
    assert_eq!(written, 49);
    let client = connect(&url).await;
    let row = client
        .query_one("SELECT max(seq), count(*) FROM events", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i64>>(0), Some(50));
    assert_eq!(row.get::<_, i64>(1), 50);
}

/// Set for the process of [`a_test_process_killed_while_its_server_runs`].
const KILLED_TEST: &str = "LIVECHAT_PG_KILLED_TEST";

/// Not a test by itself: [`killing_the_test_process_kills_its_server`] runs it in a process of
/// its own, which starts a server, says where it is, and waits to be killed with SIGKILL
/// (as a test runner's timeout kills). Without the variable it does nothing.
#[test]
#[ignore = "the child process of killing_the_test_process_kills_its_server"]
fn a_test_process_killed_while_its_server_runs() {
    if std::env::var_os(KILLED_TEST).is_none() {
        return;
    }
    let pg = Postgres::start();
    println!("server {} in {}", pg.pid(), pg.dir().display());
    std::thread::sleep(Duration::from_secs(120));
}

/// Whether process `pid` still runs (a zombie, killed but not yet reaped by whoever
/// inherited it, does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

#[test]
fn killing_the_test_process_kills_its_server() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_test_process_killed_while_its_server_runs",
            "--ignored",
            "--nocapture",
        ])
        .env(KILLED_TEST, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (server, dir) = loop {
        let line = lines
            .next()
            .expect("the child said where its server is")
            .unwrap();
        if let Some(rest) = line.strip_prefix("server ") {
            let (pid, dir) = rest.split_once(" in ").unwrap();
            break (pid.parse::<u32>().unwrap(), std::path::PathBuf::from(dir));
        }
    };
    assert!(running(server), "the server {server} runs");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    while running(server) && killed.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = running(server);
    if left {
        // Clean up after the leak before failing.
        let _ = Command::new("kill")
            .args(["-KILL", &server.to_string()])
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !left,
        "the server {server} still ran 10 s after its test process was killed"
    );
}

/// Writes an event at `seq` straight into the log, past the counter row: a gap the log's own
/// writers never leave, as a commit not yet visible (or a fault) would show it to a reader.
async fn insert_at(client: &tokio_postgres::Client, seq: i64) {
    client
        .execute(
            "INSERT INTO events (seq, conversation_id, bot, type, at, visitor_visible, data)
             VALUES ($1, 'c9', 'support', 'message.created', '2026-12-02T16:00:00Z', true, $2)",
            &[&seq, &format!(r#"{{"text":"at {seq}"}}"#)],
        )
        .await
        .unwrap();
}

/// Takes the tailer's pages into `got` until it has `until`, each within `within`; returns
/// how long that took.
async fn take(
    rx: &mut mpsc::Receiver<Vec<StoredEvent>>,
    until: i64,
    within: Duration,
    got: &mut Vec<i64>,
) -> Duration {
    let started = Instant::now();
    while got.last().copied().unwrap_or(0) < until {
        let page = tokio::time::timeout(within, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the tailer did not hand over {until}; it has {got:?}"))
            .unwrap();
        got.extend(page.iter().map(|e| e.seq));
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tailer_waits_for_a_gap_to_close_and_goes_on_after_a_while() {
    use livechat::store::postgres::tailer::GAP_WAIT;

    let pg = Postgres::start();
    let url = pg.database("gaps");
    let store = PgStore::connect(&url, 2).await.unwrap();
    let log = LogWriter::start(&store, 1);
    let (tx, mut rx) = mpsc::channel(64);
    let tailer = Tailer::start(store.clone(), 0, Duration::from_millis(100), tx, None);
    let mut got: Vec<i64> = Vec::new();
    assert_eq!(
        log.append((0..3).map(|n| event(0, n)).collect())
            .await
            .unwrap(),
        1..4
    );
    take(&mut rx, 3, Duration::from_secs(10), &mut got).await;

    // 5 without 4: nothing is handed over while 4 is missing, then both, in order.
    let client = connect(&url).await;
    insert_at(&client, 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let early = rx
        .try_recv()
        .ok()
        .map(|page| page.iter().map(|e| e.seq).collect::<Vec<_>>());
    assert_eq!(early, None, "handed over past the gap after 3");
    insert_at(&client, 4).await;
    take(&mut rx, 5, Duration::from_secs(10), &mut got).await;
    assert_eq!(got, [1, 2, 3, 4, 5]);

    // 7 without 6, and 6 never comes: after GAP_WAIT the tailer goes on (and logs it).
    insert_at(&client, 7).await;
    let waited = take(&mut rx, 7, GAP_WAIT * 3, &mut got).await;
    assert_eq!(got, [1, 2, 3, 4, 5, 7]);
    assert!(
        waited >= GAP_WAIT - Duration::from_millis(500),
        "handed over 7 after {waited:?}, before the gap's wait of {GAP_WAIT:?}"
    );
    tailer.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_says_so_when_the_tailer_has_stopped() {
    let pg = Postgres::start();
    let url = pg.database("stopped");
    let store = PgStore::connect(&url, 2).await.unwrap();
    let log = LogWriter::start(&store, 1);
    let (tx, mut rx) = mpsc::channel(64);
    let tailer = Tailer::start(store.clone(), 0, Duration::from_millis(100), tx, None);
    log.append(vec![event(0, 0), event(0, 1)]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), tailer.caught_up(2))
        .await
        .expect("the tailer hands over 2")
        .expect("the tailer runs");
    // Nobody takes its pages any more: the tailer ends, short of 100.
    rx.close();
    let stopped = tokio::time::timeout(Duration::from_secs(10), tailer.caught_up(100))
        .await
        .expect("caught_up returns once the tailer has stopped");
    match stopped {
        Err(PgError::TailerGone { position }) => assert_eq!(position, 2),
        other => panic!("caught_up(100) on a stopped tailer at 2: {other:?}"),
    }
    assert_eq!(tailer.position(), 2);
}

/// A COMMIT whose answer is lost may have landed. Made so on purpose: with a synchronous
/// standby named that does not exist, PostgreSQL writes the commit, then waits for the
/// standby; the session is ended while it waits (PostgreSQL then warns that the transaction
/// "has already committed locally"), and the client sees its connection closed at COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_reported_as_unknown() {
    let pg = Postgres::start();
    let url = pg.database("commits");
    let store = PgStore::connect(&url, 2).await.unwrap();
    let log = LogWriter::start(&store, 1);
    assert_eq!(log.append(vec![event(0, 0)]).await.unwrap(), 1..2);
    let admin = connect(&url).await;
    admin
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'absent'")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    // The checkpointer tells the backends that a standby is required once it has read the
    // new setting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pending = {
        let log = log.clone();
        tokio::spawn(async move { log.append(vec![event(0, 2)]).await })
    };
    let waiting: i32 = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let row = admin
                .query_opt(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
                    &[],
                )
                .await
                .unwrap();
            if let Some(row) = row {
                return row.get(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the committer's COMMIT waits for the standby");
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&waiting])
        .await
        .unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the append is answered")
        .unwrap()
        .expect_err("the COMMIT's answer was lost");
    admin
        .batch_execute("ALTER SYSTEM RESET synchronous_standby_names")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    // It had landed: reading again (by its client id) finds it, once.
    let landed: i64 = admin
        .query_one("SELECT count(*) FROM events WHERE client_id = 'k0-2'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(landed, 1, "{failed}");
    assert!(failed.is_commit_unknown(), "{failed:?}");
    assert!(failed.is_unavailable(), "{failed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committer_whose_session_was_ended_takes_a_fresh_connection() {
    let pg = Postgres::start();
    let url = pg.database("committer");
    let store = PgStore::connect(&url, 2).await.unwrap();
    let log = LogWriter::start(&store, 1);
    assert_eq!(log.append(vec![event(0, 0)]).await.unwrap(), 1..2);
    // The committer's session (the one whose last statement was its NOTIFY), ended as a
    // restart or a failover would, while the committer keeps its connection.
    let admin = connect(&url).await;
    let ended: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE query LIKE '%pg_notify%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ended.len(), 1, "one committer: {ended:?}");
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&ended[0]])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while admin
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1",
                &[&ended[0]],
            )
            .await
            .unwrap()
            .is_some()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the session ended");
    // The next append is written, on a connection taken afresh from the pool.
    let next = log.append(vec![event(0, 1)]).await;
    assert_eq!(next.map_err(|e| e.to_string()), Ok(2..3));
    assert_eq!(log.append(vec![event(0, 2)]).await.unwrap(), 3..4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_not_the_database_gone() {
    let pg = Postgres::start();
    let url = pg.database("logins");
    for (what, url) in [
        (
            "a role that does not exist",
            url.replace("user=livechat", "user=nosuchrole"),
        ),
        (
            "a database that does not exist",
            url.replace("dbname=logins", "dbname=nosuchdb"),
        ),
    ] {
        let refused = PgStore::connect(&url, 1).await.err().expect(what);
        assert!(!refused.is_unavailable(), "{what}: {refused:?}");
        assert!(refused.is_login_refused(), "{what}: {refused:?}");
    }
    // The server itself is there: the right login connects.
    PgStore::connect(&url, 1).await.unwrap();
}
