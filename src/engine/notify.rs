//! What a transition sends out: mail and webhook calls for the outbox, decided from its
//! events and the live config. Pure apart from template rendering.

use jiff::Timestamp;
use serde_json::json;

use crate::chat::conversation::{Conversation, Event, EventData, Status};
use crate::chat::form::mail_subject;
use crate::chat::text::render_text;
use crate::config::Bundle;
use crate::config::schema::{Bot, FieldKind, LiveChat, OfflineForm};
use crate::config::values::is_valid_email;
pub use crate::mail::Outbound;
use crate::mail::outbox::Item;
use crate::mail::transport::Mail;
use crate::webhooks::{self, Notification, NotifyEvent};

/// A submitted offline form, with or without a conversation around it.
pub struct Submission<'a> {
    pub bot_id: &'a str,
    pub bot: &'a Bot,
    pub form_id: &'a str,
    pub form: &'a OfflineForm,
    pub values: &'a std::collections::BTreeMap<String, String>,
    /// The conversation's variables, which the subject sees besides the fields.
    pub vars: &'a std::collections::BTreeMap<String, String>,
    pub conversation_id: Option<&'a str>,
    pub page_url: Option<&'a str>,
    pub language: &'a str,
    /// The Live Chat actions whose webhooks hear of it.
    pub notify: Vec<String>,
}

/// The mail to the team and the webhook calls for one offline-form submission.
pub fn form_items(out: &Outbound, s: &Submission<'_>, now: Timestamp) -> Result<Vec<Item>, String> {
    let fields: Vec<(String, String)> = s
        .form
        .fields
        .iter()
        .filter_map(|f| {
            let value = s.values.get(f.name.get_ref())?;
            Some((render_text(&f.label, s.language, &json!({})), value.clone()))
        })
        .collect();
    let reply_to = s
        .form
        .fields
        .iter()
        .filter(|f| f.kind == FieldKind::Email)
        .filter_map(|f| s.values.get(f.name.get_ref()))
        .find(|v| is_valid_email(v))
        .cloned();
    let subject = mail_subject(s.bot, s.form, s.vars, s.values);
    let console_url = s.conversation_id.map(|id| out.console_url(Some(id)));
    let ctx = json!({
        "subject": subject,
        "public_url": out.public_url,
        "bot": { "id": s.bot_id, "name": s.bot.header.name.get_ref() },
        "form": { "id": s.form_id, "title": render_text(&s.form.title, s.language, &json!({})) },
        "fields": fields.iter().map(|(l, v)| json!({"label": l, "value": v})).collect::<Vec<_>>(),
        "page_url": s.page_url,
        "at": now.to_string(),
        "console_url": console_url,
        "reply_to": reply_to,
    });
    let (text, html) = out
        .templates
        .render_pair("mail/offline_form", &ctx)
        .map_err(|e| format!("the offline form mail template: {e}"))?;
    let mut items = vec![Item::Mail(Mail {
        kind: "offline_form".into(),
        to: s
            .form
            .email_to
            .iter()
            .map(|e| e.as_str().to_string())
            .collect(),
        reply_to: reply_to.clone(),
        subject,
        text,
        html,
    })];
    let visitor_name = s.values.get("name").cloned();
    let notification = Notification {
        event: NotifyEvent::OfflineFormSubmitted,
        bot_id: s.bot_id.to_string(),
        bot_name: s.bot.header.name.get_ref().clone(),
        conversation_id: s.conversation_id.map(str::to_string),
        visitor_name,
        visitor_email: reply_to,
        page_url: s.page_url.map(str::to_string),
        language: None,
        country: None,
        variables: Default::default(),
        contact: Default::default(),
        video: false,
        lines: Vec::new(),
        fields,
        console_url: console_url.unwrap_or_else(|| out.console_url(None)),
        at: now,
    };
    items.extend(webhook_items(s.bot_id, s.bot, &s.notify, &notification));
    Ok(items)
}

/// One webhook call for every configured, switched-on webhook named in `notify`.
fn webhook_items(bot_id: &str, bot: &Bot, notify: &[String], n: &Notification) -> Vec<Item> {
    let mut seen = std::collections::BTreeSet::new();
    notify
        .iter()
        .filter(|id| seen.insert(id.as_str()))
        .filter_map(|id| {
            let hook = bot.webhook.get(id)?;
            // A webhook whose URL resolves to nothing is switched off: nothing to queue.
            let url = hook.url.resolve(&crate::config::process_env).ok()?;
            if url.is_empty() {
                return None;
            }
            Some(Item::Webhook {
                bot: bot_id.to_string(),
                webhook: id.clone(),
                webhook_kind: hook.kind,
                event: n.event.as_str().to_string(),
                body: webhooks::payload(hook.kind, n).to_string(),
            })
        })
        .collect()
}

/// The Live Chat actions that offer `form` as their offline form (their webhooks hear of a
/// submission made outside a conversation).
pub fn actions_with_form<'b>(bot: &'b Bot, form: &str) -> Vec<&'b LiveChat> {
    bot.live_chat
        .values()
        .filter(|a| a.offline_form.as_ref().is_some_and(|f| f.get_ref() == form))
        .collect()
}

/// What a new-request alert tells beyond who and where: the contact fields the visitor
/// gave (by name, and as labelled lines for people) and the flow's other variables (the
/// topic, what routing looks at; `name` and `email` have their own place).
struct RequestDetails {
    variables: std::collections::BTreeMap<String, String>,
    contact: std::collections::BTreeMap<String, String>,
    labelled: Vec<(String, String)>,
}

fn request_details(bot: &Bot, conv: &Conversation) -> RequestDetails {
    let contact = super::contacts::declared_values(&bot.header.contact_fields, &conv.contact);
    let variables: std::collections::BTreeMap<String, String> = conv
        .flow
        .vars
        .iter()
        .filter(|(k, _)| {
            !k.starts_with(crate::config::contacts::VAR_PREFIX) && *k != "name" && *k != "email"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut labelled: Vec<(String, String)> = bot
        .header
        .contact_fields
        .iter()
        .filter_map(|f| Some((f.label.clone(), contact.get(f.name.get_ref())?.clone())))
        .collect();
    labelled.extend(variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    RequestDetails {
        variables,
        contact,
        labelled,
    }
}

/// Whether a transition from status `was` with `events` makes a request start ringing:
/// the moment a new request is announced (after the name and email the action collects,
/// so the alert names the visitor), not a transfer, a reopen or a ring anew.
pub fn starts_ringing(was: Status, events: &[Event]) -> bool {
    matches!(was, Status::Bot | Status::Collecting)
        && events
            .iter()
            .any(|e| matches!(e, EventData::LivechatRinging { .. }))
}

/// The outbox items of a conversation's transition from status `was`.
#[allow(clippy::too_many_arguments)]
pub fn transition_items(
    out: &Outbound,
    bundle: &Bundle,
    bot: &Bot,
    was: Status,
    conv: &Conversation,
    events: &[Event],
    lines: &[String],
    now: Timestamp,
) -> Vec<Item> {
    let action = conv.live_chat.as_deref().and_then(|a| bot.live_chat.get(a));
    let notify: Vec<String> = action
        .map(|a| a.notify.iter().map(|n| n.get_ref().clone()).collect())
        .unwrap_or_default();
    let mut items = Vec::new();
    if starts_ringing(was, events) {
        let request = request_details(bot, conv);
        let note = Notification {
            event: NotifyEvent::NewRequest,
            bot_id: conv.bot.clone(),
            bot_name: bot.header.name.get_ref().clone(),
            conversation_id: Some(conv.id.clone()),
            visitor_name: conv.name.clone(),
            visitor_email: conv.email.clone(),
            page_url: conv.page_url.clone(),
            language: Some(
                conv.requested_language
                    .clone()
                    .unwrap_or_else(|| conv.language.clone()),
            ),
            country: conv.country.clone(),
            variables: request.variables,
            contact: request.contact,
            video: conv.video,
            lines: lines.to_vec(),
            fields: request.labelled,
            console_url: out.console_url(Some(&conv.id)),
            at: now,
        };
        items.extend(webhook_items(&conv.bot, bot, &notify, &note));
        if let Some(action) = action.filter(|a| !a.notify_email.is_empty()) {
            match new_request_mail(out, bot, action, &note) {
                Ok(mail) => items.push(Item::Mail(mail)),
                Err(e) => tracing::error!("{e}"),
            }
        }
    }
    for event in events {
        let note = |kind: NotifyEvent| Notification {
            event: kind,
            bot_id: conv.bot.clone(),
            bot_name: bot.header.name.get_ref().clone(),
            conversation_id: Some(conv.id.clone()),
            visitor_name: conv.name.clone(),
            visitor_email: conv.email.clone(),
            page_url: conv.page_url.clone(),
            language: None,
            country: None,
            variables: Default::default(),
            contact: Default::default(),
            video: false,
            lines: lines.to_vec(),
            fields: Vec::new(),
            console_url: out.console_url(Some(&conv.id)),
            at: now,
        };
        match event {
            EventData::LivechatTimeout { .. } => {
                items.extend(webhook_items(
                    &conv.bot,
                    bot,
                    &notify,
                    &note(NotifyEvent::RequestTimedOut),
                ));
                match missed_request_mail(out, bundle, bot, conv, action, lines, now) {
                    Ok(Some(mail)) => items.push(Item::Mail(mail)),
                    Ok(None) => {}
                    Err(e) => tracing::error!("{e}"),
                }
            }
            EventData::FormSubmitted {
                form: form_id,
                values,
            } => {
                let Some(form) = bot.offline_form.get(form_id) else {
                    continue;
                };
                let submission = Submission {
                    bot_id: &conv.bot,
                    bot,
                    form_id,
                    form,
                    values,
                    vars: &conv.flow.vars,
                    conversation_id: Some(&conv.id),
                    page_url: conv.page_url.as_deref(),
                    language: &conv.language,
                    notify: notify.clone(),
                };
                match form_items(out, &submission, now) {
                    Ok(more) => items.extend(more),
                    Err(e) => tracing::error!("{e}"),
                }
            }
            _ => {}
        }
    }
    items
}

/// The new-request mail to the action's `notify_email`: what the new-request webhook
/// tells, with the deep link. The HTML part escapes every value (minijinja's HTML
/// autoescape); the text part is plain text.
fn new_request_mail(
    out: &Outbound,
    bot: &Bot,
    action: &LiveChat,
    n: &Notification,
) -> Result<Mail, String> {
    let who = n
        .visitor_name
        .as_deref()
        .or(n.visitor_email.as_deref())
        .unwrap_or("a visitor");
    // A header line: the visitor's name on one line, not too long.
    let who: String = who
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    let subject = format!("New chat request: {who}");
    let ctx = json!({
        "subject": subject,
        "public_url": out.public_url,
        "bot": { "id": n.bot_id, "name": bot.header.name.get_ref() },
        "visitor": { "name": n.visitor_name, "email": n.visitor_email },
        "page_url": n.page_url,
        "language": n.language,
        "country": n.country,
        "details": n.fields.iter().map(|(l, v)| json!({"label": l, "value": v})).collect::<Vec<_>>(),
        "contact": n.contact,
        "variables": n.variables,
        "lines": n.lines,
        "at": n.at.to_string(),
        "console_url": n.console_url,
    });
    let (text, html) = out
        .templates
        .render_pair("mail/new_request", &ctx)
        .map_err(|e| format!("the new request mail template: {e}"))?;
    Ok(Mail {
        kind: "new_request".into(),
        to: action
            .notify_email
            .iter()
            .map(|e| e.as_str().to_string())
            .collect(),
        reply_to: n.visitor_email.clone(),
        subject,
        text,
        html,
    })
}

/// The notice to the team that a request went unanswered: to the agents of the team it
/// rang (or of every team serving the bot).
fn missed_request_mail(
    out: &Outbound,
    bundle: &Bundle,
    bot: &Bot,
    conv: &Conversation,
    action: Option<&LiveChat>,
    lines: &[String],
    now: Timestamp,
) -> Result<Option<Mail>, String> {
    let teams: Vec<&str> = match &conv.team {
        Some(t) => vec![t.as_str()],
        None => bundle
            .roster
            .teams
            .iter()
            .filter(|t| t.bots.iter().any(|b| b.get_ref() == &conv.bot))
            .map(|t| t.id.get_ref().as_str())
            .collect(),
    };
    let to: Vec<String> = bundle
        .roster
        .agents
        .iter()
        .filter(|a| a.team_ids().any(|t| teams.contains(&t)))
        .map(|a| a.email.as_str().to_string())
        .collect();
    if to.is_empty() {
        return Ok(None);
    }
    let subject = format!(
        "Missed chat request: {}",
        conv.name.as_deref().unwrap_or("a visitor")
    );
    let timeout = action.map_or_else(String::new, |a| {
        humantime::format_duration(a.accept_timeout.get()).to_string()
    });
    let ctx = json!({
        "subject": subject,
        "public_url": out.public_url,
        "bot": { "id": conv.bot, "name": bot.header.name.get_ref() },
        "visitor": { "name": conv.name, "email": conv.email },
        "at": conv.requested_at.unwrap_or(now).to_string(),
        "timeout": timeout,
        "lines": lines,
        "console_url": out.console_url(Some(&conv.id)),
    });
    let (text, html) = out
        .templates
        .render_pair("mail/missed_request", &ctx)
        .map_err(|e| format!("the missed request mail template: {e}"))?;
    Ok(Some(Mail {
        kind: "missed_request".into(),
        to,
        reply_to: None,
        subject,
        text,
        html,
    }))
}
