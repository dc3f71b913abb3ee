//! Running cases: each step's action, then its expectations, failing at the first step
//! that does not hold with the `file:line:col` of what failed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::Range;
use std::path::Path;

use serde::Serialize;

use super::case::{self, Case, StepSpec};
use super::session::{Session, Setup};
use crate::chat::conversation::OfflineReason;
use crate::config::{Bundle, Diagnostic};

/// The case files of `dir/tests/`, by name (`tests/support.toml`), sorted. No directory: none.
pub fn read_tests(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let tests = dir.join("tests");
    let mut out = BTreeMap::new();
    let entries = match fs::read_dir(&tests) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("cannot read {}: {e}", tests.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", tests.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !crate::config::is_bundle_file(&name) || !entry.path().is_file() {
            continue;
        }
        let text = fs::read_to_string(entry.path())
            .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
        out.insert(format!("tests/{name}"), text);
    }
    Ok(out)
}

/// A parsed case with the file it comes from.
pub struct Loaded {
    pub file: String,
    pub source: String,
    pub case: Case,
}

/// Parses every case file; every problem at once.
pub fn parse_all(
    files: &BTreeMap<String, String>,
    bundle: &Bundle,
) -> Result<Vec<Loaded>, Vec<Diagnostic>> {
    let mut out = Vec::new();
    let mut diags = Vec::new();
    for (file, source) in files {
        match case::parse(file, source, bundle) {
            Ok(cases) => out.extend(cases.into_iter().map(|case| Loaded {
                file: file.clone(),
                source: source.clone(),
                case,
            })),
            Err(d) => diags.extend(d),
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// One expectation that did not hold (or an action the core refused).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    #[serde(flatten)]
    pub at: Diagnostic,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    /// Where the case's name is written.
    pub line: usize,
    pub passed: bool,
    pub failures: Vec<Failure>,
}

pub fn run_case(loaded: &Loaded, bundle: &Bundle) -> CaseResult {
    let c = &loaded.case;
    let at = |span: Range<usize>, message: &str| {
        Diagnostic::at(&loaded.file, &loaded.source, span, message.to_string())
    };
    let mut result = CaseResult {
        file: loaded.file.clone(),
        name: c.name.get_ref().clone(),
        line: at(c.name.span(), "").line,
        passed: true,
        failures: Vec::new(),
    };
    let fail =
        |result: &mut CaseResult, span: Range<usize>, msg: &str, exp: String, got: String| {
            result.passed = false;
            result.failures.push(Failure {
                at: at(span, msg),
                expected: exp,
                got,
            });
        };
    let setup = match setup_of(c) {
        Ok(s) => s,
        Err(e) => {
            fail(&mut result, c.bot.span(), &e, String::new(), String::new());
            return result;
        }
    };
    let mut s = match Session::start(bundle, c.bot.get_ref(), &setup) {
        Ok(s) => s,
        Err(e) => {
            fail(&mut result, c.bot.span(), &e, String::new(), String::new());
            return result;
        }
    };
    for step in &c.steps {
        if let Ok(Some(action)) = step.action()
            && let Err(e) = s.act(action.get_ref())
        {
            fail(
                &mut result,
                action.span(),
                "the conversation refused this",
                "the step to happen".into(),
                e,
            );
            return result;
        }
        for (span, what, expected, got) in check(step, &s) {
            fail(&mut result, span, &what, expected, got);
        }
        if !result.passed {
            return result;
        }
    }
    result
}

/// The case's header as a session's setup.
pub fn setup_of(c: &Case) -> Result<Setup, String> {
    Ok(Setup {
        language: c.language.clone(),
        page_url: c.page_url.clone(),
        country: c.country.clone(),
        vars: c.vars.clone(),
        time: match &c.time {
            Some(t) => Some(case::parse_time(t.get_ref())?),
            None => None,
        },
        online: c.online.as_ref().map(|o| {
            o.get_ref()
                .iter()
                .map(|a| a.get_ref().to_lowercase())
                .collect()
        }),
    })
}

type Mismatch = (Range<usize>, String, String, String);

fn quoted(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items
            .iter()
            .map(|m| format!("{m:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every expectation of `step` that does not hold now.
fn check(step: &StepSpec, s: &Session<'_>) -> Vec<Mismatch> {
    let mut out: Vec<Mismatch> = Vec::new();
    let said: Vec<String> = s.messages().iter().map(|m| m.text.clone()).collect();
    let mut expect = |span: Range<usize>, ok: bool, what: &str, expected: String, got: String| {
        if !ok {
            out.push((span, what.to_string(), expected, got));
        }
    };
    if let Some(b) = &step.bot {
        let ok = said.iter().any(|m| m == b.get_ref());
        expect(
            b.span(),
            ok,
            "the bot did not say this",
            format!("{:?}", b.get_ref()),
            quoted(&said),
        );
    }
    if let Some(b) = &step.bot_contains {
        let ok = said.iter().any(|m| m.contains(b.get_ref().as_str()));
        expect(
            b.span(),
            ok,
            "no message of the bot contains this",
            format!("a message containing {:?}", b.get_ref()),
            quoted(&said),
        );
    }
    if let Some(b) = &step.bot_matches {
        let ok =
            regex_lite::Regex::new(b.get_ref()).is_ok_and(|re| said.iter().any(|m| re.is_match(m)));
        expect(
            b.span(),
            ok,
            "no message of the bot matches this",
            format!("a message matching /{}/", b.get_ref()),
            quoted(&said),
        );
    }
    let flow_step = s.conv.flow.step.clone();
    if let Some(e) = &step.step {
        let ok = flow_step.as_deref() == Some(e.get_ref().as_str());
        expect(
            e.span(),
            ok,
            "the flow is at another step",
            e.get_ref().clone(),
            flow_step
                .clone()
                .unwrap_or_else(|| "the end of the flow".into()),
        );
    }
    if let Some(e) = &step.ended {
        let ended = flow_step.is_none();
        expect(
            e.span(),
            ended == *e.get_ref(),
            "the flow's end",
            format!("ended = {}", e.get_ref()),
            format!("ended = {ended}"),
        );
    }
    if let Some(v) = &step.vars {
        let vars = &s.conv.flow.vars;
        let wrong: Vec<String> = v
            .get_ref()
            .iter()
            .filter(|(k, want)| vars.get(*k) != Some(*want))
            .map(|(k, _)| k.clone())
            .collect();
        let show = |m: &BTreeMap<String, String>, keys: &[String]| {
            keys.iter()
                .map(|k| {
                    format!(
                        "{k} = {}",
                        m.get(k).map_or("(unset)".into(), |v| format!("{v:?}"))
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        expect(
            v.span(),
            wrong.is_empty(),
            "variables differ",
            show(v.get_ref(), &wrong),
            show(vars, &wrong),
        );
    }
    if let Some(e) = &step.status {
        let got = s.conv.status.as_str();
        expect(
            e.span(),
            got == e.get_ref(),
            "the conversation has another status",
            e.get_ref().clone(),
            got.into(),
        );
    }
    if let Some(e) = &step.team {
        let got = s.conv.team.clone().unwrap_or_default();
        let show = |t: &str| {
            if t.is_empty() {
                "no team (every team serving the bot)".to_string()
            } else {
                t.to_string()
            }
        };
        expect(
            e.span(),
            &got == e.get_ref(),
            "the request is routed elsewhere",
            show(e.get_ref()),
            show(&got),
        );
    }
    if let Some(e) = &step.rings {
        let want: BTreeSet<String> = e.get_ref().iter().map(|a| a.to_lowercase()).collect();
        let got = &s.conv.ringing;
        let list = |set: &BTreeSet<String>| quoted(&set.iter().cloned().collect::<Vec<_>>());
        expect(
            e.span(),
            &want == got,
            "other agents ring",
            list(&want),
            list(got),
        );
    }
    if let Some(e) = &step.offline {
        let got = match s.offline_reason() {
            Some(OfflineReason::Closed) => "closed",
            Some(OfflineReason::NoAgents) => "no_agents",
            None => "not offline",
        };
        expect(
            e.span(),
            got == e.get_ref(),
            "the offline outcome differs",
            e.get_ref().clone(),
            got.into(),
        );
    }
    if let Some(e) = &step.open {
        let got = s.open();
        expect(
            e.span(),
            got == *e.get_ref(),
            "the opening hours say otherwise",
            format!("open = {}", e.get_ref()),
            format!("open = {got} at {}", s.now),
        );
    }
    if let Some(e) = &step.form {
        let got = s.form().unwrap_or("no form shown");
        expect(
            e.span(),
            got == e.get_ref(),
            "another offline form",
            e.get_ref().clone(),
            got.into(),
        );
    }
    let mail = s.mail();
    if let Some(e) = &step.mail_to {
        let got = mail
            .as_ref()
            .map_or("no mail".to_string(), |m| quoted(&m.to));
        let ok = mail.as_ref().is_some_and(|m| &m.to == e.get_ref());
        expect(
            e.span(),
            ok,
            "the mail goes elsewhere",
            quoted(e.get_ref()),
            got,
        );
    }
    if let Some(e) = &step.mail_subject {
        let got = mail
            .as_ref()
            .map_or("no mail".to_string(), |m| format!("{:?}", m.subject));
        let ok = mail.as_ref().is_some_and(|m| &m.subject == e.get_ref());
        expect(
            e.span(),
            ok,
            "the mail has another subject",
            format!("{:?}", e.get_ref()),
            got,
        );
    }
    if let Some(e) = &step.events {
        let got: Vec<String> = s
            .recent
            .iter()
            .map(|ev| ev.kind().as_str().to_string())
            .collect();
        let ok = e.get_ref().iter().all(|k| got.contains(k));
        expect(
            e.span(),
            ok,
            "these events did not all happen",
            e.get_ref().join(", "),
            got.join(", "),
        );
    }
    out
}
