//! Agent authentication: passwords (`password`, `credentials`), login sessions (`session`),
//! the brake on guessing (`limiter`) and the `AuthAgent` extractor that handlers take to
//! know who is calling (`extract`); the same rows on PostgreSQL for replicas (`pg`).
//!
//! Who is an agent, with which role and teams, is always read from the live roster: the
//! database knows only passwords and sessions, keyed by the lowercased email.

pub mod credentials;
pub mod extract;
pub mod limiter;
pub mod password;
pub mod pg;
pub mod session;
pub mod stored;

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
        .find(|a| lowercases_to(a.email.as_str(), email_key))
}

/// `email.to_lowercase() == key`, without making the lowercase copy for an ASCII address
/// (a lookup walks the whole roster, and a console asks every second).
fn lowercases_to(email: &str, key: &str) -> bool {
    if email.is_ascii() {
        email.len() == key.len()
            && email
                .bytes()
                .zip(key.bytes())
                .all(|(e, k)| e.to_ascii_lowercase() == k)
    } else {
        email.to_lowercase() == key
    }
}

/// Times as the rest of the database writes them: RFC 3339, UTC, whole seconds (so that
/// they also sort as text).
fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_address_matches_its_key_in_any_case() {
        assert!(super::lowercases_to("Ana@Acme.Example", "ana@acme.example"));
        assert!(super::lowercases_to("ana@acme.example", "ana@acme.example"));
        assert!(!super::lowercases_to(
            "ana@acme.example",
            "Ana@acme.example"
        ));
        assert!(!super::lowercases_to("ana@acme.example", "ana@acme.exampl"));
        assert!(!super::lowercases_to(
            "bob@acme.example",
            "ana@acme.example"
        ));
        assert!(super::lowercases_to("ÅSA@Acme.Example", "åsa@acme.example"));
        assert!(!super::lowercases_to(
            "asa@acme.example",
            "åsa@acme.example"
        ));
    }
}
