//! The unit a per-address limit counts: what one client controls. Every per-address limit
//! (logins, offline messages, event sockets) keys by `network`, so that a client with an
//! IPv6 /64 (one site's network, handed out whole) cannot step around a limit by rotating
//! through its addresses.

use std::net::{IpAddr, Ipv6Addr};

/// An IPv4 address as it is, an IPv6 address as its /64, and an IPv4-mapped IPv6 address
/// as the IPv4 address it maps.
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_ipv4_as_it_is() {
        assert_eq!(network(ip("2001:db8:1:2::7")), ip("2001:db8:1:2::"));
        assert_eq!(network(ip("2001:db8:1:2:ffff::1")), ip("2001:db8:1:2::"));
        assert_ne!(network(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(network(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(network(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
    }
}
