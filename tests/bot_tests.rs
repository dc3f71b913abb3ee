//! `livechat test`, `try` and `graph`, and `apply` running a bundle's tests: the real
//! binary on temporary bundles (and a copy of `examples/bots`).

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::livechat;

const DESK: &str = r#"name = "Desk"
languages = ["en", "de"]

[[step]]
id = "start"
say = { en = "Hello! Pick one.", de = "Hallo! Bitte wählen." }
choices = [
  { label = "Orders", value = "orders", set = { topic = "orders" }, goto = "number" },
  { label = "Other", value = "other", goto = "human" },
]

[[step]]
id = "number"
say = "Your order number?"
ask = { var = "order", type = "number", max = 8 }
buttons = ["skip", "back"]

[[step]]
id = "human"
say = "Shall I get a person?"
live_chat = "desk"
buttons = ["skip", "back"]

[[step]]
id = "bye"
say = "Bye{% if name %}, {{ name }}{% endif %}."
end = true

[live_chat.desk]
accept_timeout = "2h"
idle_timeout = "3h"                 # longer than the accept timeout: the visitor waits quietly
offline_form = "contact"
route = [
  { when = { topic = "orders" }, team = "orders" },
  { when = { country = "US" }, team = "us" },
  { team = "general" },
]
hours = { timezone = "UTC", open = ["mon-fri 09:00-17:00"] }

[offline_form.contact]
email_to = ["desk@example.com"]
subject = "{{ topic }} from {{ email }}"
fields = [
  { name = "email", label = "Email", type = "email", required = true },
  { name = "message", label = "Message", type = "textarea", required = true },
]
"#;

const AGENTS: &str = r#"[[team]]
id = "orders"
bots = ["desk"]

[[team]]
id = "us"
bots = ["desk"]

[[team]]
id = "general"
bots = ["desk"]

[[agent]]
name = "Ada"
email = "ada@example.com"
teams = ["orders", "general"]

[[agent]]
name = "Bo"
email = "bo@example.com"
teams = ["general"]

[[agent]]
name = "Cy"
email = "cy@example.com"
teams = ["us"]
"#;

/// Every action and every expectation kind, all holding. The default clock (Monday 09:00
/// UTC) is within the desk's hours; the accept timeout is two hours of virtual time.
const CASES: &str = r#"[[case]]
name = "every action and expectation"
bot = "desk"

[[case.step]]
bot = "Hello! Pick one."
step = "start"
status = "bot"
open = true
ended = false

[[case.step]]
click = "Orders"
step = "number"
vars = { topic = "orders" }

[[case.step]]
type = "12x"
bot_contains = "doesn't look right"

[[case.step]]
type = "1234"
bot_matches = "^Shall I .* person\\?$"
vars = { order = "1234" }

[[case.step]]
back = true
step = "number"

[[case.step]]
skip = true
step = "human"

[[case.step]]
click = "Talk to a person"
status = "new"
team = "orders"
rings = ["ada@example.com"]
events = ["livechat.requested", "livechat.ringing"]

[[case.step]]
wait = "119m"
status = "new"

[[case.step]]
nobody_accepts = true
form = "contact"
events = ["livechat.timeout"]

[[case.step]]
submit = { email = "x@example.org", message = "Hi" }
mail_to = ["desk@example.com"]
mail_subject = "orders from x@example.org"
bot = "Bye."
ended = true

[[case]]
name = "click by value, routing by country, an agent accepts"
bot = "desk"
country = "US"

[[case.step]]
click = "other"
step = "human"

[[case.step]]
click = "Talk to a person"
team = "us"
rings = ["cy@example.com"]

[[case.step]]
accept = "cy@example.com"
status = "assigned"

[[case]]
name = "closed in the evening"
bot = "desk"
language = "de"
time = "2026-01-05T18:00:00Z"

[[case.step]]
bot = "Hallo! Bitte wählen."
open = false

[[case.step]]
click = "Other"

[[case.step]]
click = "Talk to a person"
offline = "closed"

[[case]]
name = "nobody online"
bot = "desk"
online = []
vars = { name = "Kim" }

[[case.step]]
click = "Other"

[[case.step]]
click = "Talk to a person"
offline = "no_agents"

[[case.step]]
skip = true
bot = "Bye, Kim."
"#;

/// A bundle with `desk`, its roster and `cases` as `tests/desk.toml`.
fn desk_bundle(cases: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    fs::create_dir_all(dir.join("tests")).unwrap();
    fs::write(dir.join("desk.toml"), DESK).unwrap();
    fs::write(dir.join("agents.toml"), AGENTS).unwrap();
    fs::write(dir.join("tests/desk.toml"), cases).unwrap();
    (tmp, dir)
}

/// A copy of `examples/bots` with its tests, so that runs leave the checkout untouched.
fn examples_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bots");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bots"),
        &dir,
    );
    (tmp, dir)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() {
            copy_dir(&path, &to.join(name));
        } else if path.extension().is_some_and(|e| e == "toml") {
            fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

fn run(args: &[&str]) -> Output {
    livechat().args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn json_test(dir: &Path) -> (i32, serde_json::Value) {
    let out = run(&["test", dir.to_str().unwrap(), "--format", "json"]);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (code(&out), json)
}

#[test]
fn the_example_suite_passes_with_twenty_cases_in_under_a_second() {
    let (_tmp, dir) = examples_copy();
    let out = run(&["test", dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", text(&out.stderr));
    let last = stdout.lines().last().unwrap();
    // `N cases: N passed, 0 failed in T ms`
    let (counts, time) = last.split_once(" in ").unwrap();
    let total: usize = counts.split(' ').next().unwrap().parse().unwrap();
    assert!(total >= 20, "{last}");
    assert!(
        counts.ends_with(&format!("{total} passed, 0 failed")),
        "{last}"
    );
    let ms: f64 = time.trim_end_matches(" ms").parse().unwrap();
    assert!(ms > 0.0 && ms < 1000.0, "{last}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        total,
        "one line per case: {stdout}"
    );
}

#[test]
fn every_step_and_expectation_kind_holds_on_a_virtual_clock() {
    let (_tmp, dir) = desk_bundle(CASES);
    let started = std::time::Instant::now();
    let (code, json) = json_test(&dir);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["passed"], 4, "{json:#}");
    assert_eq!(json["failed"], 0);
    // Two hours of accept timeout cost no real time.
    assert!(started.elapsed().as_secs() < 10);
    assert!(json["elapsed_ms"].as_f64().unwrap() < 1000.0);
}

/// Where `needle` is in `text`, 1-based: the line, and the column of the value after `= `.
fn value_position(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in the cases"));
    let line = text[..at].matches('\n').count() + 1;
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let value = at + needle.find("= ").unwrap() + 2;
    (line, text[line_start..value].chars().count() + 1)
}

#[test]
fn each_expectation_kind_fails_at_its_file_line_and_column() {
    let broken = [
        ("bot = \"Hello! Pick one.\"", "bot = \"Hello! Pick two.\""),
        (
            "bot_contains = \"doesn't look right\"",
            "bot_contains = \"looks fine\"",
        ),
        (
            "bot_matches = \"^Shall I .* person\\\\?$\"",
            "bot_matches = \"^Goodbye\"",
        ),
        ("step = \"start\"", "step = \"number\""),
        ("ended = false", "ended = true"),
        ("vars = { order = \"1234\" }", "vars = { order = \"4321\" }"),
        ("status = \"assigned\"", "status = \"chatting\""),
        ("team = \"us\"", "team = \"general\""),
        (
            "rings = [\"cy@example.com\"]",
            "rings = [\"bo@example.com\"]",
        ),
        ("offline = \"closed\"", "offline = \"no_agents\""),
        ("open = true", "open = false"),
        ("form = \"contact\"", "form = \"contact2\""),
        (
            "mail_to = [\"desk@example.com\"]",
            "mail_to = [\"sales@example.com\"]",
        ),
        (
            "mail_subject = \"orders from x@example.org\"",
            "mail_subject = \"orders\"",
        ),
        (
            "events = [\"livechat.timeout\"]",
            "events = [\"livechat.accepted\"]",
        ),
    ];
    for (good, bad) in broken {
        let cases = CASES.replacen(good, bad, 1);
        // `form = "contact2"` names no form: the file does not run at all (exit 2).
        let (tmp, dir) = desk_bundle(&cases);
        let out = run(&["test", dir.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        let (line, col) = value_position(&cases, bad);
        let at = format!("tests/desk.toml:{line}:{col}: ");
        if bad.starts_with("form") {
            assert_eq!(code(&out), 2, "{bad}: {stdout}{stderr}");
            assert!(stderr.contains(&at), "{bad}: {stderr}");
            continue;
        }
        assert_eq!(code(&out), 1, "{bad}: {stdout}{stderr}");
        assert!(stdout.contains(&at), "{bad}: expected {at} in\n{stdout}");
        assert!(stdout.contains("expected: "), "{stdout}");
        assert!(stdout.contains("got: "), "{stdout}");
        assert!(stdout.contains("3 passed, 1 failed"), "{bad}: {stdout}");
        drop(tmp);
    }
}

#[test]
fn an_action_the_conversation_refuses_fails_the_case_there() {
    let cases = CASES.replacen("click = \"other\"", "click = \"Returns\"", 1);
    let (_tmp, dir) = desk_bundle(&cases);
    let out = run(&["test", dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 1, "{stdout}");
    let (line, col) = value_position(&cases, "click = \"Returns\"");
    assert!(
        stdout.contains(&format!(
            "tests/desk.toml:{line}:{col}: the conversation refused this"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("`Orders`, `Other`"), "{stdout}");
}

#[test]
fn junit_output_is_xml_with_one_testcase_per_case() {
    let cases = CASES.replacen("team = \"us\"", "team = \"general\"", 1);
    let (tmp, dir) = desk_bundle(&cases);
    let junit = tmp.path().join("junit.xml");
    let out = run(&[
        "test",
        dir.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    let xml = fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("4"));
    assert_eq!(root.attribute("failures"), Some("1"));
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 4);
    let failed: Vec<_> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].attribute("name"),
        Some("click by value, routing by country, an agent accepts")
    );
    let failure = failed[0]
        .children()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    let (line, col) = value_position(&cases_text(&dir), "team = \"general\"");
    assert_eq!(
        failure.attribute("message").unwrap(),
        format!("tests/desk.toml:{line}:{col}: the request is routed elsewhere")
    );
    assert!(failure.text().unwrap().contains("got: us"));
}

fn cases_text(dir: &Path) -> String {
    fs::read_to_string(dir.join("tests/desk.toml")).unwrap()
}

#[test]
fn case_files_that_cannot_run_exit_2_and_validate_reports_them() {
    for (cases, message) in [
        (
            "[[case]]\nname = \"x\"\nbot = \"desk\n",
            "tests/desk.toml:3:",
        ),
        (
            "[[case]]\nname = \"x\"\nbot = \"dsk\"\n",
            "tests/desk.toml:3:7: no bot `dsk`",
        ),
        (
            "[[case]]\nname = \"x\"\nbot = \"desk\"\n[[case.step]]\nstep = \"nope\"\n",
            "tests/desk.toml:5:8: bot `desk` has no step `nope`",
        ),
        (
            "[[case]]\nname = \"x\"\nbot = \"desk\"\n[[case.step]]\nclick = \"Orders\"\nskip = true\n",
            "one thing happens per step",
        ),
        (
            "[[case]]\nname = \"x\"\nbot = \"desk\"\n[[case.step]]\naccept = \"zed@example.com\"\n",
            "tests/desk.toml:5:10: no agent `zed@example.com`",
        ),
    ] {
        let (_tmp, dir) = desk_bundle(cases);
        let out = run(&["test", dir.to_str().unwrap()]);
        assert_eq!(code(&out), 2, "{cases}");
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
        let out = run(&["validate", dir.to_str().unwrap()]);
        assert_eq!(code(&out), 1, "validate: {cases}");
        assert!(text(&out.stdout).contains(message), "{}", text(&out.stdout));
    }
    let (_tmp, dir) = desk_bundle(CASES);
    let out = run(&["validate", dir.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("; 4 test cases"),
        "{}",
        text(&out.stdout)
    );
}

/// The case of `examples/bots/tests/support.toml` named `name`, as a TOML table.
fn example_case(dir: &Path, name: &str) -> toml::Table {
    let file: toml::Table = fs::read_to_string(dir.join("tests/support.toml"))
        .unwrap()
        .parse()
        .unwrap();
    file["case"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap()
        .as_table()
        .unwrap()
        .clone()
}

const ACTIONS: [&str; 8] = [
    "type",
    "click",
    "submit",
    "skip",
    "back",
    "accept",
    "nobody_accepts",
    "wait",
];

/// The actions of a case's steps, in order.
fn actions(case: &toml::Table) -> Vec<(String, toml::Value)> {
    case["step"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let s = s.as_table().unwrap();
            ACTIONS
                .iter()
                .find_map(|a| s.get(*a).map(|v| (a.to_string(), v.clone())))
        })
        .collect()
}

fn try_with(dir: &Path, bot: &str, script: &str) -> Output {
    let mut child = livechat()
        .args(["try", bot, dir.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn try_scripted_on_stdin_reproduces_an_example_case_and_saves_a_passing_one() {
    let (tmp, dir) = examples_copy();
    let name = "nobody accepts within two minutes: the timeout message and the offline form";
    let case = example_case(&dir, name);
    let saved = tmp.path().join("saved.toml");
    // The case's steps as a person would type them: numbers for what is shown numbered.
    let script = format!(
        ":set name=Maria\n1\n:skip\n:skip\n1\n:time +1m\n:nobody\n\
         :submit name=Maria email=maria@example.org topic=Billing message=Please call me back.\n\
         :save {}\n",
        saved.display()
    );
    let out = try_with(&dir, "support", &script);
    let transcript = text(&out.stdout);
    assert_eq!(code(&out), 0, "{transcript}{}", text(&out.stderr));
    // What the case expects the bot to say, the transcript shows, in order.
    let mut rest = transcript.as_str();
    for step in case["step"].as_array().unwrap() {
        if let Some(said) = step.get("bot").and_then(|b| b.as_str()) {
            let at = rest
                .find(&format!("bot: {said}"))
                .unwrap_or_else(|| panic!("{said:?} missing or out of order in\n{transcript}"));
            rest = &rest[at..];
        }
    }
    assert!(
        transcript.contains("  → Live Chat `desk`, routed to team `billing`"),
        "{transcript}"
    );
    assert!(
        transcript.contains("  → rings ana.lima@example.com"),
        "{transcript}"
    );
    assert!(
        transcript.contains(
            "  → mail to support@example.com: [Acme Support] Billing: message from Maria"
        ),
        "{transcript}"
    );
    // The saved session has the case's steps, and passes as a test.
    let saved_text = fs::read_to_string(&saved).unwrap();
    let saved_file: toml::Table = saved_text.parse().unwrap();
    let saved_case = saved_file["case"].as_array().unwrap()[0]
        .as_table()
        .unwrap()
        .clone();
    assert_eq!(actions(&saved_case), actions(&case), "{saved_text}");
    assert_eq!(saved_case["vars"], case["vars"]);
    let fresh = tmp.path().join("fresh");
    copy_dir(&dir, &fresh);
    fs::remove_dir_all(fresh.join("tests")).unwrap();
    fs::create_dir_all(fresh.join("tests")).unwrap();
    fs::copy(&saved, fresh.join("tests/saved.toml")).unwrap();
    let out = run(&["test", fresh.to_str().unwrap()]);
    assert_eq!(
        code(&out),
        0,
        "{}{}\n{saved_text}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("1 case: 1 passed, 0 failed"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_scripted_try_that_goes_wrong_exits_1() {
    let (_tmp, dir) = examples_copy();
    let out = try_with(&dir, "support", ":accept ana.lima@example.com\n:lang de\n");
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 1, "{stdout}");
    assert!(stdout.contains("error: "), "{stdout}");
    // `:lang` starts again in German.
    assert!(
        stdout.contains("bot: Hallo! Wobei können wir helfen?"),
        "{stdout}"
    );
    assert!(stdout.contains("  1. Rechnungen und Zahlungen"), "{stdout}");
}

#[test]
fn graph_renders_through_graphviz_and_marks_unreachable_steps() {
    let (tmp, dir) = examples_copy();
    let out = run(&["graph", "support", dir.to_str().unwrap(), "--format", "dot"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let svg = dot_svg(&out.stdout);
    for id in ["start", "selfhelp", "order", "describe", "human", "bye"] {
        assert!(
            svg.contains(&format!(">{id}</text>")),
            "{id} in the picture"
        );
    }
    assert!(svg.contains("Live Chat: desk"));
    assert!(svg.contains("accept within 2m"));
    assert!(svg.contains("offline form"));
    assert!(svg.contains(">skip</text>") && svg.contains(">back</text>"));
    assert!(svg.contains("Billing and invoices"));
    let mermaid = run(&["graph", "support", dir.to_str().unwrap()]);
    let mermaid = text(&mermaid.stdout);
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    assert!(mermaid.contains("-.->|\"skip\"|"), "{mermaid}");
    assert!(
        !mermaid.contains("class "),
        "nothing unreachable: {mermaid}"
    );

    // A step nothing leads to: the bundle does not validate, but the bot is drawn.
    let bot = tmp.path().join("orphan");
    fs::create_dir_all(&bot).unwrap();
    fs::write(
        bot.join("lost.toml"),
        "name = \"Lost\"\n[[step]]\nid = \"a\"\nsay = \"Hi\"\nend = true\n[[step]]\nid = \"b\"\nsay = \"Nobody gets here\"\n",
    )
    .unwrap();
    let out = run(&["graph", "lost", bot.to_str().unwrap(), "--format", "dot"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("b\\nNobody gets here\\n(unreachable)"));
    assert!(dot_svg(&out.stdout).contains("(unreachable)"));
    let out = run(&["graph", "lost", bot.to_str().unwrap()]);
    assert!(text(&out.stdout).contains("class step1 unreachable"));
}

/// The SVG Graphviz's `dot` draws from `source`.
fn dot_svg(source: &[u8]) -> String {
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Graphviz `dot` is installed (Debian's graphviz package)");
    child.stdin.take().unwrap().write_all(source).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dot: {}", text(&out.stderr));
    let svg = text(&out.stdout);
    assert!(svg.contains("<svg"), "{svg}");
    svg
}

#[test]
fn apply_runs_the_tests_and_refuses_a_bundle_whose_tests_fail() {
    let cases = CASES.replacen("team = \"us\"", "team = \"general\"", 1);
    let (tmp, dir) = desk_bundle(&cases);
    let data = tmp.path().join("data");
    let live = tmp.path().join("live");
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "--data-dir",
            data.to_str().unwrap(),
            "--bots-dir",
            live.to_str().unwrap(),
            "apply",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = apply(&[]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), 1, "{}{stderr}", text(&out.stdout));
    assert!(
        stderr.contains(
            "error: 1 of the bundle's test cases failed (`click by value, routing by country, an agent accepts`); nothing was installed"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("tests/desk.toml:"), "{stderr}");
    assert!(!live.join("desk.toml").exists(), "nothing installed");

    let out = apply(&["--skip-tests"]);
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Applied revision 1"), "{stdout}");
    assert!(
        stdout.contains("Tests: 4 cases: 3 passed, 1 failed in "),
        "{stdout}"
    );
    assert!(
        stdout.contains("installed anyway (--skip-tests)"),
        "{stdout}"
    );
    assert!(live.join("desk.toml").exists());
    assert!(!live.join("tests").exists(), "tests are not bots");

    fs::write(dir.join("tests/desk.toml"), CASES).unwrap();
    fs::write(dir.join("desk.toml"), DESK.replace("Hello!", "Hi!")).unwrap();
    let out = apply(&[]);
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 1, "the greeting changed: {stdout}");
    fs::write(dir.join("tests/desk.toml"), CASES.replace("Hello!", "Hi!")).unwrap();
    let out = apply(&[]);
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 0, "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Applied revision 2"), "{stdout}");
    assert!(
        stdout.contains("Tests: 4 cases: 4 passed, 0 failed in "),
        "{stdout}"
    );
}
