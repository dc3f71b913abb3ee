//! What a visitor sees of an event: an allowlist of fields per type. Agents appear by name
//! only, and nothing about queues, teams, notes or who did what internally reaches the
//! widget. A field added to an event stays with the team until it is listed here.

use serde_json::{Map, Value};

use super::events::EventData;

impl EventData {
    /// The fields of this event a visitor may see; `None` when visitors never get the
    /// event at all.
    pub fn visitor_fields(&self) -> Option<&'static [&'static str]> {
        Some(match self {
            EventData::ConversationStarted { .. } => {
                &["bot", "visitor_id", "language", "page_url", "country"]
            }
            EventData::MessageCreated(_) => &[
                "message_id",
                "author",
                "text",
                "step",
                "value",
                "collect",
                "notice",
                "name",
                "attachments",
            ],
            // Every shape of it is made for the widget.
            EventData::FlowStep(_) => &[
                "step",
                "choices",
                "ask",
                "link",
                "buttons",
                "live_chat",
                "collect",
                "offline_form",
                "end",
            ],
            EventData::LivechatRequested { .. } => &["action"],
            EventData::LivechatRinging { .. } => return None,
            EventData::LivechatAccepted { .. } => &[],
            EventData::LivechatTimeout { .. } => &["action"],
            EventData::LivechatOffline { .. } => &["action", "reason", "form"],
            EventData::ConversationAssigned { .. } => &["name", "takeover"],
            EventData::ConversationTransferred { .. } => &[],
            // The closing note is for the team.
            EventData::ConversationResolved { .. } => &["time_to_resolve_secs"],
            EventData::ConversationClosed {} => &[],
            EventData::ConversationReopened { .. } => &[],
            EventData::ConversationEnded { .. } => &["reason"],
            EventData::NoteCreated { .. } => return None,
            // What the team keeps about the visitor is the team's.
            EventData::ContactUpdated { .. } => return None,
            EventData::FormSubmitted { .. } => &["form"],
            EventData::ConversationRated { .. } => &["rating", "comment"],
            // `by` is "visitor" or an agent's email: the visitor learns only which side.
            EventData::VideoRequested { .. } => &["action"],
            EventData::VideoStarted { .. } => &[],
            EventData::VideoEnded { .. } => &["reason", "duration_secs"],
        })
    }

    /// The `data` a visitor gets, or `None` when the event is not sent to visitors.
    pub fn visitor_view(&self) -> Option<Value> {
        let fields = self.visitor_fields()?;
        Some(only(self.data(), fields))
    }
}

/// The listed keys of an object (other values have none to show).
fn only(data: Value, fields: &[&str]) -> Value {
    let Value::Object(mut map) = data else {
        return Value::Object(Map::new());
    };
    Value::Object(fields.iter().filter_map(|f| map.remove_entry(*f)).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::chat::conversation::events::{
        Ask, Author, Choice, Collect, EndReason, FlowStep, FormFieldView, Link, LiveChatOffer,
        Message, Notice, OfflineFormView, OfflineReason, VideoEndReason,
    };
    use crate::chat::conversation::types::Rating;

    const ANA: &str = "ana@acme.example";

    fn message(author: Author) -> Message {
        Message {
            message_id: Some("m_1".into()),
            ..Message::new(author, "hi".into())
        }
    }

    /// One event of every type and shape, with each field set, and what a visitor sees of
    /// it (`None`: not sent). The views are today's, as `docs/api.md` lists them.
    fn every_event() -> Vec<(EventData, Option<Value>)> {
        let prompt = FlowStep::Prompt {
            step: "start".into(),
            choices: vec![Choice {
                label: "Billing".into(),
                value: "billing".into(),
            }],
            ask: Some(Ask {
                var: "order".into(),
                kind: "number".into(),
                max: 12,
            }),
            link: Some(Link {
                label: "Help".into(),
                url: "https://help.example".into(),
            }),
            buttons: vec!["skip".into(), "back".into()],
        };
        let offer = FlowStep::LiveChat {
            step: Some("human".into()),
            live_chat: LiveChatOffer {
                action: "desk".into(),
                label: "Talk to a person".into(),
                style: "primary".into(),
                modes: vec!["text".into()],
            },
            buttons: vec!["back".into()],
        };
        let collect = FlowStep::Collect {
            step: None,
            collect: Collect {
                field: "email".into(),
                kind: "email".into(),
            },
            buttons: vec!["back".into()],
        };
        let form = FlowStep::OfflineForm {
            step: Some("human".into()),
            offline_form: OfflineFormView {
                id: "contact".into(),
                title: "Write to us".into(),
                intro: None,
                fields: vec![FormFieldView {
                    name: "email".into(),
                    label: "Email".into(),
                    kind: "email".into(),
                    required: true,
                    max: 1000,
                    options: vec![],
                }],
            },
            buttons: vec!["skip".into()],
        };
        let end = FlowStep::End {
            step: None,
            end: true,
        };
        let flow = |shape: FlowStep| {
            let data = serde_json::to_value(&shape).unwrap();
            (EventData::FlowStep(shape), Some(data))
        };
        vec![
            (
                EventData::ConversationStarted {
                    bot: "support".into(),
                    visitor_id: "v_1".into(),
                    language: "de".into(),
                    page_url: Some("https://acme.example/".into()),
                    country: None,
                },
                Some(
                    json!({"bot": "support", "visitor_id": "v_1", "language": "de",
                    "page_url": "https://acme.example/", "country": null}),
                ),
            ),
            (
                EventData::MessageCreated(Message {
                    agent: Some(ANA.into()),
                    name: Some("Ana".into()),
                    ..message(Author::Agent)
                }),
                Some(json!({"message_id": "m_1", "author": "agent", "text": "hi", "name": "Ana"})),
            ),
            (
                EventData::MessageCreated(Message {
                    step: Some("start".into()),
                    value: Some("billing".into()),
                    ..message(Author::Visitor)
                }),
                Some(
                    json!({"message_id": "m_1", "author": "visitor", "text": "hi",
                    "step": "start", "value": "billing"}),
                ),
            ),
            (
                EventData::MessageCreated(Message {
                    collect: Some("name".into()),
                    ..message(Author::Bot)
                }),
                Some(
                    json!({"message_id": "m_1", "author": "bot", "text": "hi", "collect": "name"}),
                ),
            ),
            (
                EventData::MessageCreated(Message {
                    notice: Some(Notice::Welcome),
                    ..message(Author::System)
                }),
                Some(
                    json!({"message_id": "m_1", "author": "system", "text": "hi",
                    "notice": "welcome"}),
                ),
            ),
            flow(prompt),
            flow(offer),
            flow(collect),
            flow(form),
            flow(end),
            (
                EventData::LivechatRequested {
                    action: "desk".into(),
                    team: Some("billing".into()),
                },
                Some(json!({"action": "desk"})),
            ),
            (
                EventData::LivechatRinging {
                    agents: [ANA.to_string()].into(),
                    team: Some("billing".into()),
                    offered_to: Some(ANA.into()),
                },
                None,
            ),
            (
                EventData::LivechatAccepted { agent: ANA.into() },
                Some(json!({})),
            ),
            (
                EventData::LivechatTimeout {
                    action: Some("desk".into()),
                    team: Some("billing".into()),
                },
                Some(json!({"action": "desk"})),
            ),
            (
                EventData::LivechatOffline {
                    action: Some("desk".into()),
                    reason: OfflineReason::Closed,
                    form: Some("contact".into()),
                },
                Some(json!({"action": "desk", "reason": "closed", "form": "contact"})),
            ),
            (
                EventData::ConversationAssigned {
                    agent: Some(ANA.into()),
                    name: Some("Ana".into()),
                    by: "adm@acme.example".into(),
                    previous: Some(Some("bea@acme.example".into())),
                    takeover: false,
                },
                Some(json!({"name": "Ana"})),
            ),
            (
                EventData::ConversationAssigned {
                    agent: Some(ANA.into()),
                    name: Some("Ana".into()),
                    by: ANA.into(),
                    previous: None,
                    takeover: true,
                },
                Some(json!({"name": "Ana", "takeover": true})),
            ),
            (
                EventData::ConversationAssigned {
                    agent: None,
                    name: None,
                    by: ANA.into(),
                    previous: Some(Some(ANA.into())),
                    takeover: false,
                },
                Some(json!({})),
            ),
            (
                EventData::ConversationTransferred {
                    by: ANA.into(),
                    from: Some(ANA.into()),
                    agent: None,
                    team: Some("billing".into()),
                },
                Some(json!({})),
            ),
            (
                EventData::ConversationResolved {
                    by: ANA.into(),
                    note: Some("refunded".into()),
                    time_to_resolve_secs: Some(125),
                },
                Some(json!({"time_to_resolve_secs": 125})),
            ),
            (EventData::ConversationClosed {}, Some(json!({}))),
            (
                EventData::ConversationReopened {
                    assignee: Some(ANA.into()),
                },
                Some(json!({})),
            ),
            (
                EventData::ConversationEnded {
                    reason: EndReason::Idle,
                },
                Some(json!({"reason": "idle"})),
            ),
            (
                EventData::NoteCreated {
                    message_id: Some("m_2".into()),
                    agent: ANA.into(),
                    name: "Ana".into(),
                    text: "VIP".into(),
                },
                None,
            ),
            (
                EventData::FormSubmitted {
                    form: "contact".into(),
                    values: [("email".to_string(), "jo@example.org".to_string())].into(),
                },
                Some(json!({"form": "contact"})),
            ),
            (
                EventData::ConversationRated {
                    rating: Rating::Bad,
                    comment: Some("slow".into()),
                    agent: Some(ANA.into()),
                },
                Some(json!({"rating": "bad", "comment": "slow"})),
            ),
            (
                EventData::VideoRequested {
                    by: ANA.into(),
                    action: Some("desk".into()),
                },
                Some(json!({"action": "desk"})),
            ),
            (
                EventData::VideoStarted { agent: ANA.into() },
                Some(json!({})),
            ),
            (
                EventData::VideoEnded {
                    by: ANA.into(),
                    reason: VideoEndReason::Hangup,
                    duration_secs: 61,
                },
                Some(json!({"reason": "hangup", "duration_secs": 61})),
            ),
            (
                EventData::ContactUpdated {
                    by: ANA.into(),
                    fields: [("company".to_string(), "Acme".to_string())].into(),
                },
                None,
            ),
        ]
    }

    #[test]
    fn visitors_see_exactly_todays_fields_of_every_event() {
        let events = every_event();
        let mut kinds: Vec<_> = events.iter().map(|(e, _)| e.kind()).collect();
        kinds.dedup();
        assert_eq!(kinds, crate::chat::conversation::EventKind::ALL);
        for (event, view) in events {
            assert_eq!(event.visitor_view(), view, "{}", event.kind());
        }
    }

    #[test]
    fn a_field_not_listed_stays_with_the_team() {
        for (event, _) in every_event() {
            let Some(fields) = event.visitor_fields() else {
                continue;
            };
            let mut data = event.data();
            data["secret"] = json!("s3cret");
            let seen = only(data, fields);
            assert!(seen.get("secret").is_none(), "{}: {seen}", event.kind());
        }
    }

    #[test]
    fn every_event_reads_back_from_what_is_stored() {
        for (event, _) in every_event() {
            let kind = event.kind();
            let stored = event.data().to_string();
            let back = EventData::from_stored(kind.as_str(), &stored).unwrap();
            assert_eq!(back, event, "{kind}: {stored}");
        }
    }
}
