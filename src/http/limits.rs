//! Rate limits on what a visitor can make the server send: offline-form submissions per
//! client address, transcript mails per visitor. In memory: a restart forgets them, which
//! is fine for limits this short.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `max` events per key within `window`.
pub struct Window {
    max: usize,
    window: Duration,
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Window {
    pub fn new(max: usize, window: Duration) -> Window {
        Window {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an attempt; false when the key is over its limit (nothing recorded then).
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 10_000 {
            // Forget keys whose events all expired, so memory stays bounded.
            seen.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let q = seen.entry(key.to_string()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if q.len() >= self.max {
            return false;
        }
        q.push_back(now);
        true
    }
}

pub struct Limits {
    submissions: Window,
    transcripts: Window,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            submissions: Window::new(5, Duration::from_secs(10 * 60)),
            transcripts: Window::new(3, Duration::from_secs(60 * 60)),
        }
    }
}

impl Limits {
    /// Offline-form submissions from one client address.
    pub fn allow_submission(&self, ip: &str) -> bool {
        self.submissions.allow(ip)
    }

    /// Transcript mails for one visitor.
    pub fn allow_transcript(&self, visitor: &str) -> bool {
        self.transcripts.allow(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_limit_is_refused_and_others_are_not() {
        let w = Window::new(2, Duration::from_secs(60));
        assert!(w.allow("a") && w.allow("a"));
        assert!(!w.allow("a"));
        assert!(w.allow("b"));
    }
}
