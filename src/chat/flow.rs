//! The flow interpreter: walks a bot's `[[step]]`s for one visitor.
//!
//! Steps that need no answer (`say`, `link`) run on through their successors until a step
//! waits (`choices`, `ask`, `live_chat`) or the flow ends. Where a step leads is decided by
//! `config::graph` alone, the rule validation checks reachability with. Every input takes
//! the state and returns the next state and what the bot shows; nothing is mutated in place.
//!
//! The config is live: between two inputs the admin may have edited the bot. A current step
//! that no longer exists restarts the flow from the entry; a step whose kind changed is shown
//! again as it is now; `back` skips steps that vanished. Nothing here panics on a config.

use std::collections::BTreeMap;

use serde_json::json;

use super::text::render_text;
use crate::config::graph::{self, Exit, Wait};
use crate::config::schema::{AskKind, Bot, Choice, FlowButton, Step};
use crate::config::values::is_valid_email;

/// Said when the visitor types while choices are shown and the text matches none of them.
pub const CHOOSE_AGAIN: &str = "Sorry, I didn't catch that. Please pick one of the options.";

/// Where one visitor is in a bot's flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowState {
    /// The step that waits for the visitor; `None` once the flow has ended.
    pub step: Option<String>,
    /// Steps the visitor answered, oldest first: where `back` returns to.
    pub history: Vec<String>,
    /// Answers and choices so far (`ask.var`, `choice.set`, and each choice step's id →
    /// the value picked). Texts render with these.
    pub vars: BTreeMap<String, String>,
    pub waiting: Waiting,
}

/// What the flow waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// Nothing: the flow has ended (or the bot has no steps).
    #[default]
    Done,
    /// One of the step's `choices`.
    Choice,
    /// An answer to the step's `ask`.
    Answer,
    /// A `live_chat` step: the visitor may ask for a person (or skip, if offered).
    LiveChat,
    /// Nobody answered a live chat request: the offline form (its id) is shown, and the flow
    /// goes on when it is sent or dismissed.
    OfflineForm(String),
}

/// What the bot shows, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A bot message (a step's `say`, a retry message).
    Say { step: String, text: String },
    /// What the visitor may do at a step: choices, a question, a link, navigation buttons.
    Prompt(Prompt),
    /// The visitor picked a choice by button; `label` is what their message reads.
    Chosen {
        step: String,
        label: String,
        value: String,
    },
    /// A `live_chat` step was reached: offer a person (the Live Chat action's id).
    LiveChat { action: String },
    /// The flow has ended.
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub step: String,
    pub choices: Vec<ChoiceView>,
    pub ask: Option<AskView>,
    pub link: Option<LinkView>,
    pub buttons: Vec<FlowButton>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceView {
    /// Rendered in the visitor's language.
    pub label: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskView {
    pub var: String,
    pub kind: AskKind,
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    pub label: String,
    pub url: String,
}

/// Why an input does not fit the flow where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("the conversation is not waiting for this")]
    NotWaiting,
    #[error("that choice belongs to another step")]
    Stale,
    #[error("no such choice")]
    NoSuchChoice,
    #[error("this step offers no `{}` button", button_name(*.0))]
    NotOffered(FlowButton),
    #[error("there is no earlier step to go back to")]
    NothingToGoBackTo,
}

pub fn button_name(b: FlowButton) -> &'static str {
    match b {
        FlowButton::Skip => "skip",
        FlowButton::Back => "back",
    }
}

/// A pick among a step's choices: by position, or by value (or label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Index(usize),
    Value(String),
}

/// Result of an input: the next state and what to show.
pub type Flow = (FlowState, Vec<Output>);

/// The value recorded for a choice: its `value`, else its label in the bot's first language.
pub fn choice_value(bot: &Bot, choice: &Choice) -> String {
    match &choice.value {
        Some(v) => v.clone(),
        None => choice.label.for_language(default_language(bot)).to_string(),
    }
}

/// The bot's default language: the first of `languages`.
pub fn default_language(bot: &Bot) -> &str {
    bot.header
        .languages
        .first()
        .map(|l| l.get_ref().as_str())
        .unwrap_or("en")
}

/// Starts the flow at the first step.
pub fn start(bot: &Bot, lang: &str) -> Flow {
    start_with(bot, lang, BTreeMap::new())
}

/// Starts the flow at the first step with variables already known (a name the site passed).
pub fn start_with(bot: &Bot, lang: &str, vars: BTreeMap<String, String>) -> Flow {
    let state = FlowState {
        vars,
        ..FlowState::default()
    };
    let mut out = Vec::new();
    let state = run_from(
        bot,
        lang,
        state,
        (!bot.steps.is_empty()).then_some(0),
        &mut out,
    );
    (state, out)
}

/// Picks a choice at the current step. `step`, when given, must be the current step (a
/// button clicked on an old message is stale).
pub fn choose(
    bot: &Bot,
    state: &FlowState,
    lang: &str,
    step: Option<&str>,
    pick: &Pick,
) -> Result<Flow, FlowError> {
    let index = match current(bot, state, lang) {
        Current::Ended => return Err(FlowError::NotWaiting),
        Current::Moved(flow) => return Ok(flow),
        Current::At(index) => index,
    };
    if state.waiting != Waiting::Choice {
        return Err(FlowError::NotWaiting);
    }
    let current_step = &bot.steps[index];
    if step.is_some_and(|s| s != current_step.id.get_ref()) {
        return Err(FlowError::Stale);
    }
    let c = match pick {
        Pick::Index(i) if *i < current_step.choices.len() => *i,
        Pick::Index(_) => return Err(FlowError::NoSuchChoice),
        Pick::Value(v) => {
            find_choice(bot, current_step, lang, &state.vars, v).ok_or(FlowError::NoSuchChoice)?
        }
    };
    Ok(apply_choice(bot, state, lang, index, c, true))
}

/// Answers the current step's `ask`. An invalid answer (wrong type, too long, empty) shows
/// the retry message and asks again.
pub fn answer(bot: &Bot, state: &FlowState, lang: &str, text: &str) -> Result<Flow, FlowError> {
    let index = match current(bot, state, lang) {
        Current::Ended => return Err(FlowError::NotWaiting),
        Current::Moved(flow) => return Ok(flow),
        Current::At(index) => index,
    };
    let step = &bot.steps[index];
    let (Waiting::Answer, Some(ask)) = (&state.waiting, &step.ask) else {
        return Err(FlowError::NotWaiting);
    };
    let text = text.trim();
    if !valid_answer(ask.kind, ask.max, text) {
        let mut out = vec![Output::Say {
            step: step.id.get_ref().clone(),
            text: render_text(&ask.retry_message, lang, &vars_json(bot, &state.vars)),
        }];
        out.push(Output::Prompt(prompt(bot, step, lang, &state.vars)));
        return Ok((state.clone(), out));
    }
    let mut next = state.clone();
    next.vars
        .insert(ask.var.get_ref().clone(), text.to_string());
    Ok(leave(bot, lang, next, index, Exit::Answer))
}

/// Whether `text` (trimmed) is an acceptable answer of this kind.
pub fn valid_answer(kind: AskKind, max: u32, text: &str) -> bool {
    if text.is_empty() || text.chars().count() > max as usize {
        return false;
    }
    match kind {
        AskKind::Text => true,
        AskKind::Email => is_valid_email(text),
        AskKind::Phone => valid_phone(text),
        AskKind::Number => text.parse::<f64>().is_ok_and(f64::is_finite),
    }
}

/// `[+0-9 ()-]{5,}` with at least five digits (so `(((((` is not a number).
pub fn valid_phone(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_digit() || "+ ()-".contains(c))
        && text.chars().filter(char::is_ascii_digit).count() >= 5
}

/// Goes on without answering, when the step offers `skip`. A pending offline form can
/// always be dismissed.
pub fn skip(bot: &Bot, state: &FlowState, lang: &str) -> Result<Flow, FlowError> {
    if let Waiting::OfflineForm(_) = state.waiting {
        return Ok(resume_after_live_chat(bot, state, lang));
    }
    let index = match current(bot, state, lang) {
        Current::Ended => return Err(FlowError::NotWaiting),
        Current::Moved(flow) => return Ok(flow),
        Current::At(index) => index,
    };
    let step = &bot.steps[index];
    if !graph::offers(step, FlowButton::Skip) {
        return Err(FlowError::NotOffered(FlowButton::Skip));
    }
    Ok(leave(bot, lang, state.clone(), index, Exit::Skip))
}

/// Returns to the last step the visitor answered, when the current step offers `back`.
/// Steps that no longer exist are passed over.
pub fn back(bot: &Bot, state: &FlowState, lang: &str) -> Result<Flow, FlowError> {
    let index = match &state.step {
        None => return Err(FlowError::NotWaiting),
        Some(id) => match graph::position(bot, id) {
            Some(i) => i,
            None => return Ok(restart(bot, state, lang)),
        },
    };
    if !graph::offers(&bot.steps[index], FlowButton::Back) {
        return Err(FlowError::NotOffered(FlowButton::Back));
    }
    let mut next = state.clone();
    while let Some(id) = next.history.pop() {
        if let Some(target) = graph::position(bot, &id) {
            let mut out = Vec::new();
            let next = run_from(bot, lang, next, Some(target), &mut out);
            return Ok((next, out));
        }
    }
    Err(FlowError::NothingToGoBackTo)
}

/// Free text from the visitor while the bot leads: the answer to an `ask`; at choices, the
/// choice whose value or label it matches (or its number, `2`), else a polite request to
/// pick one; elsewhere nothing (the message is only recorded).
pub fn text(bot: &Bot, state: &FlowState, lang: &str, text: &str) -> Flow {
    let index = match current(bot, state, lang) {
        Current::Ended => return (state.clone(), Vec::new()),
        Current::Moved(flow) => return flow,
        Current::At(index) => index,
    };
    match state.waiting {
        Waiting::Answer => {
            answer(bot, state, lang, text).unwrap_or_else(|_| (state.clone(), Vec::new()))
        }
        Waiting::Choice => {
            let step = &bot.steps[index];
            match find_choice(bot, step, lang, &state.vars, text) {
                Some(c) => apply_choice(bot, state, lang, index, c, false),
                None => {
                    let out = vec![
                        Output::Say {
                            step: step.id.get_ref().clone(),
                            text: CHOOSE_AGAIN.to_string(),
                        },
                        Output::Prompt(prompt(bot, step, lang, &state.vars)),
                    ];
                    (state.clone(), out)
                }
            }
        }
        Waiting::Done | Waiting::LiveChat | Waiting::OfflineForm(_) => (state.clone(), Vec::new()),
    }
}

/// Continues after a live chat that did not happen (timeout, offline, offline form sent or
/// dismissed): at a `live_chat` step, its successor; anywhere else (a person was asked for
/// from the widget mid-flow), the current step again.
pub fn resume_after_live_chat(bot: &Bot, state: &FlowState, lang: &str) -> Flow {
    let Some(id) = &state.step else {
        let mut done = state.clone();
        done.waiting = Waiting::Done;
        return (done, Vec::new());
    };
    let Some(index) = graph::position(bot, id) else {
        return restart(bot, state, lang);
    };
    let mut next = state.clone();
    if bot.steps[index].live_chat.is_some() {
        return leave(bot, lang, next, index, Exit::NoLiveChat);
    }
    let mut out = Vec::new();
    next = run_from(bot, lang, next, Some(index), &mut out);
    (next, out)
}

/// Shows the step where the flow waits once more, as it is now: the visitor took back a
/// request for a person made there (a step that vanished restarts the flow).
pub fn again(bot: &Bot, state: &FlowState, lang: &str) -> Flow {
    let Some(id) = &state.step else {
        return (state.clone(), Vec::new());
    };
    let Some(index) = graph::position(bot, id) else {
        return restart(bot, state, lang);
    };
    let mut out = Vec::new();
    let next = run_from(bot, lang, state.clone(), Some(index), &mut out);
    (next, out)
}

/// Pauses the flow where it is while the offline form `form` is shown.
pub fn pause_for_offline_form(state: &FlowState, form: &str) -> FlowState {
    FlowState {
        waiting: Waiting::OfflineForm(form.to_string()),
        ..state.clone()
    }
}

/// The JSON object of a flow's variables, the context texts render with.
/// The values a bot's texts render with: the flow's variables and `bot.name`.
pub fn vars_json(bot: &Bot, vars: &BTreeMap<String, String>) -> serde_json::Value {
    let mut ctx = json!(vars);
    if let serde_json::Value::Object(map) = &mut ctx {
        map.entry("bot")
            .or_insert_with(|| json!({ "name": bot.header.name.get_ref() }));
    }
    ctx
}

enum Current {
    /// The flow has ended.
    Ended,
    /// The config changed under the visitor; this is where the flow is now.
    Moved(Flow),
    At(usize),
}

/// Where the flow is in the bot as it is now.
fn current(bot: &Bot, state: &FlowState, lang: &str) -> Current {
    let Some(id) = &state.step else {
        return Current::Ended;
    };
    let Some(index) = graph::position(bot, id) else {
        return Current::Moved(restart(bot, state, lang));
    };
    let expected = wait_kind(&bot.steps[index]);
    let fits = match &state.waiting {
        Waiting::OfflineForm(_) => true,
        w => expected.as_ref() == Some(w),
    };
    if fits {
        Current::At(index)
    } else {
        // The step was edited into another kind: show it as it is now.
        let mut out = Vec::new();
        let next = run_from(bot, lang, state.clone(), Some(index), &mut out);
        Current::Moved((next, out))
    }
}

fn restart(bot: &Bot, state: &FlowState, lang: &str) -> Flow {
    start_with(bot, lang, state.vars.clone())
}

/// What a step waits for, if anything, by the precedence of `graph::wait_kind`.
fn wait_kind(step: &Step) -> Option<Waiting> {
    graph::wait_kind(step).map(|w| match w {
        Wait::Choice => Waiting::Choice,
        Wait::Answer => Waiting::Answer,
        Wait::LiveChat => Waiting::LiveChat,
    })
}

fn apply_choice(
    bot: &Bot,
    state: &FlowState,
    lang: &str,
    index: usize,
    c: usize,
    echo: bool,
) -> Flow {
    let step = &bot.steps[index];
    let choice = &step.choices[c];
    let value = choice_value(bot, choice);
    let mut next = state.clone();
    let mut out = Vec::new();
    if echo {
        out.push(Output::Chosen {
            step: step.id.get_ref().clone(),
            label: render_text(&choice.label, lang, &vars_json(bot, &state.vars)),
            value: value.clone(),
        });
    }
    next.vars
        .extend(choice.set.iter().map(|(k, v)| (k.clone(), v.clone())));
    next.vars.insert(step.id.get_ref().clone(), value);
    let (next, more) = leave(bot, lang, next, index, Exit::Choice(c));
    out.extend(more);
    (next, out)
}

/// Leaves the step at `index` by `exit` (answered, picked, skipped, or its live chat did
/// not happen) for where the successor rule of `graph` sends it.
fn leave(bot: &Bot, lang: &str, mut state: FlowState, index: usize, exit: Exit) -> Flow {
    state.history.push(bot.steps[index].id.get_ref().clone());
    let target = graph::next(bot, index, exit);
    let mut out = Vec::new();
    let state = run_from(bot, lang, state, target, &mut out);
    (state, out)
}

/// Runs steps from `index` until one waits or the flow ends.
fn run_from(
    bot: &Bot,
    lang: &str,
    mut state: FlowState,
    mut index: Option<usize>,
    out: &mut Vec<Output>,
) -> FlowState {
    // Steps that do not wait and go to each other would run forever; a config that does
    // that ends the flow instead (validation reports it).
    let mut budget = bot.steps.len();
    while let Some(i) = index {
        if budget == 0 {
            break;
        }
        budget -= 1;
        let step = &bot.steps[i];
        let id = step.id.get_ref().clone();
        let ctx = vars_json(bot, &state.vars);
        if let Some(say) = &step.say {
            out.push(Output::Say {
                step: id.clone(),
                text: render_text(say, lang, &ctx),
            });
        }
        match wait_kind(step) {
            Some(waiting) => {
                if let (Waiting::LiveChat, Some(action)) = (&waiting, &step.live_chat) {
                    out.push(Output::LiveChat {
                        action: action.get_ref().clone(),
                    });
                } else {
                    out.push(Output::Prompt(prompt(bot, step, lang, &state.vars)));
                }
                state.step = Some(id);
                state.waiting = waiting;
                return state;
            }
            None => {
                if step.link.is_some() {
                    let mut p = prompt(bot, step, lang, &state.vars);
                    p.buttons.clear();
                    out.push(Output::Prompt(p));
                }
                index = graph::next(bot, i, Exit::Continue);
            }
        }
    }
    state.step = None;
    state.waiting = Waiting::Done;
    out.push(Output::End);
    state
}

fn prompt(bot: &Bot, step: &Step, lang: &str, vars: &BTreeMap<String, String>) -> Prompt {
    let ctx = vars_json(bot, vars);
    Prompt {
        step: step.id.get_ref().clone(),
        choices: step
            .choices
            .iter()
            .map(|c| ChoiceView {
                label: render_text(&c.label, lang, &ctx),
                value: choice_value(bot, c),
            })
            .collect(),
        ask: step.ask.as_ref().map(|a| AskView {
            var: a.var.get_ref().clone(),
            kind: a.kind,
            max: a.max,
        }),
        link: step.link.as_ref().map(|l| LinkView {
            label: render_text(&l.label, lang, &ctx),
            url: l.url.clone(),
        }),
        buttons: step.buttons.iter().map(|b| *b.get_ref()).collect(),
    }
}

/// The choice that typed `text` means: its value, its label (rendered, or in any language),
/// or its number counted from 1.
fn find_choice(
    bot: &Bot,
    step: &Step,
    lang: &str,
    vars: &BTreeMap<String, String>,
    text: &str,
) -> Option<usize> {
    let wanted = text.trim().to_lowercase();
    if wanted.is_empty() {
        return None;
    }
    let ctx = vars_json(bot, vars);
    let by_text = step.choices.iter().position(|c| {
        choice_value(bot, c).to_lowercase() == wanted
            || render_text(&c.label, lang, &ctx).to_lowercase() == wanted
            || c.label
                .templates()
                .iter()
                .any(|(_, t)| t.as_str().to_lowercase() == wanted)
    });
    by_text.or_else(|| {
        wanted
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=step.choices.len()).contains(n))
            .map(|n| n - 1)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::load::{FileCtx, parse_bot};

    /// A bot from TOML; panics with the diagnostics if it does not load.
    pub(crate) fn bot(src: &str) -> Bot {
        let mut ctx = FileCtx::new("test.toml", src);
        let bot = parse_bot(&mut ctx);
        assert!(ctx.diags.is_empty(), "{:#?}", ctx.diags);
        bot.expect("bot loads")
    }

    fn says(out: &[Output]) -> Vec<&str> {
        out.iter()
            .filter_map(|o| match o {
                Output::Say { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    fn prompt_of(out: &[Output]) -> &Prompt {
        out.iter()
            .rev()
            .find_map(|o| match o {
                Output::Prompt(p) => Some(p),
                _ => None,
            })
            .expect("a prompt")
    }

    const SUPPORT: &str = r#"
name = "Support"
[[step]]
id = "hello"
say = "Hi!"
[[step]]
id = "topic"
say = "What about?"
choices = [
  { label = "Billing", set = { team = "billing" }, goto = "email" },
  { label = "Other", value = "other" },
]
buttons = ["skip"]
[[step]]
id = "name"
say = "Your name?"
ask = { var = "name" }
buttons = ["back", "skip"]
[[step]]
id = "email"
say = "Thanks {{ name }}. Your email?"
ask = { var = "email", type = "email", retry_message = "That is not an email." }
buttons = ["back"]
[[step]]
id = "human"
live_chat = "desk"
[[step]]
id = "bye"
say = "Bye {{ name }}."
end = true
[[step]]
id = "never"
say = "unreachable"
[live_chat.desk]
"#;

    #[test]
    fn start_runs_say_steps_until_one_waits() {
        let b = bot(SUPPORT);
        let (s, out) = start(&b, "en");
        assert_eq!(says(&out), ["Hi!", "What about?"]);
        assert_eq!(s.step.as_deref(), Some("topic"));
        assert_eq!(s.waiting, Waiting::Choice);
        let p = prompt_of(&out);
        assert_eq!(
            p.choices,
            [
                ChoiceView {
                    label: "Billing".into(),
                    value: "Billing".into()
                },
                ChoiceView {
                    label: "Other".into(),
                    value: "other".into()
                },
            ]
        );
        assert_eq!(p.buttons, [FlowButton::Skip]);
    }

    #[test]
    fn a_choice_sets_variables_and_follows_its_goto() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s, out) = choose(&b, &s, "en", Some("topic"), &Pick::Index(0)).unwrap();
        assert_eq!(
            out[0],
            Output::Chosen {
                step: "topic".into(),
                label: "Billing".into(),
                value: "Billing".into()
            }
        );
        assert_eq!(s.step.as_deref(), Some("email"));
        assert_eq!(s.vars["team"], "billing");
        assert_eq!(s.vars["topic"], "Billing");
        assert_eq!(s.history, ["topic"]);
    }

    #[test]
    fn a_choice_without_goto_goes_to_the_next_step() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s, out) = choose(&b, &s, "en", None, &Pick::Value("OTHER".into())).unwrap();
        assert_eq!(s.step.as_deref(), Some("name"));
        assert_eq!(s.waiting, Waiting::Answer);
        assert_eq!(says(&out), ["Your name?"]);
        assert_eq!(s.vars["topic"], "other");
    }

    #[test]
    fn bad_or_stale_choices_are_refused() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        assert_eq!(
            choose(&b, &s, "en", None, &Pick::Index(2)),
            Err(FlowError::NoSuchChoice)
        );
        assert_eq!(
            choose(&b, &s, "en", None, &Pick::Value("nope".into())),
            Err(FlowError::NoSuchChoice)
        );
        assert_eq!(
            choose(&b, &s, "en", Some("hello"), &Pick::Index(0)),
            Err(FlowError::Stale)
        );
        assert_eq!(answer(&b, &s, "en", "x"), Err(FlowError::NotWaiting));
    }

    #[test]
    fn answers_are_stored_and_render_in_later_texts() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s, _) = choose(&b, &s, "en", None, &Pick::Index(1)).unwrap();
        let (s, out) = answer(&b, &s, "en", "  Ana ").unwrap();
        assert_eq!(s.vars["name"], "Ana");
        assert_eq!(says(&out), ["Thanks Ana. Your email?"]);
        assert_eq!(s.step.as_deref(), Some("email"));
    }

    #[test]
    fn an_invalid_answer_retries_and_stays() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s, _) = choose(&b, &s, "en", None, &Pick::Index(0)).unwrap();
        let (s2, out) = answer(&b, &s, "en", "not an email").unwrap();
        assert_eq!(s2, s);
        assert_eq!(says(&out), ["That is not an email."]);
        assert_eq!(prompt_of(&out).ask.as_ref().unwrap().kind, AskKind::Email);
        let (s3, out) = answer(&b, &s, "en", "ana@example.com").unwrap();
        assert_eq!(s3.vars["email"], "ana@example.com");
        assert_eq!(s3.step.as_deref(), Some("human"));
        assert_eq!(s3.waiting, Waiting::LiveChat);
        assert_eq!(
            out,
            [Output::LiveChat {
                action: "desk".into()
            }]
        );
    }

    #[test]
    fn ask_kinds_validate() {
        assert!(valid_answer(AskKind::Text, 5, "hello"));
        assert!(!valid_answer(AskKind::Text, 4, "hello"));
        assert!(!valid_answer(AskKind::Text, 4, ""));
        assert!(valid_answer(AskKind::Email, 100, "a@b.example"));
        assert!(!valid_answer(AskKind::Email, 100, "a@"));
        assert!(valid_answer(AskKind::Phone, 100, "+49 (30) 123-456"));
        assert!(!valid_answer(AskKind::Phone, 100, "1234"));
        assert!(!valid_answer(AskKind::Phone, 100, "((((((("));
        assert!(!valid_answer(AskKind::Phone, 100, "call 12345"));
        assert!(valid_answer(AskKind::Number, 100, "-3.5"));
        assert!(valid_answer(AskKind::Number, 100, "42"));
        assert!(!valid_answer(AskKind::Number, 100, "forty"));
        assert!(!valid_answer(AskKind::Number, 100, "NaN"));
        assert!(!valid_answer(AskKind::Number, 100, "inf"));
    }

    #[test]
    fn over_max_retries_with_the_default_message() {
        let b = bot("name = \"B\"\n[[step]]\nid = \"q\"\nask = { var = \"x\", max = 3 }\n");
        let (s, _) = start(&b, "en");
        let (s2, out) = answer(&b, &s, "en", "abcd").unwrap();
        assert_eq!(s2, s);
        assert_eq!(
            says(&out),
            ["Sorry, that doesn't look right. Please try again."]
        );
        let (s3, out) = answer(&b, &s, "en", "abc").unwrap();
        assert_eq!(s3.step, None);
        assert_eq!(out, [Output::End]);
    }

    #[test]
    fn skip_needs_the_button_and_goes_to_the_plain_successor() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        // `topic` offers skip: its plain successor is the next step (choice gotos ignored).
        let (s, _) = skip(&b, &s, "en").unwrap();
        assert_eq!(s.step.as_deref(), Some("name"));
        assert!(!s.vars.contains_key("topic"));
        let (s, _) = skip(&b, &s, "en").unwrap();
        assert_eq!(s.step.as_deref(), Some("email"));
        assert_eq!(
            skip(&b, &s, "en"),
            Err(FlowError::NotOffered(FlowButton::Skip))
        );
    }

    #[test]
    fn back_returns_to_the_last_answered_step() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        assert_eq!(
            back(&b, &s, "en"),
            Err(FlowError::NotOffered(FlowButton::Back))
        );
        let (s, _) = choose(&b, &s, "en", None, &Pick::Index(1)).unwrap();
        let (s, _) = answer(&b, &s, "en", "Ana").unwrap();
        assert_eq!(s.history, ["topic", "name"]);
        let (s, out) = back(&b, &s, "en").unwrap();
        assert_eq!(s.step.as_deref(), Some("name"));
        assert_eq!(s.history, ["topic"]);
        assert_eq!(says(&out), ["Your name?"]);
        // `name` offers back too: to `topic`, whose prompt is shown again.
        let (s, out) = back(&b, &s, "en").unwrap();
        assert_eq!(s.step.as_deref(), Some("topic"));
        assert!(s.history.is_empty());
        assert_eq!(prompt_of(&out).choices.len(), 2);
    }

    #[test]
    fn back_with_no_history_is_refused() {
        let b = bot(
            "name = \"B\"\n[[step]]\nid = \"q\"\nask = { var = \"x\" }\nbuttons = [\"back\"]\n",
        );
        let (s, _) = start(&b, "en");
        assert_eq!(back(&b, &s, "en"), Err(FlowError::NothingToGoBackTo));
    }

    #[test]
    fn back_passes_over_vanished_steps() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s, _) = choose(&b, &s, "en", None, &Pick::Index(1)).unwrap();
        let (s, _) = answer(&b, &s, "en", "Ana").unwrap();
        // The admin removes the `name` step.
        let mut edited = b.clone();
        edited.steps.retain(|st| st.id.get_ref() != "name");
        let (s, _) = back(&edited, &s, "en").unwrap();
        assert_eq!(s.step.as_deref(), Some("topic"));
        assert!(s.history.is_empty());
    }

    #[test]
    fn a_vanished_current_step_restarts_from_the_entry_keeping_vars() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s, _) = choose(&b, &s, "en", None, &Pick::Index(1)).unwrap();
        let mut edited = b.clone();
        edited.steps.retain(|st| st.id.get_ref() != "name");
        let (s2, out) = answer(&edited, &s, "en", "Ana").unwrap();
        assert_eq!(s2.step.as_deref(), Some("topic"));
        assert_eq!(s2.vars["topic"], "other");
        assert_eq!(says(&out), ["Hi!", "What about?"]);
        // With no steps at all the flow ends.
        let mut empty = b.clone();
        empty.steps.clear();
        let (s3, out) = skip(&empty, &s, "en").unwrap();
        assert_eq!((s3.step, out), (None, vec![Output::End]));
        let (s4, out) = text(&empty, &s, "en", "hello");
        assert_eq!((s4.waiting, out), (Waiting::Done, vec![Output::End]));
    }

    #[test]
    fn a_step_edited_into_another_kind_is_shown_again() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        // `topic` becomes a question.
        let mut edited = b.clone();
        let topic = edited
            .steps
            .iter_mut()
            .find(|st| st.id.get_ref() == "topic")
            .unwrap();
        topic.choices.clear();
        topic.ask = b.steps[2].ask.clone();
        let (s2, out) = choose(&edited, &s, "en", None, &Pick::Index(0)).unwrap();
        assert_eq!(s2.step.as_deref(), Some("topic"));
        assert_eq!(s2.waiting, Waiting::Answer);
        assert_eq!(says(&out), ["What about?"]);
    }

    #[test]
    fn free_text_matches_a_choice_or_asks_again() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s2, out) = text(&b, &s, "en", "I want a refund");
        assert_eq!(s2, s);
        assert_eq!(says(&out), [CHOOSE_AGAIN]);
        assert_eq!(prompt_of(&out).step, "topic");
        let (s3, out) = text(&b, &s, "en", " billing ");
        assert_eq!(s3.step.as_deref(), Some("email"));
        assert!(!out.iter().any(|o| matches!(o, Output::Chosen { .. })));
        let (s4, _) = text(&b, &s, "en", "2");
        assert_eq!(s4.vars["topic"], "other");
        // At a question, free text is the answer.
        let (s5, _) = text(&b, &s4, "en", "Ana");
        assert_eq!(s5.vars["name"], "Ana");
        // At the live chat step it is only recorded.
        let (s6, _) = text(&b, &s5, "en", "ana@example.com");
        assert_eq!(s6.waiting, Waiting::LiveChat);
        assert_eq!(text(&b, &s6, "en", "hello?"), (s6.clone(), vec![]));
    }

    #[test]
    fn live_chat_resumes_at_its_successor_and_end_ends() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s, _) = choose(&b, &s, "en", None, &Pick::Index(1)).unwrap();
        let (s, _) = answer(&b, &s, "en", "Ana").unwrap();
        let (s, _) = answer(&b, &s, "en", "ana@example.com").unwrap();
        assert_eq!(s.waiting, Waiting::LiveChat);
        let (s, out) = resume_after_live_chat(&b, &s, "en");
        assert_eq!(says(&out), ["Bye Ana."]);
        assert_eq!(out.last(), Some(&Output::End));
        assert_eq!(s.step, None);
        assert_eq!(s.waiting, Waiting::Done);
        assert_eq!(skip(&b, &s, "en"), Err(FlowError::NotWaiting));
    }

    #[test]
    fn offline_form_pauses_and_can_be_dismissed() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s, _) = skip(&b, &s, "en").unwrap();
        let (s, _) = skip(&b, &s, "en").unwrap();
        let (s, _) = answer(&b, &s, "en", "a@b.example").unwrap();
        let paused = pause_for_offline_form(&s, "contact");
        assert_eq!(paused.waiting, Waiting::OfflineForm("contact".into()));
        assert_eq!(
            choose(&b, &paused, "en", None, &Pick::Index(0)),
            Err(FlowError::NotWaiting)
        );
        // The live chat step offers no skip, but the form can always be dismissed.
        let (s, out) = skip(&b, &paused, "en").unwrap();
        assert_eq!(says(&out), ["Bye ."]);
        assert_eq!(s.step, None);
    }

    #[test]
    fn resume_mid_flow_shows_the_current_step_again() {
        let b = bot(SUPPORT);
        let (s, _) = start(&b, "en");
        let (s2, out) = resume_after_live_chat(&b, &s, "en");
        assert_eq!(s2.step.as_deref(), Some("topic"));
        assert_eq!(says(&out), ["What about?"]);
    }

    #[test]
    fn links_do_not_wait_and_step_goto_is_followed() {
        let b = bot(r#"
name = "B"
[[step]]
id = "a"
say = "Book a call:"
link = { label = "Calendar", url = "https://cal.example" }
goto = "c"
[[step]]
id = "b"
say = "skipped"
[[step]]
id = "c"
say = "Done."
"#);
        let (s, out) = start(&b, "en");
        assert_eq!(says(&out), ["Book a call:", "Done."]);
        let link = prompt_of(&out).link.clone().unwrap();
        assert_eq!(
            link,
            LinkView {
                label: "Calendar".into(),
                url: "https://cal.example".into()
            }
        );
        assert_eq!(out.last(), Some(&Output::End));
        assert_eq!(s.step, None);
    }

    #[test]
    fn a_loop_of_say_steps_ends_instead_of_hanging() {
        let b = bot(
            "name = \"B\"\n[[step]]\nid = \"a\"\nsay = \"x\"\ngoto = \"b\"\n[[step]]\nid = \"b\"\nsay = \"y\"\ngoto = \"a\"\n",
        );
        let (s, out) = start(&b, "en");
        assert_eq!(s.step, None);
        assert_eq!(says(&out), ["x", "y"]);
        assert_eq!(out.last(), Some(&Output::End));
    }

    #[test]
    fn a_bot_without_steps_ends_at_once() {
        let b = bot("name = \"B\"\n");
        assert_eq!(start(&b, "en"), (FlowState::default(), vec![Output::End]));
    }

    #[test]
    fn texts_follow_the_visitor_language() {
        let b = bot(r#"
name = "B"
languages = ["en", "de"]
[[step]]
id = "a"
say = { en = "Hello", de = "Hallo" }
choices = [{ label = { en = "Yes", de = "Ja" } }]
"#);
        let (_, out) = start(&b, "de");
        assert_eq!(says(&out), ["Hallo"]);
        let p = prompt_of(&out);
        assert_eq!(p.choices[0].label, "Ja");
        // The recorded value is the label in the bot's first language.
        assert_eq!(p.choices[0].value, "Yes");
        let (s, _) = start(&b, "fr");
        let (s, _) = text(&b, &s, "de", "ja");
        assert_eq!(s.vars["a"], "Yes");
    }

    #[test]
    fn texts_can_name_the_bot() {
        let b = bot(r#"
name = "Acme Support"
[[step]]
id = "a"
say = "Hi! I'm the {{ bot.name }} assistant."
"#);
        let (_, out) = start(&b, "en");
        assert_eq!(says(&out), ["Hi! I'm the Acme Support assistant."]);
    }

    #[test]
    fn end_on_a_choice_step_ends_after_the_choice() {
        let b = bot(
            "name = \"B\"\n[[step]]\nid = \"a\"\nchoices = [{ label = \"x\", goto = \"b\" }]\nend = true\n[[step]]\nid = \"b\"\nsay = \"no\"\n",
        );
        let (s, _) = start(&b, "en");
        let (s, out) = choose(&b, &s, "en", None, &Pick::Index(0)).unwrap();
        assert_eq!(s.step, None);
        assert_eq!(out.last(), Some(&Output::End));
        assert!(says(&out).is_empty());
    }
}
