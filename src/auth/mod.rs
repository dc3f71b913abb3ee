//! Agent authentication: passwords (`password`, `credentials`), login sessions (`session`),
//! the brake on guessing (`limiter`) and the `AuthAgent` extractor that handlers take to
//! know who is calling (`extract`).
//!
//! Who is an agent, with which role and teams, is always read from the live roster: the
//! database knows only passwords and sessions, keyed by the lowercased email.

pub mod credentials;
pub mod extract;
pub mod limiter;
pub mod password;
pub mod session;

use jiff::Timestamp;

pub use extract::{AuthAgent, bearer, bearer_is, constant_time_eq};

use crate::config::Roster;
use crate::config::schema::Agent;

/// How an email is keyed in the database and matched against the roster.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The roster's agent with this email key, if any.
pub fn roster_agent<'a>(roster: &'a Roster, email_key: &str) -> Option<&'a Agent> {
    roster
        .agents
        .iter()
        .find(|a| a.email.as_str().to_lowercase() == email_key)
}

/// Times as the rest of the database writes them: RFC 3339, UTC, whole seconds (so that
/// they also sort as text).
fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
