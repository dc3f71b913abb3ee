//! Shared by the integration tests: the real `livechat` binary on 127.0.0.1:0 with its own
//! temporary data and bundle directories, waited on by readiness, never by a fixed time.
#![allow(dead_code)]

pub mod browser;
pub mod bundle;
pub mod live;
pub mod nginx;
pub mod postgres;
pub mod smtp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use bundle::{Bundle, bot};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_livechat")
}

/// A `livechat` command with no stray settings from the environment.
pub fn livechat() -> Command {
    let mut cmd = Command::new(bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("LIVECHAT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Writes `text` the way editors save: to a temporary file, then renamed over the old one.
pub fn save_atomically(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub struct TestServer {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub bots_dir: PathBuf,
    pub data_dir: PathBuf,
    /// The environment it was started with (kept for restarts).
    pub env: Vec<(String, String)>,
    /// What it printed to standard output after the `listening` line, line by line.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// What it logged to standard error, line by line.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

/// The store the servers of this test run use: PostgreSQL in `tests/engine_on_postgres.rs`
/// (the engine's test files again) or with `LIVECHAT_TEST_STORE=postgres` (any test file),
/// each server on a database of its own in a cluster the test process shares
/// (`Postgres::of_process`); else SQLite, the embedded default.
pub fn store_under_test() -> &'static str {
    match std::env::var("LIVECHAT_TEST_STORE").as_deref() {
        _ if env!("CARGO_CRATE_NAME") == "engine_on_postgres" => "postgres",
        Ok("postgres") => "postgres",
        Ok("sqlite") | Err(_) => "sqlite",
        Ok(other) => panic!("LIVECHAT_TEST_STORE={other}: `sqlite` or `postgres`"),
    }
}

/// The database of the server on `data_dir` (when the suite runs on PostgreSQL, in the
/// process's cluster): made empty for a data directory first seen, the same one again for
/// a server started later on that directory (a restart), as SQLite's file in it would be.
pub(crate) fn test_database(data_dir: &Path) -> String {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let cluster = postgres::Postgres::of_process();
    let mut dirs = DIRS.lock().unwrap_or_else(|p| p.into_inner());
    let index = match dirs.iter().position(|d| d == data_dir) {
        Some(i) => i,
        None => {
            dirs.push(data_dir.to_path_buf());
            cluster.database(&format!("server{}", dirs.len() - 1));
            dirs.len() - 1
        }
    };
    cluster.uri(&format!("server{index}"))
}

impl TestServer {
    /// Starts the server on the bundle that `setup` writes into its bots directory.
    pub fn start(setup: impl FnOnce(&Path), env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let bots_dir = dir.path().join("bots");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&bots_dir).unwrap();
        setup(&bots_dir);
        Self::start_in(dir, bots_dir, data_dir, env)
    }

    pub fn start_in(
        dir: tempfile::TempDir,
        bots_dir: PathBuf,
        data_dir: PathBuf,
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // On PostgreSQL each data directory has a database of its own, unless the test
        // chose one.
        if store_under_test() == "postgres"
            && !env.iter().any(|(k, _)| k == "LIVECHAT_DATABASE_URL")
        {
            env.push((
                "LIVECHAT_DATABASE_URL".to_string(),
                test_database(&data_dir),
            ));
        }
        let mut cmd = livechat();
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--bots-dir")
            .arg(&bots_dir)
            .arg("--data-dir")
            .arg(&data_dir)
            .env("LIVECHAT_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start livechat serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(rest) = line.strip_prefix("livechat listening on ") {
                        break rest.split_whitespace().next().unwrap().to_string();
                    }
                }
                _ => {
                    let out = child.wait_with_output().unwrap();
                    panic!(
                        "server exited before listening: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe (and keep it).
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let printed = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                printed.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let logged = Arc::new(Mutex::new(Vec::new()));
        let log = logged.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("LIVECHAT_TEST_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
                log.lock().unwrap().push(line);
            }
        });
        let server = TestServer {
            child,
            url,
            dir,
            bots_dir,
            data_dir,
            env,
            stdout,
            stderr: logged,
        };
        let (health, _) = server.wait_for(Duration::from_secs(10), "healthz answers", |h| {
            h["status"] == "ok"
        });
        let expected = match server.env.iter().any(|(k, _)| k == "LIVECHAT_DATABASE_URL") {
            true => "postgres",
            false => "sqlite",
        };
        assert_eq!(health["store"]["kind"], expected, "the store: {health}");
        server
    }

    /// `GET /healthz` as JSON (`null` while the server does not answer).
    pub fn health(&self) -> serde_json::Value {
        self.api()
            .request("GET", "/healthz")
            .try_wait()
            .ok()
            .and_then(|reply| serde_json::from_str(&reply.text).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    /// The client for this server, for a synchronous test.
    pub fn api(&self) -> live::Blocking {
        live::Api::blocking(&self.url)
    }

    /// Polls `/healthz` until `done` holds; panics with `what` and the last answer after `limit`.
    pub fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> (serde_json::Value, Duration) {
        let start = Instant::now();
        loop {
            let h = self.health();
            if done(&h) {
                return (h, start.elapsed());
            }
            if start.elapsed() > limit {
                panic!("timed out after {limit:?} waiting for {what}; last /healthz: {h}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (no chance to clean up) and starts it again on the
    /// same directories.
    pub fn kill_and_restart(mut self) -> TestServer {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let (bots_dir, data_dir) = (self.bots_dir.clone(), self.data_dir.clone());
        let env = std::mem::take(&mut self.env);
        drop(self);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        TestServer::start_in(dir, bots_dir, data_dir, &env)
    }

    /// The first line printed after `listening` that starts with `prefix`, waited for up
    /// to `limit` (None if none came).
    pub fn printed(&self, prefix: &str, limit: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            if let Some(line) = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with(prefix))
            {
                return Some(line.clone());
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first log line that contains `needle`, waited for up to `limit`.
    pub fn logged(&self, needle: &str, limit: Duration) -> Option<String> {
        let start = Instant::now();
        loop {
            if let Some(line) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return Some(line.clone());
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A `livechat` command on its store (the environment it was started with).
    pub fn livechat(&self) -> Command {
        let mut cmd = livechat();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The PostgreSQL database it runs on (`None`: SQLite in its data directory).
    pub fn database_url(&self) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == "LIVECHAT_DATABASE_URL")
            .map(|(_, v)| v.as_str())
    }

    /// The number a `SELECT count(*) …` answers, asked of its store (either: the SQL is
    /// one both read alike).
    pub fn count(&self, sql: &str) -> i64 {
        match self.database_url() {
            None => self
                .sqlite()
                .query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            Some(url) => on_postgres(url, |client| async move {
                let row = client.query_one(sql, &[]).await;
                row.unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .get::<_, i64>(0)
            }),
        }
    }

    /// The rows a query of text columns answers, asked of its store (SQL both read alike).
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        match self.database_url() {
            None => {
                let conn = self.sqlite();
                let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let columns = stmt.column_count();
                stmt.query_map([], |r| (0..columns).map(|i| r.get(i)).collect())
                    .unwrap()
                    .map(Result::unwrap)
                    .collect()
            }
            Some(url) => on_postgres(url, |client| async move {
                let rows = client.query(sql, &[]).await;
                rows.unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                    .collect()
            }),
        }
    }

    /// Runs a statement that changes rows (SQL both take alike) on its store, as an admin
    /// with a database shell would; answers how many it changed.
    pub fn execute(&self, sql: &str) -> u64 {
        match self.database_url() {
            None => {
                let conn = rusqlite::Connection::open(self.data_dir.join("livechat.db")).unwrap();
                conn.execute(sql, [])
                    .unwrap_or_else(|e| panic!("{sql}: {e}")) as u64
            }
            Some(url) => on_postgres(url, |client| async move {
                let changed = client.execute(sql, &[]).await;
                changed.unwrap_or_else(|e| panic!("{sql}: {e}"))
            }),
        }
    }

    /// Every text value of every table of its store, read as it is now.
    pub fn everything_stored(&self) -> Vec<String> {
        match self.database_url() {
            None => {
                let conn = self.sqlite();
                let tables: Vec<String> = conn
                    .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .unwrap()
                    .query_map([], |r| r.get(0))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let mut out = Vec::new();
                for table in tables {
                    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
                    let columns = stmt.column_count();
                    let mut rows = stmt.query([]).unwrap();
                    while let Some(row) = rows.next().unwrap() {
                        for i in 0..columns {
                            if let Ok(
                                rusqlite::types::ValueRef::Text(t)
                                | rusqlite::types::ValueRef::Blob(t),
                            ) = row.get_ref(i)
                            {
                                out.push(String::from_utf8_lossy(t).into_owned());
                            }
                        }
                    }
                }
                out
            }
            // Each row as JSON text: a value is in it as written, but for JSON's escapes.
            Some(url) => on_postgres(url, |client| async move {
                let tables = client
                    .query(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                        &[],
                    )
                    .await
                    .unwrap();
                let mut out = Vec::new();
                for table in tables {
                    let table: String = table.get(0);
                    let sql = format!("SELECT row_to_json(t)::text FROM \"{table}\" t");
                    for row in client.query(&sql, &[]).await.unwrap() {
                        out.push(row.get(0));
                    }
                }
                out
            }),
        }
    }

    /// Its SQLite database, read-only.
    fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data_dir.join("livechat.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }

    pub fn revision(&self) -> i64 {
        self.health()["config_revision"].as_i64().unwrap_or(0)
    }
}

/// Runs `query` with a connection to the database `url`, on a thread of its own (callers
/// may be inside a runtime or not).
fn on_postgres<T: Send, F: std::future::Future<Output = T>>(
    url: &str,
    query: impl FnOnce(tokio_postgres::Client) -> F + Send,
) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async { query(postgres::connect(url).await).await })
            })
            .join()
            .unwrap()
    })
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that a reply is a refusal with `status` and the stable error `code`; the reply
/// is `(status, body)`, `(status, &body)` or a `Reply`, and any further arguments say what
/// was refused. A test file has it with `#[macro_use] mod common;` (not exported from the
/// crate: `tests/engine_on_postgres.rs` holds several test files, each with its `common`).
#[allow(unused_macros)]
macro_rules! assert_error {
    ($reply:expr, $status:expr, $code:expr $(,)?) => {
        common::check_error(&$reply, $status, $code, "")
    };
    ($reply:expr, $status:expr, $code:expr, $($what:tt)+) => {
        common::check_error(&$reply, $status, $code, &format!($($what)+))
    };
}

/// A reply `assert_error!` can check.
pub trait Refusal {
    fn status_and_body(&self) -> (u16, &serde_json::Value);
}

impl Refusal for (u16, serde_json::Value) {
    fn status_and_body(&self) -> (u16, &serde_json::Value) {
        (self.0, &self.1)
    }
}

impl Refusal for (u16, &serde_json::Value) {
    fn status_and_body(&self) -> (u16, &serde_json::Value) {
        (self.0, self.1)
    }
}

impl Refusal for live::Reply {
    fn status_and_body(&self) -> (u16, &serde_json::Value) {
        (self.status, &self.body)
    }
}

#[track_caller]
pub fn check_error(reply: &impl Refusal, status: u16, code: &str, what: &str) {
    let (got, body) = reply.status_and_body();
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what}: ")
    };
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{what}{body}"
    );
}
