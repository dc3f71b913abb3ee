//! The admin API for config: remote `livechat apply` and the revision history.
//! Authorised by the `admin_token` of livechat.toml (or `LIVECHAT_ADMIN_TOKEN`); without
//! one configured the API is off.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{AppError, blocking};
use crate::config::{self, Bundle, Sources};
use crate::deploy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    files: Sources,
    #[serde(default)]
    dry_run: bool,
}

/// The caller holds the admin token. An extractor from the request's head, so a handler
/// that takes it first refuses an unauthorised caller before reading any body.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, AppError> {
        authorize(state, &parts.headers).map(|()| Admin)
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(expected) = state.settings.admin_token.as_deref() else {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "admin_api_disabled",
            "the admin API is off: set admin_token in livechat.toml or LIVECHAT_ADMIN_TOKEN",
        ));
    };
    if crate::auth::bearer_is(headers, expected) {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required (Authorization: Bearer …)",
        ))
    }
}

pub async fn apply_config(
    _: Admin,
    State(state): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let body = body.map_err(super::error::body_rejection)?;
    let request: ApplyRequest = serde_json::from_slice(&body).map_err(super::error::json_error)?;
    if let Some(bad) = request
        .files
        .keys()
        .find(|name| !is_plain_bundle_name(name))
    {
        return Err(AppError::bad_request(
            "invalid_file_name",
            format!("`{bad}` is not a bundle file name (write `name.toml`, no folders)"),
        ));
    }
    let dry_run = request.dry_run;
    // Parsing and validating up to 8 MiB of TOML is blocking work.
    let bundle = blocking(move || {
        Bundle::from_sources(request.files, &config::process_env).map_err(|diags| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_bundle",
                format!("the bundle has {} error(s)", diags.len()),
            )
            .with_details(json!({ "diagnostics": diags }))
        })
    })
    .await?;
    // On PostgreSQL the bundle is installed in the database, no directory is written: it
    // is recorded as a revision and announced, and every replica makes it live; this one
    // at once, before answering.
    if let Some(applied) = state
        .store()
        .apply_to_database(&bundle, "api", None, dry_run)
        .await
    {
        let outcome = applied?;
        if let Some(revision) = outcome.revision.clone().filter(|_| !dry_run) {
            let worker = state.clone();
            // It validated here a moment ago; a later revision may have come meanwhile.
            blocking(move || Ok::<_, AppError>(worker.adopt(revision))).await?;
        }
        return Ok(outcome_json(outcome));
    }
    let worker = state.clone();
    let outcome = blocking(move || {
        let dir = worker.settings.bots_dir.clone();
        // The lock is taken here, not in the writer: the writer must never wait for it.
        let lock = if dry_run {
            None
        } else {
            Some(deploy::lock_exclusive(&dir).map_err(AppError::internal)?)
        };
        let Some(writer) = worker.engine.writer() else {
            return Err(AppError::internal("the SQLite store has no writer"));
        };
        let result = writer
            .run_blocking(move |conn| {
                Ok(deploy::apply_locked(
                    conn, &dir, &bundle, "api", None, dry_run,
                ))
            })?
            .map_err(|e| match e {
                deploy::DeployError::Store(e) => AppError::from(e),
                other => AppError::internal(other),
            });
        drop(lock);
        // Make it live now rather than when the watcher notices.
        if !dry_run {
            worker.reload("api");
        }
        result
    })
    .await?;
    Ok(outcome_json(outcome))
}

/// The answer of an apply: the plan, and the revision now live (or that would be).
fn outcome_json(outcome: deploy::ApplyOutcome) -> Json<Value> {
    Json(json!({
        "plan": outcome.plan.to_string().lines().collect::<Vec<_>>(),
        "summary": outcome.plan.summary(),
        "unchanged": outcome.unchanged,
        "revision": outcome.revision.map(|r| json!({
            "number": r.number,
            "hash": r.hash,
            "created_at": r.created_at,
            "source": r.source,
            "summary": r.summary,
        })),
    }))
}
fn is_plain_bundle_name(name: &str) -> bool {
    config::is_bundle_file(name)
        && !name.contains(['/', '\\'])
        && name != ".."
        && !name.contains('\0')
}

pub async fn revisions(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let list = state.store().revisions().await?;
    Ok(Json(json!({ "revisions": list })))
}

#[derive(Debug, Deserialize)]
pub struct OutboxQuery {
    #[serde(default = "dead")]
    status: String,
}

fn dead() -> String {
    "dead".into()
}

/// `GET /api/v1/admin/outbox?status=dead|pending|sent`: what was (not) delivered.
pub async fn outbox(
    _: Admin,
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<OutboxQuery>,
) -> Result<Json<Value>, AppError> {
    if !["dead", "pending", "sent"].contains(&q.status.as_str()) {
        return Err(AppError::bad_request(
            "invalid_input",
            "status is one of dead, pending, sent",
        ));
    }
    let items = state
        .store()
        .outbox_list(&q.status, 200)
        .await
        .map_err(AppError::internal)?;
    let counts = state
        .store()
        .outbox_counts()
        .await
        .map_err(AppError::internal)?;
    Ok(Json(json!({ "items": items, "counts": counts })))
}

/// `POST /api/v1/admin/outbox/{id}/retry`: a dead letter goes back in the queue.
pub async fn retry_outbox(
    _: Admin,
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, AppError> {
    let done = state.store().retry_outbox(&id).await?;
    if !done {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no dead letter with that id",
        ));
    }
    state.engine.outbound().doorbell.ring();
    Ok(Json(json!({ "requeued": true })))
}
