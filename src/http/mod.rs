//! HTTP routes. Handlers are thin: they check the caller and the input, then call into
//! the config, the store or (later) the engine.

mod admin;
pub mod error;
mod health;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::server::AppState;

/// The largest bundle the admin API takes.
const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route(
            "/api/v1/admin/config",
            post(admin::apply_config).layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
        )
        .route("/api/v1/admin/config/revisions", get(admin::revisions))
        .fallback(|| async {
            error::AppError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            )
        })
        .with_state(state)
}
