//! Anonymous callers are counted by IP: `CF-Connecting-IP` only, IPv6 grouped by network prefix.
//!
//! Only `CF-Connecting-IP` is trusted: Cloudflare sets it and callers cannot forge it, whereas
//! `X-Forwarded-For` is whatever the caller wrote. Without it (or with something that is not an
//! address) the caller lands in the shared [`UNKNOWN`] bucket, so it still counts against a limit.
//! One IPv6 host usually owns a whole /64, so IPv6 callers are grouped by prefix (64 by default);
//! otherwise each of its 2^64 addresses would get its own anonymous quota.

use std::net::{IpAddr, Ipv6Addr};

/// The bucket of anonymous callers without a usable `CF-Connecting-IP`.
pub const UNKNOWN: &str = "unknown";

/// The header Cloudflare sets to the connecting client's address.
pub const HEADER: &str = "CF-Connecting-IP";

/// The normalized group of a `CF-Connecting-IP` value: an IPv4 address (`203.0.113.7`, also for
/// IPv4-mapped IPv6), an IPv6 network (`2001:db8:1:2::/64`) or [`UNKNOWN`].
pub fn ip_group(header: Option<&str>, ipv6_prefix: u8) -> String {
    match header.map(str::trim).and_then(|h| h.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6_network(v6, ipv6_prefix),
        },
        None => UNKNOWN.to_owned(),
    }
}

/// Normalizes a subject named by an operator (`1.2.3.4`, `2001:db8::1`, `unknown`) the way
/// [`ip_group`] would for a request from it; `None` if it is not an address.
pub fn parse_group(text: &str, ipv6_prefix: u8) -> Option<String> {
    let text = text.trim();
    if text == UNKNOWN {
        return Some(UNKNOWN.to_owned());
    }
    // Accept the group's own written form (`2001:db8::/64`) as well as a member address.
    let address = match text.split_once('/') {
        Some((addr, prefix)) if prefix.parse::<u8>().ok() == Some(ipv6_prefix) => addr,
        Some(_) => return None,
        None => text,
    };
    address.parse::<IpAddr>().ok()?;
    Some(ip_group(Some(address), ipv6_prefix))
}

/// `addr` with everything after the first `prefix` bits zeroed, written `network/prefix`.
fn v6_network(addr: Ipv6Addr, prefix: u8) -> String {
    let prefix = prefix.min(128);
    let mask = match u32::from(prefix) {
        0 => 0,
        p => u128::MAX << (128 - p),
    };
    let network = Ipv6Addr::from(u128::from(addr) & mask);
    format!("{network}/{prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_kept_as_is() {
        assert_eq!(ip_group(Some("203.0.113.7"), 64), "203.0.113.7");
        assert_eq!(ip_group(Some(" 203.0.113.7 "), 64), "203.0.113.7");
    }

    #[test]
    fn ipv6_callers_in_one_64_share_a_subject() {
        let a = ip_group(Some("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 64);
        let b = ip_group(Some("2001:db8:1:2::1"), 64);
        let other = ip_group(Some("2001:db8:1:3::1"), 64);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, b);
        assert_ne!(a, other);
    }

    #[test]
    fn the_ipv6_prefix_is_configurable() {
        assert_eq!(ip_group(Some("2001:db8:1:2::1"), 48), "2001:db8:1::/48");
        assert_eq!(ip_group(Some("2001:db8:1:2::1"), 128), "2001:db8:1:2::1/128");
        assert_eq!(ip_group(Some("2001:db8:1:2::1"), 0), "::/0");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        assert_eq!(ip_group(Some("::ffff:198.51.100.9"), 64), "198.51.100.9");
    }

    #[test]
    fn absent_or_invalid_addresses_share_the_unknown_bucket() {
        for h in [None, Some(""), Some("not an ip"), Some("1.2.3.4, 5.6.7.8"), Some("1.2.3.4:80"), Some("fe80::1%eth0")]
        {
            assert_eq!(ip_group(h, 64), UNKNOWN, "{h:?}");
        }
    }

    #[test]
    fn operators_name_groups_by_address_or_network() {
        assert_eq!(parse_group("2001:db8:1:2::9", 64).as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(parse_group("2001:db8:1:2::/64", 64).as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(parse_group("2001:db8:1:2::/48", 64), None);
        assert_eq!(parse_group("10.0.0.1", 64).as_deref(), Some("10.0.0.1"));
        assert_eq!(parse_group("unknown", 64).as_deref(), Some(UNKNOWN));
        assert_eq!(parse_group("example.com", 64), None);
    }
}
