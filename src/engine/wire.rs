//! How events look on the wire, and what a visitor may see of them.

use serde_json::{Value, json};

use crate::chat::conversation::EventKind;

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

/// Whether the visitor of a conversation sees events of this kind at all.
pub fn visitor_sees(kind: &str) -> bool {
    !matches!(kind, "livechat.ringing" | "note.created")
}

/// What a visitor may see of an event's data: agents appear by name only, and nothing about
/// queues, teams or who did what internally.
pub fn visitor_data(kind: &str, data: &Value) -> Value {
    let Value::Object(map) = data else {
        return data.clone();
    };
    let mut out = map.clone();
    for key in [
        "agent", "by", "previous", "from", "team", "ringing", "assignee", "values",
    ] {
        out.remove(key);
    }
    if kind == "conversation.resolved" {
        // The closing note is for the team.
        out.remove("note");
    }
    Value::Object(out)
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
        let data =
            json!({"author": "agent", "agent": "ana@acme.example", "name": "Ana", "text": "hi"});
        let seen = visitor_data("message.created", &data);
        assert_eq!(
            seen,
            json!({"author": "agent", "name": "Ana", "text": "hi"})
        );
        assert!(!visitor_sees("note.created"));
        assert!(visitor_sees("message.created"));
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
