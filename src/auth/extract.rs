//! `AuthAgent`: the signed-in agent, and how a request carries its session (the extractor
//! that checks it is `http::extract`).
//!
//! The session token comes in the `livechat_session` cookie (the console) or as
//! `Authorization: Bearer <token>` (scripts). A cookie is sent by the browser on its own, so a
//! cookie-authenticated write must also prove it comes from our page with `X-CSRF-Token`.

use axum::http::{HeaderMap, Method, header};
use serde::{Serialize, Serializer};

use super::session;
use crate::config::schema::{Agent, Role};

/// The header that carries the session's CSRF token on cookie-authenticated writes.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The agent behind a request, as the live roster has them now.
///
/// ```ignore
/// async fn handler(agent: AuthAgent) -> … { if agent.is_admin() { … } }
/// ```
/// Rejects with 401 `unauthorized` (no, unknown or ended session, or an agent no longer in
/// the roster), 401 `session_expired`, or 403 `csrf_failed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthAgent {
    /// Lowercased: the key of the `agents` and `sessions` tables.
    pub email: String,
    pub name: String,
    #[serde(serialize_with = "role_name")]
    pub role: Role,
    pub teams: Vec<String>,
    pub max_chats: u32,
    /// Which session authenticated the request (logout ends it).
    #[serde(skip)]
    pub(crate) token_hash: String,
}

impl AuthAgent {
    pub(crate) fn new(agent: &Agent, token_hash: String) -> AuthAgent {
        AuthAgent {
            email: super::email_key(agent.email.as_str()),
            name: agent.name.clone(),
            role: agent.role,
            teams: agent.team_ids().map(str::to_string).collect(),
            max_chats: *agent.max_chats.get_ref(),
            token_hash,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

fn role_name<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match role {
        Role::Agent => "agent",
        Role::Admin => "admin",
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Cookie,
    Bearer,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Credential {
    pub(crate) token: String,
    pub(crate) via: Via,
}

impl Credential {
    /// A bearer token when there is one, else the session cookie.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Credential> {
        if let Some(token) = bearer_header(headers) {
            return (!token.is_empty()).then(|| Credential {
                token: token.to_string(),
                via: Via::Bearer,
            });
        }
        cookie(headers, session::COOKIE).map(|token| Credential {
            token,
            via: Via::Cookie,
        })
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme in any case), possibly empty.
fn bearer_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}

/// The bearer token of a request, if it carries a non-empty one (visitor and admin calls).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_header(headers).filter(|t| !t.is_empty())
}

/// Whether the request's bearer token is `expected` (a configured secret). Digests are
/// compared, so not even the token's length shows in the time taken.
pub fn bearer_is(headers: &HeaderMap, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let given = bearer(headers).unwrap_or("");
    constant_time_eq(&Sha256::digest(given), &Sha256::digest(expected))
}

/// The value of cookie `name` among the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_string())
        .filter(|value| !value.is_empty())
}

/// Methods that change nothing, so a forged one gains an attacker nothing.
pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Compares secrets (CSRF and admin tokens) in time that says nothing about how much of
/// them matched: equal-length inputs byte by byte, without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn credential(pairs: &[(&'static str, &'static str)]) -> Option<(String, Via)> {
        Credential::from_headers(&headers(pairs)).map(|c| (c.token, c.via))
    }

    #[test]
    fn the_token_comes_from_the_cookie_or_a_bearer_header() {
        assert_eq!(
            credential(&[("cookie", "theme=dark; livechat_session=abc; x=1")]),
            Some(("abc".into(), Via::Cookie))
        );
        assert_eq!(
            credential(&[("cookie", "theme=dark"), ("cookie", "livechat_session=abc")]),
            Some(("abc".into(), Via::Cookie))
        );
        assert_eq!(
            credential(&[("authorization", "Bearer abc")]),
            Some(("abc".into(), Via::Bearer))
        );
        assert_eq!(
            credential(&[("authorization", "bearer  abc ")]),
            Some(("abc".into(), Via::Bearer))
        );
    }

    #[test]
    fn a_bearer_header_wins_over_the_cookie() {
        assert_eq!(
            credential(&[
                ("cookie", "livechat_session=from-cookie"),
                ("authorization", "Bearer from-header"),
            ]),
            Some(("from-header".into(), Via::Bearer))
        );
        // Other schemes are not ours: the cookie stands.
        assert_eq!(
            credential(&[
                ("cookie", "livechat_session=from-cookie"),
                ("authorization", "Basic dXNlcjpwdw=="),
            ]),
            Some(("from-cookie".into(), Via::Cookie))
        );
    }

    #[test]
    fn no_token_is_no_credential() {
        assert_eq!(credential(&[]), None);
        assert_eq!(credential(&[("cookie", "livechat_session=")]), None);
        assert_eq!(credential(&[("cookie", "other_session=abc")]), None);
        assert_eq!(credential(&[("cookie", "xlivechat_session=abc")]), None);
        assert_eq!(credential(&[("authorization", "Bearer ")]), None);
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abcdef", b"abcdef"));
        assert!(!constant_time_eq(b"abcdef", b"abcdeg"));
        assert!(!constant_time_eq(b"abcdef", b"abcde"));
        assert!(!constant_time_eq(b"", b"abcdef"));
    }

    #[test]
    fn only_reads_skip_the_csrf_check() {
        assert!(is_safe(&Method::GET));
        assert!(is_safe(&Method::HEAD));
        assert!(is_safe(&Method::OPTIONS));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!is_safe(&m), "{m}");
        }
    }
}
