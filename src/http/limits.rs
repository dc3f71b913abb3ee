//! What one client may hold or make the server do: open WebSockets per client address,
//! offline-form submissions per address, transcript mails and messages per visitor. An
//! address is counted by `address::network` (an IPv6 client by its /64). In memory: a
//! restart forgets them, which is fine for limits this short.

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

/// A token bucket per key: `burst` tokens at most, one more back each `refill`; each
/// attempt takes one. A bucket is kept as the moment it will be full again (the generic
/// cell rate algorithm), so a key whose bucket is full holds nothing worth keeping: the
/// sweep drops it, and memory holds only the keys that sent within the last `burst ×
/// refill` (and one sweep).
pub struct Buckets {
    burst: u32,
    refill: Duration,
    kept: Mutex<Kept>,
}

struct Kept {
    full_at: HashMap<String, Instant>,
    swept_at: Instant,
}

/// How often full buckets are dropped (at the first attempt after this long).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl Buckets {
    pub fn new(burst: usize, refill: Duration) -> Buckets {
        Buckets {
            burst: u32::try_from(burst.max(1)).unwrap_or(u32::MAX),
            refill,
            kept: Mutex::new(Kept {
                full_at: HashMap::new(),
                swept_at: Instant::now(),
            }),
        }
    }

    /// Takes a token of `key`'s bucket, or answers how long until it holds one (nothing
    /// taken then).
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(kept.swept_at) >= SWEEP_EVERY {
            kept.full_at.retain(|_, full_at| *full_at > now);
            kept.swept_at = now;
        }
        let full_at = kept.full_at.get(key).copied();
        let missing = full_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        let capacity = self.refill.saturating_mul(self.burst);
        let after = missing.saturating_add(self.refill);
        if after > capacity {
            // The bucket holds a token again once it misses at most `burst - 1`.
            return Err(after - capacity);
        }
        let full_at = now + after;
        match kept.full_at.get_mut(key) {
            Some(t) => *t = full_at,
            None => {
                kept.full_at.insert(key.to_string(), full_at);
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .full_at
            .len()
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
    /// Messages per visitor, by HTTP and socket together.
    messages: Buckets,
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
            messages: Buckets::new(settings.message_burst, settings.message_refill),
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

    /// A message from a visitor, or how long until they may send one.
    pub fn take_message(&self, visitor: &str) -> Result<(), Duration> {
        self.messages.take(visitor)
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
    fn a_bucket_gives_its_burst_then_one_token_each_refill_and_says_how_long_to_wait() {
        let secs = Duration::from_secs;
        let buckets = Buckets::new(3, secs(1));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.take_at("a", t0), Ok(()));
        }
        assert_eq!(buckets.take_at("a", t0), Err(secs(1)));
        // A refused attempt takes nothing: the wait only shrinks.
        assert_eq!(
            buckets.take_at("a", t0 + Duration::from_millis(400)),
            Err(Duration::from_millis(600))
        );
        assert_eq!(buckets.take_at("b", t0), Ok(()), "another key has its own");
        assert_eq!(buckets.take_at("a", t0 + secs(1)), Ok(()));
        assert_eq!(buckets.take_at("a", t0 + secs(1)), Err(secs(1)));
        // Idle for the whole burst's worth: full again, and no fuller.
        let later = t0 + secs(10);
        for _ in 0..3 {
            assert_eq!(buckets.take_at("a", later), Ok(()));
        }
        assert!(buckets.take_at("a", later).is_err());
    }

    #[test]
    fn a_sender_at_the_refill_rate_is_never_refused() {
        let buckets = Buckets::new(1, Duration::from_millis(500));
        let t0 = Instant::now();
        for i in 0..100 {
            let at = t0 + Duration::from_millis(500) * i;
            assert_eq!(buckets.take_at("v", at), Ok(()), "message {i}");
        }
    }

    #[test]
    fn full_buckets_are_swept_and_busy_ones_kept() {
        let secs = Duration::from_secs;
        let buckets = Buckets::new(20, secs(1));
        let t0 = Instant::now();
        for i in 0..1000 {
            assert_eq!(buckets.take_at(&format!("gone{i}"), t0), Ok(()));
        }
        for _ in 0..20 {
            assert_eq!(buckets.take_at("busy", t0 + secs(5)), Ok(()));
        }
        assert_eq!(buckets.kept(), 1001);
        // Past the sweep, those who sent one message 20 s ago hold a full bucket: dropped.
        assert_eq!(buckets.take_at("new", t0 + secs(20)), Ok(()));
        assert_eq!(buckets.kept(), 2, "busy and new are kept");
        // Busy's bucket was kept as it was: 15 s of refill since its 20, so 15 tokens.
        for _ in 0..15 {
            assert_eq!(buckets.take_at("busy", t0 + secs(20)), Ok(()));
        }
        assert!(buckets.take_at("busy", t0 + secs(20)).is_err());
    }

    #[test]
    fn a_key_over_its_limit_is_refused_and_others_are_not() {
        let w = Window::new(2, Duration::from_secs(60));
        assert!(w.allow("a") && w.allow("a"));
        assert!(!w.allow("a"));
        assert!(w.allow("b"));
    }
}
