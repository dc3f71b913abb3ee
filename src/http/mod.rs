//! HTTP routes. Handlers are thin: they check the caller and the input, then call into
//! the config, the store or the engine.

mod address;
mod admin;
mod agent;
mod assets;
mod attachments;
mod auth;
mod client;
mod compressed;
pub mod error;
pub(crate) mod extract;
mod health;
mod landing;
pub mod limits;
mod origin;
mod page;
mod pages;
mod state;
mod stream;
mod visitor;
mod visitors_online;
mod webrtc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use std::time::Duration;

use crate::chat::conversation::Rejection;
use crate::engine::EngineError;
use error::AppError;
pub use state::{AppState, Sessions};

/// The largest bundle the admin API takes.
const MAX_BUNDLE_BYTES: usize = 8 * 1024 * 1024;
/// The largest body of any other call: a message is at most 10,000 characters.
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let request_timeout = state.settings.limits.request_timeout;
    let visitor = Router::new()
        .route("/api/v1/visitor/sessions", post(visitor::start_session))
        .route("/api/v1/visitor/messages", post(visitor::post_message))
        .route("/api/v1/visitor/actions", post(visitor::post_action))
        .route("/api/v1/visitor/history", get(visitor::history))
        .route("/api/v1/visitor/queue", get(visitor::queue))
        .route("/api/v1/visitor/webrtc", get(webrtc::visitor_ice))
        .route("/api/v1/visitor/widget", get(visitor::widget))
        .route(
            "/api/v1/visitor/pageviews",
            post(visitors_online::page_view),
        )
        .route("/api/v1/visitor/events", get(stream::visitor_events))
        .route(
            "/api/v1/visitor/attachments",
            post(attachments::visitor_upload).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/visitor/attachments/{id}/link",
            get(attachments::visitor_link),
        )
        .route("/api/v1/attachments/{id}", get(attachments::fetch))
        .route(
            "/api/v1/attachments/{id}/preview",
            get(attachments::fetch_preview),
        );
    let conversation = |path: &str| format!("/api/v1/conversations/{{id}}/{path}");
    let agent = Router::new()
        .route("/api/v1/me/availability", put(agent::set_availability))
        .route("/api/v1/agents", get(agent::agents))
        .route("/api/v1/responses", get(agent::responses))
        .route("/api/v1/stats", get(agent::stats))
        .route("/api/v1/agent/events", get(stream::agent_events))
        .route("/api/v1/conversations", get(agent::list))
        .route("/api/v1/conversations.csv", get(agent::export))
        .route("/api/v1/conversations/{id}", get(agent::details))
        .route(&conversation("transcript.csv"), get(agent::transcript))
        .route(&conversation("read"), post(agent::read))
        .route(&conversation("contact"), put(agent::set_contact))
        .route(&conversation("accept"), post(agent::accept))
        .route(&conversation("messages"), post(agent::message))
        .route(
            &conversation("attachments"),
            post(attachments::agent_upload).layer(DefaultBodyLimit::disable()),
        )
        .route(&conversation("notes"), post(agent::note))
        .route(&conversation("assign"), post(agent::assign))
        .route(&conversation("unassign"), post(agent::unassign))
        .route(&conversation("transfer"), post(agent::transfer))
        .route(&conversation("takeover"), post(agent::takeover))
        .route(&conversation("mute"), post(agent::mute))
        .route(&conversation("resolve"), post(agent::resolve))
        .route(&conversation("close"), post(agent::close))
        .route("/api/v1/visitors", get(visitors_online::list))
        .route(
            "/api/v1/visitors/{id}/invite",
            post(visitors_online::invite),
        )
        .route("/api/v1/visitors/{id}", delete(agent::erase_visitor))
        .route("/api/v1/visitors/{id}/export", get(agent::export_visitor))
        .route(&conversation("video"), post(agent::offer_video))
        .route(&conversation("video/end"), post(agent::end_video))
        .route(&conversation("webrtc"), get(webrtc::agent_ice));
    let pages = Router::new()
        .route(
            "/bots/{bot}/contact",
            get(pages::contact_page).post(pages::contact_submit),
        )
        .route(
            "/set-password",
            get(pages::set_password_page).post(pages::set_password_submit),
        );
    let browser = Router::new()
        .route("/widget.js", get(assets::widget_js))
        .route("/widget-call.js", get(assets::widget_call_js))
        .route("/widget.css", get(assets::widget_css))
        .route("/console/js/{name}", get(assets::console_module))
        .route("/console.css", get(assets::console_css))
        .route("/console", get(assets::console))
        .route("/chat/{bot}", get(assets::chat_page))
        .route("/", get(landing::landing))
        .route("/demo/{bot}", get(landing::demo))
        .route("/favicon.svg", get(landing::favicon))
        .route("/favicon.ico", get(landing::favicon));
    let routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/admin/outbox", get(admin::outbox))
        .route("/api/v1/admin/outbox/{id}/retry", post(admin::retry_outbox))
        .route(
            "/api/v1/admin/config",
            post(admin::apply_config).layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)),
        )
        .route("/api/v1/admin/config/revisions", get(admin::revisions))
        .merge(auth::routes())
        .merge(visitor)
        .merge(agent)
        .merge(pages)
        .merge(browser);
    // Routes that answer no CORS: they join after the CORS layer, bounded the same way.
    let cors_free = Router::new().route(
        "/api/v1/bots/{bot}/offline",
        post(pages::offline_api).fallback(method_not_allowed),
    );
    bounded(routes, request_timeout)
        .fallback(|| async {
            AppError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(method_not_allowed)
        // Outermost, so it answers preflights before routing: the widget calls from other
        // sites. No credentials are allowed across origins, so the agent API's cookie never
        // rides along; bearer tokens are not ambient, so they open nothing either.
        .layer(visitor::cors())
        // Not for other sites: the widget sends its offline form through the visitor API,
        // and this endpoint checks no `allowed_origins`, so with CORS any page could make
        // its visitors' browsers post messages from their many addresses.
        .merge(bounded(cors_free, request_timeout))
        .with_state(state)
}

/// Every route's body limit and request timeout: a request, its body read included, gets
/// `request_timeout` (a WebSocket's life is not a request: the upgrade answers at once).
fn bounded(routes: Router<AppState>, request_timeout: Duration) -> Router<AppState> {
    routes.layer(DefaultBodyLimit::max(MAX_BODY_BYTES)).layer(
        tower::ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                AppError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request took too long; send it again",
                )
            }))
            .timeout(request_timeout),
    )
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

/// How the engine's answers reach clients: a status and a stable code.
impl From<EngineError> for AppError {
    fn from(e: EngineError) -> AppError {
        match e {
            EngineError::NotFound => {
                AppError::new(StatusCode::NOT_FOUND, "not_found", "no such conversation")
            }
            EngineError::UnknownBot(bot) => AppError::unknown_bot(&bot),
            EngineError::BadToken => AppError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the visitor token is not valid; start a new session",
            ),
            EngineError::Rejected(r) => {
                let status = match r {
                    Rejection::AlreadyTaken
                    | Rejection::AtCapacity(_)
                    | Rejection::NotAvailable(_)
                    | Rejection::NobodyToRing(_)
                    | Rejection::InvalidState { .. } => StatusCode::CONFLICT,
                    Rejection::NotAllowed(_) => StatusCode::FORBIDDEN,
                    Rejection::UnknownAgent(_)
                    | Rejection::InvalidInput(_)
                    | Rejection::InvalidContact(_) => StatusCode::BAD_REQUEST,
                };
                AppError::new(status, r.code(), r.to_string())
            }
            EngineError::InvalidForm(errs) => {
                AppError::bad_request("invalid_form", "some fields do not fit").with_details(
                    serde_json::json!({
                        "fields": errs
                            .iter()
                            .map(|e| serde_json::json!({"field": e.field, "message": e.message}))
                            .collect::<Vec<_>>()
                    }),
                )
            }
            EngineError::Store(e) => e.into(),
            EngineError::Template(e) => AppError::internal(e),
            EngineError::Limited { code, message } => {
                AppError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            }
            EngineError::Conflict { code, message } => {
                AppError::new(StatusCode::CONFLICT, code, message)
            }
        }
    }
}
