//! What agents do.

use super::Tx;
use crate::chat::conversation::commands::message_body;
use crate::chat::conversation::commands::{
    MAX_COMMENT_CHARS, MAX_MESSAGE_CHARS, TransferTarget, message_text, optional_text,
};
use crate::chat::conversation::events::Attachment;
use crate::chat::conversation::events::{Author, EventData, Message, Notice};
use crate::chat::conversation::types::{Deadlines, Rating, Rejection, Status};
use crate::chat::routing::{self, AgentView};
use crate::config::schema::Assignment;

impl<'c, 'a: 'c> Tx<'c, 'a> {
    pub(super) fn accept(&mut self, email: &str) -> Result<(), Rejection> {
        match self.conv.status {
            Status::New => {}
            // A retried accept by the winner changes nothing.
            Status::Assigned | Status::Chatting if self.is_assignee(email) => return Ok(()),
            Status::Assigned | Status::Chatting => return Err(Rejection::AlreadyTaken),
            _ => return Err(self.invalid_state()),
        }
        let agent = self.agent(email)?;
        self.may_accept(agent)?;
        self.emit(EventData::LivechatAccepted {
            agent: agent.email.clone(),
        });
        self.assign_to(agent, &agent.email, None);
        Ok(())
    }

    /// Whether `agent` may take this waiting request: room for one more chat, a member of
    /// the team it rings, "Accept chats" on, and in `auto` mode the one it is offered to.
    /// Muting does not matter: a muted request still waits under "awaiting".
    pub(super) fn may_accept(&self, agent: &AgentView) -> Result<(), Rejection> {
        if !agent.has_capacity() {
            return Err(Rejection::AtCapacity(agent.email.clone()));
        }
        if !self.serves(agent) {
            return Err(Rejection::NotAvailable(format!(
                "{} is not in a team this request is routed to",
                agent.email
            )));
        }
        if !agent.accepting {
            return Err(Rejection::NotAvailable(format!(
                "{} is not accepting chats",
                agent.email
            )));
        }
        if self.action().assignment == Assignment::Auto
            && self.conv.offered_to.as_deref() != Some(agent.email.as_str())
        {
            return Err(Rejection::NotAvailable(
                "this request is offered to another agent".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn agent_message(
        &mut self,
        email: &str,
        text: String,
        attachments: Vec<Attachment>,
    ) -> Result<(), Rejection> {
        let text = message_body(&text, &attachments)?;
        let agent = self.agent(email)?;
        self.require(&[Status::Assigned, Status::Chatting])?;
        if !self.is_assignee(email) {
            return Err(Rejection::NotAllowed(
                "only the assigned agent writes to the visitor".into(),
            ));
        }
        self.conv.status = Status::Chatting;
        self.message(Message {
            agent: Some(agent.email.clone()),
            name: Some(agent.name.clone()),
            attachments,
            ..Message::new(Author::Agent, text)
        });
        Ok(())
    }

    pub(super) fn note(&mut self, email: &str, text: String) -> Result<(), Rejection> {
        let text = message_text(&text)?;
        let agent = self.agent(email)?;
        self.emit(EventData::NoteCreated {
            message_id: None,
            agent: agent.email.clone(),
            name: agent.name.clone(),
            text,
        });
        Ok(())
    }

    pub(super) fn assign(
        &mut self,
        by: &str,
        email: &str,
        by_admin: bool,
    ) -> Result<(), Rejection> {
        if !by_admin && by != email {
            return Err(Rejection::NotAllowed(
                "only admins assign conversations to others".into(),
            ));
        }
        let agent = self.agent(email)?;
        self.require(&[Status::New, Status::Assigned, Status::Chatting])?;
        if self.is_assignee(email) {
            return Ok(());
        }
        if !by_admin {
            // Assigning oneself is accepting.
            return self.accept(email);
        }
        self.require_serves_bot(agent)?;
        if !agent.has_capacity() {
            return Err(Rejection::AtCapacity(agent.email.clone()));
        }
        let previous = self.conv.assignee.clone();
        self.assign_to(agent, by, previous);
        Ok(())
    }

    pub(super) fn unassign(&mut self, by: &str) -> Result<(), Rejection> {
        self.require(&[Status::Assigned, Status::Chatting])?;
        if !self.is_assignee(by) {
            return Err(Rejection::NotAllowed(
                "only the assigned agent unassigns themselves".into(),
            ));
        }
        self.end_call_with_chat(by);
        // They gave it back: it does not ring for them again.
        self.conv.muted.insert(by.to_string());
        self.emit(EventData::ConversationAssigned {
            agent: None,
            name: None,
            by: by.to_string(),
            previous: Some(Some(by.to_string())),
            takeover: false,
        });
        self.enter_new();
        Ok(())
    }

    pub(super) fn transfer(&mut self, by: &str, to: TransferTarget) -> Result<(), Rejection> {
        let from = self.agent(by)?;
        self.require(&[Status::New, Status::Assigned, Status::Chatting])?;
        if self.conv.assignee.is_some() && !self.is_assignee(by) && !from.is_admin() {
            return Err(Rejection::NotAllowed(
                "only the assigned agent or an admin transfers".into(),
            ));
        }
        // A waiting request is its routed team's: an agent outside it may read it, but not
        // move it to a team (their own, say) where they could then accept it.
        if self.conv.assignee.is_none() && !from.is_admin() && !self.serves(from) {
            return Err(Rejection::NotAllowed(
                "only the routed team or an admin transfers a waiting request".into(),
            ));
        }
        let previous = self.conv.assignee.clone();
        if previous.is_some() {
            // The call was with the previous agent; the new one may offer another.
            self.end_call_with_chat(by);
        }
        match to {
            TransferTarget::Agent(email) => {
                let agent = self.agent(&email)?;
                if self.is_assignee(&email) {
                    return Err(Rejection::InvalidInput(format!(
                        "{email} already has this conversation"
                    )));
                }
                self.require_serves_bot(agent)?;
                if !agent.has_capacity() {
                    return Err(Rejection::AtCapacity(agent.email.clone()));
                }
                if !(agent.accepting && agent.online) {
                    return Err(Rejection::NotAvailable(format!("{email} is not available")));
                }
                self.emit(EventData::ConversationTransferred {
                    by: by.to_string(),
                    from: previous.clone(),
                    agent: Some(agent.email.clone()),
                    team: None,
                });
                self.assign_to(agent, by, previous);
            }
            TransferTarget::Team(team) => {
                let Some(found) = self.ctx.teams.iter().find(|t| *t.id.get_ref() == team) else {
                    return Err(Rejection::InvalidInput(format!("no team `{team}`")));
                };
                // A team that does not serve the bot could not see the conversation.
                if !found.bots.iter().any(|b| *b.get_ref() == self.conv.bot) {
                    return Err(Rejection::NotAvailable(format!(
                        "team `{team}` does not serve this bot"
                    )));
                }
                if let Some(p) = &previous {
                    self.conv.muted.insert(p.clone());
                }
                self.conv.team = Some(team.clone());
                // Nobody of the team could hear it (all away, full, or only the one giving
                // it away): say so now rather than let it wait unheard.
                if self.eligible().is_empty() {
                    return Err(Rejection::NobodyToRing(format!(
                        "nobody in team `{team}` can take it now (online, accepting chats \
                         and below their limit)"
                    )));
                }
                self.emit(EventData::ConversationTransferred {
                    by: by.to_string(),
                    from: previous,
                    agent: None,
                    team: Some(team),
                });
                let a = self.action();
                self.notice(&a.handoff_message, Notice::Handoff, None);
                self.enter_new();
            }
        }
        Ok(())
    }

    pub(super) fn takeover(&mut self, email: &str) -> Result<(), Rejection> {
        let agent = self.agent(email)?;
        self.require(&[Status::Bot, Status::Collecting])?;
        if !agent.has_capacity() {
            return Err(Rejection::AtCapacity(agent.email.clone()));
        }
        let serves_bot = routing::serves(agent, self.ctx.teams, &self.conv.bot, None);
        if !serves_bot && !agent.is_admin() {
            return Err(Rejection::NotAvailable(format!(
                "{email} is not in a team serving this bot"
            )));
        }
        let now = self.ctx.now;
        if self.conv.status == Status::Bot {
            self.conv.live_chat = self.conv.action_for(self.ctx.bot, None).map(str::to_string);
            self.conv.requested_at = Some(now);
            self.conv.resolved_at = None;
            self.conv.resolve_note = None;
        }
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Chatting;
        c.assignee = Some(agent.email.clone());
        c.assigned_at = Some(now);
        self.emit(EventData::ConversationAssigned {
            agent: Some(agent.email.clone()),
            name: Some(agent.name.clone()),
            by: agent.email.clone(),
            previous: None,
            takeover: true,
        });
        let a = self.action();
        self.notice(&a.takeover_message, Notice::Takeover, Some(agent));
        self.touch_idle();
        Ok(())
    }

    pub(super) fn mute(&mut self, email: &str) -> Result<(), Rejection> {
        self.agent(email)?;
        self.require(&[Status::New])?;
        if !self.conv.muted.insert(email.to_string()) {
            return Ok(());
        }
        if self.conv.offered_to.as_deref() == Some(email) {
            // Muting an offer declines it: offer to the next agent.
            self.conv.offered_to = None;
            self.conv.deadlines.offer = None;
        }
        self.ring(false);
        Ok(())
    }

    pub(super) fn resolve(&mut self, by: &str, note: Option<String>) -> Result<(), Rejection> {
        let agent = self.agent(by)?;
        self.require(&[
            Status::Collecting,
            Status::New,
            Status::Assigned,
            Status::Chatting,
        ])?;
        let allowed = agent.is_admin()
            || match &self.conv.assignee {
                Some(a) => a == by,
                None => self.serves(agent),
            };
        if !allowed {
            return Err(Rejection::NotAllowed(
                "only the assigned agent or an admin resolves this conversation".into(),
            ));
        }
        let note = optional_text(note, MAX_MESSAGE_CHARS, "the note")?;
        self.end_call_with_chat(by);
        let now = self.ctx.now;
        self.clear_waiting();
        let c = &mut self.conv;
        c.status = Status::Resolved;
        c.resolved_at = Some(now);
        c.resolve_note = note.clone();
        c.deadlines = Deadlines::default();
        let secs = c.requested_at.map(|r| now.duration_since(r).as_secs());
        self.emit(EventData::ConversationResolved {
            by: by.to_string(),
            note,
            time_to_resolve_secs: secs,
        });
        Ok(())
    }

    pub(super) fn close(&mut self) -> Result<(), Rejection> {
        self.require(&[Status::Resolved, Status::Ended, Status::Bot])?;
        self.clear_waiting();
        self.conv.status = Status::Closed;
        self.conv.closed_at = Some(self.ctx.now);
        self.conv.deadlines = Deadlines::default();
        self.emit(EventData::ConversationClosed {});
        Ok(())
    }

    /// Once a chat a person had is over (resolved or ended; a closed one takes nothing any
    /// more), the visitor may rate it, once.
    pub(super) fn rate(
        &mut self,
        rating: Rating,
        comment: Option<String>,
    ) -> Result<(), Rejection> {
        self.require(&[Status::Resolved, Status::Ended])?;
        if !self.conv.had_a_person() || self.conv.rating.is_some() {
            return Err(self.invalid_state());
        }
        let comment = optional_text(comment, MAX_COMMENT_CHARS, "the comment")?;
        self.conv.rating = Some(rating);
        self.conv.rating_comment = comment.clone();
        self.emit(EventData::ConversationRated {
            rating,
            comment,
            agent: self.conv.assignee.clone(),
        });
        Ok(())
    }
}
