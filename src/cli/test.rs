//! `livechat test [DIR]`: replays the cases of `DIR/tests/*.toml` through the conversation
//! core, one line per case, failures at their `file:line:col`; `--format json` and
//! `--junit FILE` for CI. Exit 0 all passed, 1 a case failed, 2 could not run.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::Format;
use super::apply::print;
use crate::bottest::{self, CaseResult};
use crate::config::{self, Bundle, Diagnostic};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The bundle whose `tests/` to run [default: the current directory].
    pub dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// The results of a bundle's cases, and how long they took.
pub(super) struct Suite {
    pub results: Vec<CaseResult>,
    pub elapsed: Duration,
}

impl Suite {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }
}

/// Why the cases could not run.
pub(super) enum NotRun {
    /// The bundle or a case file has errors.
    Invalid(Vec<Diagnostic>),
    Other(String),
}

/// Parses and runs every case of `dir/tests/` against `bundle`.
pub(super) fn run_suite(dir: &Path, bundle: &Bundle) -> Result<Suite, NotRun> {
    let started = Instant::now();
    let files = bottest::read_tests(dir).map_err(NotRun::Other)?;
    let loaded = bottest::parse_all(&files, bundle).map_err(NotRun::Invalid)?;
    let results = loaded
        .iter()
        .map(|l| bottest::run_case(l, bundle))
        .collect();
    Ok(Suite {
        results,
        elapsed: started.elapsed(),
    })
}

/// The diagnostics of the test files only, for `validate`.
pub(super) fn check_tests(dir: &Path, bundle: &Bundle) -> Result<usize, NotRun> {
    let files = bottest::read_tests(dir).map_err(NotRun::Other)?;
    let loaded = bottest::parse_all(&files, bundle).map_err(NotRun::Invalid)?;
    Ok(loaded.len())
}

pub fn run(args: TestArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let shown = dir.display().to_string();
    let bundle = match config::load_dir(&dir, &config::process_env) {
        Ok(Ok(bundle)) => bundle,
        Ok(Err(diags)) => return cannot_run(&shown, &diags, "the bundle has errors"),
        Err(e) => return super::fail(e),
    };
    let suite = match run_suite(&dir, &bundle) {
        Ok(s) => s,
        Err(NotRun::Invalid(diags)) => {
            return cannot_run(&shown, &diags, "the test files have errors");
        }
        Err(NotRun::Other(e)) => return super::fail(e),
    };
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, junit(&suite))
    {
        return super::fail(format!("cannot write {}: {e}", path.display()));
    }
    match args.format {
        Format::Text => print(&text_report(&shown, &suite)),
        Format::Json => print(&(json_report(&suite) + "\n")),
    }
    if suite.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cannot_run(dir: &str, diags: &[Diagnostic], why: &str) -> ExitCode {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.render(dir));
        out.push('\n');
    }
    let _ = writeln!(out, "error: {why}; no case was run");
    eprint!("{out}");
    ExitCode::from(2)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn path_of(dir: &str, file: &str) -> String {
    if dir.is_empty() || dir == "." {
        file.to_string()
    } else {
        format!("{}/{file}", dir.trim_end_matches('/'))
    }
}

/// One line per case, each failure under its case; the counts and the time last.
pub(super) fn text_report(dir: &str, suite: &Suite) -> String {
    let mut out = String::new();
    for r in &suite.results {
        let mark = if r.passed { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "{mark} {}:{} {}",
            path_of(dir, &r.file),
            r.line,
            r.name
        );
        for f in &r.failures {
            for line in f.at.render(if dir == "." { "" } else { dir }).lines() {
                let _ = writeln!(out, "     {line}");
            }
            if !f.expected.is_empty() || !f.got.is_empty() {
                let _ = writeln!(out, "     expected: {}", f.expected);
                let _ = writeln!(out, "     got:      {}", f.got);
            }
        }
    }
    let _ = writeln!(out, "{}", summary(suite));
    out
}

/// `22 cases: 22 passed, 0 failed in 3.1 ms`.
pub(super) fn summary(suite: &Suite) -> String {
    let total = suite.results.len();
    let failed = suite.failed();
    format!(
        "{total} {}: {} passed, {failed} failed in {}",
        if total == 1 { "case" } else { "cases" },
        total - failed,
        millis(suite.elapsed)
    )
}

#[derive(Serialize)]
struct JsonReport<'a> {
    passed: usize,
    failed: usize,
    elapsed_ms: f64,
    cases: &'a [CaseResult],
}

fn json_report(suite: &Suite) -> String {
    let report = JsonReport {
        passed: suite.results.len() - suite.failed(),
        failed: suite.failed(),
        elapsed_ms: suite.elapsed.as_secs_f64() * 1000.0,
        cases: &suite.results,
    };
    serde_json::to_string_pretty(&report).expect("a report always serializes")
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows no other control characters.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `testsuite` per case file, one `testcase` per case.
fn junit(suite: &Suite) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"livechat test\" tests=\"{}\" failures=\"{}\" time=\"{:.6}\">",
        suite.results.len(),
        suite.failed(),
        suite.elapsed.as_secs_f64()
    );
    let mut files: Vec<&str> = suite.results.iter().map(|r| r.file.as_str()).collect();
    files.dedup();
    for file in files {
        let cases: Vec<&CaseResult> = suite.results.iter().filter(|r| r.file == file).collect();
        let failed = cases.iter().filter(|r| !r.passed).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">",
            xml(file),
            cases.len()
        );
        for r in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" line=\"{}\"",
                xml(file),
                xml(&r.name),
                xml(file),
                r.line
            );
            if r.passed {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            for f in &r.failures {
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}:{}:{}: {}\">expected: {}\ngot: {}</failure>",
                    xml(&f.at.file),
                    f.at.line,
                    f.at.column,
                    xml(&f.at.message),
                    xml(&f.expected),
                    xml(&f.got)
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
