use http::{HeaderMap, HeaderValue};

use super::*;

/// Header lines, as (name, value).
type Lines<'a> = &'a [(&'static str, &'a str)];

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn trusting(networks: &[&str]) -> TrustedProxies {
    TrustedProxies::new(networks.iter().map(|n| Cidr::parse(n).unwrap()).collect())
}

fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

/// The address found for a request from `peer` with `lines`, trusting `networks`.
fn client(networks: &[&str], peer: &str, lines: &[(&'static str, &str)]) -> Option<IpAddr> {
    trusting(networks).client_address(ip(peer), &headers(lines))
}

#[test]
fn cidrs_parse_with_and_without_a_prefix() {
    let cases = [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("2001:db8:ffff::/32", "2001:db8::/32"),
        ("::/0", "::/0"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ];
    for (text, shown) in cases {
        assert_eq!(Cidr::parse(text).unwrap().to_string(), shown, "{text}");
    }
    for bad in [
        "",
        "10.0.0.0/",
        "10.0.0.0/33",
        "2001:db8::/129",
        "10.0.0/8",
        "10.0.0.0/+8",
        "10.0.0.0/8/8",
        "host.example",
        " 10.0.0.1",
        "10.0.0.0/-1",
        "[::1]",
    ] {
        assert_eq!(Cidr::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn cidrs_contain_their_addresses_and_mapped_ipv4_peers() {
    let net = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(net.contains(ip("10.255.0.1")));
    assert!(!net.contains(ip("11.0.0.1")));
    assert!(net.contains(ip("::ffff:10.1.2.3")), "dual-stack peers");
    assert!(!net.contains(ip("::a00:1")), "not the same family");
    let v6 = Cidr::parse("2001:db8::/32").unwrap();
    assert!(v6.contains(ip("2001:db8:1::9")));
    assert!(!v6.contains(ip("2001:db9::1")));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.1"))
    );
}

#[test]
fn an_untrusted_peer_is_never_believed() {
    let spoof = [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
    ];
    assert_eq!(client(&[], "127.0.0.1", &spoof), None);
    assert_eq!(client(&["10.0.0.0/8"], "127.0.0.1", &spoof), None);
}

#[test]
fn x_forwarded_for_is_walked_from_the_right_past_trusted_proxies() {
    let trusted = ["127.0.0.1", "10.0.0.0/8"];
    let cases: [(Lines, Option<&str>); 9] = [
        (&[("x-forwarded-for", "203.0.113.9")], Some("203.0.113.9")),
        // The left-most entry is the client's own claim: never taken past an untrusted hop.
        (
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.9")],
            Some("203.0.113.9"),
        ),
        (
            &[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1")],
            Some("203.0.113.9"),
        ),
        // Several header lines are one list, in order.
        (
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "10.1.1.1"),
            ],
            Some("203.0.113.9"),
        ),
        (
            &[("x-forwarded-for", "2001:db8::7, 10.0.0.2")],
            Some("2001:db8::7"),
        ),
        (
            &[("x-forwarded-for", "[2001:db8::7]:443")],
            Some("2001:db8::7"),
        ),
        (
            &[("x-forwarded-for", "198.51.100.4:5555")],
            Some("198.51.100.4"),
        ),
        // Nothing but proxies: no end user to name.
        (&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")], None),
        (&[], None),
    ];
    for (lines, expected) in cases {
        assert_eq!(
            client(&trusted, "127.0.0.1", lines),
            expected.map(ip),
            "{lines:?}"
        );
    }
}

#[test]
fn an_element_that_is_not_an_address_ends_the_walk_with_nothing() {
    let trusted = ["127.0.0.1", "10.0.0.0/8"];
    for value in [
        "203.0.113.9, garbage",
        "203.0.113.9, unknown",
        "203.0.113.9,, 10.0.0.2",
        "203.0.113.9, 10.0.0.2 extra",
        "203.0.113.9, 10.0.0.2:",
        "203.0.113.9, 10.0.0.2:99999999",
        "_hidden",
        "",
    ] {
        assert_eq!(
            client(&trusted, "127.0.0.1", &[("x-forwarded-for", value)]),
            None,
            "{value:?}"
        );
    }
    // But a client's garbage left of the first untrusted address is never reached.
    assert_eq!(
        client(
            &trusted,
            "127.0.0.1",
            &[("x-forwarded-for", "garbage, 203.0.113.9")]
        ),
        Some(ip("203.0.113.9"))
    );
}

#[test]
fn forwarded_is_read_as_rfc_7239_writes_it() {
    let trusted = ["127.0.0.1", "10.0.0.0/8"];
    let cases = [
        (
            "for=192.0.2.60;proto=http;by=203.0.113.43",
            Some("192.0.2.60"),
        ),
        ("For=\"192.0.2.60:4711\"", Some("192.0.2.60")),
        (
            "for=\"[2001:db8:cafe::17]:4711\"",
            Some("2001:db8:cafe::17"),
        ),
        ("for=\"[2001:db8:cafe::17]\"", Some("2001:db8:cafe::17")),
        ("for=192.0.2.43, for=198.51.100.17", Some("198.51.100.17")),
        (
            "for=192.0.2.43, for=\"[2001:db8::1]\";by=x, for=10.0.0.9",
            Some("2001:db8::1"),
        ),
        (
            "proto=https;for=192.0.2.43 ; host=example.com",
            Some("192.0.2.43"),
        ),
        // A quoted value may hold a comma; it does not split the element.
        (
            "for=192.0.2.43;host=\"a,b\", for=10.0.0.9",
            Some("192.0.2.43"),
        ),
        // Obfuscated or unknown nodes, a missing `for`, two `for`s: no address.
        ("for=unknown", None),
        ("for=_hidden, for=10.0.0.9", None),
        ("proto=https", None),
        ("for=192.0.2.43;for=192.0.2.44", None),
        ("for=\"[2001:db8::1]:x\"", None),
        ("for=\"192.0.2.43", None),
        ("for=192.0.2.43,", None),
    ];
    for (value, expected) in cases {
        assert_eq!(
            client(&trusted, "127.0.0.1", &[("forwarded", value)]),
            expected.map(ip),
            "{value:?}"
        );
    }
}

#[test]
fn forwarded_wins_over_x_forwarded_for_and_spans_header_lines() {
    let trusted = ["127.0.0.1", "10.0.0.0/8"];
    let both = [
        ("x-forwarded-for", "198.51.100.1"),
        ("forwarded", "for=192.0.2.60"),
    ];
    assert_eq!(client(&trusted, "127.0.0.1", &both), Some(ip("192.0.2.60")));
    let lines = [
        ("forwarded", "for=192.0.2.60"),
        ("forwarded", "for=10.0.0.9"),
    ];
    assert_eq!(
        client(&trusted, "127.0.0.1", &lines),
        Some(ip("192.0.2.60"))
    );
}

#[test]
fn a_mapped_ipv4_peer_and_hop_are_matched_as_ipv4() {
    let trusted = ["127.0.0.1", "10.0.0.0/8"];
    let lines = [("x-forwarded-for", "::ffff:203.0.113.9, ::ffff:10.0.0.2")];
    assert_eq!(
        client(&trusted, "::ffff:127.0.0.1", &lines),
        Some(ip("203.0.113.9"))
    );
}

#[test]
fn a_header_that_is_not_text_gives_no_address() {
    let mut map = HeaderMap::new();
    map.append(
        "x-forwarded-for",
        HeaderValue::from_bytes(b"203.0.113.9\xff").unwrap(),
    );
    assert_eq!(
        trusting(&["127.0.0.1"]).client_address(ip("127.0.0.1"), &map),
        None
    );
}
