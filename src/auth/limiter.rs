//! The brake on password guessing: after `MAX_FAILURES` failed logins for one email, or
//! from one client address, within `WINDOW`, further logins are refused until the oldest
//! failure ages out. Kept in memory: a restart forgets, which costs a guesser little.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins allowed per email and per client address within `WINDOW`.
pub const MAX_FAILURES: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Email(String),
    Client(IpAddr),
}

#[derive(Debug, Default)]
pub struct LoginLimiter {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Recent failures (and attempts under way), oldest first.
    failures: HashMap<Key, VecDeque<Instant>>,
    last_sweep: Option<Instant>,
}

/// A login under way. It counts as a failure from the start, so that guesses sent all at
/// once cannot slip past the limit; `LoginLimiter::succeeded` takes it back.
#[derive(Debug)]
#[must_use = "an attempt counts as a failure unless `succeeded` takes it back"]
pub struct Attempt {
    keys: Vec<Key>,
    at: Instant,
}

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter::default()
    }

    /// Starts a login for `email_key` from `client` (when the address is known, as the
    /// network one client controls: `http::address::network`), or refuses it with how long
    /// to wait.
    pub fn begin(
        &self,
        email_key: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Duration> {
        let mut keys = vec![Key::Email(email_key.to_string())];
        keys.extend(client.map(Key::Client));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.sweep(now);
        let mut wait = Duration::ZERO;
        for key in &keys {
            if let Some(times) = state.failures.get_mut(key) {
                forget_old(times, now);
                if times.len() >= MAX_FAILURES {
                    // Allowed again once enough of the oldest have aged out.
                    let frees = times[times.len() - MAX_FAILURES];
                    wait = wait.max((frees + WINDOW).saturating_duration_since(now));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for key in &keys {
            state
                .failures
                .entry(key.clone())
                .or_default()
                .push_back(now);
        }
        Ok(Attempt { keys, at: now })
    }

    /// The attempt succeeded: it is no failure.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for key in &attempt.keys {
            if let Some(times) = state.failures.get_mut(key) {
                if let Some(i) = times.iter().position(|t| *t == attempt.at) {
                    times.remove(i);
                }
                if times.is_empty() {
                    state.failures.remove(key);
                }
            }
        }
    }
}

impl State {
    /// Drops keys whose failures have all aged out, once per window, so that guesses
    /// across many emails cannot grow the map without end.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < WINDOW)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.failures.retain(|_, times| {
            forget_old(times, now);
            !times.is_empty()
        });
    }
}

fn forget_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn fail_times(
        limiter: &LoginLimiter,
        email: &str,
        client: Option<IpAddr>,
        now: Instant,
        n: usize,
    ) {
        for i in 0..n {
            let attempt = limiter.begin(email, client, now);
            assert!(attempt.is_ok(), "attempt {} was refused", i + 1);
        }
    }

    #[test]
    fn the_eleventh_failure_for_an_email_is_refused_until_the_first_ages_out() {
        let limiter = LoginLimiter::new();
        let t0 = Instant::now();
        fail_times(&limiter, "ana@acme.example", None, t0, 1);
        fail_times(&limiter, "ana@acme.example", None, t0 + MINUTE, 9);
        let wait = limiter
            .begin("ana@acme.example", None, t0 + 2 * MINUTE)
            .unwrap_err();
        assert_eq!(wait, 13 * MINUTE);
        // Other emails are not held back by Ana's failures.
        assert!(
            limiter
                .begin("bo@acme.example", None, t0 + 2 * MINUTE)
                .is_ok()
        );
        // Once the first failure is 15 minutes old, one more attempt is allowed.
        assert!(limiter.begin("ana@acme.example", None, t0 + WINDOW).is_ok());
        assert!(
            limiter
                .begin("ana@acme.example", None, t0 + WINDOW)
                .is_err()
        );
    }

    #[test]
    fn a_client_address_is_limited_across_emails() {
        let limiter = LoginLimiter::new();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            let _ = limiter
                .begin(&format!("guess{i}@acme.example"), Some(ip), t0)
                .unwrap();
        }
        assert!(limiter.begin("ana@acme.example", Some(ip), t0).is_err());
        let elsewhere: IpAddr = "203.0.113.8".parse().unwrap();
        assert!(
            limiter
                .begin("ana@acme.example", Some(elsewhere), t0)
                .is_ok()
        );
    }

    #[test]
    fn a_successful_login_takes_back_its_own_attempt_only() {
        let limiter = LoginLimiter::new();
        let t0 = Instant::now();
        fail_times(&limiter, "ana@acme.example", None, t0, MAX_FAILURES - 1);
        let ok = limiter
            .begin("ana@acme.example", None, t0 + MINUTE)
            .unwrap();
        limiter.succeeded(ok);
        // Nine failures stand; a tenth is allowed, an eleventh is not.
        assert!(limiter.begin("ana@acme.example", None, t0 + MINUTE).is_ok());
        assert!(
            limiter
                .begin("ana@acme.example", None, t0 + MINUTE)
                .is_err()
        );
    }

    #[test]
    fn keys_whose_failures_aged_out_are_swept() {
        let limiter = LoginLimiter::new();
        let t0 = Instant::now();
        for i in 0..100 {
            let _ = limiter.begin(&format!("g{i}@x.example"), None, t0).unwrap();
        }
        let _ = limiter.begin("ana@x.example", None, t0 + WINDOW).unwrap();
        let state = limiter.state.lock().unwrap();
        assert_eq!(state.failures.len(), 1);
    }
}
