//! The brake on password guessing, in two parts that an attacker cannot turn against the
//! agent they guess at:
//!
//! - **Per client address**: after `MAX_FAILURES` failed logins from one client network
//!   (an address, an IPv6 /64) within `WINDOW`, its further logins are refused, whatever
//!   the email, until the oldest failure ages out.
//! - **Per account, a delay, never a lock**: after `FREE_FAILURES` failed logins for one
//!   email within `WINDOW`, each further login for it, from anywhere, waits before its
//!   password is checked: `FIRST_DELAY`, doubling with each failure, at most `MAX_DELAY`.
//!   Guesses from many addresses slow down; the real agent still signs in, at worst
//!   `MAX_DELAY` later.
//!
//! Kept in memory: a restart forgets, which costs a guesser little.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins allowed per client network within `WINDOW`.
pub const MAX_FAILURES: usize = 10;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed logins for one email within `WINDOW` before its logins are slowed down.
pub const FREE_FAILURES: usize = 3;
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
pub const MAX_DELAY: Duration = Duration::from_secs(4);
/// Failures remembered per key: more change nothing (the delay is at its most by then).
const REMEMBERED: usize = 64;

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
    /// How long the login waits before its password is checked.
    pub delay: Duration,
}

/// The wait before checking a password for an email with `failures` recent failures.
pub fn delay_after(failures: usize) -> Duration {
    match failures.checked_sub(FREE_FAILURES) {
        None => Duration::ZERO,
        Some(over) => FIRST_DELAY.saturating_mul(1 << over.min(16)).min(MAX_DELAY),
    }
}

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter::default()
    }

    /// Starts a login for `email_key` from `client` (when the address is known, as the
    /// network one client controls: `http::address::network`), with the delay it waits;
    /// or refuses it, when the client network has used up its tries, with how long to
    /// wait. The email's failures never refuse a login.
    pub fn begin(
        &self,
        email_key: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt, Duration> {
        let email = Key::Email(email_key.to_string());
        let client = client.map(Key::Client);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.sweep(now);
        if let Some(times) = client.as_ref().and_then(|k| state.failures.get_mut(k)) {
            forget_old(times, now);
            if times.len() >= MAX_FAILURES {
                // Allowed again once enough of the oldest have aged out.
                let frees = times[times.len() - MAX_FAILURES];
                return Err((frees + WINDOW).saturating_duration_since(now));
            }
        }
        let failures = state.failures.get_mut(&email).map_or(0, |times| {
            forget_old(times, now);
            times.len()
        });
        let keys: Vec<Key> = std::iter::once(email).chain(client).collect();
        for key in &keys {
            let times = state.failures.entry(key.clone()).or_default();
            times.push_back(now);
            if times.len() > REMEMBERED {
                times.pop_front();
            }
        }
        Ok(Attempt {
            keys,
            at: now,
            delay: delay_after(failures),
        })
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
    fn failures_for_an_email_slow_its_logins_down_and_never_refuse_them() {
        let limiter = LoginLimiter::new();
        let t0 = Instant::now();
        let delays: Vec<Duration> = (0..9)
            .map(|_| limiter.begin("ana@acme.example", None, t0).unwrap().delay)
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            delays,
            [0, 0, 0, 250, 500, 1000, 2000, 4000, 4000].map(ms).to_vec()
        );
        // A hundred more from anywhere: slower, never refused, never slower than the most.
        for i in 0..100u8 {
            let ip = Some(IpAddr::from([198, 51, 100, i]));
            let attempt = limiter.begin("ana@acme.example", ip, t0 + MINUTE);
            assert_eq!(attempt.unwrap().delay, MAX_DELAY);
        }
        // Other emails are not slowed by Ana's failures.
        let bo = limiter.begin("bo@acme.example", None, t0 + MINUTE).unwrap();
        assert_eq!(bo.delay, Duration::ZERO);
        // Once the failures are 15 minutes old, no delay.
        let later = limiter
            .begin("ana@acme.example", None, t0 + MINUTE + WINDOW)
            .unwrap();
        assert_eq!(later.delay, Duration::ZERO);
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
    fn a_client_address_is_refused_until_its_first_failure_ages_out() {
        let limiter = LoginLimiter::new();
        let ip = Some(IpAddr::from([203, 0, 113, 7]));
        let t0 = Instant::now();
        fail_times(&limiter, "g@acme.example", ip, t0, 1);
        fail_times(
            &limiter,
            "h@acme.example",
            ip,
            t0 + MINUTE,
            MAX_FAILURES - 1,
        );
        let wait = limiter
            .begin("ana@acme.example", ip, t0 + 2 * MINUTE)
            .unwrap_err();
        assert_eq!(wait, 13 * MINUTE);
        assert!(limiter.begin("ana@acme.example", ip, t0 + WINDOW).is_ok());
        assert!(limiter.begin("ana@acme.example", ip, t0 + WINDOW).is_err());
    }

    #[test]
    fn a_successful_login_takes_back_its_own_attempt_only() {
        let limiter = LoginLimiter::new();
        let t0 = Instant::now();
        fail_times(&limiter, "ana@acme.example", None, t0, FREE_FAILURES - 1);
        let ok = limiter
            .begin("ana@acme.example", None, t0 + MINUTE)
            .unwrap();
        limiter.succeeded(ok);
        // The failures stand: one more is free, the next is slowed.
        let free = limiter.begin("ana@acme.example", None, t0 + MINUTE);
        assert_eq!(free.unwrap().delay, Duration::ZERO);
        let slowed = limiter.begin("ana@acme.example", None, t0 + MINUTE);
        assert_eq!(slowed.unwrap().delay, FIRST_DELAY);
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
