//! The case file format (`DIR/tests/*.toml`): parsing with spans, and the checks that a
//! case names bots, steps, agents and values that exist.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use toml::Spanned;

use crate::chat::conversation::Status;
use crate::config::graph;
use crate::config::{Bundle, Diagnostic};

/// The clock of a case that gives no `time`: Monday 5 January 2026, 10:00 in Berlin.
pub const DEFAULT_TIME: &str = "2026-01-05T09:00:00Z";

/// One file of cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

/// One scripted conversation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: Spanned<String>,
    /// The bot's id (its file name without `.toml`).
    pub bot: Spanned<String>,
    /// The visitor's preferred language (default: the bot's first).
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub page_url: Option<String>,
    /// Two-letter country code.
    #[serde(default)]
    pub country: Option<String>,
    /// Conversation variables set before the first step.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// When the conversation starts (RFC 3339 with an offset; default [`DEFAULT_TIME`]).
    #[serde(default)]
    pub time: Option<Spanned<String>>,
    /// Agents online and accepting chats (default: every agent of `agents.toml`).
    #[serde(default)]
    pub online: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default, rename = "step")]
    pub steps: Vec<StepSpec>,
}

/// One step: at most one thing that happens, then what must hold after it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    // ---- what happens ----
    /// The visitor types this (a message, or the answer to a question).
    #[serde(default, rename = "type")]
    pub type_text: Option<Spanned<String>>,
    /// The visitor clicks a choice by its label or value, or the Live Chat button by its label.
    #[serde(default)]
    pub click: Option<Spanned<String>>,
    /// The visitor sends the offline form shown with these values.
    #[serde(default)]
    pub submit: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub skip: Option<Spanned<bool>>,
    #[serde(default)]
    pub back: Option<Spanned<bool>>,
    /// This agent (email) accepts the ringing request.
    #[serde(default)]
    pub accept: Option<Spanned<String>>,
    /// Nobody accepts: the clock runs to the accept deadline.
    #[serde(default)]
    pub nobody_accepts: Option<Spanned<bool>>,
    /// Time passes (`3m`, `1h 30m`); timers due meanwhile fire.
    #[serde(default)]
    pub wait: Option<Spanned<String>>,

    // ---- what must follow ----
    /// A message the bot (or the Live Chat action) showed in answer, exactly.
    #[serde(default)]
    pub bot: Option<Spanned<String>>,
    #[serde(default)]
    pub bot_contains: Option<Spanned<String>>,
    /// A regular expression one of the messages matches.
    #[serde(default)]
    pub bot_matches: Option<Spanned<String>>,
    /// The step the flow waits at.
    #[serde(default)]
    pub step: Option<Spanned<String>>,
    /// The flow has ended (`true`) or not.
    #[serde(default)]
    pub ended: Option<Spanned<bool>>,
    /// These variables have these values (others may be set too).
    #[serde(default)]
    pub vars: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    pub status: Option<Spanned<String>>,
    /// The team the request is routed to; `""` for none (every team serving the bot).
    #[serde(default)]
    pub team: Option<Spanned<String>>,
    /// Exactly these agents ring (`[]`: nobody).
    #[serde(default)]
    pub rings: Option<Spanned<Vec<String>>>,
    /// The request went offline for this reason: `closed` or `no_agents`.
    #[serde(default)]
    pub offline: Option<Spanned<String>>,
    /// The Live Chat action is (`true`) or is not within its opening hours now.
    #[serde(default)]
    pub open: Option<Spanned<bool>>,
    /// The offline form shown (its id).
    #[serde(default)]
    pub form: Option<Spanned<String>>,
    /// The recipients of the mail the submitted form sends.
    #[serde(default)]
    pub mail_to: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub mail_subject: Option<Spanned<String>>,
    /// Events of these types happened (`livechat.timeout`, …).
    #[serde(default)]
    pub events: Option<Spanned<Vec<String>>>,
}

/// What happens at a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Type(String),
    Click(String),
    Submit(BTreeMap<String, String>),
    Skip,
    Back,
    Accept(String),
    NobodyAccepts,
    Wait(Duration),
}

impl StepSpec {
    /// The action keys given, with their spans.
    fn actions(&self) -> Vec<(Range<usize>, Result<Action, String>)> {
        let mut out = Vec::new();
        if let Some(t) = &self.type_text {
            out.push((t.span(), Ok(Action::Type(t.get_ref().clone()))));
        }
        if let Some(c) = &self.click {
            out.push((c.span(), Ok(Action::Click(c.get_ref().clone()))));
        }
        if let Some(s) = &self.submit {
            out.push((s.span(), Ok(Action::Submit(s.get_ref().clone()))));
        }
        for (flag, action) in [
            (&self.skip, Action::Skip),
            (&self.back, Action::Back),
            (&self.nobody_accepts, Action::NobodyAccepts),
        ] {
            if let Some(f) = flag {
                let a = if *f.get_ref() {
                    Ok(action)
                } else {
                    Err("only `true` means something here; leave the key out instead".into())
                };
                out.push((f.span(), a));
            }
        }
        if let Some(a) = &self.accept {
            out.push((a.span(), Ok(Action::Accept(a.get_ref().to_lowercase()))));
        }
        if let Some(w) = &self.wait {
            out.push((w.span(), parse_duration(w.get_ref()).map(Action::Wait)));
        }
        out
    }

    /// The step's action and where it is written; `Ok(None)` for a step of expectations only.
    pub fn action(&self) -> Result<Option<Spanned<Action>>, (Range<usize>, String)> {
        let mut all = self.actions();
        if all.len() > 1 {
            return Err((
                all[1].0.clone(),
                "one thing happens per step: put this in a step of its own".into(),
            ));
        }
        match all.pop() {
            None => Ok(None),
            Some((span, Ok(a))) => Ok(Some(Spanned::new(span, a))),
            Some((span, Err(e))) => Err((span, e)),
        }
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        format!("invalid duration `{text}`: write a number and a unit, like `90s` or `3m`")
    })
}

pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.trim().parse::<Timestamp>().map_err(|e| {
        format!("invalid time `{text}`: write RFC 3339 with an offset, like `2026-01-05T10:00:00+01:00` ({e})")
    })
}

/// A case file parsed and checked against the bundle: every problem with its position.
pub fn parse(file: &str, source: &str, bundle: &Bundle) -> Result<Vec<Case>, Vec<Diagnostic>> {
    let parsed: CaseFile = match toml::from_str(source) {
        Ok(f) => f,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            return Err(vec![Diagnostic::at(
                file,
                source,
                span,
                e.message()
                    .trim()
                    .replace("invalid type: ", "wrong type: found "),
            )]);
        }
    };
    let mut diags = Vec::new();
    let mut err =
        |span: Range<usize>, msg: String| diags.push(Diagnostic::at(file, source, span, msg));
    for case in &parsed.cases {
        check_case(case, bundle, &mut err);
    }
    if diags.is_empty() {
        Ok(parsed.cases)
    } else {
        Err(diags)
    }
}

fn check_case(case: &Case, bundle: &Bundle, err: &mut impl FnMut(Range<usize>, String)) {
    let agents: Vec<String> = bundle
        .roster
        .agents
        .iter()
        .map(|a| a.email.as_str().to_lowercase())
        .collect();
    let known_agent = |email: &str| agents.iter().any(|a| a.eq_ignore_ascii_case(email));
    if let Some(t) = &case.time
        && let Err(e) = parse_time(t.get_ref())
    {
        err(t.span(), e);
    }
    if let Some(online) = &case.online {
        for a in online.get_ref() {
            if !known_agent(a.get_ref()) {
                err(
                    a.span(),
                    format!("no agent `{}` in agents.toml", a.get_ref()),
                );
            }
        }
    }
    let Some(bot) = bundle.bots.get(case.bot.get_ref()) else {
        let ids: Vec<&str> = bundle.bots.keys().map(String::as_str).collect();
        err(
            case.bot.span(),
            format!(
                "no bot `{}`; the bundle has {}",
                case.bot.get_ref(),
                ids.join(", ")
            ),
        );
        return;
    };
    for step in &case.steps {
        match step.action() {
            Err((span, e)) => err(span, e),
            Ok(Some(a)) => {
                if let Action::Accept(email) = a.get_ref()
                    && !known_agent(email)
                {
                    err(a.span(), format!("no agent `{email}` in agents.toml"));
                }
            }
            Ok(None) => {}
        }
        if let Some(s) = &step.step
            && graph::position(bot, s.get_ref()).is_none()
        {
            let ids: Vec<&str> = bot.steps.iter().map(|s| s.id.get_ref().as_str()).collect();
            err(
                s.span(),
                format!(
                    "bot `{}` has no step `{}`; its steps are {}",
                    case.bot.get_ref(),
                    s.get_ref(),
                    ids.join(", ")
                ),
            );
        }
        if let Some(s) = &step.status
            && !Status::ALL.iter().any(|st| st.as_str() == s.get_ref())
        {
            let all: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            err(
                s.span(),
                format!(
                    "unknown status `{}`; expected one of {}",
                    s.get_ref(),
                    all.join(", ")
                ),
            );
        }
        if let Some(t) = &step.team
            && !t.get_ref().is_empty()
            && !bundle
                .roster
                .teams
                .iter()
                .any(|team| team.id.get_ref() == t.get_ref())
        {
            err(
                t.span(),
                format!("no team `{}` in agents.toml", t.get_ref()),
            );
        }
        if let Some(o) = &step.offline
            && !["closed", "no_agents"].contains(&o.get_ref().as_str())
        {
            err(
                o.span(),
                format!(
                    "unknown offline reason `{}`; expected `closed` or `no_agents`",
                    o.get_ref()
                ),
            );
        }
        if let Some(f) = &step.form
            && !bot.offline_form.contains_key(f.get_ref())
        {
            err(
                f.span(),
                format!(
                    "bot `{}` has no offline form `{}`",
                    case.bot.get_ref(),
                    f.get_ref()
                ),
            );
        }
        if let Some(r) = &step.rings {
            for a in r.get_ref() {
                if !known_agent(a) {
                    err(r.span(), format!("no agent `{a}` in agents.toml"));
                }
            }
        }
        if let Some(p) = &step.bot_matches
            && let Err(e) = regex_lite::Regex::new(p.get_ref())
        {
            err(p.span(), format!("invalid pattern: {e}"));
        }
    }
}
