//! The command line on PostgreSQL (#17): `agent`, `history`, `apply`, `rollback` and
//! `visitor` work on the database `database_url` names (here `LIVECHAT_DATABASE_URL`), the
//! one a real `serve` runs on beside them, and `backup`/`restore` refuse it. A real cluster
//! (`common::postgres`), the real binary, the server over HTTP.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::live::{Api, PASSWORD, agent_email, block_on};
use common::postgres::{self, Postgres};
use common::{Bundle, TestServer, bot};
use serde_json::{Value, json};

/// Carried in the URL and never asked for (the cluster trusts local logins): it must never
/// be printed.
const DB_PASSWORD: &str = "never-printed-4711";

/// `postgres://livechat:…@SOCKETDIR/NAME`: the cluster's socket directory, percent-encoded
/// as the host (a host that is a path is a Unix socket), so that `database_url`, which
/// takes PostgreSQL's URL form only, reaches the harness's cluster.
fn url(pg: &Postgres, name: &str) -> String {
    let keywords = pg.database(name);
    let host = keywords
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("host="))
        .expect("the harness names the socket's directory");
    format!(
        "postgres://livechat:{DB_PASSWORD}@{}/{name}",
        host.replace('/', "%2F")
    )
}

/// `livechat ARGS` on the server's directories with `env`, `stdin` written to it.
fn cli(server: &TestServer, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Output {
    let mut cmd = common::livechat();
    cmd.args(args)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .arg("--bots-dir")
        .arg(&server.bots_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !shown.contains(DB_PASSWORD),
        "livechat {args:?} printed the password: {shown}"
    );
    out
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(out: Output) -> String {
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    stdout
}

fn json_of(out: Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// (number, source, summary) of every revision in the database, newest first.
fn stored_revisions(pg: &Postgres, name: &str) -> Vec<(i64, String, String)> {
    block_on(async {
        let client = postgres::connect(&pg.url(name)).await;
        client
            .query(
                "SELECT number, source, summary FROM revisions ORDER BY number DESC",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    })
}

/// Waits until the server's `/healthz` says it serves revision `number`.
fn wait_for_revision(server: &TestServer, number: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.revision() != number {
        assert!(
            Instant::now() < deadline,
            "the server is on {}, not {number}",
            server.revision()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A password set by `agent password` on PostgreSQL is the one a replica logs in with;
/// setting it again signs the agent out on the server (its sessions are the database's, so
/// nothing guards the data directory); `agent list` sees it there and not in the data
/// directory's SQLite. `visitor export` finds a visitor made through the server; `backup`
/// and `restore` refuse with one line naming what to use, exit code 2.
#[test]
fn agent_visitor_and_backup_on_the_database_a_server_runs_on() {
    let pg = Postgres::start();
    let url = url(&pg, "cli");
    let env = [("LIVECHAT_DATABASE_URL", url.as_str())];
    let server = Bundle::live(1).serve_with(&[], &env);
    assert_eq!(server.health()["store"]["kind"], "postgres");
    let email = agent_email(0);
    let api = Api::new(&server.url);
    let login = |api: &Api| {
        block_on(api.post(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        ))
    };
    let (status, _) = login(&api);
    assert_eq!(status, 401, "a login before any password was set");

    let said = ok(cli(
        &server,
        &env,
        &["agent", "password", &email],
        &format!("{PASSWORD}\n"),
    ));
    assert_eq!(said, format!("Password set for {email}.\n"));
    let (status, body) = login(&api);
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let (status, _) = block_on(api.get("/api/v1/me", Some(&token)));
    assert_eq!(status, 200, "the session works");

    // Set again while the server runs: the session it gave is ended in the database.
    let said = ok(cli(
        &server,
        &env,
        &["agent", "password", &email],
        &format!("{PASSWORD}\n"),
    ));
    assert_eq!(
        said,
        format!("Password set for {email}.\nSigned out of 1 session.\n")
    );
    let (status, _) = block_on(api.get("/api/v1/me", Some(&token)));
    assert_eq!(status, 401, "the ended session is refused by the server");

    let listed = json_of(cli(
        &server,
        &env,
        &["agent", "list", "--format", "json"],
        "",
    ));
    assert_eq!(listed[0]["password_set"], true, "{listed}");
    let local = json_of(cli(
        &server,
        &[],
        &["agent", "list", "--format", "json"],
        "",
    ));
    assert_eq!(
        local[0]["password_set"], false,
        "SQLite has no password: {local}"
    );

    // A visitor made through the server, exported from the database.
    let visitor = block_on(api.visitor("support"));
    let id = visitor["visitor_id"].as_str().unwrap();
    let exported = json_of(cli(&server, &env, &["visitor", "export", id], ""));
    assert_eq!(exported["visitor"]["id"], json!(id), "{exported}");
    assert!(
        exported
            .to_string()
            .contains(visitor["conversation_id"].as_str().unwrap()),
        "{exported}"
    );
    let out = cli(&server, &[], &["visitor", "export", id], "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "SQLite of the data directory: none"
    );

    // backup and restore copy SQLite's file: refused, in one line, nothing written.
    let file = server.dir.path().join("copy.db");
    let file_arg = file.to_str().unwrap();
    for args in [["backup", file_arg], ["restore", file_arg]] {
        let out = cli(&server, &env, &args, "");
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with(&format!("error: `livechat {}` ", args[0]))
                && lines[0].contains("pg_dump")
                && lines[0].contains("livechat:***@"),
            "{stderr}"
        );
        assert!(!file.exists(), "{args:?} wrote {}", file.display());
        println!("{}", lines[0]);
    }
}

/// `history` lists the revisions the server recorded in the database; `apply` installs a
/// bundle into the server's directory and records it there; `rollback` records the earlier
/// one again, puts its files back, and says what replicas elsewhere do not do yet.
#[test]
fn history_apply_and_rollback_on_the_database_a_server_runs_on() {
    let pg = Postgres::start();
    let url = url(&pg, "revs");
    let env = [("LIVECHAT_DATABASE_URL", url.as_str())];
    let server = Bundle::live(1).serve_with(&[], &env);
    assert_eq!(server.health()["store"]["kind"], "postgres");
    let first_agents = std::fs::read_to_string(server.bots_dir.join("agents.toml")).unwrap();

    let listed = json_of(cli(&server, &env, &["history", "--format", "json"], ""));
    let recorded = stored_revisions(&pg, "revs");
    assert_eq!(recorded.len(), 1, "serve records the bundle it loaded");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["number"], recorded[0].0);
    assert_eq!(listed[0]["source"], json!(recorded[0].1));
    assert_eq!(listed[0]["live"], true);
    let local = ok(cli(&server, &[], &["history"], ""));
    assert!(local.starts_with("No revisions yet"), "SQLite: {local}");

    // apply: a second bundle with another bot.
    let next = tempfile::tempdir().unwrap();
    Bundle::live(1)
        .bot("faq", bot("FAQ", "Ask me"))
        .write(next.path());
    let dir = next.path().to_str().unwrap();
    let said = ok(cli(&server, &env, &["apply", dir], ""));
    assert!(said.contains("Applied revision 2"), "{said}");
    assert!(
        said.contains("Recorded in the PostgreSQL database"),
        "{said}"
    );
    assert!(server.bots_dir.join("faq.toml").is_file(), "installed");
    assert_eq!(stored_revisions(&pg, "revs")[0].1, "apply");
    // The server watching the directory loads it and finds it live (nothing recorded).
    wait_for_revision(&server, 2);
    assert_eq!(stored_revisions(&pg, "revs").len(), 2);

    // rollback to 1: revision 3, recorded in the database, the files of 1 back.
    let said = ok(cli(&server, &env, &["rollback", "1"], ""));
    assert!(said.contains("Applied revision 3"), "{said}");
    assert!(
        said.contains("Recorded in the PostgreSQL database"),
        "{said}"
    );
    let recorded = stored_revisions(&pg, "revs");
    assert_eq!(recorded[0].0, 3, "{recorded:?}");
    assert_eq!(recorded[0].1, "rollback");
    assert!(recorded[0].2.starts_with("rollback to 1: "), "{recorded:?}");
    assert!(!server.bots_dir.join("faq.toml").exists(), "faq removed");
    assert_eq!(
        std::fs::read_to_string(server.bots_dir.join("agents.toml")).unwrap(),
        first_agents
    );
    let listed = json_of(cli(&server, &env, &["history", "--format", "json"], ""));
    let numbers: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    // The server watching this directory loads what rollback installed: revision 3 is
    // what it finds live, and nothing more is recorded.
    wait_for_revision(&server, 3);
    assert_eq!(stored_revisions(&pg, "revs").len(), 3);

    // Rolling back to the live revision changes nothing.
    let said = ok(cli(&server, &env, &["rollback", "3"], ""));
    assert_eq!(said, "No changes: revision 3 is the live revision.\n");
}
