//! What the visitor does.

use std::collections::BTreeMap;

use super::Tx;
use crate::chat::conversation::commands::message_body;
use crate::chat::conversation::commands::message_text;
use crate::chat::conversation::events::Attachment;
use crate::chat::conversation::events::{Author, EndReason, EventData, Message, Notice};
use crate::chat::conversation::types::{Rejection, Status};
use crate::chat::flow::{self, FlowError, FlowState, Pick, Waiting};
use crate::chat::form::validate_form;
use crate::chat::routing;
use crate::chat::text::render_text;
use crate::config::schema::Bot;
use crate::config::values::is_valid_email;

impl<'c, 'a: 'c> Tx<'c, 'a> {
    pub(super) fn visitor_message(
        &mut self,
        text: String,
        attachments: Vec<Attachment>,
    ) -> Result<(), Rejection> {
        let text = message_body(&text, &attachments)?;
        self.require(&[
            Status::Bot,
            Status::Collecting,
            Status::New,
            Status::Assigned,
            Status::Chatting,
            Status::Resolved,
        ])?;
        let files_only = text.is_empty();
        self.visitor_said_with(&text, attachments);
        match self.conv.status {
            // Files alone answer no question and match no keyword: the bot waits.
            Status::Bot | Status::Collecting if files_only => {}
            Status::Bot if self.asks_for_a_person(&text) => self.request_live_chat(None)?,
            Status::Bot => {
                let (state, outputs) =
                    flow::text(self.ctx.bot, &self.conv.flow, &self.conv.language, &text);
                self.set_flow(state, outputs);
            }
            Status::Collecting => self.collect_answer(&text),
            Status::Assigned => self.conv.status = Status::Chatting,
            Status::Resolved => self.reopen(),
            _ => {}
        }
        Ok(())
    }

    pub(super) fn choose(&mut self, step: Option<String>, pick: Pick) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        let (state, outputs) = flow::choose(
            self.ctx.bot,
            &self.conv.flow,
            &self.conv.language,
            step.as_deref(),
            &pick,
        )
        .map_err(|e| self.flow_rejection(e))?;
        self.conv.last_visitor_at = Some(self.ctx.now);
        self.set_flow(state, outputs);
        Ok(())
    }

    pub(super) fn answer(&mut self, text: String) -> Result<(), Rejection> {
        let text = message_text(&text)?;
        match self.conv.status {
            Status::Collecting => {
                self.visitor_said(&text);
                self.collect_answer(&text);
                Ok(())
            }
            Status::Bot if self.asks_for_a_person(&text) => {
                self.visitor_said(&text);
                self.request_live_chat(None)
            }
            Status::Bot => {
                let (state, outputs) =
                    flow::answer(self.ctx.bot, &self.conv.flow, &self.conv.language, &text)
                        .map_err(|e| self.flow_rejection(e))?;
                self.visitor_said(&text);
                self.set_flow(state, outputs);
                Ok(())
            }
            _ => Err(self.invalid_state()),
        }
    }

    /// `skip` and `back`: flow navigation while the bot leads.
    pub(super) fn flow_input(
        &mut self,
        f: impl Fn(&Bot, &FlowState, &str) -> Result<flow::Flow, FlowError>,
    ) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        let (state, outputs) = f(self.ctx.bot, &self.conv.flow, &self.conv.language)
            .map_err(|e| self.flow_rejection(e))?;
        self.conv.last_visitor_at = Some(self.ctx.now);
        self.set_flow(state, outputs);
        Ok(())
    }

    /// Whether the visitor typed one of the bot's `handoff_phrases` (in the language the
    /// bot speaks with them, or the one they asked for), and the bot has a person to offer.
    fn asks_for_a_person(&self, text: &str) -> bool {
        let phrases = &self.ctx.bot.header.handoff_phrases;
        if phrases.is_empty() || self.conv.action_for(self.ctx.bot, None).is_none() {
            return false;
        }
        let mut languages = vec![self.conv.language.as_str()];
        languages.extend(self.conv.requested_language.as_deref());
        phrases.matches(text, &languages)
    }

    pub(super) fn request_live_chat(&mut self, action: Option<String>) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        let Some(action_id) = self
            .conv
            .action_for(self.ctx.bot, action.as_deref())
            .map(str::to_string)
        else {
            return Err(match action {
                Some(a) => Rejection::InvalidInput(format!("no Live Chat action `{a}`")),
                None => Rejection::NotAllowed("this bot offers no live chat".into()),
            });
        };
        let now = self.ctx.now;
        self.conv.live_chat = Some(action_id.clone());
        let a = self.action();
        let c = &mut self.conv;
        c.requested_at = Some(now);
        c.assigned_at = None;
        c.resolved_at = None;
        c.resolve_note = None;
        c.last_visitor_at = Some(now);
        c.muted.clear();
        c.offered.clear();
        c.offered_to = None;
        c.ringing.clear();
        // The language the visitor asked for, not the one the bot answers in: a bot that
        // speaks only English still routes a Spanish browser to the Spanish team.
        let language = c.requested_language.as_deref().unwrap_or(&c.language);
        c.team = routing::route(
            a,
            &c.flow.vars,
            c.page_url.as_deref(),
            language,
            c.country.as_deref(),
        );
        self.notice(&a.welcome_message, Notice::Welcome, None);
        self.emit(EventData::LivechatRequested {
            action: action_id,
            team: self.conv.team.clone(),
        });
        self.touch_idle();
        // Nobody to talk to: say so at once rather than ask for a name first.
        if let Some(reason) = self.offline_reason() {
            self.offline(reason);
        } else if let Some(field) = self.missing_field() {
            self.conv.status = Status::Collecting;
            self.ask_collect(field);
        } else {
            self.connect();
        }
        Ok(())
    }

    pub(super) fn submit_form(
        &mut self,
        form_id: String,
        values: BTreeMap<String, String>,
    ) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        if self.conv.flow.waiting != Waiting::OfflineForm(form_id.clone()) {
            return Err(Rejection::InvalidState {
                status: self.conv.status,
                command: "submit this form",
            });
        }
        let lang = self.conv.language.clone();
        if let Some(form) = self.ctx.bot.offline_form.get(&form_id) {
            let clean = validate_form(form, &values).map_err(|errs| {
                Rejection::InvalidInput(
                    errs.iter()
                        .map(|e| format!("{} {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            let c = &mut self.conv;
            if c.name.is_none() {
                c.name = clean.get("name").cloned();
            }
            if c.email.is_none() {
                c.email = clean.get("email").cloned().filter(|e| is_valid_email(e));
            }
            self.emit(EventData::FormSubmitted {
                form: form_id,
                values: clean,
            });
            let thanks = render_text(&form.thank_you, &lang, &self.render_ctx(None));
            self.message(Message::new(Author::Bot, thanks));
        }
        self.conv.last_visitor_at = Some(self.ctx.now);
        let (state, outputs) = flow::resume_after_live_chat(self.ctx.bot, &self.conv.flow, &lang);
        self.set_flow(state, outputs);
        Ok(())
    }

    pub(super) fn visitor_end(&mut self) -> Result<(), Rejection> {
        self.require(&[
            Status::Bot,
            Status::Collecting,
            Status::New,
            Status::Assigned,
            Status::Chatting,
        ])?;
        self.conv.last_visitor_at = Some(self.ctx.now);
        self.end(EndReason::Visitor);
        Ok(())
    }
}
