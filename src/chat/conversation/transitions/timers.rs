//! What timers do when they fire.

use super::Tx;
use crate::chat::conversation::events::{EndReason, EventData, Notice};
use crate::chat::conversation::types::{Rejection, Status};

impl<'c, 'a: 'c> Tx<'c, 'a> {
    pub(super) fn accept_timeout(&mut self) -> Result<(), Rejection> {
        self.require_due(Status::New, self.conv.deadlines.accept)?;
        let a = self.action();
        self.notice(&a.timeout_message, Notice::Timeout, None);
        self.emit(EventData::LivechatTimeout {
            action: self.conv.live_chat.clone(),
            team: self.conv.team.clone(),
        });
        self.back_to_bot();
        Ok(())
    }

    pub(super) fn idle_timeout(&mut self) -> Result<(), Rejection> {
        self.require_due(self.conv.status, self.conv.deadlines.idle)?;
        if !self.conv.status.live() {
            return Err(self.invalid_state());
        }
        self.end(EndReason::Idle);
        Ok(())
    }

    pub(super) fn offer_timeout(&mut self) -> Result<(), Rejection> {
        self.require_due(Status::New, self.conv.deadlines.offer)?;
        self.conv.offered_to = None;
        self.conv.deadlines.offer = None;
        self.ring(true);
        Ok(())
    }

    /// Ends a conversation that never left the bot and saw no visitor for `after`.
    pub(super) fn expire(&mut self, after: std::time::Duration) -> Result<(), Rejection> {
        self.require(&[Status::Bot])?;
        let last = self
            .conv
            .last_visitor_at
            .map_or(self.conv.opened_at, |at| at.max(self.conv.opened_at));
        let quiet = self.ctx.now.duration_since(last);
        if quiet.is_negative() || quiet.unsigned_abs() < after {
            return Err(self.invalid_state());
        }
        self.end(EndReason::Expired);
        Ok(())
    }

    pub(super) fn agents_changed(&mut self) {
        if self.conv.status == Status::New {
            self.ring(false);
        }
    }
}
