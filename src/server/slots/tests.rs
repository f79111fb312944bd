use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn table(max_total: usize, max_per_client: usize) -> (Arc<Slots>, Arc<ConnectionStats>) {
    let stats = Arc::new(ConnectionStats::default());
    (
        Slots::new(max_total, max_per_client, Arc::clone(&stats)),
        stats,
    )
}

/// Whether `slot` has been told to close.
fn was_shed(slot: &mut Slot) -> bool {
    slot.shed.try_recv().is_ok()
}

#[test]
fn at_the_listener_cap_the_longest_idle_connection_makes_room() {
    let (slots, stats) = table(2, 2);
    let mut first = slots.admit(ip("10.0.0.1")).unwrap();
    let mut second = slots.admit(ip("10.0.0.2")).unwrap();
    let _third = slots.admit(ip("10.0.0.3")).expect("admitted by shedding");
    assert!(was_shed(&mut first));
    assert!(!was_shed(&mut second));
    assert_eq!(stats.shed(Shed::Evicted(Cap::Listener)), 1);
    assert_eq!(stats.open(), 2);
    // A shed connection's requests do not start: its slot is someone else's now.
    assert!(first.requests().begin().is_none());
}

#[test]
fn a_connection_with_a_request_in_flight_is_never_shed() {
    let (slots, stats) = table(2, 2);
    let mut busy = slots.admit(ip("10.0.0.1")).unwrap();
    let request = busy.requests().begin().unwrap();
    let mut idle = slots.admit(ip("10.0.0.2")).unwrap();
    // The busy connection is the older one; the idle one goes.
    let newcomer = slots.admit(ip("10.0.0.3")).unwrap();
    assert!(was_shed(&mut idle));
    assert!(!was_shed(&mut busy));
    // Now both slots are busy or young-and-idle; make both busy: the next is refused.
    let _also_busy = newcomer.requests().begin().unwrap();
    assert!(slots.admit(ip("10.0.0.4")).is_none());
    assert_eq!(stats.shed(Shed::Refused(Cap::Listener)), 1);
    assert!(!was_shed(&mut busy));
    // Once its request ends, the connection is idle and can give way again.
    drop(request);
    assert!(slots.admit(ip("10.0.0.5")).is_some());
    assert!(was_shed(&mut busy));
}

#[test]
fn a_connection_idle_again_after_a_request_counts_as_newly_idle() {
    let (slots, _) = table(2, 2);
    let mut first = slots.admit(ip("10.0.0.1")).unwrap();
    let mut second = slots.admit(ip("10.0.0.2")).unwrap();
    // The first connection serves a request after the second arrived: it is now the more
    // recently idle of the two, so the second goes first.
    drop(first.requests().begin().unwrap());
    let _third = slots.admit(ip("10.0.0.3")).unwrap();
    assert!(was_shed(&mut second));
    assert!(!was_shed(&mut first));
}

#[test]
fn the_per_client_cap_sheds_that_clients_own_idle_connections() {
    let (slots, stats) = table(10, 2);
    let mut other = slots.admit(ip("10.0.0.9")).unwrap();
    let mut a = slots.admit(ip("10.0.0.1")).unwrap();
    let mut b = slots.admit(ip("10.0.0.1")).unwrap();
    let _c = slots.admit(ip("10.0.0.1")).unwrap();
    assert!(
        was_shed(&mut a),
        "the client's longest idle connection goes"
    );
    assert!(!was_shed(&mut b));
    assert!(
        !was_shed(&mut other),
        "another client's older connection stays"
    );
    assert_eq!(stats.shed(Shed::Evicted(Cap::Client)), 1);
    assert_eq!(stats.shed(Shed::Evicted(Cap::Listener)), 0);
}

#[test]
fn a_client_whose_slots_are_all_busy_is_refused_while_others_get_in() {
    let (slots, stats) = table(10, 2);
    let a = slots.admit(ip("10.0.0.1")).unwrap();
    let b = slots.admit(ip("10.0.0.1")).unwrap();
    let _busy = (a.requests().begin().unwrap(), b.requests().begin().unwrap());
    assert!(slots.admit(ip("10.0.0.1")).is_none());
    assert_eq!(stats.shed(Shed::Refused(Cap::Client)), 1);
    assert!(slots.admit(ip("10.0.0.2")).is_some());
}

#[test]
fn ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4() {
    let (slots, _) = table(10, 1);
    let mut first = slots.admit(ip("2001:db8:1:2::1")).unwrap();
    let _same_64 = slots.admit(ip("2001:db8:1:2:ffff::7")).unwrap();
    assert!(was_shed(&mut first), "one /64 is one client");
    let mut other_64 = slots.admit(ip("2001:db8:1:3::1")).unwrap();
    assert!(!was_shed(&mut other_64));
    let mut v4 = slots.admit(ip("192.0.2.1")).unwrap();
    let _mapped = slots.admit(ip("::ffff:192.0.2.1")).unwrap();
    assert!(
        was_shed(&mut v4),
        "an IPv4-mapped address is its IPv4 address"
    );
}

#[test]
fn slots_come_back_when_connections_end() {
    let (slots, stats) = table(2, 2);
    let a = slots.admit(ip("10.0.0.1")).unwrap();
    let b = slots.admit(ip("10.0.0.1")).unwrap();
    let _busy = (a.requests().begin().unwrap(), b.requests().begin().unwrap());
    assert!(slots.admit(ip("10.0.0.2")).is_none());
    drop(_busy);
    drop(a);
    assert_eq!(stats.open(), 1);
    let _again = slots.admit(ip("10.0.0.2")).expect("a slot is free");
    assert_eq!(stats.open(), 2);
    // A client's entry goes with its last connection.
    drop(b);
    assert!(!slots.lock().clients.contains_key(&ip("10.0.0.1")));
}
