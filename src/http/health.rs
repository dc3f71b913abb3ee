//! `GET /healthz`: is the server up, which config revision is live, and did the last edit fail.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::server::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let live = state.live.load();
    let errors = live.error.as_deref().unwrap_or_default();
    let config_error = (!errors.is_empty()).then(|| {
        errors
            .iter()
            .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Json(json!({
        "status": "ok",
        "config_revision": live.revision.as_ref().map(|r| r.number),
        "config_hash": live.revision.as_ref().map(|r| r.hash.clone()),
        "config_error": config_error,
        "config_errors": errors,
        "bots": live.bundle.bots.keys().collect::<Vec<_>>(),
    }))
}
