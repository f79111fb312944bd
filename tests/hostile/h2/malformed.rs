//! Malformed HTTP/2 requests: each is reset (or the connection closed) with PROTOCOL_ERROR
//! and never handled as a change.

use super::*;

/// Malformed requests (RFC 9113 §8.1.1, §8.2): each is a stream error, the request never
/// reaches the gateway, and the connection serves the next stream. The classic h2-to-h1
/// smuggling inputs (connection-specific headers, CR/LF in values, a lying content-length)
/// are among them.
#[tokio::test]
async fn malformed_h2_requests_are_reset_and_never_handled() {
    let suite = Suite::start().await;
    let token = suite.admin_token();
    let bearer = format!("Bearer {token}");
    let path = format!("/v1/agents/{TARGET}/sip-phone-password");
    let base = |extra: &[(&'static str, &str)]| -> Vec<u8> {
        let mut fields: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", &path),
            (":authority", "127.0.0.1"),
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ];
        fields.extend_from_slice(extra);
        header_block(&fields)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "transfer-encoding: chunked",
            base(&[("transfer-encoding", "chunked")]),
        ),
        (
            "connection: keep-alive",
            base(&[("connection", "keep-alive")]),
        ),
        ("an upper-case header name", base(&[("X-Upper", "1")])),
        (
            "CR LF inside a header value",
            base(&[("x-inject", "a\r\nx-smuggled: 1")]),
        ),
        ("a NUL inside a header value", base(&[("x-nul", "a\0b")])),
        (
            "a pseudo-header after a regular one",
            base(&[(":path", "/other")]),
        ),
        (
            "no :method",
            header_block(&[
                (":scheme", "http"),
                (":path", &path),
                (":authority", "127.0.0.1"),
            ]),
        ),
        (
            "two :path pseudo-headers",
            header_block(&[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", &path),
                (":path", "/"),
                (":authority", "127.0.0.1"),
            ]),
        ),
        (
            "an unknown pseudo-header",
            header_block(&[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", &path),
                (":authority", "127.0.0.1"),
                (":evil", "1"),
            ]),
        ),
    ];
    for (label, block) in cases {
        let case = format!("h2 malformed: {label}");
        let mark = suite.mark();
        let mut conn = H2::connect(suite.h.addr).await;
        let mut bytes = frame(HEADERS, END_HEADERS, 1, &block);
        bytes.extend(frame(
            DATA,
            END_STREAM,
            1,
            super::super::support::POLICY_BODY.as_bytes(),
        ));
        assert!(conn.send(&bytes).await, "{case}: the connection is gone");
        let answer = conn
            .until(&case, |f| {
                (f.stream == 1 && matches!(f.kind, RST_STREAM | HEADERS)) || f.kind == GOAWAY
            })
            .await
            .unwrap_or_else(|| panic!("{case}: closed without an answer"));
        // A stream error, or (h2 may escalate, RFC 9113 §5.4.1) a connection error.
        assert!(
            matches!(answer.kind, RST_STREAM | GOAWAY),
            "{case}: the request was answered: {answer:?}"
        );
        assert_eq!(
            answer.error_code(),
            Some(PROTOCOL_ERROR),
            "{case}: {answer:?}"
        );
        suite.assert_outcomes(mark, &[], &case);
        suite.assert_alive(&case).await;
    }
    let mut conn = H2::connect(suite.h.addr).await;
    let id = 1;
    // A declared content-length the DATA contradicts: reset (§8.1.1); the body read may
    // have failed first (an unreadable body, 400) or not at all.
    let case = "h2 malformed: content-length 5 with 60 bytes of DATA";
    let mark = suite.mark();
    let mut bytes = frame(HEADERS, END_HEADERS, id, &base(&[("content-length", "5")]));
    bytes.extend(frame(
        DATA,
        END_STREAM,
        id,
        super::super::support::POLICY_BODY.as_bytes(),
    ));
    assert!(conn.send(&bytes).await);
    let answer = conn
        .until(case, |f| {
            f.stream == id && f.kind == RST_STREAM || f.kind == GOAWAY
        })
        .await
        .unwrap_or_else(|| panic!("{case}: closed without an answer"));
    assert_eq!(
        answer.error_code(),
        Some(PROTOCOL_ERROR),
        "{case}: {answer:?}"
    );
    assert_contained(&suite, mark, 0, 1, case);
    assert_alive_after(&suite, mark, 0, 1, case).await;
}
