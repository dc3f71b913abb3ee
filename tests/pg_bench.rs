//! The chat benchmark against two replicas on PostgreSQL behind a real nginx, one replica
//! killed with `kill -9` halfway, in small (#17). The full-size run and its figures are
//! `bench/replicas.sh` and docs/benchmarks.md; this keeps the bench's `--kill-replica` path
//! honest on every CI run: every socket of the killed replica back through nginx with
//! `after=N`, no message lost, duplicated or out of order, deliveries across replicas timed.

#[allow(dead_code)]
#[path = "../bench/src/lib.rs"]
mod bench;
mod common;

use common::TestServer;
use common::live::{PASSWORD, set_password_with};
use common::nginx::Nginx;
use common::postgres::Postgres;

const AGENTS: usize = 4;
const VISITORS: usize = 40;

/// A replica on the bench's bundle and the database `url`, with the bench server's limits
/// (every simulated client comes from one address).
fn replica(url: &str) -> TestServer {
    let agents = AGENTS.to_string();
    let max_chats = (VISITORS + 1).to_string();
    TestServer::start(
        |bots| {
            let dir = bots.to_str().unwrap();
            let wrote = bench::run_args([
                "livechat-bench",
                "bundle",
                dir,
                "--agents",
                &agents,
                "--team-size",
                &agents,
                "--max-chats",
                &max_chats,
            ])
            .expect("the bench writes its bundle");
            assert!(wrote.ok, "{}", wrote.output);
        },
        &[
            ("LIVECHAT_DATABASE_URL", url),
            ("LIVECHAT_SOCKETS_PER_ADDRESS", "1000000"),
            ("LIVECHAT_MAX_CONNECTIONS", "1000000"),
            ("LIVECHAT_SESSIONS_PER_ADDRESS", "1000000"),
            ("LIVECHAT_MESSAGE_BURST", "1000000"),
        ],
    )
}

#[test]
fn the_chat_bench_through_nginx_survives_a_replica_killed_halfway() {
    let pg = Postgres::start();
    pg.database("bench");
    let url = pg.uri("bench");
    let a = replica(&url);
    let b = replica(&url);
    let env = vec![("LIVECHAT_DATABASE_URL".to_string(), url.clone())];
    for i in 0..AGENTS {
        let email = format!("agent{i}@bench.example");
        set_password_with(&a.bots_dir, &a.data_dir, &email, &env);
    }
    let nginx = Nginx::start_naming_upstreams(&[
        a.url.trim_start_matches("http://"),
        b.url.trim_start_matches("http://"),
    ]);
    let victim = a.child.id().to_string();
    let outcome = bench::run_args([
        "livechat-bench",
        "--quiet",
        "--url",
        &nginx.url,
        "--password",
        PASSWORD,
        "chat",
        "--visitors",
        &VISITORS.to_string(),
        "--agents",
        &AGENTS.to_string(),
        "--team-size",
        &AGENTS.to_string(),
        "--interval",
        "300ms",
        "--duration",
        "4s",
        "--drain",
        "10s",
        "--kill-replica",
        &victim,
    ])
    .expect("the bench runs");
    let out = &outcome.output;
    println!("{out}");
    let line = |label: &str| -> &str {
        outcome
            .line(label)
            .unwrap_or_else(|| panic!("no `{label}` in the output:\n{out}"))
    };
    // Both replicas held sockets, and the kill closed all of one replica's.
    let held = line("sockets per replica when one was killed");
    assert_eq!(held.matches("127.0.0.1:").count(), 2, "{held}");
    for check in [
        "kill -9 of the replica halfway",
        "every socket of the killed replica resumed with after=N",
        "zero loss",
        "zero duplicates",
        "seq strictly increasing on every socket",
        "zero errors",
    ] {
        assert!(line(check).contains(" ok ("), "{}", line(check));
    }
    let cross = line("delivery, sender and receiver on different replicas");
    assert!(
        cross.contains("(n="),
        "no delivery crossed replicas: {cross}"
    );
    assert!(outcome.ok, "a check failed:\n{out}");
    assert!(
        a.health().is_null(),
        "replica A still answers after the kill"
    );
    assert_eq!(b.health()["status"], "ok", "replica B: {}", b.health());
}
