//! `livechat validate [DIR]`: every error at once, as file:line:col with the line and a caret.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::Format;
use crate::config::{self, Bundle, Diagnostic};
use crate::settings::{ServerArgs, SettingsError};

pub fn run(server: &ServerArgs, dir: Option<PathBuf>, format: Format) -> ExitCode {
    // The settings file is read when it is given (or names the bundle): an error at a place
    // in it (a `database_url` that cannot be used) is reported like a bundle's.
    let settings = (dir.is_none() || server.config.is_some()).then(|| server.resolve());
    if let Some(Err(SettingsError::At(diag))) = &settings {
        let file = diag.file.clone();
        let result = Err(vec![diag.as_ref().clone()]);
        let report = match format {
            Format::Text => format!("{}1 error in {file}\n", diag.render("")),
            Format::Json => json_report(&result) + "\n",
        };
        let _ = io::stdout().lock().write_all(report.as_bytes());
        return ExitCode::from(1);
    }
    let dir = match (dir, settings) {
        (Some(dir), _) => dir,
        (None, Some(Ok(settings))) => settings.bots_dir,
        (None, Some(Err(e))) => return super::fail(e),
        (None, None) => unreachable!("the settings are resolved when no directory is given"),
    };
    let mut result = match config::load_dir(&dir, &config::process_env) {
        Ok(result) => result,
        Err(e) => return super::fail(e),
    };
    // The test cases beside the bundle must parse and name its bots, steps and agents.
    let mut cases = 0;
    if let Ok(bundle) = &result {
        match super::test::check_tests(&dir, bundle) {
            Ok(n) => cases = n,
            Err(super::test::NotRun::Invalid(diags)) => result = Err(diags),
            Err(super::test::NotRun::Other(e)) => return super::fail(e),
        }
    }
    let dir = dir.display().to_string();
    let report = match format {
        Format::Text => text_report(&dir, &result, cases),
        Format::Json => json_report(&result) + "\n",
    };
    // A closed pipe (`livechat validate | head`) is not worth a panic.
    let _ = io::stdout().lock().write_all(report.as_bytes());
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn text_report(dir: &str, result: &Result<Bundle, Vec<Diagnostic>>, cases: usize) -> String {
    match result {
        Ok(bundle) if cases > 0 => format!(
            "{dir}: valid — {}; {}\n",
            summary(bundle),
            count(cases, "test case", "test cases")
        ),
        Ok(bundle) => format!("{dir}: valid — {}\n", summary(bundle)),
        Err(diags) => {
            let mut out = String::new();
            for d in diags {
                out.push_str(&d.render(dir));
                out.push('\n');
            }
            out.push_str(&format!(
                "{} in {dir}\n",
                count(diags.len(), "error", "errors")
            ));
            out
        }
    }
}

/// `3 bots, 2 teams, 4 agents, 5 canned responses`.
fn summary(bundle: &Bundle) -> String {
    [
        count(bundle.bots.len(), "bot", "bots"),
        count(bundle.roster.teams.len(), "team", "teams"),
        count(bundle.roster.agents.len(), "agent", "agents"),
        count(
            bundle.responses.responses.len(),
            "canned response",
            "canned responses",
        ),
    ]
    .join(", ")
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    errors: &'a [Diagnostic],
    /// The ids of the bots of a valid bundle.
    bots: Vec<&'a str>,
}

fn json_report(result: &Result<Bundle, Vec<Diagnostic>>) -> String {
    let report = match result {
        Ok(bundle) => JsonReport {
            valid: true,
            errors: &[],
            bots: bundle.bots.keys().map(String::as_str).collect(),
        },
        Err(diags) => JsonReport {
            valid: false,
            errors: diags,
            bots: Vec::new(),
        },
    };
    serde_json::to_string_pretty(&report).expect("a report always serializes")
}
