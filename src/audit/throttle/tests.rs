use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A budget that never binds.
fn unlimited() -> Budget {
    Budget::new(u32::MAX, MINUTE)
}

#[test]
fn a_flood_is_capped_and_summarized_with_its_codes_when_the_window_closes() {
    let throttle = Throttle::new(10, MINUTE, 100);
    let budget = unlimited();
    let a = ip("10.0.0.1");
    let t0 = Instant::now();
    let decisions: Vec<_> = (0..1000)
        .map(|i| {
            let code = if i % 2 == 0 {
                "forbidden"
            } else {
                "rate_limited"
            };
            throttle.decide(a, a, code, &budget, t0).0
        })
        .collect();
    assert_eq!(
        decisions.iter().filter(|d| **d == Decision::Write).count(),
        10
    );
    assert_eq!(decisions[10], Decision::Suppress(Why::KeyLimit));
    // Another key has its own window.
    let b = ip("10.0.0.2");
    assert_eq!(
        throttle.decide(b, b, "forbidden", &budget, t0).0,
        Decision::Write
    );
    assert!(throttle.sweep(t0 + Duration::from_secs(30)).is_empty());
    let closed = throttle.sweep(t0 + MINUTE);
    assert_eq!(
        closed.len(),
        1,
        "only the window with suppressed records: {closed:?}"
    );
    assert_eq!(closed[0].key, Some(a));
    assert_eq!(closed[0].suppressed, 990);
    assert_eq!(
        closed[0].codes,
        vec![("forbidden", 495), ("rate_limited", 495)]
    );
    assert_eq!(closed[0].addr, Addr::One(a));
    // The next window starts afresh.
    assert_eq!(
        throttle.decide(a, a, "forbidden", &budget, t0 + MINUTE).0,
        Decision::Write
    );
}

#[test]
fn a_new_record_closes_its_own_expired_window() {
    let throttle = Throttle::new(1, MINUTE, 100);
    let budget = unlimited();
    let a = ip("10.0.0.1");
    let t0 = Instant::now();
    throttle.decide(a, a, "unauthenticated", &budget, t0);
    throttle.decide(a, a, "unauthenticated", &budget, t0);
    let (decision, closed) = throttle.decide(a, a, "unauthenticated", &budget, t0 + MINUTE);
    assert_eq!(decision, Decision::Write);
    let closed = closed.expect("the expired window is summarized");
    assert_eq!((closed.key, closed.suppressed), (Some(a), 1));
}

#[test]
fn keys_beyond_the_cap_share_the_overflow_window() {
    let throttle = Throttle::new(1, MINUTE, 3);
    let budget = unlimited();
    let t0 = Instant::now();
    for n in 0..100u8 {
        let addr = IpAddr::from([10, 0, 0, n]);
        throttle.decide(addr, addr, "unauthenticated", &budget, t0);
    }
    assert_eq!(throttle.tracked(), 4, "3 keys and the overflow window");
    let mut closed = throttle.close_all();
    closed.sort_by_key(|c| c.key.is_some());
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].key, None);
    assert_eq!(
        closed[0].suppressed, 96,
        "97 keys in the overflow window, 1 written"
    );
    assert_eq!(closed[0].addr, Addr::Several);
}

#[test]
fn the_global_budget_caps_full_records_across_keys_and_throttles() {
    let networks = Throttle::new(10, MINUTE, 10_000);
    let callers = Throttle::new(10, MINUTE, 10_000);
    let budget = Budget::new(50, MINUTE);
    let t0 = Instant::now();
    let mut written = 0;
    for n in 0..1000u32 {
        let addr = IpAddr::from(n.to_be_bytes());
        if networks
            .decide(addr, addr, "unauthenticated", &budget, t0)
            .0
            == Decision::Write
        {
            written += 1;
        }
        let caller = (String::from("iss"), format!("sub{n}"));
        if callers.decide(caller, addr, "forbidden", &budget, t0).0 == Decision::Write {
            written += 1;
        }
    }
    assert_eq!(written, 50);
    // Suppressed for want of budget, each key still gets its summary.
    let a = IpAddr::from(999u32.to_be_bytes());
    assert_eq!(
        networks.decide(a, a, "unauthenticated", &budget, t0).0,
        Decision::Suppress(Why::Budget)
    );
    assert_eq!(
        networks.close_all().len() + callers.close_all().len(),
        2000 - 50
    );
    // The budget refills with the next window.
    let b = ip("192.0.2.1");
    assert_eq!(
        networks
            .decide(b, b, "unauthenticated", &budget, t0 + MINUTE)
            .0,
        Decision::Write
    );
}

#[test]
fn a_caller_from_several_addresses_is_summarized_without_one() {
    let throttle = Throttle::new(0, MINUTE, 10);
    let budget = unlimited();
    let t0 = Instant::now();
    let caller = ("iss".to_owned(), "mallory".to_owned());
    throttle.decide(caller.clone(), ip("10.0.0.1"), "forbidden", &budget, t0);
    throttle.decide(caller.clone(), ip("10.0.0.2"), "forbidden", &budget, t0);
    let closed = throttle.close_all();
    assert_eq!(closed[0].addr, Addr::Several);
    assert_eq!(closed[0].key, Some(caller));
}
