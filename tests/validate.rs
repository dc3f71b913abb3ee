//! `livechat validate`, run as the real binary: every fixture bundle under
//! `tests/fixtures/invalid/` must fail with exactly the errors in its `expected.txt`, and
//! every one under `tests/fixtures/valid/` must pass.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_livechat");

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `livechat` without any LIVECHAT_* variable of the caller's environment, so that a
/// developer's settings cannot change what is validated.
fn livechat(args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LIVECHAT_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(extra_env.iter().copied());
    let out = cmd.output().expect("the livechat binary runs");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn validate_text(dir: &Path) -> Output {
    livechat(&["validate", "--format", "text", path_str(dir)], &[])
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A copy of the bundle files of `dir` in a fresh directory, so that running the validator
/// (which takes a lock file in the bundle directory) leaves the source tree untouched.
fn copy_bundle(dir: &Path) -> TempDir {
    let tmp = TempDir::new().unwrap();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    tmp
}

fn bundle(files: &[(&str, &str)]) -> TempDir {
    let tmp = TempDir::new().unwrap();
    for (name, text) in files {
        fs::write(tmp.path().join(name), text).unwrap();
    }
    tmp
}

/// The `file:line:col: message` lines of a text report, with the directory prefix removed.
fn error_lines(stdout: &str, dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

/// The fixture bundles under `tests/fixtures/{kind}/`, in name order.
fn fixture_dirs(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind);
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_invalid_fixture_reports_exactly_its_expected_errors() {
    let dirs = fixture_dirs("invalid");
    assert!(
        dirs.len() >= 35,
        "expected a fixture per rule, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expected_text = fs::read_to_string(dir.join("expected.txt"))
            .unwrap_or_else(|e| panic!("{name}: expected.txt: {e}"));
        let expected: Vec<&str> = expected_text.lines().filter(|l| !l.is_empty()).collect();
        assert!(!expected.is_empty(), "{name}: expected.txt is empty");

        let tmp = copy_bundle(dir);
        let out = validate_text(tmp.path());
        let got = error_lines(&out.stdout, tmp.path());
        let mut problems = Vec::new();
        if out.code != Some(1) {
            problems.push(format!("exit code {:?}, expected 1", out.code));
        }
        for line in &expected {
            if !got.iter().any(|g| g == line) {
                problems.push(format!("missing: {line}"));
            }
        }
        let errors = if expected.len() == 1 {
            "error"
        } else {
            "errors"
        };
        let summary = format!("{} {errors} in {}", expected.len(), tmp.path().display());
        if !out.stdout.lines().any(|l| l == summary) {
            problems.push(format!("no summary line `{summary}`"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}:\n  {}\n  stdout:\n{}\n  stderr:\n{}",
                problems.join("\n  "),
                out.stdout,
                out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_valid_fixture_validates() {
    let dirs = fixture_dirs("valid");
    assert!(!dirs.is_empty(), "no fixture under tests/fixtures/valid");
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = copy_bundle(dir);
        let out = validate_text(tmp.path());
        let valid = format!("{}: valid — ", tmp.path().display());
        assert!(
            out.code == Some(0) && out.stdout.starts_with(&valid),
            "{name} must validate:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
}

/// A step that only the Skip button leads to is reachable: the validator follows skip as
/// the flow does (the same bundle runs in `chat::reachability`).
#[test]
fn a_step_reached_only_by_skip_is_valid_and_unreachable_without_the_button() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/skip-only-step");
    let tmp = copy_bundle(&dir);
    let out = validate_text(tmp.path());
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);

    let support = fs::read_to_string(dir.join("support.toml")).unwrap();
    let without_skip = support.replacen("buttons = [\"skip\"]\n", "", 1);
    assert_ne!(without_skip, support);
    let tmp = bundle(&[("support.toml", &without_skip)]);
    let out = validate_text(tmp.path());
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_eq!(
        error_lines(&out.stdout, tmp.path()),
        vec![
            "support.toml:13:6: step `newsletter` is unreachable: no path from the first step \
             `start` leads here"
        ]
    );
}

#[test]
fn errors_show_the_source_line_and_a_caret() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/goto-missing");
    let tmp = copy_bundle(&dir);
    let out = validate_text(tmp.path());
    let expected = format!(
        "{}/support.toml:6:8: goto target `nowhere` is not a step of this bot\n  |\n\
         6 | goto = \"nowhere\"\n  |        ^^^^^^^^^\n",
        tmp.path().display()
    );
    assert!(out.stdout.contains(&expected), "{}", out.stdout);
}

const SUPPORT_BOT: &str = r#"name = "Acme Support"
allowed_origins = ["https://acme.example"]

[[step]]
id = "start"
say = "Hi! What can we do for you?"
choices = [
  { label = "Billing question", set = { topic = "billing" }, goto = "human" },
  { label = "Something else", goto = "human" },
]

[[step]]
id = "human"
live_chat = "desk"
buttons = ["skip", "back"]

[[step]]
id = "bye"
say = "Thanks for chatting with us."
end = true

[live_chat.desk]
offline_form = "contact"
route = [{ team = "support" }]
hours = { timezone = "Europe/Berlin", open = ["mon-fri 08:00-18:00"] }

[offline_form.contact]
fields = [{ name = "email", label = "Email", type = "email", required = true }]
email_to = ["support@acme.example"]
"#;

const SALES_BOT: &str = r#"name = "Acme Sales"

[[step]]
id = "start"
say = "Looking for a quote?"
"#;

const AGENTS: &str = r#"[[team]]
id = "support"
bots = ["support", "sales"]

[[agent]]
name = "Ana Lima"
email = "ana@acme.example"
teams = ["support"]
"#;

const RESPONSES: &str = r#"[[response]]
shortcut = "refund"
text = "Refunds take 5-7 business days."

[[response]]
shortcut = "hours"
text = "We're here Monday to Friday, 8 to 18."
bots = ["support"]
"#;

fn valid_bundle() -> TempDir {
    bundle(&[
        ("support.toml", SUPPORT_BOT),
        ("sales.toml", SALES_BOT),
        ("agents.toml", AGENTS),
        ("responses.toml", RESPONSES),
    ])
}

#[test]
fn a_valid_bundle_prints_a_summary_and_exits_0() {
    let tmp = valid_bundle();
    let out = validate_text(tmp.path());
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "{}: valid — 2 bots, 1 team, 1 agent, 2 canned responses\n",
            tmp.path().display()
        )
    );
}

#[test]
fn semantic_errors_in_several_files_are_reported_at_once() {
    let support = SUPPORT_BOT
        .replace(
            "goto = \"human\" },\n  { label = \"Something",
            "goto = \"humn\" },\n  { label = \"Something",
        )
        .replace("team = \"support\"", "team = \"billing\"");
    let sales = SALES_BOT.replace("say = \"Looking for a quote?\"", "live_chat = \"quotes\"");
    let agents = AGENTS.replace("teams = [\"support\"]", "teams = []");
    let responses = RESPONSES.replace("bots = [\"support\"]", "bots = [\"helpdesk\"]");
    let tmp = bundle(&[
        ("support.toml", &support),
        ("sales.toml", &sales),
        ("agents.toml", &agents),
        ("responses.toml", &responses),
    ]);
    let out = validate_text(tmp.path());
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let got = error_lines(&out.stdout, tmp.path());
    assert_eq!(
        got,
        vec![
            "agents.toml:8:9: agent `Ana Lima` has no team, so no chat can ever reach them: \
             add at least one to `teams`",
            "responses.toml:8:9: bot `helpdesk` does not exist (there is no `helpdesk.toml` \
             in this bundle)",
            "sales.toml:5:13: live chat `quotes` is not defined in this bot (no \
             `[live_chat.quotes]`)",
            "support.toml:8:69: goto target `humn` is not a step of this bot; did you mean \
             `human`?",
            "support.toml:24:19: team `billing` is not defined in agents.toml",
        ]
    );
    assert!(
        out.stdout
            .ends_with(&format!("5 errors in {}\n", tmp.path().display())),
        "{}",
        out.stdout
    );
}

#[test]
fn parse_errors_in_several_files_are_reported_at_once() {
    let support = SUPPORT_BOT.replace("say = \"Thanks", "sya = \"Thanks");
    let agents = AGENTS.replace("ana@acme.example", "ana(at)acme.example");
    let tmp = bundle(&[
        ("support.toml", &support),
        ("sales.toml", SALES_BOT),
        ("agents.toml", &agents),
        ("responses.toml", RESPONSES),
    ]);
    let out = validate_text(tmp.path());
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_eq!(
        error_lines(&out.stdout, tmp.path()),
        vec![
            "agents.toml:7:9: invalid email address `ana(at)acme.example`",
            "support.toml:19:1: unknown key `sya`; did you mean `say`?",
        ]
    );
}

#[test]
fn a_file_that_is_not_utf8_is_an_error_not_a_crash() {
    let tmp = valid_bundle();
    fs::write(tmp.path().join("broken.toml"), b"name = \"\xff\xfe\"\n").unwrap();
    let out = validate_text(tmp.path());
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        error_lines(&out.stdout, tmp.path())
            .contains(&"broken.toml:1:1: the file is not valid UTF-8".to_string()),
        "{}",
        out.stdout
    );
}

#[test]
fn a_directory_that_cannot_be_read_exits_2() {
    let tmp = TempDir::new().unwrap();
    let missing = tmp.path().join("no-such-bundle");
    let out = validate_text(&missing);
    assert_eq!(out.code, Some(2));
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("cannot read the bundle directory")
            && out.stderr.contains("no-such-bundle"),
        "{}",
        out.stderr
    );

    let file = tmp.path().join("support.toml");
    fs::write(&file, SALES_BOT).unwrap();
    let out = validate_text(&file);
    assert_eq!(out.code, Some(2), "a file is not a bundle: {}", out.stdout);
}

#[test]
fn json_reports_errors_with_positions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/goto-missing");
    let tmp = copy_bundle(&dir);
    let out = livechat(&["validate", "--format", "json", path_str(tmp.path())], &[]);
    assert_eq!(out.code, Some(1));
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(
        report["errors"][0],
        serde_json::json!({
            "file": "support.toml",
            "line": 6,
            "column": 8,
            "message": "goto target `nowhere` is not a step of this bot",
        })
    );
    assert_eq!(report["errors"][1]["line"], 9);
    assert_eq!(report["errors"][1]["column"], 6);
    assert_eq!(report["errors"].as_array().unwrap().len(), 2);
}

#[test]
fn json_of_a_valid_bundle_lists_its_bots() {
    let tmp = valid_bundle();
    let out = livechat(&["validate", "--format", "json", path_str(tmp.path())], &[]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    assert_eq!(
        report,
        serde_json::json!({ "valid": true, "errors": [], "bots": ["sales", "support"] })
    );
}

#[test]
fn without_dir_the_live_bundle_dir_is_validated() {
    let tmp = valid_bundle();
    let out = livechat(
        &["validate"],
        &[("LIVECHAT_BOTS_DIR", path_str(tmp.path()))],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with(&format!("{}: valid — 2 bots", tmp.path().display())),
        "{}",
        out.stdout
    );

    let settings_dir = TempDir::new().unwrap();
    let bots = settings_dir.path().join("bots");
    fs::create_dir(&bots).unwrap();
    fs::write(
        bots.join("sales.toml"),
        SALES_BOT.replace("id = ", "idd = "),
    )
    .unwrap();
    let config = settings_dir.path().join("livechat.toml");
    fs::write(&config, "bots_dir = \"bots\"\n").unwrap();
    let out = livechat(&["validate", "--config", path_str(&config)], &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert_eq!(
        error_lines(&out.stdout, &bots),
        vec!["sales.toml:4:1: unknown key `idd`; did you mean `id`?"],
        "bots_dir of livechat.toml is relative to it: {}",
        out.stdout
    );
}

#[test]
fn the_example_bundle_is_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots");
    let tmp = copy_bundle(&examples);
    let out = validate_text(tmp.path());
    assert_eq!(
        out.code,
        Some(0),
        "examples/bots must validate:\n{}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stdout.contains("valid — 0 bots"),
        "examples/bots has no bot: {}",
        out.stdout
    );
}
