//! Video calls: a request for a call, an agent's offer inside a chat, the visitor's answer,
//! hanging up. The media go peer to peer between the two browsers; the conversation only
//! records that a call was asked for, began and ended.

use super::Tx;
use crate::chat::conversation::events::{EventData, VideoEndReason};
use crate::chat::conversation::types::{Call, Rejection, Status};
use crate::config::schema::ChatMode;

/// How the visitor's side is named in `by`.
const VISITOR: &str = "visitor";

impl<'c, 'a: 'c> Tx<'c, 'a> {
    /// A request for a person on a video call: a live chat request that rings only agents
    /// who take video; accepting it starts the call.
    pub(super) fn request_video(&mut self, action: Option<String>) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        let id = self
            .conv
            .action_for(self.ctx.bot, action.as_deref())
            .map(str::to_string);
        let offers_video = id
            .as_deref()
            .and_then(|id| self.ctx.bot.live_chat.get(id))
            .is_some_and(|a| a.modes.iter().any(|m| *m.get_ref() == ChatMode::Video));
        if !offers_video {
            return Err(Rejection::NotAllowed(
                "this Live Chat action offers no video call".into(),
            ));
        }
        self.emit(EventData::VideoRequested {
            by: VISITOR.into(),
            action: id.clone(),
        });
        self.conv.video = true;
        self.request_live_chat(id)
    }

    /// Whether the action a request goes to offers only video (`modes = ["video"]`): then
    /// asking for a person is asking for a call.
    pub(super) fn video_only(&self, action: Option<&str>) -> bool {
        self.conv
            .action_for(self.ctx.bot, action)
            .and_then(|id| self.ctx.bot.live_chat.get(id))
            .is_some_and(|a| a.modes.iter().all(|m| *m.get_ref() == ChatMode::Video))
    }

    /// The assigned agent offers a call inside the chat; the visitor answers.
    pub(super) fn offer_video(&mut self, agent: &str) -> Result<(), Rejection> {
        self.require(&[Status::Assigned, Status::Chatting])?;
        if !self.is_assignee(agent) {
            return Err(Rejection::NotAllowed(
                "only the agent who has the chat can offer a call".into(),
            ));
        }
        if self.conv.call.is_some() {
            return Err(self.invalid_state());
        }
        self.conv.call = Some(Call {
            requested_by: agent.to_string(),
            started_at: None,
        });
        self.emit(EventData::VideoRequested {
            by: agent.to_string(),
            action: self.conv.live_chat.clone(),
        });
        Ok(())
    }

    /// The visitor accepts (the call starts) or declines (the chat goes on in text).
    pub(super) fn answer_video(&mut self, accept: bool) -> Result<(), Rejection> {
        self.require(&[Status::Assigned, Status::Chatting])?;
        let offered = self
            .conv
            .call
            .as_ref()
            .is_some_and(|c| c.started_at.is_none() && c.requested_by != VISITOR);
        let Some(agent) = self.conv.assignee.clone().filter(|_| offered) else {
            return Err(self.invalid_state());
        };
        if accept {
            self.start_call(agent);
            Ok(())
        } else {
            self.end_video(VISITOR, VideoEndReason::Declined)
        }
    }

    /// The call is on: both sides may connect.
    pub(super) fn start_call(&mut self, agent: String) {
        let requested_by = self
            .conv
            .call
            .take()
            .map_or_else(|| VISITOR.to_string(), |c| c.requested_by);
        self.conv.call = Some(Call {
            requested_by,
            started_at: Some(self.ctx.now),
        });
        self.emit(EventData::VideoStarted { agent });
    }

    /// Ends the call (or withdraws an offer); `by` is "visitor" or an agent's email.
    pub(super) fn end_video(&mut self, by: &str, reason: VideoEndReason) -> Result<(), Rejection> {
        let Some(call) = self.conv.call.take() else {
            return Err(self.invalid_state());
        };
        if by != VISITOR && reason == VideoEndReason::Hangup && !self.is_assignee(by) {
            self.conv.call = Some(call);
            return Err(Rejection::NotAllowed(
                "only the agent who has the chat can end its call".into(),
            ));
        }
        self.conv.video = false;
        let duration_secs = call
            .started_at
            .map_or(0, |at| self.ctx.now.duration_since(at).as_secs().max(0));
        self.emit(EventData::VideoEnded {
            by: by.to_string(),
            reason,
            duration_secs,
        });
        Ok(())
    }

    /// A chat that stops being this agent's and the visitor's (resolved, ended, transferred,
    /// given back) ends its call first.
    pub(super) fn end_call_with_chat(&mut self, by: &str) {
        if self.conv.call.is_some() {
            let _ = self.end_video(by, VideoEndReason::ChatEnded);
        }
        self.conv.video = false;
    }
}
