//! HTTP/2 floods and frame-level abuse (h2c by prior knowledge, frames written by hand).
//!
//! Each case is bounded in count and time; while it runs, another client's legitimate change
//! is served (HTTP/1.1) and a second HTTP/2 connection is answered; afterwards the vendor has
//! seen no call from the attack, the audit trail grew by what the case allows and verifies,
//! and the gateway serves a change again.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::raw_http::*;
use super::support::{Mark, Suite, TARGET, within};

/// Malformed HTTP/2 requests (forbidden headers, bad pseudo-headers, a content-length the
/// DATA contradicts).
#[path = "h2/malformed.rs"]
mod malformed;

/// Another client's HTTP/2 request (a 404 path: nothing audited) gets its answer.
async fn h2_neighbour_is_served(suite: &Suite, case: &str) {
    let stream = tokio::net::TcpStream::connect(suite.h.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::get(suite.h.url("/hostile-neighbour"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = within(case, sender.send_request(request))
        .await
        .unwrap_or_else(|e| panic!("{case}: an HTTP/2 neighbour was not served: {e}"));
    assert_eq!(response.status(), 404, "{case}");
    let _ = within(case, response.into_body().collect()).await;
    driver.abort();
}

/// The attack `attack` runs while a legitimate change and an HTTP/2 neighbour are served.
async fn meanwhile<T>(
    suite: &Suite,
    case: &str,
    attack: impl std::future::Future<Output = T>,
) -> T {
    let (result, (), ()) = tokio::join!(
        within(case, attack),
        suite.assert_served(case),
        h2_neighbour_is_served(suite, case)
    );
    result
}

/// After the attack: no vendor call beyond the liveness change(s) the case made, at most
/// `max_records` outcome records of the attack, all refusals, and the trail verifies.
fn assert_contained(suite: &Suite, mark: Mark, lively: u64, max_records: usize, case: &str) {
    assert_eq!(
        suite.h.sim.update_count(),
        mark.vendor + lively,
        "{case}: the attack reached the vendor"
    );
    // One reading of the trail for both counts: a refusal may still be landing (see
    // `assert_alive_after`), and two readings could disagree.
    let added = suite.added(mark);
    let attack: Vec<_> = added
        .iter()
        .filter(|r| !matches!(r["code"].as_str(), Some("attempt" | "ok")))
        .collect();
    let liveness_records = added.len() - attack.len();
    assert_eq!(
        liveness_records as u64,
        2 * lively,
        "{case}: only the liveness changes went through"
    );
    assert!(
        attack.len() <= max_records,
        "{case}: {} records for at most {max_records} requests",
        attack.len()
    );
    for record in &attack {
        assert_eq!(record["kind"], "outcome", "{case}: {record}");
        let status = record["httpStatus"].as_u64().unwrap();
        assert!((400..500).contains(&status), "{case}: {record}");
    }
    suite.assert_trail_intact(case);
}

/// For attacks on streams whose requests were already handed to the gateway: each runs in
/// a task of its own, which a reset does not cancel, so its refusal (an unreadable body) may
/// be recorded after the case looked. A legitimate change is served, then the totals since
/// `mark` are checked as in [`assert_contained`], that change included.
async fn assert_alive_after(
    suite: &Suite,
    mark: Mark,
    lively: u64,
    max_records: usize,
    case: &str,
) {
    suite.assert_served(case).await;
    assert_contained(suite, mark, lively + 1, max_records, case);
}

fn has_goaway(frames: &[Frame], code: Option<u32>) -> bool {
    frames
        .iter()
        .any(|f| f.kind == GOAWAY && code.is_none_or(|c| f.error_code() == Some(c)))
}

#[tokio::test]
async fn rapid_reset_is_contained() {
    const STREAMS: u32 = 500;
    let case = "h2: rapid reset, 500 HEADERS each followed by RST_STREAM";
    let suite = Suite::start().await;
    let token = suite.admin_token();
    let block = change_headers(TARGET, Some(&token), &[]);
    let mut bytes = Vec::new();
    for i in 0..STREAMS {
        let id = 2 * i + 1;
        bytes.extend(frame(HEADERS, END_HEADERS, id, &block));
        bytes.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let (frames, acked) = meanwhile(&suite, case, conn.flood(&bytes, case)).await;
    // Either the server kept up (and answered the PING after all of it) or it sent a GOAWAY.
    assert!(
        acked || has_goaway(&frames, None),
        "{case}: closed without a GOAWAY"
    );
    assert_contained(&suite, mark, 1, STREAMS as usize, case);
    assert_alive_after(&suite, mark, 1, STREAMS as usize, case).await;
}

#[tokio::test]
async fn streams_beyond_the_concurrency_limit_are_refused() {
    const OPEN: u32 = 40;
    const LIMIT: u32 = 32;
    let case = "h2: 40 concurrent streams against a limit of 32";
    let suite = Suite::start().await;
    let mut conn = H2::connect(suite.h.addr).await;
    let mut bytes = Vec::new();
    // Each stream authenticated as its own caller and waiting for its body.
    for i in 0..OPEN {
        let block = change_headers(TARGET, Some(&suite.admin_token()), &[]);
        bytes.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    }
    let mark = suite.mark();
    let (frames, acked) = conn.flood(&bytes, case).await;
    assert!(acked, "{case}: the connection survived");
    let is_refusal = |f: &Frame| f.kind == RST_STREAM && f.error_code() == Some(REFUSED_STREAM);
    let mut refused: Vec<u32> = frames
        .iter()
        .filter(|f| is_refusal(f))
        .map(|f| f.stream)
        .collect();
    // Resets may be flushed after the PING's answer: read on until all of them came.
    while refused.len() < (OPEN - LIMIT) as usize {
        match conn.next(case).await {
            Some(f) if is_refusal(&f) => refused.push(f.stream),
            Some(_) => {}
            None => panic!("{case}: closed after refusing {refused:?}"),
        }
    }
    let expected: Vec<u32> = (LIMIT..OPEN).map(|i| 2 * i + 1).collect();
    assert_eq!(
        refused, expected,
        "{case}: the streams beyond the limit are refused"
    );
    // The open ones get a body that is not a change: 400 each, nothing at the vendor.
    let mut bodies = Vec::new();
    for i in 0..LIMIT {
        bodies.extend(frame(DATA, END_STREAM, 2 * i + 1, b"{}"));
    }
    assert!(conn.send(&bodies).await);
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < LIMIT as usize {
        let frame = conn
            .next(case)
            .await
            .unwrap_or_else(|| panic!("{case}: closed after {} answers", answered.len()));
        if frame.kind == HEADERS {
            answered.insert(frame.stream);
        }
    }
    let want = vec![("invalid_request", 400); LIMIT as usize];
    suite.assert_outcomes(mark, &want, case);
    suite.assert_trail_intact(case);
    suite.assert_alive(case).await;
}

#[tokio::test]
async fn a_huge_header_list_is_refused_unread() {
    let case = "h2: a 48 KiB header list over HEADERS and CONTINUATION frames";
    let suite = Suite::start().await;
    let token = suite.admin_token();
    let pad = "a".repeat(48 * 1024);
    let block = change_headers(TARGET, Some(&token), &[("x-pad", pad.as_str())]);
    let pieces: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    let mut bytes = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let last = if i + 1 == pieces.len() {
            END_HEADERS
        } else {
            0
        };
        // END_STREAM goes on the HEADERS frame; CONTINUATION frames carry only END_HEADERS.
        let (kind, flags) = if i == 0 {
            (HEADERS, END_STREAM | last)
        } else {
            (CONTINUATION, last)
        };
        bytes.extend(frame(kind, flags, 1, piece));
    }
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let (frames, _) = meanwhile(&suite, case, conn.flood(&bytes, case)).await;
    let answered = frames
        .iter()
        .any(|f| f.stream == 1 && (f.kind == HEADERS || f.kind == RST_STREAM));
    assert!(
        answered || has_goaway(&frames, None),
        "{case}: the stream got no answer: {frames:?}"
    );
    // The request never reached the gateway's handler: nothing audited.
    assert_contained(&suite, mark, 1, 0, case);
    suite.assert_alive(case).await;
}

#[tokio::test]
async fn a_continuation_flood_is_cut_off() {
    const FRAMES: usize = 300;
    let case = "h2: HEADERS then 300 CONTINUATION frames of 16 KiB without END_HEADERS";
    let suite = Suite::start().await;
    let token = suite.admin_token();
    let mut bytes = frame(
        HEADERS,
        END_STREAM,
        1,
        &change_headers(TARGET, Some(&token), &[]),
    );
    let filler = header_block(&[("x-pad", &"b".repeat(16 * 1024 - 16))]);
    for _ in 0..FRAMES {
        bytes.extend(frame(CONTINUATION, 0, 1, &filler));
    }
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let (frames, acked) = meanwhile(&suite, case, conn.flood(&bytes, case)).await;
    assert!(
        !acked,
        "{case}: an unterminated header block must end the connection"
    );
    assert!(has_goaway(&frames, None) || conn.closed, "{case}");
    assert_contained(&suite, mark, 1, 0, case);
    suite.assert_alive(case).await;
}

#[tokio::test]
async fn a_settings_flood_is_contained() {
    const FRAMES: usize = 10_000;
    let case = "h2: 10,000 SETTINGS frames";
    let suite = Suite::start().await;
    let mut bytes = Vec::new();
    for _ in 0..FRAMES {
        // SETTINGS_MAX_CONCURRENT_STREAMS = 100: harmless values, each needing an ACK.
        bytes.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
    }
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let (frames, acked) = meanwhile(&suite, case, conn.flood(&bytes, case)).await;
    let acks = frames
        .iter()
        .filter(|f| f.kind == SETTINGS && f.flags & ACK != 0)
        .count();
    // A server that stays open acknowledges every SETTINGS frame (RFC 9113 §6.5.3);
    // otherwise it ended the connection with a GOAWAY.
    if acked {
        assert!(acks >= FRAMES, "{case}: {acks} acknowledgements");
    } else {
        assert!(has_goaway(&frames, None), "{case}: closed without a GOAWAY");
    }
    assert_contained(&suite, mark, 1, 0, case);
    suite.assert_alive(case).await;
}

#[tokio::test]
async fn a_ping_flood_is_contained() {
    const FRAMES: usize = 20_000;
    let case = "h2: 20,000 PING frames";
    let suite = Suite::start().await;
    let mut bytes = Vec::new();
    for i in 0..FRAMES {
        bytes.extend(frame(PING, 0, 0, &(i as u64).to_be_bytes()));
    }
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let (frames, acked) = meanwhile(&suite, case, conn.flood(&bytes, case)).await;
    assert!(
        acked || has_goaway(&frames, None),
        "{case}: closed without a GOAWAY"
    );
    assert_contained(&suite, mark, 1, 0, case);
    suite.assert_alive(case).await;
}

/// Frame-level protocol errors: each must end as RFC 9113 says, and nothing else happens.
#[tokio::test]
async fn window_update_and_data_abuse_get_their_protocol_errors() {
    let suite = Suite::start().await;
    let token = suite.admin_token();

    // WINDOW_UPDATE with a zero increment on the connection: PROTOCOL_ERROR (§6.9).
    let case = "h2: zero WINDOW_UPDATE on the connection";
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let (frames, _) = conn
        .flood(&frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes()), case)
        .await;
    assert!(
        has_goaway(&frames, Some(PROTOCOL_ERROR)),
        "{case}: {frames:?}"
    );
    assert_contained(&suite, mark, 0, 0, case);
    suite.assert_alive(case).await;

    // A connection window pushed past 2^31-1: FLOW_CONTROL_ERROR (§6.9.1).
    let case = "h2: WINDOW_UPDATE overflowing the connection window";
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let max = 0x7fff_ffffu32.to_be_bytes();
    let mut bytes = frame(WINDOW_UPDATE, 0, 0, &max);
    bytes.extend(frame(WINDOW_UPDATE, 0, 0, &max));
    let (frames, _) = conn.flood(&bytes, case).await;
    assert!(
        has_goaway(&frames, Some(FLOW_CONTROL_ERROR)),
        "{case}: {frames:?}"
    );
    assert_contained(&suite, mark, 0, 0, case);
    suite.assert_alive(case).await;

    // DATA on an idle stream (never opened): PROTOCOL_ERROR on the connection (§5.1).
    let case = "h2: DATA on an idle stream";
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let (frames, acked) = conn.flood(&frame(DATA, END_STREAM, 99, b"{}"), case).await;
    assert!(
        !acked && has_goaway(&frames, Some(PROTOCOL_ERROR)),
        "{case}: {frames:?}"
    );
    assert_contained(&suite, mark, 0, 0, case);
    suite.assert_alive(case).await;

    // DATA on a stream both sides closed: STREAM_CLOSED (§5.1), as a stream or connection
    // error. The request itself (no body) was answered 400 and recorded once.
    let case = "h2: DATA on a closed stream";
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let headers = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &change_headers(TARGET, Some(&token), &[]),
    );
    assert!(conn.send(&headers).await);
    conn.until(case, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .await
        .unwrap_or_else(|| panic!("{case}: the request was not answered"));
    assert!(conn.send(&frame(DATA, 0, 1, b"{\"smuggled\":1}")).await);
    let ended = conn
        .until(case, |f| {
            (f.kind == RST_STREAM && f.stream == 1) || f.kind == GOAWAY
        })
        .await
        .unwrap_or_else(|| panic!("{case}: closed without a reset or GOAWAY"));
    assert_eq!(ended.error_code(), Some(STREAM_CLOSED), "{case}: {ended:?}");
    suite.assert_outcomes(mark, &[("invalid_request", 400)], case);
    suite.assert_trail_intact(case);
    suite.assert_alive(case).await;

    // Last, since its request may still be recorded after the case looked: a stream window
    // pushed past 2^31-1 (on an open stream waiting for its body): that stream is reset with
    // FLOW_CONTROL_ERROR (§6.9.1); the request may or may not have been recorded as an
    // unreadable body before the reset, but nothing else happens.
    let case = "h2: WINDOW_UPDATE overflowing a stream window";
    let mark = suite.mark();
    let mut conn = H2::connect(suite.h.addr).await;
    let mut bytes = frame(
        HEADERS,
        END_HEADERS,
        1,
        &change_headers(TARGET, Some(&token), &[]),
    );
    bytes.extend(frame(WINDOW_UPDATE, 0, 1, &max));
    bytes.extend(frame(WINDOW_UPDATE, 0, 1, &max));
    assert!(conn.send(&bytes).await);
    let ended = conn
        .until(case, |f| {
            (f.kind == RST_STREAM && f.stream == 1) || f.kind == GOAWAY
        })
        .await
        .unwrap_or_else(|| panic!("{case}: closed without a reset or GOAWAY"));
    assert_eq!(
        ended.error_code(),
        Some(FLOW_CONTROL_ERROR),
        "{case}: {ended:?}"
    );
    assert_contained(&suite, mark, 0, 1, case);
    assert_alive_after(&suite, mark, 0, 1, case).await;
}
