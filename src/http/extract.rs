//! The `AuthAgent` extractor: the signed-in agent behind a request, checked against the
//! session store and the live roster. It asks the state only for [`Sessions`].

use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use jiff::Timestamp;

use super::Sessions;
use super::error::AppError;
use crate::auth::extract::{CSRF_HEADER, Credential, Via, is_safe};
use crate::auth::{AuthAgent, constant_time_eq, roster_agent, session};

impl<S> FromRequestParts<S> for AuthAgent
where
    S: Send + Sync,
    Sessions: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let state = Sessions::from_ref(state);
        // A second extraction in the same request costs nothing.
        if let Some(agent) = parts.extensions.get::<AuthAgent>() {
            return Ok(agent.clone());
        }
        let credential = Credential::from_headers(&parts.headers).ok_or_else(unauthorized)?;
        let token_hash = session::token_hash(&credential.token);
        let (agent, csrf_token) = signed_in(&state, token_hash).await?;
        if credential.via == Via::Cookie && !is_safe(&parts.method) {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(given.as_bytes(), csrf_token.as_bytes()) {
                return Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_failed",
                    "a write with the session cookie needs the header X-CSRF-Token with the \
                     csrf_token from login",
                ));
            }
        }
        parts.extensions.insert(agent.clone());
        Ok(agent)
    }
}

/// The agent whose session `token_hash` names, as the live roster has them now, with the
/// session's CSRF token; or why not (no such session, expired, gone from the roster). A
/// request asks once; an open console socket asks again every second, so that a logout, a
/// new password or a removal ends it too.
pub async fn signed_in(
    state: &Sessions,
    token_hash: String,
) -> Result<(AuthAgent, String), AppError> {
    let session = state
        .store
        .find_session(&token_hash)
        .await?
        .ok_or_else(unauthorized)?;
    if session.is_expired(Timestamp::now()) {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "session_expired",
            "the session has expired; log in again",
        ));
    }
    let live = state.live.load();
    let Some(agent) = roster_agent(&live.bundle.roster, &session.agent_email) else {
        // Gone from agents.toml: the session ends for good, even if they come back.
        state.store.delete_session(&token_hash).await?;
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this agent is no longer in the roster",
        ));
    };
    Ok((AuthAgent::new(agent, token_hash), session.csrf_token))
}

fn unauthorized() -> AppError {
    AppError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "log in first: send the session cookie or Authorization: Bearer <token>",
    )
}
