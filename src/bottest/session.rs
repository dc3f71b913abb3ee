//! One conversation with a bot, run through the pure core on a virtual clock: what
//! `livechat test` replays and `livechat try` types into.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

use super::case::Action;
use crate::chat::conversation::{
    Author, Command, Conversation, Ctx, Event, EventData, Message, OfflineReason, Status, Visitor,
};
use crate::chat::flow::{Pick, Waiting, vars_json};
use crate::chat::form::mail_subject;
use crate::chat::routing::AgentView;
use crate::chat::text::render_text;
use crate::config::Bundle;
use crate::config::schema::Bot;

/// Who the visitor is and the world at the start.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub language: Option<String>,
    pub page_url: Option<String>,
    pub country: Option<String>,
    pub vars: BTreeMap<String, String>,
    pub time: Option<Timestamp>,
    /// Agents online and accepting (lowercase emails); `None`: every agent.
    pub online: Option<BTreeSet<String>>,
}

/// The mail a submitted offline form sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
}

pub struct Session<'b> {
    bundle: &'b Bundle,
    pub bot_id: String,
    pub bot: &'b Bot,
    pub conv: Conversation,
    pub now: Timestamp,
    online: Option<BTreeSet<String>>,
    /// The events of the last action (of the start, before the first).
    pub recent: Vec<Event>,
}

impl<'b> Session<'b> {
    pub fn start(bundle: &'b Bundle, bot_id: &str, setup: &Setup) -> Result<Session<'b>, String> {
        let bot = bundle
            .bots
            .get(bot_id)
            .ok_or_else(|| format!("no bot `{bot_id}` in the bundle"))?;
        let now = match setup.time {
            Some(t) => t,
            None => super::case::parse_time(super::case::DEFAULT_TIME)?,
        };
        let visitor = Visitor {
            language: setup.language.clone(),
            page_url: setup.page_url.clone(),
            country: setup.country.clone(),
            name: setup.vars.get("name").cloned(),
            email: setup.vars.get("email").cloned(),
            vars: setup.vars.clone(),
            requested_language: None,
        };
        let t = Conversation::start("test", bot_id, "visitor", visitor, bot, now);
        Ok(Session {
            bundle,
            bot_id: bot_id.to_string(),
            bot,
            conv: t.conversation,
            now,
            online: setup.online.clone(),
            recent: t.events,
        })
    }

    /// The roster as the core sees it: online and accepting as the case says, the
    /// assignee holding this chat.
    pub fn agents(&self) -> Vec<AgentView> {
        self.bundle
            .roster
            .agents
            .iter()
            .map(|a| {
                let email = a.email.as_str().to_lowercase();
                let on = self.online.as_ref().is_none_or(|o| o.contains(&email));
                let holds = self.conv.status.holds_agent()
                    && self.conv.assignee.as_deref() == Some(email.as_str());
                AgentView::of(a, on, on, u32::from(holds))
            })
            .collect()
    }

    /// Runs one command of the core at the current time; its events join `recent`.
    fn apply(&mut self, cmd: Command) -> Result<(), String> {
        let requested = match &cmd {
            Command::RequestLiveChat { action } => action.clone(),
            _ => None,
        };
        let agents = self.agents();
        let ctx = Ctx {
            now: self.now,
            bot: self.bot,
            agents: &agents,
            teams: &self.bundle.roster.teams,
            open: self
                .conv
                .within_hours(self.bot, requested.as_deref(), self.now),
        };
        let t = self.conv.apply(cmd, &ctx).map_err(|e| e.to_string())?;
        self.conv = t.conversation;
        self.recent.extend(t.events);
        Ok(())
    }

    /// Does what a step says; `recent` then holds what followed.
    pub fn act(&mut self, action: &Action) -> Result<(), String> {
        self.recent.clear();
        match action {
            Action::Type(text) => self.apply(Command::VisitorMessage {
                text: text.clone(),
                attachments: Vec::new(),
            }),
            Action::Click(label) => self.click(label),
            Action::Submit(values) => {
                let Waiting::OfflineForm(form) = &self.conv.flow.waiting else {
                    return Err("no offline form is shown".into());
                };
                let form = form.clone();
                self.apply(Command::SubmitForm {
                    form,
                    values: values.clone(),
                })
            }
            Action::Skip => self.apply(Command::Skip),
            Action::Back => self.apply(Command::Back),
            Action::Accept(agent) => self.apply(Command::Accept {
                agent: agent.clone(),
            }),
            Action::NobodyAccepts => {
                let Some(at) = self.conv.deadlines.accept else {
                    return Err(format!(
                        "no request is waiting for an agent (the conversation is {})",
                        self.conv.status
                    ));
                };
                self.run_clock_to(at)
            }
            Action::Wait(d) => {
                let d = SignedDuration::try_from(*d).map_err(|e| e.to_string())?;
                let to = self.now.checked_add(d).map_err(|e| e.to_string())?;
                self.run_clock_to(to)
            }
        }
    }

    /// A choice by label or value; else the Live Chat button by its label.
    fn click(&mut self, label: &str) -> Result<(), String> {
        if self.conv.status == Status::Bot && self.conv.flow.waiting == Waiting::Choice {
            let pick = Command::Choose {
                step: None,
                pick: Pick::Value(label.to_string()),
            };
            if self.apply(pick).is_ok() {
                return Ok(());
            }
        }
        if self.live_chat_label().as_deref() == Some(label) {
            return self.apply(Command::RequestLiveChat { action: None });
        }
        let mut offered = self.choice_labels();
        offered.extend(self.live_chat_label());
        Err(if offered.is_empty() {
            format!("nothing to click `{label}` on here")
        } else {
            format!(
                "no choice or button `{label}` here; the visitor sees {}",
                offered
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// The labels of the choices the flow waits on, in the visitor's language.
    pub fn choice_labels(&self) -> Vec<String> {
        if self.conv.flow.waiting != Waiting::Choice {
            return Vec::new();
        }
        let Some(step) = self.current_step() else {
            return Vec::new();
        };
        let ctx = vars_json(self.bot, &self.conv.flow.vars);
        step.choices
            .iter()
            .map(|c| render_text(&c.label, &self.conv.language, &ctx))
            .collect()
    }

    fn current_step(&self) -> Option<&'b crate::config::schema::Step> {
        let id = self.conv.flow.step.as_ref()?;
        self.bot.steps.iter().find(|s| s.id.get_ref() == id)
    }

    /// The label of the Live Chat button, where the bot leads and offers a person.
    pub fn live_chat_label(&self) -> Option<String> {
        if self.conv.status != Status::Bot || self.conv.flow.step.is_none() {
            return None;
        }
        let action = self.conv.action_for(self.bot, None)?;
        let a = self.bot.live_chat.get(action)?;
        let ctx = vars_json(self.bot, &self.conv.flow.vars);
        Some(render_text(&a.button.label, &self.conv.language, &ctx))
    }

    /// Lets time pass to `to`, firing every timer due on the way at its deadline.
    pub fn run_clock_to(&mut self, to: Timestamp) -> Result<(), String> {
        for _ in 0..10_000 {
            let Some(at) = self.conv.deadlines.earliest().filter(|at| *at <= to) else {
                break;
            };
            self.now = self.now.max(at);
            let Some(cmd) = self.conv.deadlines.due(self.now).into_iter().next() else {
                break;
            };
            self.apply(cmd)?;
        }
        self.now = self.now.max(to);
        Ok(())
    }

    /// Restarts the conversation from the first step in another language (`try`'s `:lang`).
    pub fn restart(&mut self, setup: &Setup) -> Result<(), String> {
        let mut setup = setup.clone();
        setup.time = Some(self.now);
        *self = Session::start(self.bundle, &self.bot_id, &setup)?;
        Ok(())
    }

    // ---- what happened ----

    /// The bot's and the Live Chat action's messages of the last action.
    pub fn messages(&self) -> Vec<&Message> {
        self.recent
            .iter()
            .filter_map(|e| match e {
                EventData::MessageCreated(m)
                    if matches!(m.author, Author::Bot | Author::System) =>
                {
                    Some(m)
                }
                _ => None,
            })
            .collect()
    }

    pub fn offline_reason(&self) -> Option<OfflineReason> {
        self.recent.iter().rev().find_map(|e| match e {
            EventData::LivechatOffline { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    /// The mail of the offline form submitted by the last action.
    pub fn mail(&self) -> Option<Mail> {
        self.recent.iter().find_map(|e| match e {
            EventData::FormSubmitted { form, values } => {
                let f = self.bot.offline_form.get(form)?;
                Some(Mail {
                    to: f.email_to.iter().map(|e| e.as_str().to_string()).collect(),
                    subject: mail_subject(self.bot, f, &self.conv.flow.vars, values),
                })
            }
            _ => None,
        })
    }

    /// Whether the Live Chat action a request would go to is within its hours now.
    pub fn open(&self) -> bool {
        self.conv.within_hours(self.bot, None, self.now)
    }

    /// The offline form shown, if any.
    pub fn form(&self) -> Option<&str> {
        match &self.conv.flow.waiting {
            Waiting::OfflineForm(f) => Some(f),
            _ => None,
        }
    }
}
