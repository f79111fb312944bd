//! Connection slots over plain sockets: at a cap, connections without a request in flight
//! (silent, half-sent heads) give way to new clients; a connection with a request in flight
//! is never shed (HTTP/1.1, or an HTTP/2 stream); the per-IP cap keeps room for other
//! addresses; the admin listener has its own slots and head timeout; and the metrics count
//! it all.
//!
//! Every caller in a sidecar's pod is 127.0.0.1, so most tests use that one address; a
//! second address on the loopback network (127.0.0.2) stands for another client.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Bound on anything a test waits for: far above what it takes, far below the 60 s head
/// timeout the tests set so that only shedding can free a slot.
const PATIENCE: Duration = Duration::from_secs(15);
const HOME: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Slots that only shedding can free: no head, idle or request timeout within the test's
/// patience. Requests are kept in flight by holding them at the simulated vendor
/// ([`sipgw_dev::sim::Faults::hold_updates`]) until the test releases them, never by a delay
/// that a slow machine could outlast; the longest vendor and request timeouts keep the
/// gateway from giving up on a held request first.
fn slots(max: usize, per_ip: usize) -> impl FnOnce(&mut sipgw::config::FileConfig) {
    move |c| {
        c.server.max_connections = max;
        c.server.max_connections_per_ip = per_ip;
        c.server.header_read_timeout_ms = 60_000;
        c.server.admin_header_read_timeout_ms = 60_000;
        c.server.idle_timeout_secs = 600;
        c.server.request_timeout_ms = 120_000;
        c.vendor.timeout_ms = 120_000;
    }
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closes `stream` (end of stream or reset) within [`PATIENCE`], and
/// what it sent before.
async fn closed_by_server(stream: &mut TcpStream) -> (bool, String) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf))
        .await
        .is_ok();
    (closed, String::from_utf8_lossy(&buf).into_owned())
}

/// A connection that has sent half a request head and nothing since: a slowloris.
async fn half_head(from: IpAddr, to: SocketAddr) -> TcpStream {
    let mut stream = connect_from(from, to).await;
    stream
        .write_all(b"POST /v1/agents/a1001/sip-phone-password HTTP/1.1\r\nhost: x\r\nx-a: ")
        .await
        .unwrap();
    stream
}

/// A password change for `agent` on a new connection from `from`, written at once; the
/// answer's raw text once the server closes (`connection: close`), or `None` when the
/// connection was closed without one.
async fn change_from(h: &Harness, from: IpAddr, agent: &str) -> Option<String> {
    let mut stream = connect_from(from, h.addr).await;
    let body = serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
    let request = format!(
        "POST /v1/agents/{agent}/sip-phone-password HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        h.admin_token,
        body.len()
    );
    // The server may already have closed a refused connection: then the write fails.
    if stream.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    let (closed, text) = closed_by_server(&mut stream).await;
    assert!(closed, "no answer and no close within {PATIENCE:?}");
    (!text.is_empty()).then_some(text)
}

/// Waits until the simulator has seen `n` changes: the requests are then in flight.
async fn vendor_has_seen(h: &Harness, n: u64) {
    tokio::time::timeout(PATIENCE, async {
        while h.sim.update_count() < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the vendor never saw {n} changes"));
}

/// `/metrics` as `series -> value`.
async fn metrics(h: &Harness) -> std::collections::HashMap<String, f64> {
    let mut stream = connect_from(HOME, h.admin_addr).await;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (_, text) = closed_by_server(&mut stream).await;
    let (_, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn shed(listener: &str, cap: &str, action: &str) -> String {
    format!(
        "sipgw_connections_shed_total{{listener=\"{listener}\",cap=\"{cap}\",action=\"{action}\"}}"
    )
}

/// Waits until `n` connections hold a slot on the API listener (a closed connection gives
/// its slot back just after the client sees the close).
async fn wait_open(h: &Harness, n: usize) {
    let series = "sipgw_connections_open{listener=\"api\"}";
    tokio::time::timeout(PATIENCE, async {
        while metrics(h).await[series] != n as f64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never {n} open connections"));
}

#[tokio::test]
async fn idle_and_half_sent_connections_give_way_to_a_new_client() {
    let h = Harness::start_with(sim_config(), slots(4, 4)).await;
    let before = metrics(&h).await;
    for listener in ["api", "admin"] {
        // The scrape itself holds an admin slot.
        let open = format!("sipgw_connections_open{{listener=\"{listener}\"}}");
        let scraping = if listener == "admin" { 1.0 } else { 0.0 };
        assert_eq!(before[&open], scraping);
        for cap in ["listener", "client"] {
            for action in ["evicted", "refused"] {
                assert_eq!(before[&shed(listener, cap, action)], 0.0, "present at 0");
            }
        }
    }
    // Every slot held from the same address: a slowloris, two silent connections, another
    // slowloris, in that order.
    let mut oldest = half_head(HOME, h.addr).await;
    let mut silent = connect_from(HOME, h.addr).await;
    let _more = [
        connect_from(HOME, h.addr).await,
        half_head(HOME, h.addr).await,
    ];
    wait_open(&h, 4).await;
    // A client from that same address still gets its change through...
    let answer = change_from(&h, HOME, AGENT).await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // ...in the slot of the connection idle the longest, closed without an answer.
    let (closed, text) = closed_by_server(&mut oldest).await;
    assert!(closed && text.is_empty(), "{text}");
    // Full again: the next newcomer takes the next oldest's slot.
    wait_open(&h, 3).await;
    let _refill = half_head(HOME, h.addr).await;
    let answer = change_from(&h, HOME, "agent1").await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed_by_server(&mut silent).await.0);
    let after = metrics(&h).await;
    assert_eq!(after[&shed("api", "listener", "evicted")], 2.0, "{after:?}");
    assert_eq!(after[&shed("api", "listener", "refused")], 0.0);
}

#[tokio::test]
async fn a_connection_with_a_request_in_flight_is_never_shed() {
    let h = Harness::start_with(sim_config(), slots(2, 2)).await;
    // Warm the token, then hold the vendor: changes stay in flight until released.
    assert!(change_from(&h, HOME, "agent9").await.is_some());
    wait_open(&h, 0).await;
    h.sim.faults().hold_updates();
    let h = std::sync::Arc::new(h);
    let first = tokio::spawn({
        let h = std::sync::Arc::clone(&h);
        async move { change_from(&h, HOME, "agent1").await }
    });
    vendor_has_seen(&h, 2).await;
    // The other slot: a silent connection, newer than the busy one.
    let mut silent = connect_from(HOME, h.addr).await;
    wait_open(&h, 2).await;
    // A newcomer sheds the silent one, not the older busy one, and is served too.
    let second = tokio::spawn({
        let h = std::sync::Arc::clone(&h);
        async move { change_from(&h, HOME, "agent2").await }
    });
    assert!(closed_by_server(&mut silent).await.0);
    vendor_has_seen(&h, 3).await;
    // Both slots now busy: a third newcomer is refused, closed without an answer.
    assert_eq!(change_from(&h, HOME, "agent3").await, None);
    h.sim.faults().release_updates();
    for task in [first, second] {
        let answer = task.await.unwrap().expect("answered");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let m = metrics(&h).await;
    assert_eq!(m[&shed("api", "listener", "evicted")], 1.0, "{m:?}");
    assert_eq!(m[&shed("api", "listener", "refused")], 1.0, "{m:?}");
    // The refused change never reached the vendor.
    assert_eq!(h.sim.update_count(), 3);
}

#[tokio::test]
async fn the_per_ip_cap_keeps_room_for_other_addresses() {
    let h = Harness::start_with(sim_config(), slots(10, 2)).await;
    assert!(change_from(&h, HOME, "agent9").await.is_some());
    wait_open(&h, 0).await;
    h.sim.faults().hold_updates();
    let h = std::sync::Arc::new(h);
    // One address holds its two slots with requests in flight.
    let busy: Vec<_> = ["agent1", "agent2"]
        .into_iter()
        .map(|agent| {
            let h = std::sync::Arc::clone(&h);
            tokio::spawn(async move { change_from(&h, HOME, agent).await })
        })
        .collect();
    vendor_has_seen(&h, 3).await;
    // A third connection from it is refused, with eight slots still free...
    assert_eq!(change_from(&h, HOME, "agent3").await, None);
    // ...which another address gets: its change reaches the vendor while the first
    // address's two are still in flight.
    let other = tokio::spawn({
        let h = std::sync::Arc::clone(&h);
        async move { change_from(&h, OTHER, "agent4").await }
    });
    vendor_has_seen(&h, 4).await;
    h.sim.faults().release_updates();
    let answer = other.await.unwrap().expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for task in busy {
        let answer = task.await.unwrap().expect("answered");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let m = metrics(&h).await;
    assert_eq!(m[&shed("api", "client", "refused")], 1.0, "{m:?}");
    assert_eq!(m[&shed("api", "listener", "refused")], 0.0, "{m:?}");
}

#[tokio::test]
async fn healthz_answers_with_the_admin_listener_full_of_slowloris() {
    let h = Harness::start_with(sim_config(), |c| {
        slots(1024, 256)(c);
        c.server.admin_max_connections = 8;
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(half_head(HOME, h.admin_addr).await);
    }
    for _ in 0..3 {
        let mut probe = connect_from(HOME, h.admin_addr).await;
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let (closed, text) = closed_by_server(&mut probe).await;
        assert!(closed && text.starts_with("HTTP/1.1 200"), "{text}");
    }
    let m = metrics(&h).await;
    assert!(m[&shed("admin", "listener", "evicted")] >= 1.0, "{m:?}");
    assert_eq!(m[&shed("api", "listener", "evicted")], 0.0, "{m:?}");
}

#[tokio::test]
async fn a_half_sent_head_on_the_admin_port_is_cut_after_the_admin_head_timeout() {
    // The API listener waits a minute for a head; the admin listener its own 200 ms.
    let h = Harness::start_with(sim_config(), |c| {
        slots(1024, 256)(c);
        c.server.admin_header_read_timeout_ms = 200;
    })
    .await;
    let mut slow = half_head(HOME, h.admin_addr).await;
    let (closed, _) = closed_by_server(&mut slow).await;
    assert!(
        closed,
        "the admin listener kept a half-sent head past its timeout"
    );
}

#[tokio::test]
async fn an_h2_connection_is_busy_while_a_stream_is_in_flight_and_idle_after() {
    let h = Harness::start_with(sim_config(), slots(1, 1)).await;
    assert!(change_from(&h, HOME, "agent9").await.is_some());
    wait_open(&h, 0).await;
    h.sim.faults().hold_updates();
    // One HTTP/2 connection takes the only slot, with a change in flight on one stream.
    let stream = connect_from(HOME, h.addr).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let closed = tokio::spawn(connection);
    let body = serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
    let request = http::Request::post(h.url(&Harness::endpoint("agent1")))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", h.admin_token))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = tokio::spawn(sender.send_request(request));
    vendor_has_seen(&h, 2).await;
    // Busy: a newcomer is refused.
    assert_eq!(change_from(&h, HOME, "agent2").await, None);
    h.sim.faults().release_updates();
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("answered")
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    // Its stream done, the connection is idle: the next newcomer takes its slot.
    let answer = change_from(&h, HOME, "agent3").await.expect("answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    tokio::time::timeout(PATIENCE, closed)
        .await
        .expect("the idle HTTP/2 connection was shed")
        .unwrap()
        .ok();
}
