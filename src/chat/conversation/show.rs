//! The events for what the flow shows the visitor.

use super::events::{Ask, Author, Choice, EventData, FlowStep, Link, LiveChatOffer, Message};
use super::transitions::DEFAULT_LIVE_CHAT;
use crate::chat::flow::{self, FlowState, Output};
use crate::chat::text::render_text;
use crate::config::schema::{AskKind, Bot, ButtonKind, ChatMode, FieldKind, FlowButton};

/// The events for what the flow shows: bot messages, `flow.step` prompts, the visitor's
/// picked choice, the Live Chat button, the end of the flow.
pub(super) fn show_flow(
    bot: &Bot,
    state: &FlowState,
    lang: &str,
    outputs: Vec<Output>,
    events: &mut Vec<EventData>,
) {
    for out in outputs {
        let event = match out {
            Output::Say { step, text } => EventData::MessageCreated(Message {
                step: Some(step),
                ..Message::new(Author::Bot, text)
            }),
            Output::Chosen { step, label, value } => EventData::MessageCreated(Message {
                step: Some(step),
                value: Some(value),
                ..Message::new(Author::Visitor, label)
            }),
            Output::Prompt(p) => EventData::FlowStep(FlowStep::Prompt {
                step: p.step,
                choices: p
                    .choices
                    .into_iter()
                    .map(|c| Choice {
                        label: c.label,
                        value: c.value,
                    })
                    .collect(),
                ask: p.ask.map(|a| Ask {
                    var: a.var,
                    kind: ask_kind(a.kind).into(),
                    max: a.max,
                }),
                link: p.link.map(|l| Link {
                    label: l.label,
                    url: l.url,
                }),
                buttons: buttons(&p.buttons),
            }),
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
                EventData::FlowStep(FlowStep::LiveChat {
                    step: state.step.clone(),
                    live_chat: LiveChatOffer {
                        label: render_text(&a.button.label, lang, &ctx),
                        style: match a.button.style {
                            ButtonKind::Primary => "primary",
                            ButtonKind::Secondary => "secondary",
                        }
                        .into(),
                        modes: a
                            .modes
                            .iter()
                            .map(|m| match m.get_ref() {
                                ChatMode::Text => "text".into(),
                                ChatMode::Video => "video".into(),
                            })
                            .collect(),
                        action,
                    },
                    buttons: buttons(&step_buttons),
                })
            }
            Output::End => EventData::FlowStep(FlowStep::End {
                step: None,
                end: true,
            }),
        };
        events.push(event);
    }
}

pub(super) fn buttons(b: &[FlowButton]) -> Vec<String> {
    b.iter()
        .map(|b| match b {
            FlowButton::Skip => "skip".into(),
            FlowButton::Back => "back".into(),
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
