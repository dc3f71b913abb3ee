//! `livechat apply`, `history` and `rollback`, run as the real binary on temporary
//! data and bundle directories.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const SUPPORT: &str = r#"name = "Acme Support"

[[step]]
id = "start"
say = "Hi! What can we do for you?"

[[step]]
id = "bye"
say = "Thanks for chatting with us."
end = true
"#;

const SALES: &str = r#"name = "Acme Sales"

[[step]]
id = "start"
say = "Looking for a quote?"
end = true
"#;

const AGENTS: &str = r#"[[team]]
id = "support"
bots = ["support"]

[[team]]
id = "night"
bots = ["support"]

[[agent]]
name = "Ana Lima"
email = "ana@acme.example"
max_chats = 3
teams = ["support"]
"#;

const RESPONSES: &str = r#"[[response]]
shortcut = "refund"
text = "Refunds take 5–7 business days."
"#;

/// A data dir, a live bundle dir and a place for bundles to apply, all temporary.
struct Site {
    tmp: TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn bots_dir(&self) -> PathBuf {
        self.tmp.path().join("live-bots")
    }

    /// Writes a bundle to apply into a fresh directory named `name`.
    fn bundle(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            fs::write(dir.join(file), text).unwrap();
        }
        dir
    }

    fn livechat(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_livechat"));
        for var in [
            "LIVECHAT_CONFIG",
            "LIVECHAT_LISTEN",
            "LIVECHAT_DATA_DIR",
            "LIVECHAT_BOTS_DIR",
            "LIVECHAT_ADMIN_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("--data-dir")
            .arg(self.tmp.path().join("data"))
            .arg("--bots-dir")
            .arg(self.bots_dir())
            .args(args)
            .current_dir(self.tmp.path())
            .output()
            .unwrap()
    }

    fn apply(&self, dir: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["apply", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.livechat(&args)
    }

    /// The bundle files of the live directory.
    fn live_files(&self) -> BTreeMap<String, String> {
        let Ok(entries) = fs::read_dir(self.bots_dir()) else {
            return BTreeMap::new();
        };
        entries
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".toml"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect()
    }

    fn history(&self) -> Vec<serde_json::Value> {
        let out = self.livechat(&["history", "--format", "json"]);
        assert_success(&out);
        serde_json::from_slice(&out.stdout).expect("history --format json is JSON")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
}

fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn apply_edit_and_roll_back() {
    let site = Site::new();
    let v1 = [
        ("support.toml", SUPPORT),
        ("agents.toml", AGENTS),
        ("responses.toml", RESPONSES),
    ];
    let first = site.bundle("v1", &v1);

    // The first apply shows everything as added and installs the files.
    let out = site.apply(&first, &[]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("(no revision yet):"), "{text}");
    for line in [
        "  + bot support\n",
        "  + agent ana@acme.example\n",
        "  + team night\n",
        "  + team support\n",
        "  + response refund\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("Applied revision 1 ("), "{text}");
    assert_eq!(site.live_files(), files(&v1));

    let out = site.livechat(&["history"]);
    assert_success(&out);
    let table = stdout(&out);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("* 1 "), "{table}");
    assert!(row.contains(" apply "), "{table}");
    assert!(
        row.contains("+1 bot, +1 agent, +2 teams, +1 response"),
        "{table}"
    );

    // The same bundle again: nothing to do, no new revision.
    let out = site.apply(&first, &[]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        format!(
            "No changes: {} is identical to revision 1.\n",
            first.display()
        )
    );
    assert_eq!(site.history().len(), 1);

    // An edit: a bot added, a team removed, a limit raised, a step's text changed.
    let agents_v2 = AGENTS
        .replace("[[team]]\nid = \"night\"\nbots = [\"support\"]\n\n", "")
        .replace("max_chats = 3", "max_chats = 5");
    let support_v2 = SUPPORT.replace("Hi! What can we do for you?", "Hello!");
    let v2 = [
        ("support.toml", support_v2.as_str()),
        ("sales.toml", SALES),
        ("agents.toml", agents_v2.as_str()),
        ("responses.toml", RESPONSES),
    ];
    let second = site.bundle("v2", &v2);

    // A dry run shows the plan and installs nothing.
    let out = site.apply(&second, &["--dry-run"]);
    assert_success(&out);
    let plan = stdout(&out);
    assert!(
        plan.starts_with(&format!(
            "Plan for {} against revision 1:\n",
            second.display()
        )),
        "{plan}"
    );
    assert!(
        plan.ends_with("Dry run: nothing was installed.\n"),
        "{plan}"
    );
    assert_eq!(site.live_files(), files(&v1));
    assert_eq!(site.history().len(), 1);

    let out = site.apply(&second, &[]);
    assert_success(&out);
    let text = stdout(&out);
    let expected = "  + bot sales\n  \
                    ~ bot support: step start: say \"Hi! What can we do for you?\" → \"Hello!\"\n  \
                    ~ agent ana@acme.example: max_chats 3 → 5\n  \
                    - team night\n";
    assert!(
        text.contains(expected),
        "expected:\n{expected}\nin:\n{text}"
    );
    assert!(text.contains("Applied revision 2 ("), "{text}");
    assert_eq!(site.live_files(), files(&v2));

    // Rolling back installs revision 1's files again, as revision 3.
    let out = site.livechat(&["rollback", "1"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("Plan for revision 1 against revision 2:"),
        "{text}"
    );
    assert!(text.contains("  - bot sales\n"), "{text}");
    assert!(text.contains("  + team night\n"), "{text}");
    assert!(text.contains("Applied revision 3 ("), "{text}");
    assert_eq!(site.live_files(), files(&v1));

    let history = site.history();
    let numbers: Vec<i64> = history
        .iter()
        .map(|r| r["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![3, 2, 1]);
    let live: Vec<bool> = history
        .iter()
        .map(|r| r["live"].as_bool().unwrap())
        .collect();
    assert_eq!(live, vec![true, false, false]);
    assert_eq!(history[0]["source"], "rollback");
    let summary = history[0]["summary"].as_str().unwrap();
    assert!(summary.starts_with("rollback to 1: "), "{summary}");
    assert!(summary.contains("-1 bot"), "{summary}");
    assert_eq!(history[0]["hash"], history[2]["hash"]);
    assert_eq!(history[1]["source"], "apply");
    assert_eq!(history[1]["summary"], "+1 bot, ~1 bot, ~1 agent, -1 team");

    // Rolling back to the live content again changes nothing.
    let out = site.livechat(&["rollback", "3"]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        "No changes: revision 3 is the live revision.\n"
    );
    assert_eq!(site.history().len(), 3);
}

#[test]
fn an_invalid_bundle_is_refused_with_positions_and_installs_nothing() {
    let site = Site::new();
    let good = site.bundle("good", &[("support.toml", SUPPORT)]);
    assert_success(&site.apply(&good, &[]));

    // `colr` is a typo on line 3, column 1; `max_chats` wants a number.
    let bad_bot =
        "name = \"Acme Support\"\n[widget]\ncolr = \"#fff\"\n\n[[step]]\nid = \"start\"\n";
    let bad_agents = "[[team]]\nid = \"support\"\nbots = [\"support\"]\n\n[[agent]]\nname = \"Ana\"\nemail = \"ana@acme.example\"\nmax_chats = \"many\"\nteams = [\"support\"]\n";
    let bad = site.bundle(
        "bad",
        &[("support.toml", bad_bot), ("agents.toml", bad_agents)],
    );
    let out = site.apply(&bad, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let at = |file: &str, line: u32, col: u32| format!("{}/{file}:{line}:{col}: ", bad.display());
    assert!(err.contains(&at("support.toml", 3, 1)), "{err}");
    assert!(err.contains("did you mean `color`"), "{err}");
    assert!(err.contains(&at("agents.toml", 8, 13)), "{err}");
    assert!(err.contains("nothing was installed"), "{err}");
    assert_eq!(stdout(&out), "", "no plan for an invalid bundle");
    assert_eq!(site.live_files(), files(&[("support.toml", SUPPORT)]));
    assert_eq!(site.history().len(), 1);
}

#[test]
fn rolling_back_to_a_revision_that_does_not_exist_is_an_error() {
    let site = Site::new();
    let out = site.livechat(&["rollback", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("there is no revision 7"),
        "{}",
        stderr(&out)
    );
    // Looking did not create a database.
    assert!(!site.tmp.path().join("data").exists());

    let bundle = site.bundle("b", &[("support.toml", SUPPORT)]);
    assert_success(&site.apply(&bundle, &[]));
    let out = site.livechat(&["rollback", "7"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("there is no revision 7"),
        "{}",
        stderr(&out)
    );
    assert_eq!(site.history().len(), 1);
}

#[test]
fn history_is_empty_before_the_first_apply() {
    let site = Site::new();
    assert_eq!(site.history(), Vec::<serde_json::Value>::new());
    let out = site.livechat(&["history"]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("No revisions yet"),
        "{}",
        stdout(&out)
    );
}

// ---- `--server`: a stand-in admin API that answers one request with a canned reply ----

/// Serves one request on a free loopback port; the thread returns the request it got.
fn one_shot_server(status: u16, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut request_body = vec![0; length];
        reader.read_exact(&mut request_body).unwrap();
        let reply = format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        reader.get_mut().write_all(reply.as_bytes()).unwrap();
        head + &String::from_utf8(request_body).unwrap()
    });
    (url, handle)
}

#[test]
fn apply_to_a_server_uploads_the_files_and_prints_its_plan() {
    let site = Site::new();
    let dir = site.bundle("b", &[("support.toml", SUPPORT), ("agents.toml", AGENTS)]);
    let (url, server) = one_shot_server(
        200,
        r#"{"plan": ["+ bot support", "~ agent ana@acme.example: max_chats 3 → 5"],
            "summary": "+1 bot, ~1 agent", "unchanged": false,
            "revision": {"number": 4, "hash": "0123456789abcdef0123", "created_at": "2026-01-01T00:00:00Z",
                         "source": "api", "summary": "+1 bot, ~1 agent"}}"#,
    );
    let out = site.apply(&dir, &["--server", &url, "--token", "s3cret"]);
    assert_success(&out);
    let request = server.join().unwrap();
    assert!(
        request.starts_with("POST /api/v1/admin/config "),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret\r\n"),
        "{request}"
    );
    let body: serde_json::Value =
        serde_json::from_str(request.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "files": {"support.toml": SUPPORT, "agents.toml": AGENTS},
            "dry_run": false,
        })
    );
    assert_eq!(
        stdout(&out),
        format!(
            "Plan for {} on {url}:\n  + bot support\n  ~ agent ana@acme.example: max_chats 3 → 5\n\
             Applied revision 4 (0123456789ab) on {url}.\n",
            dir.display()
        )
    );
    assert!(!stderr(&out).contains("s3cret"));
    assert!(!site.bots_dir().exists(), "nothing is installed locally");
}

#[test]
fn a_bundle_the_server_refuses_is_shown_with_the_local_lines() {
    let site = Site::new();
    let dir = site.bundle("b", &[("support.toml", SUPPORT)]);
    let (url, server) = one_shot_server(
        422,
        r#"{"error": {"code": "invalid_bundle", "message": "the bundle has 1 error(s)",
            "diagnostics": [{"file": "support.toml", "line": 5, "column": 6,
                             "message": "environment variable `HOOK` is not set"}]}}"#,
    );
    let out = site.apply(&dir, &["--server", &url, "--token", "t", "--dry-run"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}/support.toml:5:6: environment variable `HOOK` is not set",
            dir.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("5 | say = \"Hi! What can we do for you?\""),
        "{err}"
    );
    assert!(
        err.ends_with("refused the bundle: the bundle has 1 error(s); nothing was installed\n"),
        "{err}"
    );

    let (url, server) = one_shot_server(
        401,
        r#"{"error": {"code": "unauthorized", "message": "a valid admin token is required"}}"#,
    );
    let out = site.apply(&dir, &["--server", &url, "--token", "wrong"]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    assert!(stderr(&out).contains("a valid admin token is required"));
}

#[test]
fn a_server_that_cannot_be_reached_is_exit_code_2() {
    let site = Site::new();
    let dir = site.bundle("b", &[("support.toml", SUPPORT)]);
    // A port that was free a moment ago: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = site.apply(&dir, &["--server", &url, "--token", "t"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot reach"), "{}", stderr(&out));
}

#[test]
fn apply_to_a_server_checks_the_bundle_before_uploading() {
    let site = Site::new();
    let dir = site.bundle(
        "b",
        &[("support.toml", "name = \"S\"\n[[stpe]]\nid = \"a\"\n")],
    );
    // Nothing listens here: an upload would fail with exit code 2.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = site.apply(&dir, &["--server", &url, "--token", "t"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}/support.toml:2:", dir.display())),
        "{err}"
    );
    assert!(err.contains("did you mean `step`"), "{err}");
}
