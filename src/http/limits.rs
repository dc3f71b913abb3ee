//! What one client may hold or make the server do: open WebSockets per client address,
//! offline-form submissions per address, transcript mails per visitor. An address is
//! counted by `address::network` (an IPv6 client by its /64). In memory: a restart forgets
//! them, which is fine for limits this short.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::address::network;

/// One of the server's `max_connections` places (see `server::listen`). Every request
/// carries one in its extensions; a WebSocket handler keeps it for the socket's life, so
/// that open sockets count against the cap like connections do.
#[derive(Clone)]
pub struct ConnPermit(pub Arc<OwnedSemaphorePermit>);

/// Holds one of an address's WebSocket places until dropped.
pub struct SocketPlace {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

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

    /// Whether an attempt would be allowed now (records nothing).
    pub fn would_allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(key).is_none_or(|q| {
            q.iter()
                .filter(|t| now.duration_since(**t) < self.window)
                .count()
                < self.max
        })
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
    /// Transcript mails per recipient address, and for the whole server.
    recipients: Window,
    all_transcripts: Window,
    /// New visitor sessions per client address.
    sessions: Window,
    /// Page views the widget reports, per client address.
    pageviews: Window,
    sockets_per_address: usize,
    /// Open WebSockets per client address.
    sockets: Mutex<HashMap<IpAddr, usize>>,
}

impl Limits {
    pub fn new(settings: &crate::settings::ServerLimits) -> Limits {
        const HOUR: Duration = Duration::from_secs(60 * 60);
        Limits {
            submissions: Window::new(5, Duration::from_secs(10 * 60)),
            transcripts: Window::new(3, HOUR),
            recipients: Window::new(settings.transcripts_per_recipient, 24 * HOUR),
            all_transcripts: Window::new(settings.transcripts_per_hour, HOUR),
            sessions: Window::new(settings.sessions_per_address, Duration::from_secs(10 * 60)),
            pageviews: Window::new(settings.pageviews_per_address, Duration::from_secs(60)),
            sockets_per_address: settings.sockets_per_address,
            sockets: Mutex::new(HashMap::new()),
        }
    }

    /// A WebSocket place for a client address, or None when it holds its limit already.
    pub fn open_socket(self: &Arc<Self>, ip: IpAddr) -> Option<SocketPlace> {
        let ip = network(ip);
        let mut open = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= self.sockets_per_address {
            return None;
        }
        *n += 1;
        Some(SocketPlace {
            limits: self.clone(),
            ip,
        })
    }

    /// Offline-form submissions from one client address.
    pub fn allow_submission(&self, ip: IpAddr) -> bool {
        self.submissions.allow(&network(ip).to_string())
    }

    /// Transcript mails for one visitor.
    pub fn allow_transcript(&self, visitor: &str) -> bool {
        self.transcripts.allow(visitor)
    }

    /// A transcript mail to `address`: within its daily limit and the server's hourly cap.
    /// Only a mail that goes counts against either.
    pub fn allow_recipient(&self, address: &str) -> bool {
        let address = address.trim().to_lowercase();
        if !self.all_transcripts.would_allow("") || !self.recipients.allow(&address) {
            return false;
        }
        self.all_transcripts.allow("")
    }

    /// A new visitor session from a client address.
    pub fn allow_session(&self, ip: IpAddr) -> bool {
        self.sessions.allow(&network(ip).to_string())
    }

    /// A page view reported from a client address.
    pub fn allow_pageview(&self, ip: IpAddr) -> bool {
        self.pageviews.allow(&network(ip).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_its_socket_places_until_they_are_dropped() {
        let settings = crate::settings::ServerLimits {
            sockets_per_address: 2,
            ..Default::default()
        };
        let limits = Arc::new(Limits::new(&settings));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limits.open_socket(a).unwrap();
        let _second = limits.open_socket(a).unwrap();
        assert!(limits.open_socket(a).is_none());
        assert!(limits.open_socket(b).is_some());
        drop(first);
        assert!(limits.open_socket(a).is_some());
    }

    #[test]
    fn ipv6_clients_are_limited_per_64_network() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let settings = crate::settings::ServerLimits {
            sockets_per_address: 1,
            sessions_per_address: 1,
            ..Default::default()
        };
        let limits = Arc::new(Limits::new(&settings));
        for i in 0..5 {
            assert!(limits.allow_submission(ip(&format!("2001:db8:1:2::{i:x}"))));
        }
        assert!(!limits.allow_submission(ip("2001:db8:1:2:ffff::1")));
        assert!(limits.allow_submission(ip("2001:db8:1:3::1")));
        let _place = limits.open_socket(ip("2001:db8:1:2::1")).unwrap();
        assert!(limits.open_socket(ip("2001:db8:1:2::2")).is_none());
        assert!(limits.open_socket(ip("2001:db8:1:3::1")).is_some());
        assert!(limits.allow_session(ip("2001:db8:1:2::1")));
        assert!(!limits.allow_session(ip("2001:db8:1:2::2")));
        assert!(limits.allow_session(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn a_key_over_its_limit_is_refused_and_others_are_not() {
        let w = Window::new(2, Duration::from_secs(60));
        assert!(w.allow("a") && w.allow("a"));
        assert!(!w.allow("a"));
        assert!(w.allow("b"));
    }
}
