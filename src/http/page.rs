//! Every HTML page of ours goes out through [`page`]: rendered from its template, with the
//! same security headers on each (no framing by other sites, no inline script, no
//! referrer to other sites).

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::error::AppError;

/// Scripts and connections only from this server; styles may be inline (the templates
/// carry their own), images from anywhere over https (bot avatars).
const CSP: &str = "default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Renders template `name` with `ctx` as an HTML page answering `status`.
pub fn page(state: &AppState, status: StatusCode, name: &str, ctx: Value) -> Response {
    match state.engine.outbound().templates.render(name, ctx) {
        Ok(html) => (
            status,
            [
                (header::X_FRAME_OPTIONS, "DENY"),
                (header::REFERRER_POLICY, "same-origin"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CONTENT_SECURITY_POLICY, CSP),
            ],
            Html(html),
        )
            .into_response(),
        Err(e) => AppError::internal(format!("page {name}: {e}")).into_response(),
    }
}
