//! The listener's bounds and its graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes or `limit` passes; returns what arrived and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut buf))
        .await
        .is_ok();
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let mut h = Harness::start().await;
    // Warm the token so that the only slow part is the vendor's answer.
    assert_eq!(h.change("agent1", CURRENT, NEW).await.status, 200);
    let stop = h.stop.take().unwrap();
    let task = h.task.take().unwrap();
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_millis(1500)));
    let h = Arc::new(h);
    let in_flight = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.change(AGENT, CURRENT, NEW).await })
    };
    while h.sim.update_count() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();

    // The listener closes at once: new connections are refused while the request drains.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(h.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        refused,
        "the listener still accepts after the shutdown signal"
    );

    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW));
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the gateway finishes draining")
        .unwrap();
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let h = Harness::start_with(sim_config(), |c| c.server.header_read_timeout_ms = 200).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/agents/a1001/sip-phone-password HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        closed,
        "a connection that never finishes its head must be closed"
    );
}

#[tokio::test]
async fn an_idle_connection_does_not_hold_its_slot_forever() {
    let h = Harness::start_with(sim_config(), |c| c.server.header_read_timeout_ms = 200).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "a connection that sends nothing must be closed");
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let h = Harness::start_with(sim_config(), |c| c.server.request_timeout_ms = 300).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/agents/a1001/sip-phone-password HTTP/1.1\r\nhost: x\r\n\
              content-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"accountPwd\"",
        )
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert_eq!(h.sim.update_count(), 0);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let h = Harness::start_with(sim_config(), |c| c.server.max_connections = 2).await;
    let held_a = TcpStream::connect(h.addr).await.unwrap();
    let held_b = TcpStream::connect(h.addr).await.unwrap();
    // Both slots are taken by silent connections: a third client is not served.
    let waiting =
        tokio::time::timeout(Duration::from_millis(700), h.change(AGENT, CURRENT, NEW)).await;
    assert!(
        waiting.is_err(),
        "a third connection was served while two slots were held"
    );
    drop(held_a);
    let answer = tokio::time::timeout(Duration::from_secs(10), h.change(AGENT, CURRENT, NEW))
        .await
        .expect("served once a slot is free");
    assert_eq!(answer.status, 200);
    drop(held_b);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let h = Harness::start_with(sim_config(), |c| c.server.idle_timeout_secs = 1).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(closed, "an idle keep-alive connection must be closed");
}
