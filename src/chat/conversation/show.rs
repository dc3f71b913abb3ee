//! The events for what the flow shows the visitor.

use serde_json::{Value, json};

use super::events::{Event, EventKind};
use super::transitions::DEFAULT_LIVE_CHAT;
use crate::chat::flow::{self, FlowState, Output};
use crate::chat::text::render_text;
use crate::config::schema::{AskKind, Bot, ButtonKind, ChatMode, FieldKind, FlowButton};

pub(super) fn message_event(author: &str, text: String, extra: Value) -> Event {
    let mut data = json!({ "author": author, "text": text });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    Event {
        kind: EventKind::MessageCreated,
        data,
    }
}

/// The events for what the flow shows: bot messages, `flow.step` prompts, the visitor's
/// picked choice, the Live Chat button, the end of the flow.
pub(super) fn show_flow(
    bot: &Bot,
    state: &FlowState,
    lang: &str,
    outputs: Vec<Output>,
    events: &mut Vec<Event>,
) {
    for out in outputs {
        let event = match out {
            Output::Say { step, text } => message_event("bot", text, json!({ "step": step })),
            Output::Chosen { step, label, value } => {
                message_event("visitor", label, json!({ "step": step, "value": value }))
            }
            Output::Prompt(p) => Event {
                kind: EventKind::FlowStep,
                data: json!({
                    "step": p.step,
                    "choices": p.choices.iter()
                        .map(|c| json!({ "label": c.label, "value": c.value }))
                        .collect::<Vec<_>>(),
                    "ask": p.ask.map(|a| json!({
                        "var": a.var, "type": ask_kind(a.kind), "max": a.max,
                    })),
                    "link": p.link.map(|l| json!({ "label": l.label, "url": l.url })),
                    "buttons": buttons(&p.buttons),
                }),
            },
            Output::LiveChat { action } => {
                let step = state
                    .step
                    .as_ref()
                    .and_then(|id| bot.steps.iter().find(|s| s.id.get_ref() == id));
                let step_buttons: Vec<FlowButton> = step
                    .map(|s| s.buttons.iter().map(|b| *b.get_ref()).collect())
                    .unwrap_or_default();
                let a = bot.live_chat.get(&action).unwrap_or(&DEFAULT_LIVE_CHAT);
                let ctx = flow::vars_json(bot, &state.vars);
                Event {
                    kind: EventKind::FlowStep,
                    data: json!({
                        "step": state.step,
                        "live_chat": {
                            "action": action,
                            "label": render_text(&a.button.label, lang, &ctx),
                            "style": match a.button.style {
                                ButtonKind::Primary => "primary",
                                ButtonKind::Secondary => "secondary",
                            },
                            "modes": a.modes.iter().map(|m| match m.get_ref() {
                                ChatMode::Text => "text",
                                ChatMode::Video => "video",
                            }).collect::<Vec<_>>(),
                        },
                        "buttons": buttons(&step_buttons),
                    }),
                }
            }
            Output::End => Event {
                kind: EventKind::FlowStep,
                data: json!({ "step": null, "end": true }),
            },
        };
        events.push(event);
    }
}

pub(super) fn buttons(b: &[FlowButton]) -> Vec<&'static str> {
    b.iter()
        .map(|b| match b {
            FlowButton::Skip => "skip",
            FlowButton::Back => "back",
        })
        .collect()
}

pub(super) fn ask_kind(k: AskKind) -> &'static str {
    match k {
        AskKind::Text => "text",
        AskKind::Email => "email",
        AskKind::Phone => "phone",
        AskKind::Number => "number",
    }
}

pub(super) fn field_kind(k: FieldKind) -> &'static str {
    match k {
        FieldKind::Text => "text",
        FieldKind::Email => "email",
        FieldKind::Phone => "phone",
        FieldKind::Textarea => "textarea",
        FieldKind::Select => "select",
    }
}
