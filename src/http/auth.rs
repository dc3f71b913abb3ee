//! Agent login and logout, and `GET /api/v1/me`. How a request is authenticated is
//! `crate::auth::AuthAgent`; this file hands out and takes back sessions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::address::network;
use super::client::ClientAddr;
use super::error::{ApiJson, AppError};
use crate::auth::limiter::LoginLimiter;
use crate::auth::{self, AuthAgent, password, session};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
        // One limiter per server, shared by its login requests.
        .layer(Extension(Arc::new(LoginLimiter::new())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<LoginLimiter>>,
    client: ClientAddr,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, Response> {
    let email = auth::email_key(&request.email);
    // Without connect info (a router in a unit test) the limit holds per email only.
    let client = client.ip.map(network);
    let attempt = match limiter.begin(&email, client, Instant::now()) {
        Ok(attempt) => attempt,
        Err(wait) => {
            tracing::warn!(%email, ?client, "login refused: too many failed attempts");
            return Err(too_many_attempts(wait));
        }
    };
    // An email guessed at from many addresses is slowed down, never locked: the real
    // agent still signs in, at worst `limiter::MAX_DELAY` later.
    if !attempt.delay.is_zero() {
        tracing::info!(%email, delay = ?attempt.delay, "login slowed: recent failures for this email");
        tokio::time::sleep(attempt.delay).await;
    }
    // The same steps whether or not the email is an agent's, so that the time the answer
    // takes says nothing about which emails exist.
    let agent = auth::roster_agent(&state.live.load().bundle.roster, &email).cloned();
    let stored = state
        .store()
        .password_hash(&email)
        .await
        .map_err(|e| AppError::from(e).into_response())?;
    let matches = password::verify(request.password, stored).await;
    let Some(agent) = agent.filter(|_| matches) else {
        // The attempt stays counted as a failure.
        tracing::info!(%email, ?client, "login failed");
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong email or password",
        )
        .into_response());
    };
    limiter.succeeded(attempt);
    let new = state
        .store()
        .create_session(&email, Timestamp::now())
        .await
        .map_err(|e| AppError::from(e).into_response())?;
    tracing::info!(%email, "agent logged in");
    let me = AuthAgent::new(&agent, new.token_hash.clone());
    let cookie = session_cookie(&state, &new.token, session::LIFETIME.as_secs());
    Ok((
        [
            (header::SET_COOKIE, cookie),
            // The body holds the token: no cache keeps it.
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Json(json!({
            "agent": me,
            "csrf_token": new.csrf_token,
            "token": new.token,
            "expires_at": new.expires_at.to_string(),
        })),
    )
        .into_response())
}

async fn logout(State(state): State<AppState>, agent: AuthAgent) -> Result<Response, AppError> {
    state.store().delete_session(&agent.token_hash).await?;
    tracing::info!(email = %agent.email, "agent logged out");
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session_cookie(&state, "", 0))],
    )
        .into_response())
}

/// Who is signed in, with the session's CSRF token: a second console tab, which shares the
/// cookie, learns the token here instead of signing in again. Only pages of this server
/// can read it (no credentials are allowed across origins).
async fn me(State(state): State<AppState>, agent: AuthAgent) -> Result<Json<Value>, AppError> {
    let found = state.store().find_session(&agent.token_hash).await?;
    Ok(Json(json!({
        "agent": agent,
        "csrf_token": found.map(|s| s.csrf_token),
    })))
}

/// The session cookie, or with an empty token and no lifetime, its removal. Not readable by
/// scripts, never sent from other sites, and only over TLS when the server is reached so.
fn session_cookie(state: &AppState, token: &str, max_age: i64) -> String {
    let secure = state
        .settings
        .public_url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    format!(
        "{}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        session::COOKIE,
        if secure { "; Secure" } else { "" }
    )
}

fn too_many_attempts(wait: Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let minutes = seconds.div_ceil(60);
    let error = AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!(
            "too many failed logins; try again in {minutes} minute{}",
            if minutes == 1 { "" } else { "s" }
        ),
    );
    ([(header::RETRY_AFTER, seconds.to_string())], error).into_response()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use serde_json::json;

    use super::AppState;
    use crate::auth::{limiter::MAX_FAILURES, password};
    use crate::settings::ServerArgs;

    /// The server as `serve` runs it, but with the client's address known to handlers.
    async fn serve_with_connect_info(dir: &std::path::Path) -> String {
        let bots = dir.join("bots");
        std::fs::create_dir_all(&bots).unwrap();
        std::fs::write(
            bots.join("agents.toml"),
            "[[team]]\nid = \"support\"\nbots = [\"support\"]\n\n[[agent]]\nname = \"Ana\"\n\
             email = \"ana@acme.example\"\nteams = [\"support\"]\n",
        )
        .unwrap();
        std::fs::write(
            bots.join("support.toml"),
            "name = \"Support\"\n\n[[step]]\nid = \"start\"\nsay = \"Hi\"\nend = true\n",
        )
        .unwrap();
        let settings = ServerArgs {
            bots_dir: Some(bots),
            data_dir: Some(dir.join("data")),
            ..ServerArgs::default()
        }
        .resolve()
        .unwrap();
        let state = AppState::open(settings).await.unwrap();
        let phc = password::hash("ana's password").unwrap();
        state
            .store()
            .set_password("ana@acme.example", &phc, jiff::Timestamp::now())
            .await
            .unwrap();
        let app = crate::http::router(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        url
    }

    #[tokio::test]
    async fn with_connect_info_failures_from_one_address_are_limited_across_emails() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve_with_connect_info(dir.path()).await;
        let client = reqwest::Client::new();
        let login = |email: String, password: &'static str| {
            client
                .post(format!("{url}/api/v1/auth/login"))
                .json(&json!({ "email": email, "password": password }))
                .send()
        };
        for i in 0..MAX_FAILURES {
            let reply = login(format!("guess{i}@acme.example"), "wrong")
                .await
                .unwrap();
            assert_eq!(reply.status(), 401);
        }
        // Ana has no failures of her own, but this address has used up its tries.
        let reply = login("ana@acme.example".into(), "ana's password")
            .await
            .unwrap();
        assert_eq!(reply.status(), 429);
    }
}
