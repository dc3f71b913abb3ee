//! Read state: an agent marks a conversation read up to an event, and their other consoles
//! hear of it (`conversation.read`, to that agent only, never stored: a console that was
//! away loads the counts with the list).

use super::*;
use crate::store::reads::Mark;

impl Engine {
    /// Marks `conversation_id` read by `agent` up to `seq` (see `store::reads::set_mark`),
    /// then tells the agent's consoles.
    pub async fn mark_read(
        &self,
        agent: &AgentRef,
        conversation_id: &str,
        seq: i64,
    ) -> Result<Mark, EngineError> {
        let conv = self.agent_may_see(agent, conversation_id).await?;
        let at = Timestamp::now();
        let mark = self
            .inner
            .store
            .set_mark(&agent.email, &conv.id, seq, &persist::stamp(at))
            .await?;
        let json = json!({
            "type": "conversation.read",
            "conversation_id": conv.id,
            "at": at.to_string(),
            "data": { "agent": agent.email, "seq": mark.seq, "unread": mark.unread },
        })
        .to_string();
        self.inner.hub.publish(Frame {
            conversation_id: Some(conv.id.clone()),
            bot: Some(conv.bot.clone()),
            agent_json: Some(json.into()),
            kind: Some("conversation.read"),
            to_agent: Some(agent.email.clone()),
            ..Frame::default()
        });
        Ok(mark)
    }

    /// The agent's unread count of a conversation.
    pub async fn unread(&self, agent: &str, conversation_id: &str) -> Result<i64, EngineError> {
        Ok(self.inner.store.unread(agent, conversation_id).await?)
    }
}
