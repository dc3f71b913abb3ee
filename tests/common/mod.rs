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
        for (k, v) in env {
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
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stdout,
            stderr: logged,
        };
        server.wait_for(Duration::from_secs(10), "healthz answers", |h| {
            h["status"] == "ok"
        });
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

    pub fn revision(&self) -> i64 {
        self.health()["config_revision"].as_i64().unwrap_or(0)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
/// Asserts that a reply is a refusal with `status` and the stable error `code`; the reply
/// is `(status, body)`, `(status, &body)` or a `Reply`, and any further arguments say what
/// was refused.
#[macro_export]
macro_rules! assert_error {
    ($reply:expr, $status:expr, $code:expr $(,)?) => {
        $crate::common::check_error(&$reply, $status, $code, "")
    };
    ($reply:expr, $status:expr, $code:expr, $($what:tt)+) => {
        $crate::common::check_error(&$reply, $status, $code, &format!($($what)+))
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
