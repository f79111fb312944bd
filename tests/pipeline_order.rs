//! The order of checks (docs/api.md): route, method, media type and declared length from
//! the head; then the JWT, the caller's quota and authorization, all before the body is
//! read; then the body and everything after it (issue 11, findings 1 and 4).

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use sipgw::limits::config::QuotaSection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on waiting for an answer that should come at once: only so that a regression
/// fails instead of hanging (the gateway's own request timeout, 10 s, answers 408 first).
const PATIENCE: Duration = Duration::from_secs(60);

/// Reads one HTTP/1.1 response (head and `Content-Length` body) and returns it as text.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut chunk).await.expect("the gateway answers");
        assert!(n > 0, "connection closed mid-response: {bytes:?}");
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// A request head announcing a 100-byte body that is not sent (yet).
fn head_without_body(authorization: Option<&str>) -> String {
    let auth = authorization.map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
    format!(
        "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}content-length: 100\r\n\r\n",
        Harness::endpoint(AGENT)
    )
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_from_its_head_and_its_body_is_never_parsed() {
    let h = Harness::start().await;
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(head_without_body(None).as_bytes())
        .await
        .unwrap();
    // The answer comes without the body: before issue 11 the gateway waited for it (up to
    // server.request_timeout_ms) and then answered 408.
    let answer = tokio::time::timeout(PATIENCE, read_response(&mut stream))
        .await
        .expect("the 401 comes without the body");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("\"code\":\"unauthenticated\""), "{answer}");
    // The connection is not reused: the unread body must never be taken for a request.
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // The "body" is a complete request of its own; were it parsed, it would be answered
    // (405). It is not: the gateway closes the connection.
    let mut smuggled = format!(
        "GET {} HTTP/1.1\r\nhost: x\r\nx-pad: ",
        Harness::endpoint(AGENT)
    );
    smuggled.push_str(&"p".repeat(100 - smuggled.len() - 4));
    smuggled.push_str("\r\n\r\n");
    assert_eq!(smuggled.len(), 100);
    let _ = stream.write_all(smuggled.as_bytes()).await; // may find the socket closed
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the gateway closes the connection");
    assert!(
        rest.is_empty(),
        "a second answer: {}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(h.sim.update_count(), 0);
}

#[tokio::test]
async fn a_caller_that_may_not_change_the_agent_is_refused_before_its_body_is_read() {
    let h = Harness::start().await;
    let mallory = h.idp.mint_for("mallory", AUDIENCE, Some("agent7"), false);
    let mut stream = TcpStream::connect(h.addr).await.unwrap();
    stream
        .write_all(head_without_body(Some(&mallory)).as_bytes())
        .await
        .unwrap();
    let answer = tokio::time::timeout(PATIENCE, read_response(&mut stream))
        .await
        .expect("the 403 comes without the body");
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("\"code\":\"forbidden\""), "{answer}");
}

/// A malformed body for `AGENT`, with `token` as the bearer token (or none); the code.
async fn garbage(h: &Harness, token: Option<&str>) -> String {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    h.send_raw(
        Method::POST,
        &Harness::endpoint(AGENT),
        &headers,
        "{garbage",
    )
    .await
    .code()
}

#[tokio::test]
async fn a_malformed_body_is_judged_only_after_the_token_and_the_policy() {
    let h = Harness::start().await;
    let mallory = h.idp.mint_for("mallory", AUDIENCE, Some("agent7"), false);
    // Before issue 11 all three were 400: the body was read and judged first.
    assert_eq!(garbage(&h, None).await, "unauthenticated");
    assert_eq!(garbage(&h, Some(&mallory)).await, "forbidden");
    assert_eq!(garbage(&h, Some(&h.admin_token)).await, "invalid_request");
    assert_eq!(h.sim.update_count(), 0);
}

#[tokio::test]
async fn every_authenticated_request_spends_the_caller_quota_before_authorization() {
    let h = Harness::start_with(sim_config(), |c| {
        c.rate_limit.per_caller = QuotaSection {
            burst: 2,
            per_secs: 86_400,
        };
    })
    .await;
    let mallory = h.idp.mint_for("mallory", AUDIENCE, Some("agent7"), false);
    let codes = [
        h.change_as(&mallory, AGENT, CURRENT, NEW).await.code(),
        h.change_as(&mallory, AGENT, CURRENT, NEW).await.code(),
        h.change_as(&mallory, AGENT, CURRENT, NEW).await.code(),
        // Its own agent too: the quota is the caller's, whatever it asks for.
        h.change_as(&mallory, "agent7", CURRENT, NEW).await.code(),
    ];
    assert_eq!(
        codes,
        ["forbidden", "forbidden", "rate_limited", "rate_limited"]
    );
    let refused = h.change_as(&mallory, AGENT, CURRENT, NEW).await;
    assert_eq!(refused.status, 429);
    assert!(refused.headers.contains_key("retry-after"));
    assert!(
        refused.text.contains("caller"),
        "the detail names the caller's quota: {}",
        refused.text
    );
    assert_eq!(h.sim.update_count(), 0);
}

/// A request body that never sends anything and never ends.
struct NeverEnding;

impl hyper::body::Body for NeverEnding {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn over_h2_a_request_without_a_token_is_refused_while_its_body_is_still_coming() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let h = Harness::start().await;
    let stream = TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = |path: String| {
        http::Request::post(format!("http://{}{path}", h.addr))
            .header("content-type", "application/json")
            .body(NeverEnding)
            .unwrap()
    };
    let answer = tokio::time::timeout(
        PATIENCE,
        sender.send_request(request(Harness::endpoint(AGENT))),
    )
    .await
    .expect("the 401 comes while the body is still open")
    .unwrap();
    assert_eq!(answer.status(), 401);
    // Streams are independent: the connection serves the next request.
    let next = tokio::time::timeout(PATIENCE, sender.send_request(request("/nowhere".into())))
        .await
        .expect("the connection is still served")
        .unwrap();
    assert_eq!(next.status(), 404);
    assert!(
        !answer.headers().contains_key("connection"),
        "no connection header on h2"
    );
}
