//! The end user's address behind a reverse proxy (`server.trusted_proxies`), for the audit
//! trail's `forwardedFor`: pure functions over the peer address and the request's headers.
//!
//! A `Forwarded` (RFC 7239) or `X-Forwarded-For` header is only a claim by whoever sent it,
//! so it is read only when the TCP peer is a proxy the operator trusts, and only as far as
//! trusted proxies vouch for it: the list is walked from the right (the hop nearest to us),
//! past addresses that are themselves trusted proxies, and the first other address is the
//! client. Anything left of it was written by that client and proves nothing. An element
//! that is not an IP address (`unknown`, an obfuscated `_name`, garbage) ends the walk with
//! no address: past it, nobody trusted vouches for what is written.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderMap;

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a /32 or
/// /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address, its host bits cleared.
    network: IpAddr,
    /// The prefix length.
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDRESS[/PREFIX]`; `None` when it is not one (host bits set are accepted
    /// and cleared, as `ip route` does: `10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().ok()?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would also take `+8`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|&p| p <= max)?
            }
            Some(_) => return None,
        };
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps.
        let (address, prefix) = match address {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (address.to_canonical(), prefix - 96)
            }
            _ => (address, prefix),
        };
        Some(Self {
            network: mask(address, prefix),
            prefix,
        })
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4
    /// address, as a dual-stack listener reports IPv4 peers).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `address` with all but its first `prefix` bits cleared.
fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = bits.checked_shr(32 - u32::from(prefix)).unwrap_or(0);
            let bits = kept.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = bits.checked_shr(128 - u32::from(prefix)).unwrap_or(0);
            let bits = kept.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// The proxies whose forwarding headers are believed (`server.trusted_proxies`); empty by
/// default: then no header is ever read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Their networks.
    networks: Vec<Cidr>,
}

impl TrustedProxies {
    /// Trusts `networks`.
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self { networks }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// The trusted networks.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }

    /// The end user's address for a request from `peer`: `None` when the peer is not a
    /// trusted proxy, when no header names one, or when the walk meets an element that is
    /// not an IP address. `Forwarded` wins over `X-Forwarded-For` when both are present
    /// (the standard one; a proxy that writes it means it).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !self.contains(peer) {
            return None;
        }
        let hops: Vec<Option<IpAddr>> = match joined(headers, "forwarded") {
            Some(value) => {
                let value = value.ok()?;
                split_outside_quotes(&value, ',')
                    .map(forwarded_for)
                    .collect()
            }
            None => {
                let value = joined(headers, "x-forwarded-for")?.ok()?;
                value
                    .split(',')
                    .map(|element| node(element.trim()))
                    .collect()
            }
        };
        for hop in hops.into_iter().rev() {
            let ip = hop?.to_canonical();
            if !self.contains(ip) {
                return Some(ip);
            }
        }
        None
    }
}

/// Every line of header `name`, joined with commas in order (RFC 9110 §5.3): `None` when
/// there is none, `Some(Err)` when one is not visible ASCII text.
fn joined(headers: &HeaderMap, name: &str) -> Option<Result<String, ()>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut all = String::new();
    for line in lines {
        let Ok(text) = line.to_str() else {
            return Some(Err(()));
        };
        if !all.is_empty() {
            all.push(',');
        }
        all.push_str(text);
    }
    Some(Ok(all))
}

/// `text` split at `separator`s that are not inside a quoted string (RFC 7239 values may
/// be quoted, and a quoted value may hold `,` or `;`).
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

/// The address of one `Forwarded` element's `for=` parameter (RFC 7239 §4, §6): `None`
/// when it has none, several, or one that is not an IP address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_outside_quotes(element, ';') {
        let (name, value) = pair.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(quoted) => quoted.strip_suffix('"')?,
                None => value,
            };
            found = Some(node(value)?);
        }
    }
    found
}

/// A node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711` or a bare
/// IPv6 address (as `X-Forwarded-For` writes it); the port, if any, is dropped. `unknown`
/// and obfuscated identifiers (`_hidden`) are not addresses.
fn node(text: &str) -> Option<IpAddr> {
    if let Some(bracketed) = text.strip_prefix('[') {
        let (v6, rest) = bracketed.split_once(']')?;
        if !(rest.is_empty() || port(rest.strip_prefix(':')?)) {
            return None;
        }
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let (v4, rest) = text.split_once(':')?;
    port(rest).then_some(())?;
    v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port as RFC 7239 §6 allows it: digits, or an obfuscated `_identifier`.
fn port(text: &str) -> bool {
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = text.len() > 1
        && text.starts_with('_')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    digits || obfuscated
}

#[cfg(test)]
mod tests;
