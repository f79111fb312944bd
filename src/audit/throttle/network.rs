//! The client network that an unauthenticated refusal is counted against.
//!
//! One IPv6 subscriber usually holds a whole /64 (RFC 6177), and can send from any of its
//! 2^64 addresses: keyed per address, a single host could open a flood window per
//! request. Keyed per /64 (and per IPv4 /32, both configurable) it gets one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A client network: an address with its host bits cleared, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Network {
    /// The network's first address.
    base: IpAddr,
    /// Its prefix length.
    prefix: u8,
}

impl Network {
    /// The network of `ip`: its first `v4_prefix` bits for IPv4 (IPv4-mapped IPv6
    /// addresses count as IPv4, as a dual-stack listener reports them), its first
    /// `v6_prefix` bits for IPv6. Prefixes beyond the address length are capped.
    pub fn of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let prefix = v4_prefix.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                Self {
                    base: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                    prefix,
                }
            }
            IpAddr::V6(v6) => {
                let prefix = v6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                Self {
                    base: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    prefix,
                }
            }
        }
    }
}

/// CIDR notation: `203.0.113.7/32`, `2001:db8:1:2::/64`.
impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &str, v4: u8, v6: u8) -> Network {
        Network::of(ip.parse().unwrap(), v4, v6)
    }

    #[test]
    fn addresses_in_one_ipv6_64_share_a_network_and_another_64_does_not() {
        let a = net("2001:db8:1:2::1", 32, 64);
        let b = net("2001:db8:1:2:ffff:ffff:ffff:fffe", 32, 64);
        let other = net("2001:db8:1:3::1", 32, 64);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(other.to_string(), "2001:db8:1:3::/64");
    }

    #[test]
    fn prefixes_are_configurable() {
        // A /56 holds both /64s above; a /128 separates every address.
        assert_eq!(
            net("2001:db8:1:2::1", 32, 56),
            net("2001:db8:1:3::1", 32, 56)
        );
        assert_ne!(
            net("2001:db8:1:2::1", 32, 128),
            net("2001:db8:1:2::2", 32, 128)
        );
        assert_eq!(net("10.1.2.3", 24, 64), net("10.1.2.200", 24, 64));
        assert_eq!(net("10.1.2.3", 24, 64).to_string(), "10.1.2.0/24");
        assert_eq!(net("10.1.2.3", 0, 0).to_string(), "0.0.0.0/0");
        assert_eq!(net("::1", 32, 0).to_string(), "::/0");
    }

    #[test]
    fn ipv4_keeps_each_address_by_default() {
        assert_ne!(net("10.1.2.3", 32, 64), net("10.1.2.4", 32, 64));
        assert_eq!(net("10.1.2.3", 32, 64).to_string(), "10.1.2.3/32");
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert_eq!(net("::ffff:10.1.2.3", 32, 64), net("10.1.2.3", 32, 64));
        // Otherwise every IPv4 client of a dual-stack listener would share ::ffff:0:0/64.
        assert_ne!(
            net("::ffff:10.1.2.3", 32, 64),
            net("::ffff:10.1.2.4", 32, 64)
        );
    }
}
