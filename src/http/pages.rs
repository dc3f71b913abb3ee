//! Server-rendered pages that work without JavaScript: a bot's contact form (for when
//! nobody is online, or the visitor's browser runs no scripts) and an agent's set-password
//! page from an invitation.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::client::ClientAddr;
use super::error::{ApiJson, AppError, blocking};
use super::page::page;
use crate::chat::text::render_text;
use crate::config::Bot;
use crate::config::schema::FieldKind;
use crate::engine::EngineError;

/// The bot's language that fits the browser best (else its first): the widget's rule.
fn language(bot: &Bot, headers: &HeaderMap) -> String {
    let wanted = super::visitor::accept_language(headers, bot);
    crate::chat::conversation::pick_language(bot, wanted.as_deref())
}

/// The values a contact page shows: fields with labels, the visitor's values, errors.
fn contact_ctx(
    bot_id: &str,
    bot: &Bot,
    form_id: &str,
    lang: &str,
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
) -> Option<Value> {
    let form = bot.offline_form.get(form_id)?;
    let none = json!({});
    let fields: Vec<Value> = form
        .fields
        .iter()
        .map(|f| {
            let name = f.name.get_ref();
            json!({
                "name": name,
                "label": render_text(&f.label, lang, &none),
                "type": match f.kind {
                    FieldKind::Text => "text",
                    FieldKind::Email => "email",
                    FieldKind::Phone => "phone",
                    FieldKind::Textarea => "textarea",
                    FieldKind::Select => "select",
                },
                "required": f.required,
                "max": f.max,
                "options": f.options,
                "value": values.get(name).cloned().unwrap_or_default(),
                "error": errors.get(name),
            })
        })
        .collect();
    Some(json!({
        "lang": lang,
        "color": bot.header.widget.color.0,
        "bot_name": bot.header.name.get_ref(),
        "title": render_text(&form.title, lang, &none),
        "intro": form.intro.as_ref().map(|t| render_text(t, lang, &none)),
        "fields": fields,
        "form_id": form_id,
        "action": format!("/bots/{bot_id}/contact"),
        "send_label": "Send",
        "form_error": errors.get("_form"),
        "thank_you": render_text(&form.thank_you, lang, &none),
    }))
}

fn no_form(bot_id: &str) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("bot `{bot_id}` has no offline form"),
    )
}

pub async fn contact_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(bot_id): Path<String>,
) -> Response {
    let bundle = state.live.load().bundle.clone();
    let Some((bot, form_id)) = bundle
        .bots
        .get(&bot_id)
        .and_then(|b| b.offline_form.keys().next().map(|f| (b, f.clone())))
    else {
        return no_form(&bot_id).into_response();
    };
    let lang = language(bot, &headers);
    match contact_ctx(
        &bot_id,
        bot,
        &form_id,
        &lang,
        &BTreeMap::new(),
        &BTreeMap::new(),
    ) {
        Some(ctx) => page(&state, StatusCode::OK, "pages/contact.html", ctx),
        None => no_form(&bot_id).into_response(),
    }
}

pub async fn contact_submit(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(bot_id): Path<String>,
    Form(mut values): Form<BTreeMap<String, String>>,
) -> Response {
    let bundle = state.live.load().bundle.clone();
    let Some(bot) = bundle.bots.get(&bot_id) else {
        return no_form(&bot_id).into_response();
    };
    let form_id = values
        .remove("_form")
        .filter(|f| bot.offline_form.contains_key(f))
        .or_else(|| bot.offline_form.keys().next().cloned());
    let Some(form_id) = form_id else {
        return no_form(&bot_id).into_response();
    };
    let lang = language(bot, &headers);
    // Without connect info (a router in a unit test) there is no address to limit.
    if client
        .ip
        .is_some_and(|ip| !state.limits.allow_submission(ip))
    {
        let errors = BTreeMap::from([(
            "_form".to_string(),
            "Too many messages from your network. Please try again later.".to_string(),
        )]);
        let ctx = contact_ctx(&bot_id, bot, &form_id, &lang, &values, &errors).unwrap_or_default();
        return page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            "pages/contact.html",
            ctx,
        );
    }
    let page_url = headers
        .get(axum::http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(2048).collect());
    let result = state
        .engine
        .submit_offline_form(
            &bot_id,
            Some(&form_id),
            values.clone(),
            page_url,
            client.ip.map(|ip| ip.to_string()),
        )
        .await;
    match result {
        Ok(_) => {
            let ctx = contact_ctx(&bot_id, bot, &form_id, &lang, &values, &BTreeMap::new())
                .unwrap_or_default();
            page(&state, StatusCode::OK, "pages/contact_sent.html", ctx)
        }
        Err(EngineError::InvalidForm(errs)) => {
            let errors: BTreeMap<String, String> =
                errs.into_iter().map(|e| (e.field, e.message)).collect();
            let ctx =
                contact_ctx(&bot_id, bot, &form_id, &lang, &values, &errors).unwrap_or_default();
            page(&state, StatusCode::BAD_REQUEST, "pages/contact.html", ctx)
        }
        Err(e) => AppError::from(e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct OfflineRequest {
    /// Which offline form (default: the bot's first).
    #[serde(default)]
    form: Option<String>,
    /// The answers, by field name.
    values: BTreeMap<String, String>,
    #[serde(default)]
    page_url: Option<String>,
}

/// `POST /api/v1/bots/{bot}/offline`: the same as the contact page, as JSON.
pub async fn offline_api(
    State(state): State<AppState>,
    client: ClientAddr,
    Path(bot_id): Path<String>,
    ApiJson(req): ApiJson<OfflineRequest>,
) -> Result<(StatusCode, axum::Json<Value>), AppError> {
    // Without connect info (a router in a unit test) there is no address to limit.
    if client
        .ip
        .is_some_and(|ip| !state.limits.allow_submission(ip))
    {
        return Err(AppError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_submissions",
            "too many messages from this address; try again later",
        ));
    }
    let page_url = req.page_url.map(|s| s.chars().take(2048).collect());
    match state
        .engine
        .submit_offline_form(
            &bot_id,
            req.form.as_deref(),
            req.values,
            page_url,
            client.ip.map(|ip| ip.to_string()),
        )
        .await
    {
        Ok(id) => Ok((StatusCode::CREATED, axum::Json(json!({ "id": id })))),
        Err(EngineError::InvalidForm(errs)) => Err(AppError::bad_request(
            "invalid_form",
            "some fields do not fit",
        )
        .with_details(json!({
            "fields": errs.iter().map(|e| json!({"field": e.field, "message": e.message})).collect::<Vec<_>>()
        }))),
        Err(EngineError::NotFound) => Err(no_form(&bot_id)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn set_password_page(
    State(state): State<AppState>,
    Query(q): Query<TokenQuery>,
) -> Response {
    let token = q.token;
    let found = state
        .store()
        .find_invitation(&token)
        .await
        .map_err(AppError::from);
    let email = match found {
        Ok(Some(email)) => email,
        Ok(None) => {
            return set_password_view(&state, StatusCode::NOT_FOUND, "", "", None, true, false);
        }
        Err(e) => return e.into_response(),
    };
    set_password_view(&state, StatusCode::OK, &email, &token, None, false, false)
}

fn set_password_view(
    state: &AppState,
    status: StatusCode,
    email: &str,
    token: &str,
    error: Option<&str>,
    invalid: bool,
    done: bool,
) -> Response {
    page(
        state,
        status,
        "pages/set_password.html",
        json!({
            "lang": "en", "color": "#0b6efd", "email": email, "token": token, "error": error,
            "invalid": invalid, "done": done, "action": "/set-password",
        }),
    )
}

#[derive(Debug, Deserialize)]
pub struct SetPasswordForm {
    token: String,
    password: String,
    confirm: String,
}

pub async fn set_password_submit(
    State(state): State<AppState>,
    Form(form): Form<SetPasswordForm>,
) -> Response {
    let lookup = state
        .store()
        .find_invitation(&form.token)
        .await
        .map_err(AppError::from);
    let email = match lookup {
        Ok(Some(email)) => email,
        Ok(None) => {
            return set_password_view(&state, StatusCode::NOT_FOUND, "", "", None, true, false);
        }
        Err(e) => return e.into_response(),
    };
    if form.password != form.confirm {
        return set_password_view(
            &state,
            StatusCode::BAD_REQUEST,
            &email,
            &form.token,
            Some("The two passwords differ."),
            false,
            false,
        );
    }
    // Hashing is slow on purpose: off the async workers.
    let password = form.password.clone();
    let hashed = blocking(move || Ok::<_, AppError>(crate::auth::password::hash(&password)));
    let phc = match hashed.await {
        Ok(Ok(phc)) => phc,
        Ok(Err(problem)) => {
            return set_password_view(
                &state,
                StatusCode::BAD_REQUEST,
                &email,
                &form.token,
                Some(&problem.to_string()),
                false,
                false,
            );
        }
        Err(e) => return e.into_response(),
    };
    let used = state
        .store()
        .redeem_invitation(&form.token, &email, &phc)
        .await
        .map_err(AppError::from);
    match used {
        Ok(true) => set_password_view(&state, StatusCode::OK, &email, "", None, false, true),
        Ok(false) => set_password_view(&state, StatusCode::NOT_FOUND, "", "", None, true, false),
        Err(e) => e.into_response(),
    }
}
