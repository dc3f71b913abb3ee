//! Who is on the other end of a request. The TCP peer, unless that peer is one of the
//! `trusted_proxies`: then the proxy's `X-Forwarded-For` (or, without one, `Forwarded`)
//! names the client, read from the right, skipping the addresses of trusted proxies. What
//! anyone else sends in those headers is ignored, so a client cannot pick its own address
//! for the per-address limits or the logs.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::AppState;
use crate::settings::{Cidr, Settings};

/// The client of a request, as far as the server can trust what it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// `None` only when the server runs without connect info (a router in a unit test).
    pub ip: Option<IpAddr>,
    /// Whether the TCP peer is a trusted proxy: only then are the headers a proxy sets
    /// (like `country_header`) believed.
    pub via_trusted_proxy: bool,
}

impl ClientAddr {
    /// The client of a request that came from `peer` with `headers`.
    pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> ClientAddr {
        let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
        let peer = peer.to_canonical();
        if !is_trusted(peer) {
            return ClientAddr {
                ip: Some(peer),
                via_trusted_proxy: false,
            };
        }
        // Each hop appended the address it saw: the rightmost is the one our proxy saw.
        // Walk left while the hop is a proxy we trust; a hop that does not parse ends the
        // walk at the last address known (the proxy that wrote it).
        let mut client = peer;
        for hop in forwarded_hops(headers).into_iter().rev() {
            let Some(ip) = hop else { break };
            client = ip.to_canonical();
            if !is_trusted(client) {
                break;
            }
        }
        ClientAddr {
            ip: Some(client),
            via_trusted_proxy: true,
        }
    }
}

/// The hops a proxy chain recorded, leftmost (the farthest) first; `None` for one that is
/// not an address (`unknown`, an obfuscated name, garbage). `X-Forwarded-For` wins over
/// `Forwarded`: nginx and Caddy set the former, and pass the latter through as the client
/// wrote it.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Option<String> {
        let all: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        (!all.is_empty()).then(|| all.join(","))
    };
    if let Some(xff) = values("x-forwarded-for") {
        return xff
            .split(',')
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .map(node)
            .collect();
    }
    let Some(forwarded) = values("forwarded") else {
        return Vec::new();
    };
    // RFC 7239: elements by commas, pairs by semicolons; `for=` names the client of each.
    forwarded
        .split(',')
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| node(value.trim()))
        })
        .collect()
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`, each
/// possibly quoted.
fn node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        return (after.is_empty() || after.starts_with(':'))
            .then(|| addr.parse().ok())
            .flatten();
    }
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

impl<S> FromRequestParts<S> for ClientAddr
where
    S: Send + Sync,
    Arc<Settings>: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(ClientAddr {
                ip: None,
                via_trusted_proxy: false,
            });
        };
        let settings = Arc::<Settings>::from_ref(state);
        Ok(ClientAddr::resolve(
            peer.ip(),
            &parts.headers,
            &settings.trusted_proxies,
        ))
    }
}

impl FromRef<AppState> for Arc<Settings> {
    fn from_ref(state: &AppState) -> Arc<Settings> {
        state.settings.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn client(peer: &str, headers: &[(&str, &str)], trusted: &[&str]) -> ClientAddr {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        ClientAddr::resolve(peer.parse().unwrap(), &map, &nets(trusted))
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let spoofed = [
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.8"),
        ];
        let c = client("203.0.113.5", &spoofed, &[]);
        assert_eq!(c.ip, ip("203.0.113.5"));
        assert!(!c.via_trusted_proxy);
        // Trusting some proxies trusts no one else.
        let c = client("203.0.113.5", &spoofed, &["127.0.0.1/32", "10.0.0.0/8"]);
        assert_eq!(c.ip, ip("203.0.113.5"));
        assert!(!c.via_trusted_proxy);
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let c = client(
            "127.0.0.1",
            &[("x-forwarded-for", "198.51.100.7")],
            &["127.0.0.1/32"],
        );
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert!(c.via_trusted_proxy);
        // A trusted proxy that names no one: the proxy is the client.
        let c = client("127.0.0.1", &[], &["127.0.0.1/32"]);
        assert_eq!(c.ip, ip("127.0.0.1"));
        assert!(c.via_trusted_proxy);
    }

    #[test]
    fn the_rightmost_untrusted_hop_wins_over_what_the_client_wrote() {
        // The client wrote 1.1.1.1 itself; nginx appended the address it saw.
        let xff = [("x-forwarded-for", "1.1.1.1, 198.51.100.7")];
        assert_eq!(
            client("10.0.0.2", &xff, &["10.0.0.0/8"]).ip,
            ip("198.51.100.7")
        );
        // A chain: CDN (10.0.0.9) → load balancer (10.0.0.3) → us, both trusted.
        let chain = [(
            "x-forwarded-for",
            "1.1.1.1, 198.51.100.7, 10.0.0.9, 10.0.0.3",
        )];
        assert_eq!(
            client("10.0.0.2", &chain, &["10.0.0.0/8"]).ip,
            ip("198.51.100.7")
        );
        // Several header lines are one list, in order.
        let lines = [
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7, 10.0.0.9"),
        ];
        assert_eq!(
            client("10.0.0.2", &lines, &["10.0.0.0/8"]).ip,
            ip("198.51.100.7")
        );
        // Every hop trusted: the farthest one.
        let inside = [("x-forwarded-for", "10.0.0.7, 10.0.0.9")];
        assert_eq!(
            client("10.0.0.2", &inside, &["10.0.0.0/8"]).ip,
            ip("10.0.0.7")
        );
    }

    #[test]
    fn ipv6_hops_and_peers() {
        let c = client(
            "::1",
            &[("x-forwarded-for", "2001:db8::7, [2001:db8::8]:4711")],
            &["::1/128"],
        );
        assert_eq!(c.ip, ip("2001:db8::8"));
        let c = client(
            "::1",
            &[("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https")],
            &["::1"],
        );
        assert_eq!(c.ip, ip("2001:db8:cafe::17"));
        // An IPv4 proxy seen through a dual-stack listener; the client it names, mapped.
        let c = client(
            "::ffff:127.0.0.1",
            &[("x-forwarded-for", "::ffff:198.51.100.7")],
            &["127.0.0.1/32"],
        );
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert!(c.via_trusted_proxy);
        let c = client("2001:db8::1", &[("x-forwarded-for", "1.1.1.1")], &["::1"]);
        assert_eq!(c.ip, ip("2001:db8::1"));
    }

    #[test]
    fn forwarded_when_there_is_no_x_forwarded_for() {
        let fwd = [(
            "forwarded",
            "for=1.1.1.1, for=198.51.100.7;by=10.0.0.2;proto=https, For=\"10.0.0.9:80\"",
        )];
        assert_eq!(
            client("10.0.0.2", &fwd, &["10.0.0.0/8"]).ip,
            ip("198.51.100.7")
        );
        // A proxy that sets X-Forwarded-For passes a client's own Forwarded through.
        let both = [
            ("forwarded", "for=1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        assert_eq!(
            client("10.0.0.2", &both, &["10.0.0.0/8"]).ip,
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_ends_the_walk_at_the_last_known_address() {
        let trusted = ["10.0.0.0/8"];
        for value in [
            "nonsense",
            "198.51.100.7, nonsense",
            "999.1.1.1",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "unknown",
        ] {
            let c = client("10.0.0.2", &[("x-forwarded-for", value)], &trusted);
            assert_eq!(c.ip, ip("10.0.0.2"), "{value:?}");
        }
        // Past a trusted hop, the walk stops at that hop.
        let c = client(
            "10.0.0.2",
            &[("x-forwarded-for", "198.51.100.7, _hidden, 10.0.0.9")],
            &trusted,
        );
        assert_eq!(c.ip, ip("10.0.0.9"));
        for value in ["for=unknown", "for=_hidden", "proto=https", "for"] {
            let c = client("10.0.0.2", &[("forwarded", value)], &trusted);
            assert_eq!(c.ip, ip("10.0.0.2"), "{value:?}");
        }
        // Empty entries are no hops.
        let c = client(
            "10.0.0.2",
            &[("x-forwarded-for", ", 198.51.100.7,")],
            &trusted,
        );
        assert_eq!(c.ip, ip("198.51.100.7"));
    }
}
