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
    for _ in 0..1000 {
        if h.sim.update_count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        h.sim.update_count(),
        2,
        "the slow change reached the vendor"
    );
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
    // From a caller allowed to make the change: the body is read only after authorization
    // (a client without a token is answered 401 at once, tests/pipeline_order.rs).
    let head = format!(
        "POST /v1/agents/a1001/sip-phone-password HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\nconnection: close\r\n\r\n{{\"accountPwd\"",
        h.admin_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert_eq!(h.sim.update_count(), 0);
}

/// hyper's own head timer would also close an idle HTTP/1 connection; it is set far beyond
/// the test's patience so that only the idle watchdog can.
fn idle_after_one_second(c: &mut sipgw::config::FileConfig) {
    c.server.idle_timeout_secs = 1;
    c.server.header_read_timeout_ms = 60_000;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let h = Harness::start_with(sim_config(), idle_after_one_second).await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (text, closed) = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(closed, "an idle keep-alive connection must be closed");
}

/// An HTTP/2 connection to the gateway, driven by hyper's client; returns the request
/// sender and a handle that completes when the server closes the connection.
async fn h2_connection(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let closed = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, closed)
}

fn change_request(h: &Harness) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let body = serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
    http::Request::post(h.url(&Harness::endpoint(AGENT)))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", h.admin_token))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap()
}

#[tokio::test]
async fn an_idle_h2_connection_is_closed_after_the_idle_timeout() {
    let h = Harness::start_with(sim_config(), idle_after_one_second).await;
    let (mut sender, closed) = h2_connection(h.addr).await;
    let response = sender.send_request(change_request(&h)).await.unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the idle HTTP/2 connection was closed")
        .unwrap();
}

#[tokio::test]
async fn a_cancelled_h2_stream_does_not_keep_its_connection_open() {
    // The vendor's 2 s answer must stay well inside the vendor timeout, or the change would
    // end as a 504 instead of completing.
    let h = Harness::start_with(sim_config(), |c| {
        idle_after_one_second(c);
        c.vendor.timeout_ms = 20_000;
    })
    .await;
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(2)));
    let (mut sender, closed) = h2_connection(h.addr).await;
    // Start a change, and give up on it (hyper's client resets the stream) once it has
    // reached the vendor, whose answer takes 2 s.
    let pending = sender.send_request(change_request(&h));
    let reached_vendor = async {
        while h.sim.update_count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        _ = pending => panic!("the change finished although the vendor takes 2 s"),
        () = reached_vendor => {}
        () = tokio::time::sleep(Duration::from_secs(15)) => panic!("the change never reached the vendor"),
    }
    tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the connection was closed once idle")
        .unwrap();
    // The change itself ran to its end at the vendor although the caller left.
    let mut finished = false;
    for _ in 0..600 {
        if h.sim.agent_password(AGENT).as_deref() == Some(NEW) {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        finished,
        "the vendor call was cancelled with the caller's stream"
    );
}
