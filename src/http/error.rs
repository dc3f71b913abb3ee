//! The one error type of the HTTP API: a status, a stable code and a safe message for the
//! client; the full cause goes to the log only.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields merged into the `error` object (for example `diagnostics`).
    pub details: Option<Value>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `404 unknown_bot`: there is no bot with this id in the live bundle.
    pub fn unknown_bot(bot_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_bot",
            format!("there is no bot `{bot_id}`"),
        )
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// A failure of ours: logged in full, reported to the client without internals.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on the server; the details are in its log",
        )
    }
}

/// Seconds a client is asked to wait before it writes again while the storage fails.
pub const STORAGE_RETRY_AFTER: u64 = 10;

impl AppError {
    /// The database cannot be written now (disk full, I/O error, read only): `503
    /// storage_unavailable` with `Retry-After`. The writer logs the cause once when writes
    /// start failing, so this logs it per request only at `debug`.
    pub fn storage_unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::debug!("write refused, the storage fails: {cause}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the server cannot store anything right now; nothing was saved, try again later",
        )
        .with_details(json!({ "retry_after": STORAGE_RETRY_AFTER }))
    }
}

impl AppError {
    /// `429 too_many_messages`: the visitor sent messages faster than their limit allows;
    /// `wait` is how long until the next one would go, given in whole seconds, at least 1
    /// (`error.retry_after`, and the `Retry-After` header over HTTP).
    pub fn too_many_messages(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_messages",
            "messages are coming faster than a chat allows; nothing was sent, try again shortly",
        )
        .with_details(json!({ "retry_after": seconds.max(1) }))
    }
}

/// A store failure: `503 storage_unavailable` when the storage fails (see
/// [`crate::store::StoreError::is_unavailable`]), else ours: logged, and a 500 `internal`.
impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            AppError::storage_unavailable(e)
        } else {
            AppError::internal(e)
        }
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        if crate::store::unavailable(&e) {
            AppError::storage_unavailable(e)
        } else {
            AppError::internal(e)
        }
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for AppError {
    fn from(e: tokio::task::JoinError) -> Self {
        AppError::internal(e)
    }
}

/// Runs blocking work (files, hashing, parsing a large bundle) off the async workers: the
/// one way handlers do so. Its error converts into the API's.
pub async fn blocking<T, E, F>(work: F) -> Result<T, AppError>
where
    T: Send + 'static,
    E: Send + 'static,
    AppError: From<E>,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    Ok(tokio::task::spawn_blocking(work).await??)
}

impl AppError {
    /// The `error` object a client gets: `code`, `message` and any details.
    pub fn error_object(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(Value::Object(extra)), Some(obj)) = (&self.details, error.as_object_mut()) {
            obj.extend(extra.clone());
        }
        error
    }
}

/// An error that says when to try again (`error.retry_after`, in seconds) says it in a
/// `Retry-After` header too.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let error = self.error_object();
        let retry_after = error.get("retry_after").and_then(Value::as_u64);
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

/// `Json<T>` whose rejections are our 400 with a stable code instead of axum's plain text.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ),
        JsonRejection::JsonSyntaxError(e) => AppError::bad_request(
            "invalid_json",
            format!("the body is not valid JSON: {}", e.body_text()),
        ),
        JsonRejection::JsonDataError(e) => AppError::bad_request(
            "invalid_body",
            format!("the body does not fit: {}", e.body_text()),
        ),
        JsonRejection::BytesRejection(e) => body_rejection(e),
        other => AppError::bad_request("invalid_body", other.body_text()),
    }
}

/// A body that could not be read: 413 `too_large` past the limit, else 400.
pub fn body_rejection(e: BytesRejection) -> AppError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::new(status, "too_large", "the body is too large")
    } else {
        AppError::bad_request("invalid_body", e.body_text())
    }
}

/// A body parsed by hand: 400 `invalid_json` when it is not JSON, `invalid_body` when it
/// is JSON of the wrong shape (the same codes as `ApiJson`).
pub fn json_error(e: serde_json::Error) -> AppError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => {
            AppError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        }
        Category::Data | Category::Io => {
            AppError::bad_request("invalid_body", format!("the body does not fit: {e}"))
        }
    }
}

/// `Query<T>` whose rejections are our 400 with a stable code.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(AppError::bad_request(
                "invalid_query",
                format!("the query string does not fit: {}", e.body_text()),
            )),
        }
    }
}

/// A WebSocket endpoint called without a WebSocket handshake.
pub fn not_a_websocket(
    rejection: axum::extract::ws::rejection::WebSocketUpgradeRejection,
) -> AppError {
    AppError::new(
        rejection.status(),
        "websocket_required",
        format!("this endpoint speaks WebSocket: {}", rejection.body_text()),
    )
}
