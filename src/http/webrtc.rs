//! The ICE servers a video call's browsers use: the configured STUN servers, and TURN
//! servers with a credential made for this caller from the secret shared with the TURN
//! server (coturn's `use-auth-secret`: the user name is the expiry as Unix seconds and a
//! label, the password the base64 of its HMAC-SHA1 under the secret). Handed out only to
//! the two sides of a conversation that has a call offered or on.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::agent::agent_ref;
use super::error::AppError;
use super::state::AppState;
use super::visitor::AuthVisitor;
use crate::auth::AuthAgent;
use crate::chat::conversation::Conversation;
use crate::settings::Webrtc;

/// `GET /api/v1/visitor/webrtc`: for the visitor of the current conversation.
pub async fn visitor_ice(
    State(state): State<AppState>,
    AuthVisitor(visitor): AuthVisitor,
) -> Result<Json<Value>, AppError> {
    let id = state.engine.visitor_conversation(&visitor).await?;
    let conv = state.engine.peek(&id).await?;
    require_call(&conv)?;
    Ok(Json(ice_servers(
        &state.settings.webrtc,
        &format!("visitor-{}", conv.visitor_id),
        Timestamp::now(),
    )))
}

/// `GET /api/v1/conversations/{id}/webrtc`: for the agent who has the conversation.
pub async fn agent_ice(
    State(state): State<AppState>,
    agent: AuthAgent,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let conv = state.engine.agent_may_see(&agent_ref(&agent), &id).await?;
    if conv.assignee.as_deref() != Some(agent.email.as_str()) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "not_allowed",
            "only the agent who has the chat takes part in its call",
        ));
    }
    require_call(&conv)?;
    Ok(Json(ice_servers(
        &state.settings.webrtc,
        &format!("agent-{}", agent.email),
        Timestamp::now(),
    )))
}

fn require_call(conv: &Conversation) -> Result<(), AppError> {
    if conv.call.is_some() {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::CONFLICT,
            "no_call",
            "this conversation has no video call offered or on",
        ))
    }
}

/// The `RTCConfiguration.iceServers` for one caller, and when its TURN credential expires.
pub fn ice_servers(webrtc: &Webrtc, label: &str, now: Timestamp) -> Value {
    let mut servers = Vec::new();
    if !webrtc.stun.is_empty() {
        servers.push(json!({"urls": webrtc.stun}));
    }
    let expires = now.as_second() + webrtc.credential_ttl.as_secs() as i64;
    if let (false, Some(secret)) = (webrtc.turn.is_empty(), &webrtc.turn_secret) {
        let (username, credential) = turn_credential(secret, label, expires);
        servers.push(json!({"urls": webrtc.turn, "username": username, "credential": credential}));
    }
    json!({
        "ice_servers": servers,
        "ice_transport_policy": if webrtc.relay_only { "relay" } else { "all" },
        "expires_at": Timestamp::from_second(expires).ok().map(|t| t.to_string()),
    })
}

/// coturn's time-limited credential: `expires:label` and base64(HMAC-SHA1(secret, it)).
pub fn turn_credential(secret: &str, label: &str, expires: i64) -> (String, String) {
    // A `:` in the label would read as the end of the expiry part.
    let username = format!("{expires}:{}", label.replace(':', "_"));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_follow_the_coturn_rest_convention() {
        // Worked by hand with `printf '1700003600:agent-ana' | openssl dgst -sha1 -hmac
        // 'north' -binary | base64`.
        let (user, pass) = turn_credential("north", "agent-ana", 1_700_003_600);
        assert_eq!(user, "1700003600:agent-ana");
        assert_eq!(pass, "4fNeOAZC/oJ1crYeNpuVSalkmrE=");
        assert_eq!(turn_credential("north", "a:b", 1).0, "1:a_b");
    }

    #[test]
    fn without_settings_a_call_uses_host_candidates_only() {
        let none = ice_servers(&Webrtc::default(), "visitor-v1", Timestamp::UNIX_EPOCH);
        assert_eq!(none["ice_servers"], json!([]));
        let full = Webrtc {
            stun: vec!["stun:turn.example.com:3478".into()],
            turn: vec!["turn:turn.example.com:3478?transport=udp".into()],
            turn_secret: Some("north".into()),
            credential_ttl: std::time::Duration::from_secs(3600),
            relay_only: false,
        };
        let v = ice_servers(
            &full,
            "agent-ana",
            Timestamp::from_second(1_700_000_000).unwrap(),
        );
        assert_eq!(v["ice_servers"][0]["urls"][0], "stun:turn.example.com:3478");
        assert_eq!(v["ice_servers"][1]["username"], "1700003600:agent-ana");
        assert_eq!(v["expires_at"], "2023-11-14T23:13:20Z");
        assert_eq!(v["ice_transport_policy"], "all");
        let relayed = Webrtc {
            relay_only: true,
            ..full
        };
        let v = ice_servers(&relayed, "agent-ana", Timestamp::UNIX_EPOCH);
        assert_eq!(v["ice_transport_policy"], "relay");
    }
}
