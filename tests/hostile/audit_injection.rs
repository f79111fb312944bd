//! Audit injection: caller-controlled text (the token's `sub` and `iss`, `X-Request-Id`, the
//! `userAccount` in the path) holding line breaks, quotes, U+2028, terminal escapes and JSON
//! fragments. Afterwards every line is still one JSON object whose fields are the gateway's,
//! the hostile text is either stored verbatim in the one field it belongs to or not at all,
//! and the trail verifies (library and `sipgw audit verify`).

use http::Method;
use serde_json::Value;

use super::raw_http::{exchange, parse_responses};
use super::support::{POLICY_BODY, Suite, TARGET, assert_problem};
use crate::common::*;

/// Text that tries to break out of a JSON string or a line, or to speak to a terminal.
const HOSTILE: [&str; 11] = [
    "line1\nline2",
    "cr\rlf\r\n{\"kind\":\"outcome\"}",
    "quote\"d",
    "\",\"code\":\"ok",
    "\"},\"code\":\"ok\",\"x\":{\"a\":\"",
    "u2028\u{2028}u2029\u{2029}",
    "esc\u{1b}[2J\u{1b}[31mred\u{1b}[0m",
    "back\\slash\\\"",
    "nul\u{0}byte",
    "bidi\u{202e}txt.exe",
    "c1 nel\u{85} csi\u{9b}2J",
];

/// No raw C0 control character (nor DEL) made it into a line: JSON escapes them, so a
/// record cannot break its line or speak to a terminal through them. (JSON leaves C1
/// controls and U+2028/2029 raw: valid JSON, and one record per LF-delimited line, which is
/// how the trail is defined; tools that also split on those would see broken lines.)
#[track_caller]
fn assert_no_raw_controls(suite: &Suite, case: &str) {
    for line in suite.lines() {
        assert!(
            !line.bytes().any(|b| b < 0x20 || b == 0x7f),
            "{case}: a raw control character in {line:?}"
        );
    }
}

#[tokio::test]
async fn hostile_subjects_are_stored_verbatim_in_their_field_only() {
    let suite = Suite::start().await;
    for (i, sub) in HOSTILE.iter().enumerate() {
        // An admin with a hostile name, refused by the password rule after the body is read.
        let name = format!("audit injection: sub #{i} {sub:?}");
        let token = suite.h.idp.mint_for(sub, AUDIENCE, None, true);
        let mark = suite.mark();
        let answer = suite
            .send(
                &name,
                Method::POST,
                &Harness::endpoint(TARGET),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Bearer {token}")),
                ],
                POLICY_BODY,
            )
            .await;
        assert_problem(&answer, 400, "password_policy", &name);
        let added = suite.assert_outcomes(mark, &[("password_policy", 400)], &name);
        let record = &added[0];
        assert_eq!(record["caller"]["sub"], *sub, "{name}");
        assert_eq!(record["caller"]["iss"], ISSUER, "{name}");
        assert_eq!(record["agent"], TARGET, "{name}");
        assert_eq!(record["requestId"], answer.json()["requestId"], "{name}");
        assert!(record["vendor"].is_null(), "{name}");

        // The same caller without the admin scope: a 403 that names it.
        let name = format!("audit injection: forbidden sub #{i} {sub:?}");
        let token = suite.h.idp.mint_for(sub, AUDIENCE, Some("agent9"), false);
        let mark = suite.mark();
        let answer = suite
            .send(
                &name,
                Method::POST,
                &Harness::endpoint(TARGET),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Bearer {token}")),
                ],
                POLICY_BODY,
            )
            .await;
        assert_problem(&answer, 403, "forbidden", &name);
        let added = suite.assert_outcomes(mark, &[("forbidden", 403)], &name);
        assert_eq!(added[0]["caller"]["sub"], *sub, "{name}");
        suite.assert_trail_intact(&name);
        assert_no_raw_controls(&suite, &name);
        suite.assert_alive(&name).await;
    }
    verify_with_the_binary(&suite);
}

#[tokio::test]
async fn hostile_issuers_and_accounts_never_reach_the_trail() {
    let suite = Suite::start().await;
    for (i, text) in HOSTILE.iter().enumerate() {
        // A foreign issuer is refused before anything about the caller is recorded.
        let name = format!("audit injection: iss #{i} {text:?}");
        let mut claims = serde_json::json!({
            "iss": format!("{ISSUER}{text}"),
            "sub": "iss-injector",
            "aud": AUDIENCE,
            "exp": 4_000_000_000u64,
            "scope": ADMIN_SCOPE,
        });
        claims["jti"] = Value::from(i);
        let token = suite
            .h
            .idp
            .mint(sipgw_dev::dev_issuer::KeyKind::Es256, &claims);
        let mark = suite.mark();
        let answer = suite
            .send(
                &name,
                Method::POST,
                &Harness::endpoint(TARGET),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &format!("Bearer {token}")),
                ],
                POLICY_BODY,
            )
            .await;
        assert_problem(&answer, 401, "unauthenticated", &name);
        let added = suite.assert_outcomes(mark, &[("unauthenticated", 401)], &name);
        assert!(added[0]["caller"]["iss"].is_null(), "{name}");
        assert!(added[0]["caller"]["sub"].is_null(), "{name}");

        // A hostile account in the path: 400, and no agent recorded.
        let name = format!("audit injection: userAccount #{i} {text:?}");
        let encoded = percent_encode(text);
        let mark = suite.mark();
        let bearer = format!("Bearer {}", suite.admin_token());
        let answer = suite
            .send(
                &name,
                Method::POST,
                &Harness::endpoint(&encoded),
                &[
                    ("content-type", "application/json"),
                    ("authorization", &bearer),
                ],
                POLICY_BODY,
            )
            .await;
        assert_problem(&answer, 400, "invalid_request", &name);
        let added = suite.assert_outcomes(mark, &[("invalid_request", 400)], &name);
        assert!(added[0]["agent"].is_null(), "{name}: {}", added[0]);
        suite.assert_trail_intact(&name);
        assert_no_raw_controls(&suite, &name);
        for line in suite.lines() {
            assert!(!line.contains("iss-injector"), "{name}");
        }
        suite.assert_alive(&name).await;
    }
    verify_with_the_binary(&suite);
}

/// README "Decisions": a caller's `X-Request-Id` is kept when it is 1-128 characters of
/// `[A-Za-z0-9._:-]`, otherwise replaced by a UUID v4; the id answered is the one recorded.
#[tokio::test]
async fn hostile_request_ids_are_replaced_and_sane_ones_kept() {
    let suite = Suite::start().await;
    let long = "a".repeat(129);
    let at_limit = "b".repeat(128);
    let mut cases: Vec<(String, Vec<u8>, bool)> = vec![
        ("sane".into(), b"ticket-4711:a.b_c".to_vec(), true),
        ("128 characters".into(), at_limit.clone().into_bytes(), true),
        ("129 characters".into(), long.into_bytes(), false),
        (
            "a JSON fragment".into(),
            br#"x","code":"ok"#.to_vec(),
            false,
        ),
        ("quotes".into(), b"a\"b".to_vec(), false),
        ("a space".into(), b"a b".to_vec(), false),
        ("a tab".into(), b"a\tb".to_vec(), false),
        (
            "markup".into(),
            b"<script>alert(1)</script>".to_vec(),
            false,
        ),
        ("encoded CRLF".into(), b"a%0d%0ab".to_vec(), false),
        (
            "U+2028 as UTF-8".into(),
            "a\u{2028}b".as_bytes().to_vec(),
            false,
        ),
        ("Latin-1 bytes".into(), b"caf\xe9".to_vec(), false),
        ("empty".into(), Vec::new(), false),
    ];
    cases.extend(
        HOSTILE
            .iter()
            .filter(|t| !t.chars().any(char::is_control))
            .map(|t| (format!("{t:?}"), t.as_bytes().to_vec(), false)),
    );
    for (label, id, kept) in cases {
        let name = format!("X-Request-Id: {label}");
        let value = http::HeaderValue::from_bytes(&id).unwrap();
        let request = http::Request::post(suite.h.url(&Harness::endpoint(TARGET)))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", suite.admin_token()))
            .header("x-request-id", value)
            .body(http_body_util::Full::new(bytes::Bytes::from(POLICY_BODY)))
            .unwrap();
        let mark = suite.mark();
        let (status, echoed, body) = send_request(request, &name).await;
        assert_eq!(status, 400, "{name}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["requestId"], echoed.as_str(), "{name}");
        if kept {
            assert_eq!(echoed.as_bytes(), id.as_slice(), "{name}");
        } else {
            let uuid = uuid::Uuid::parse_str(&echoed)
                .unwrap_or_else(|_| panic!("{name}: replaced by {echoed:?}, not a UUID"));
            assert_eq!(uuid.get_version_num(), 4, "{name}");
        }
        let added = suite.assert_outcomes(mark, &[("password_policy", 400)], &name);
        assert_eq!(added[0]["requestId"], echoed.as_str(), "{name}");
        suite.assert_trail_intact(&name);
        suite.assert_alive(&name).await;
    }

    // Bytes no client library sends: a raw ESC or NUL in the header is refused by the HTTP
    // parser before the gateway sees the request; nothing is recorded.
    for (label, raw) in [("a raw ESC", "a\u{1b}[31mb"), ("a raw NUL", "a\u{0}b")] {
        let name = format!("X-Request-Id: {label}");
        let bytes = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Request-Id: {raw}\r\nContent-Length: {}\r\n\r\n{POLICY_BODY}",
            Harness::endpoint(TARGET),
            POLICY_BODY.len()
        );
        let mark = suite.mark();
        let received = exchange(suite.h.addr, bytes.as_bytes(), &name).await;
        let statuses: Vec<u16> = parse_responses(&received, &name)
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [400], "{name}");
        suite.assert_outcomes(mark, &[], &name);
        suite.assert_alive(&name).await;
    }

    // Two ids: the first counts (and is kept when sane).
    let name = "X-Request-Id: two headers";
    let request = http::Request::post(suite.h.url(&Harness::endpoint(TARGET)))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", suite.admin_token()))
        .header("x-request-id", "first-id")
        .header("x-request-id", "\",\"code\":\"ok")
        .body(http_body_util::Full::new(bytes::Bytes::from(POLICY_BODY)))
        .unwrap();
    let mark = suite.mark();
    let (status, echoed, _) = send_request(request, name).await;
    assert_eq!((status, echoed.as_str()), (400, "first-id"), "{name}");
    let added = suite.assert_outcomes(mark, &[("password_policy", 400)], name);
    assert_eq!(added[0]["requestId"], "first-id");
    suite.assert_trail_intact(name);
    verify_with_the_binary(&suite);
}

/// Sends one request on a fresh client; returns the status, the `X-Request-Id` answered and
/// the body.
async fn send_request(
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
    case: &str,
) -> (u16, String, bytes::Bytes) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = super::support::within(case, client.request(request))
        .await
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let status = response.status().as_u16();
    let echoed = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, echoed, body)
}

/// Percent-encodes every byte that is not unreserved (RFC 3986 §2.3).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `sipgw audit verify --key-file KEY TRAIL` agrees: exit 0, "OK: N records".
fn verify_with_the_binary(suite: &Suite) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sipgw"))
        .arg("audit")
        .arg("verify")
        .arg("--key-file")
        .arg(&suite.key_file)
        .arg(&suite.trail)
        .output()
        .expect("sipgw runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sipgw audit verify failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = suite.lines().len();
    assert!(
        stdout.starts_with(&format!("OK: {lines} records")),
        "{stdout}"
    );
}
