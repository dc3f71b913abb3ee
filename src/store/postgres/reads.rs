//! Read marks on PostgreSQL (#17): the rows and rules of `store::reads` (the SQLite side),
//! for replicas. A conversation's events are found by the log's own index on
//! `events (conversation_id, seq)`; SQLite's `event_index` has no counterpart here. Not used
//! by `serve` yet (docs/postgres.md).

use deadpool_postgres::GenericClient;

use super::PgError;
use crate::store::StoreError;
use crate::store::reads::Mark;

/// The unread count of the conversation `c.id` for the agent bound to parameter `agent`
/// (a placeholder such as `$1`), as an SQL expression over `conversations c`: the visitor
/// messages after the agent's mark.
pub fn unread_sql(agent: &str) -> String {
    format!(
        "(SELECT count(*) FROM events e
          WHERE e.conversation_id = c.id
            AND e.seq > coalesce((SELECT r.seq FROM reads r
                                  WHERE r.agent_email = {agent} AND r.conversation_id = c.id), 0)
            AND e.type = 'message.created' AND e.data::json ->> 'author' = 'visitor')"
    )
}

/// The agent's mark on the conversation (0: never read).
pub async fn mark(
    client: &impl GenericClient,
    agent: &str,
    conversation_id: &str,
) -> Result<i64, StoreError> {
    let row = client
        .query_opt(
            "SELECT seq FROM reads WHERE agent_email = $1 AND conversation_id = $2",
            &[&agent, &conversation_id],
        )
        .await
        .map_err(PgError::from)?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// Visitor messages of the conversation after the agent's mark (0 for a conversation that
/// does not exist).
pub async fn unread(
    client: &impl GenericClient,
    agent: &str,
    conversation_id: &str,
) -> Result<i64, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {} FROM conversations c WHERE c.id = $2",
                unread_sql("$1")
            ),
            &[&agent, &conversation_id],
        )
        .await
        .map_err(PgError::from)?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// Marks the conversation read by the agent up to `seq`, as `reads::set_mark`: a mark never
/// moves back, nor past the conversation's newest event.
///
/// No lock beyond the row's own: the mark is raised to the larger of the stored and the new
/// `seq` by one statement, under the row lock that `ON CONFLICT … DO UPDATE` takes, so two
/// consoles of the agent marking at once on two replicas end at the larger. An event
/// appended after the newest was read is simply unread, as if it came after the mark.
pub async fn set_mark(
    client: &impl GenericClient,
    agent: &str,
    conversation_id: &str,
    seq: i64,
    at: &str,
) -> Result<Mark, StoreError> {
    let newest: i64 = client
        .query_one(
            "SELECT coalesce(max(seq), 0) FROM events WHERE conversation_id = $1",
            &[&conversation_id],
        )
        .await
        .map_err(PgError::from)?
        .get(0);
    let seq = seq.clamp(0, newest.max(0));
    let seq: i64 = client
        .query_one(
            "INSERT INTO reads (agent_email, conversation_id, seq, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (agent_email, conversation_id)
             DO UPDATE SET seq = greatest(reads.seq, excluded.seq), at = excluded.at
             RETURNING seq",
            &[&agent, &conversation_id, &seq, &at],
        )
        .await
        .map_err(PgError::from)?
        .get(0);
    Ok(Mark {
        seq,
        unread: unread(client, agent, conversation_id).await?,
    })
}
