//! How events look on the wire. What a visitor may see of each is the event's own
//! allowlist (`EventData::visitor_view`).

use serde_json::{Value, json};

use crate::chat::conversation::{EventData, EventKind};

pub use crate::ids::{new_id, new_sortable_id};

/// The envelope of [`envelope`] without its `seq`, and without the opening brace: what
/// follows `{"seq":N,` (see [`with_seq`]). Encoded before the event is stored, which is
/// when its `seq` is known.
pub fn envelope_rest(kind: &str, conversation_id: &str, at: &str, data: &Value) -> String {
    let mut json = json!({
        "type": kind,
        "conversation_id": conversation_id,
        "at": at,
        "data": data,
    })
    .to_string();
    json.remove(0);
    json
}

/// A whole envelope from its `seq` and [`envelope_rest`].
pub fn with_seq(seq: i64, rest: &str) -> String {
    format!("{{\"seq\":{seq},{rest}")
}

/// The envelope every client receives. `at` is the time as stored (see `persist::stamp`),
/// so a live event and its replay read the same.
pub fn envelope(seq: i64, kind: &str, conversation_id: &str, at: &str, data: &Value) -> Value {
    json!({
        "seq": seq,
        "type": kind,
        "conversation_id": conversation_id,
        "at": at,
        "data": data,
    })
}

/// What a visitor may see of an event as stored: its [`EventData::visitor_view`]. `null`
/// for a row that does not read as an event of its type (logged), or of a type visitors
/// never get.
pub fn visitor_data(kind: &str, data: &str) -> Value {
    match EventData::from_stored(kind, data) {
        Ok(event) => event.visitor_view().unwrap_or(Value::Null),
        Err(e) => {
            tracing::warn!("a stored {kind} event does not read: {e}");
            Value::Null
        }
    }
}

/// Parses the kind stored in the log back into the enum (for counters and tests).
pub fn kind_from_str(s: &str) -> Option<EventKind> {
    EventKind::ALL.into_iter().find(|k| k.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitors_see_agents_by_name_only() {
        let data = r#"{"author":"agent","agent":"ana@acme.example","name":"Ana","text":"hi"}"#;
        let seen = visitor_data("message.created", data);
        assert_eq!(
            seen,
            json!({"author": "agent", "name": "Ana", "text": "hi"})
        );
        assert_eq!(visitor_data("note.created", data), Value::Null);
        assert_eq!(visitor_data("message.created", "{}"), Value::Null);
    }

    /// What visitors saw of an event before views were allowlists: a denylist of keys. Kept
    /// here as the reference the allowlists must match.
    fn denylist_view(kind: &str, data: &Value) -> Option<Value> {
        if matches!(kind, "livechat.ringing" | "note.created") {
            return None;
        }
        let mut out = data.as_object().unwrap().clone();
        for key in [
            "agent", "by", "previous", "from", "team", "ringing", "assignee", "values",
        ] {
            out.remove(key);
        }
        if kind == "conversation.resolved" {
            out.remove("note");
        }
        Some(Value::Object(out))
    }

    /// Every event 0.1.0 stored (`tests/fixtures/db/v0.1.db`, all 17 types) reads as its
    /// type, writes back to the very bytes stored, and shows visitors what it showed them.
    #[test]
    fn every_event_stored_by_0_1_reads_and_writes_back_the_same() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/db/v0.1.db");
        let db =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let mut stmt = db
            .prepare("SELECT seq, type, visitor_visible, data FROM events ORDER BY seq")
            .unwrap();
        let rows: Vec<(i64, String, bool, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut kinds = std::collections::BTreeSet::new();
        for (seq, kind, visible, stored) in &rows {
            let event = EventData::from_stored(kind, stored)
                .unwrap_or_else(|e| panic!("event {seq} ({kind}) does not read: {e}\n{stored}"));
            assert_eq!(event.kind().as_str(), kind);
            assert_eq!(&event.data().to_string(), stored, "event {seq}");
            let old: Value = serde_json::from_str(stored).unwrap();
            assert_eq!(
                event.visitor_view(),
                denylist_view(kind, &old),
                "event {seq}"
            );
            assert_eq!(event.visitor_view().is_some(), *visible, "event {seq}");
            kinds.insert(event.kind());
        }
        assert_eq!(rows.len(), 92);
        // Every kind there was in 0.1: all but the `video.*` events and `contact.updated`,
        // which came after.
        let since: Vec<_> = EventKind::ALL
            .into_iter()
            .filter(|k| !k.as_str().starts_with("video.") && *k != EventKind::ContactUpdated)
            .collect();
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), since);
    }

    #[test]
    fn an_envelope_put_together_after_the_insert_is_the_whole_envelope() {
        let data = json!({"author": "visitor", "text": "hi \"there\""});
        let rest = envelope_rest(
            "message.created",
            "c_1",
            "2026-11-22T04:00:00.000000Z",
            &data,
        );
        let whole: Value = serde_json::from_str(&with_seq(42, &rest)).unwrap();
        assert_eq!(
            whole,
            envelope(
                42,
                "message.created",
                "c_1",
                "2026-11-22T04:00:00.000000Z",
                &data
            )
        );
    }

    #[test]
    fn sortable_ids_sort_by_time_and_stay_unguessable() {
        let a = new_sortable_id("m");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_sortable_id("m");
        assert!(a.starts_with("m_") && a.len() == 34, "{a}");
        assert!(a < b, "{a} < {b}");
        assert_ne!(a[14..], b[14..]);
    }

    #[test]
    fn ids_are_unguessable() {
        let a = new_id("c");
        assert!(a.starts_with("c_") && a.len() == 34);
        assert_ne!(a, new_id("c"));
    }
}
