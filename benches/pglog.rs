//! `cargo bench --bench pglog`: the PostgreSQL event log of replicas (#17) on a throwaway
//! cluster of Debian's PostgreSQL with its default durability (fsync on, synchronous
//! commit), made in a temporary directory as the tests make theirs.
//!
//! Two figures per number of committers a replica runs: the events a second that the
//! replicas' group commits append when every writer appends again as soon as it is answered
//! (and the append's latency at that load), then, at a fixed rate, the append's latency and
//! the time from an append on one replica to the other replica's tailer handing the event
//! over, the cross-replica delivery. Each run also checks that the other replica's tailer
//! handed over every event once, in order.

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use livechat::store::postgres::PgStore;
use livechat::store::postgres::log::{LogWriter, NewEvent};
use livechat::store::postgres::tailer::Tailer;
use tokio::sync::mpsc;

#[derive(Parser)]
struct Args {
    /// Replicas, each with its own pool, log writer and tailer (in this one process).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// The numbers of committers per replica to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    committers: Vec<usize>,
    /// Writing tasks per replica in the throughput runs.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Events a second, all replicas together, in the latency runs.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// How long each run lasts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn message(writer: usize, n: usize) -> NewEvent {
    NewEvent {
        conversation_id: Some(format!("c{writer}")),
        bot: Some("support".into()),
        kind: "message.created".into(),
        at: "2026-12-02T17:00:00Z".into(),
        visitor_visible: true,
        data: format!(
            r#"{{"id":"m{writer}-{n}","author":"visitor","text":"a message of a usual length, about sixty bytes"}}"#
        ),
        client_id: Some(format!("k{writer}-{n}")),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Replica {
    store: PgStore,
    log: LogWriter,
}

/// What one run measured.
struct Run {
    events: usize,
    elapsed: Duration,
    append: Vec<Duration>,
    delivery: Vec<Duration>,
}

/// One run on a new database: `writers` tasks per replica append one event each time, as
/// fast as answered (`interval` none) or each at its own fixed pace.
async fn run(
    pg: &postgres::Postgres,
    name: &str,
    args: &Args,
    committers: usize,
    writers: usize,
    interval: Option<Duration>,
) -> Run {
    let url = pg.database(name);
    let mut replicas = Vec::new();
    for _ in 0..args.replicas {
        let store = PgStore::connect(&url, writers.min(32) + committers + 2)
            .await
            .expect("connect");
        let log = LogWriter::start(&store, committers);
        replicas.push(Replica { store, log });
    }
    // The tailer of the last replica, which hears every other replica's commits.
    let (pages, mut received) = mpsc::channel(256);
    let observer = replicas.last().expect("a replica");
    let tailer = Tailer::start(
        observer.store.clone(),
        0,
        Duration::from_secs(1),
        pages,
        None,
    );
    let seen: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let collector = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(page) = received.recv().await {
                let now = Instant::now();
                let mut seen = seen.lock().expect("seen");
                seen.extend(page.iter().map(|e| (e.seq, now)));
            }
        })
    };
    // When each event was appended, by seq, for the replicas other than the observer.
    let started_at: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        let remote = r + 1 < replicas.len();
        for w in 0..writers {
            let log = replica.log.clone();
            let started_at = Arc::clone(&started_at);
            let duration = args.duration;
            let writer = r * writers + w;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut ticks = interval.map(|every| {
                    let first =
                        tokio::time::Instant::now() + every.mul_f64((w as f64) / (writers as f64));
                    tokio::time::interval_at(first, every)
                });
                let mut n = 0;
                while started.elapsed() < duration {
                    if let Some(ticks) = &mut ticks {
                        ticks.tick().await;
                    }
                    let at = Instant::now();
                    let seqs = log.append(vec![message(writer, n)]).await.expect("append");
                    latencies.push(at.elapsed());
                    if remote {
                        started_at.lock().expect("started").insert(seqs.start, at);
                    }
                    n += 1;
                }
                latencies
            }));
        }
    }
    let mut append = Vec::new();
    for task in tasks {
        append.extend(task.await.expect("writer"));
    }
    let elapsed = started.elapsed();
    let events = append.len();
    tokio::time::timeout(Duration::from_secs(60), tailer.caught_up(events as i64))
        .await
        .expect("the tailer caught up")
        .expect("the tailer runs");
    tailer.stop();
    let _ = collector.await;
    let seen = std::mem::take(&mut *seen.lock().expect("seen"));
    let order: Vec<i64> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        order,
        (1..=events as i64).collect::<Vec<_>>(),
        "the tailer handed over every event once, in order"
    );
    let started_at = started_at.lock().expect("started");
    let mut delivery: Vec<Duration> = seen
        .iter()
        .filter_map(|(seq, at)| started_at.get(seq).map(|s| at.duration_since(*s)))
        .collect();
    append.sort();
    delivery.sort();
    Run {
        events,
        elapsed,
        append,
        delivery,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let pg = postgres::Postgres::start_durable();
    println!(
        "pglog: {}, fsync on, synchronous_commit on; {} replicas in one process, {} s a run",
        pg.version(),
        args.replicas,
        args.duration.as_secs_f64()
    );
    println!(
        "\nthroughput: {} writers a replica, each appending one event as soon as answered",
        args.writers
    );
    println!("committers  events/s  append p50  append p99");
    for &c in &args.committers {
        let r = run(&pg, &format!("throughput{c}"), &args, c, args.writers, None).await;
        println!(
            "{c:>10}  {:>8.0}  {:>10}  {:>10}",
            r.events as f64 / r.elapsed.as_secs_f64(),
            ms(percentile(&r.append, 0.5)),
            ms(percentile(&r.append, 0.99)),
        );
    }
    let writers = 16;
    let total = (args.replicas * writers) as f64;
    let every = Duration::from_secs_f64(total / args.rate as f64);
    println!(
        "\nlatency: {} events/s in all ({writers} writers a replica, one event every {:.1} ms each); \
         delivery = from the append on one replica to the other replica's tailer",
        args.rate,
        every.as_secs_f64() * 1000.0
    );
    println!("committers  events/s  append p50  append p99  delivery p50  delivery p99");
    for &c in &args.committers {
        let r = run(&pg, &format!("latency{c}"), &args, c, writers, Some(every)).await;
        println!(
            "{c:>10}  {:>8.0}  {:>10}  {:>10}  {:>12}  {:>12}",
            r.events as f64 / r.elapsed.as_secs_f64(),
            ms(percentile(&r.append, 0.5)),
            ms(percentile(&r.append, 0.99)),
            ms(percentile(&r.delivery, 0.5)),
            ms(percentile(&r.delivery, 0.99)),
        );
    }
}
