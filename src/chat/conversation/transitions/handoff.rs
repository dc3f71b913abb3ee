//! The steps the commands share: asking for a person, ringing, the offline path,
//! assigning, reopening and ending.

use std::collections::BTreeSet;

use super::{Tx, after};
use crate::chat::conversation::commands::{COLLECT_RETRY, valid_name};
use crate::chat::conversation::events::Attachment;
use crate::chat::conversation::events::{
    Author, Collect, EndReason, EventData, FlowStep, FormFieldView, Message, Notice,
    OfflineFormView, OfflineReason,
};
use crate::chat::conversation::show::{field_kind, show_flow};
use crate::chat::conversation::types::{Deadlines, Status};
use crate::chat::flow::{self, FlowState, Output};
use crate::chat::routing::{self, AgentView};
use crate::chat::text::render_text;
use crate::config::schema::{Assignment, CollectField};
use crate::config::values::is_valid_email;

impl<'c, 'a: 'c> Tx<'c, 'a> {
    /// `None` when someone can take the request now; else why not (`closed`: outside the
    /// opening hours, `no_agents`: nobody eligible).
    pub(super) fn offline_reason(&self) -> Option<OfflineReason> {
        if !self.ctx.open {
            Some(OfflineReason::Closed)
        } else if self.eligible().is_empty() {
            Some(OfflineReason::NoAgents)
        } else {
            None
        }
    }

    /// The first field of `collect` not known yet.
    pub(super) fn missing_field(&self) -> Option<CollectField> {
        self.action()
            .collect
            .iter()
            .map(|f| *f.get_ref())
            .find(|f| match f {
                CollectField::Name => self.conv.name.is_none(),
                CollectField::Email => self.conv.email.is_none(),
            })
    }

    pub(super) fn ask_collect(&mut self, field: CollectField) {
        let a = self.action();
        let (prompt, name, kind) = match field {
            CollectField::Name => (&a.name_prompt, "name", "text"),
            CollectField::Email => (&a.email_prompt, "email", "email"),
        };
        let text = render_text(prompt, &self.conv.language, &self.render_ctx(None));
        self.message(Message {
            collect: Some(name.into()),
            ..Message::new(Author::Bot, text)
        });
        self.emit(collect_step(name, kind));
    }

    pub(super) fn collect_answer(&mut self, text: &str) {
        let Some(field) = self.missing_field() else {
            // The action no longer collects it (config changed): go on.
            return self.finish_collecting();
        };
        let value = text.trim().to_string();
        let ok = match field {
            CollectField::Name => valid_name(&value),
            CollectField::Email => is_valid_email(&value),
        };
        if !ok {
            self.message(Message::new(Author::Bot, COLLECT_RETRY.to_string()));
            let (name, kind) = match field {
                CollectField::Name => ("name", "text"),
                CollectField::Email => ("email", "email"),
            };
            self.emit(collect_step(name, kind));
            return;
        }
        let var = match field {
            CollectField::Name => {
                self.conv.name = Some(value.clone());
                "name"
            }
            CollectField::Email => {
                self.conv.email = Some(value.clone());
                "email"
            }
        };
        self.conv.flow.vars.insert(var.to_string(), value);
        match self.missing_field() {
            Some(next) => self.ask_collect(next),
            None => self.finish_collecting(),
        }
    }

    pub(super) fn finish_collecting(&mut self) {
        match self.offline_reason() {
            Some(reason) => self.offline(reason),
            None => self.connect(),
        }
    }

    /// Someone can take it: the handoff message, then ring.
    pub(super) fn connect(&mut self) {
        let a = self.action();
        self.notice(&a.handoff_message, Notice::Handoff, None);
        self.enter_new();
    }

    /// Nobody can take it: the offline message, then the offline form or the flow.
    pub(super) fn offline(&mut self, reason: OfflineReason) {
        let a = self.action();
        self.notice(&a.offline_message, Notice::Offline, None);
        let form = self.offline_form().map(|(id, _)| id.to_string());
        self.emit(EventData::LivechatOffline {
            action: self.conv.live_chat.clone(),
            reason,
            form,
        });
        self.back_to_bot();
    }

    /// The action's offline form, if it has one that exists.
    pub(super) fn offline_form(&self) -> Option<(&'c str, &'c crate::config::schema::OfflineForm)> {
        let id = self.action().offline_form.as_ref()?;
        self.ctx
            .bot
            .offline_form
            .get_key_value(id.get_ref())
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The live chat did not happen: the bot leads again, with the offline form shown if
    /// the action has one, else the flow going on.
    pub(super) fn back_to_bot(&mut self) {
        self.clear_waiting();
        self.conv.video = false;
        let c = &mut self.conv;
        c.status = Status::Bot;
        c.assignee = None;
        c.deadlines = Deadlines::default();
        let lang = c.language.clone();
        match self.offline_form() {
            Some((id, form)) => {
                self.conv.flow = flow::pause_for_offline_form(&self.conv.flow, id);
                let ctx = self.render_ctx(None);
                let fields = form
                    .fields
                    .iter()
                    .map(|f| FormFieldView {
                        name: f.name.get_ref().clone(),
                        label: render_text(&f.label, &lang, &ctx),
                        kind: field_kind(f.kind).into(),
                        required: f.required,
                        max: f.max,
                        options: f.options.clone(),
                    })
                    .collect();
                self.emit(EventData::FlowStep(FlowStep::OfflineForm {
                    step: self.conv.flow.step.clone(),
                    offline_form: OfflineFormView {
                        id: id.to_string(),
                        title: render_text(&form.title, &lang, &ctx),
                        intro: form.intro.as_ref().map(|t| render_text(t, &lang, &ctx)),
                        fields,
                    },
                    buttons: vec!["skip".into()],
                }));
            }
            None => {
                let (state, outputs) =
                    flow::resume_after_live_chat(self.ctx.bot, &self.conv.flow, &lang);
                self.set_flow(state, outputs);
            }
        }
    }

    /// Waits for an agent: rings (or offers), with the accept deadline.
    pub(super) fn enter_new(&mut self) {
        let accept = after(self.ctx.now, self.action().accept_timeout.get());
        let c = &mut self.conv;
        c.status = Status::New;
        c.assignee = None;
        c.offered_to = None;
        c.offered.clear();
        c.deadlines.offer = None;
        c.deadlines.accept = Some(accept);
        self.ring(true);
    }

    /// Works out who rings now and says so when it changed (or always, with `announce`).
    /// In `auto` mode a standing offer stays while its agent is still eligible; otherwise
    /// the request is offered to the least-loaded eligible agent not offered yet in this
    /// round (a new round starts when everyone was).
    pub(super) fn ring(&mut self, announce: bool) {
        let eligible = self.eligible();
        let now = self.ctx.now;
        let a = self.action();
        let ringing: BTreeSet<String> = match a.assignment {
            Assignment::Ring => {
                // (An action switched from `auto` to `ring` mid-request drops its offer.)
                self.conv.offered_to = None;
                self.conv.deadlines.offer = None;
                eligible.iter().map(|a| a.email.clone()).collect()
            }
            Assignment::Auto => {
                let c = &mut self.conv;
                let standing = c
                    .offered_to
                    .as_ref()
                    .filter(|o| eligible.iter().any(|a| &&a.email == o))
                    .cloned();
                let offer = standing.or_else(|| {
                    let pick = routing::least_loaded(&eligible, &c.offered).or_else(|| {
                        c.offered.clear();
                        routing::least_loaded(&eligible, &c.offered)
                    })?;
                    c.offered.insert(pick.email.clone());
                    c.deadlines.offer = Some(after(now, a.offer_timeout.get()));
                    Some(pick.email.clone())
                });
                if offer.is_none() {
                    c.deadlines.offer = None;
                }
                c.offered_to = offer.clone();
                offer.into_iter().collect()
            }
        };
        if announce || ringing != self.conv.ringing {
            self.conv.ringing = ringing;
            self.emit(EventData::LivechatRinging {
                agents: self.conv.ringing.clone(),
                team: self.conv.team.clone(),
                offered_to: self.conv.offered_to.clone(),
            });
        }
    }

    /// Gives the conversation to `agent`: `conversation.assigned` and the assigned message.
    pub(super) fn assign_to(&mut self, agent: &AgentView, by: &str, previous: Option<String>) {
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Assigned;
        c.assignee = Some(agent.email.clone());
        c.assigned_at = Some(self.ctx.now);
        c.deadlines.accept = None;
        c.deadlines.offer = None;
        self.emit(EventData::ConversationAssigned {
            agent: Some(agent.email.clone()),
            name: Some(agent.name.clone()),
            by: by.to_string(),
            previous: Some(previous),
            takeover: false,
        });
        let a = self.action();
        if self.conv.video && self.conv.call.is_none() {
            // A video request: the agent who takes it joins the call.
            self.notice(&a.video_message, Notice::Video, Some(agent));
            self.start_call(agent.email.clone());
        } else {
            self.notice(&a.assigned_message, Notice::Assigned, Some(agent));
        }
    }

    /// A visitor message on a resolved conversation: back to its agent if they can take
    /// it (online, accepting, room for it), else to the queue.
    pub(super) fn reopen(&mut self) {
        self.conv.resolved_at = None;
        self.conv.resolve_note = None;
        // A new wait: those who muted (or gave back) an earlier one are rung again.
        self.conv.muted.clear();
        let back_to = self
            .conv
            .assignee
            .as_ref()
            .and_then(|email| self.ctx.agents.iter().find(|a| &a.email == email))
            .filter(|a| a.available());
        self.emit(EventData::ConversationReopened {
            assignee: back_to.map(|a| a.email.clone()),
        });
        self.touch_idle();
        match (back_to, self.offline_reason()) {
            (Some(_), _) => self.conv.status = Status::Assigned,
            // Nobody could hear it ring: the action's offline path at once, not a silent
            // wait until the accept timeout.
            (None, Some(reason)) => self.offline(reason),
            (None, None) => self.enter_new(),
        }
    }

    pub(super) fn end(&mut self, reason: EndReason) {
        self.end_call_with_chat("visitor");
        self.clear_waiting();
        self.conv.status = Status::Ended;
        self.conv.ended_at = Some(self.ctx.now);
        self.conv.deadlines = Deadlines::default();
        self.emit(EventData::ConversationEnded { reason });
    }

    /// Stops ringing and offering.
    /// `back` while the name or email for a person is asked: the visitor takes the request
    /// back and is where they asked again, that step shown anew (its Live Chat button, or
    /// its choices). What they gave so far stays known.
    pub(super) fn withdraw_request(&mut self) {
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Bot;
        c.last_visitor_at = Some(self.ctx.now);
        c.deadlines = Deadlines::default();
        let (state, outputs) = flow::again(self.ctx.bot, &c.flow, &c.language);
        self.set_flow(state, outputs);
    }

    pub(super) fn clear_waiting(&mut self) {
        self.conv.ringing.clear();
        self.conv.offered_to = None;
        self.conv.offered.clear();
    }

    /// A message from the visitor: recorded, and the idle timer starts over.
    pub(super) fn visitor_said(&mut self, text: &str) {
        self.visitor_said_with(text, Vec::new());
    }

    pub(super) fn visitor_said_with(&mut self, text: &str, attachments: Vec<Attachment>) {
        self.conv.last_visitor_at = Some(self.ctx.now);
        if self.conv.status.live() {
            self.touch_idle();
        }
        self.message(Message {
            attachments,
            ..Message::new(Author::Visitor, text.to_string())
        });
    }

    pub(super) fn touch_idle(&mut self) {
        self.conv.deadlines.idle = Some(after(self.ctx.now, self.action().idle_timeout.get()));
    }

    pub(super) fn set_flow(&mut self, state: FlowState, outputs: Vec<Output>) {
        let before = std::mem::replace(&mut self.conv.flow, state);
        // `ask` answers for `name` and `email` fill the visitor's profile.
        if let Some(name) = self.conv.flow.vars.get("name").filter(|n| valid_name(n)) {
            self.conv.name = Some(name.clone());
        }
        if let Some(email) = self
            .conv
            .flow
            .vars
            .get("email")
            .filter(|e| is_valid_email(e))
        {
            self.conv.email = Some(email.clone());
        }
        self.contact_from_flow(&before.vars);
        show_flow(
            self.ctx.bot,
            &self.conv.flow,
            &self.conv.language,
            outputs,
            &mut self.events,
        );
    }
}

/// The `flow.step` that asks for the visitor's name or email before a live chat: the
/// visitor answers with a message, or goes `back` to where they asked for a person (like
/// any question of the flow).
fn collect_step(field: &str, kind: &str) -> EventData {
    EventData::FlowStep(FlowStep::Collect {
        step: None,
        collect: Collect {
            field: field.into(),
            kind: kind.into(),
        },
        buttons: vec!["back".into()],
    })
}
