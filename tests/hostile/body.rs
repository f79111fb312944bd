//! Body games: nesting, sizes, lying lengths, media types, duplicate keys, escapes, types.
//!
//! The caller is an authenticated admin (a fresh one per case), so the body is read and
//! judged in any order of the pipeline's checks; none of these bodies may reach the vendor.

use http::Method;

use super::raw_http::{SENTINEL, exchange, parse_responses};
use super::support::{POLICY_BODY, Suite, TARGET, assert_problem};
use crate::common::*;

const JSON: Option<&str> = Some("application/json");

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        content_type,
        body: body.into(),
        status,
        code,
    }
}

fn invalid(name: &'static str, body: impl Into<Vec<u8>>) -> Case {
    case(name, JSON, body, 400, "invalid_request")
}

/// A body of exactly `len` bytes: a well-formed change whose current password is padding.
fn sized(len: usize) -> String {
    let frame = format!(r#"{{"accountPwd":"","newPhonePwd":"{NEW}"}}"#);
    let pad = "a".repeat(len - frame.len());
    let body = format!(r#"{{"accountPwd":"{pad}","newPhonePwd":"{NEW}"}}"#);
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn hostile_bodies_get_their_codes_and_never_reach_the_vendor() {
    let suite = Suite::start().await;
    let utf16: Vec<u8> = POLICY_BODY
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(POLICY_BODY.as_bytes());
    let cases = vec![
        invalid(
            "JSON nested 1500 deep",
            format!(
                r#"{{"accountPwd":{}{},"newPhonePwd":"{NEW}"}}"#,
                "[".repeat(1500),
                "]".repeat(1500)
            ),
        ),
        invalid(
            "objects nested 600 deep in an extra field",
            format!(r#"{{"x":{}1{}}}"#, r#"{"a":"#.repeat(600), "}".repeat(600)),
        ),
        case("4 KiB + 1", JSON, sized(4097), 413, "payload_too_large"),
        case("64 KiB", JSON, sized(64 * 1024), 413, "payload_too_large"),
        // Exactly at the limit the body is read; its value is over the password bound.
        invalid("exactly 4 KiB", sized(4096)),
        case(
            "charset=utf-16 with a UTF-16 body",
            Some("application/json; charset=utf-16"),
            utf16,
            400,
            "invalid_request",
        ),
        case(
            "charset=utf-16 naming a UTF-8 body (the parameter is not trusted)",
            Some("application/json; charset=utf-16"),
            POLICY_BODY,
            400,
            "password_policy",
        ),
        case(
            "media type in upper case",
            Some("APPLICATION/JSON"),
            POLICY_BODY,
            400,
            "password_policy",
        ),
        case(
            "application/jsonx",
            Some("application/jsonx"),
            POLICY_BODY,
            415,
            "unsupported_media_type",
        ),
        case(
            "text/json",
            Some("text/json"),
            POLICY_BODY,
            415,
            "unsupported_media_type",
        ),
        case(
            "application/json-patch+json",
            Some("application/json-patch+json"),
            POLICY_BODY,
            415,
            "unsupported_media_type",
        ),
        case(
            "two media types in one header",
            Some("text/plain, application/json"),
            POLICY_BODY,
            415,
            "unsupported_media_type",
        ),
        case(
            "multipart form data",
            Some("multipart/form-data; boundary=x"),
            POLICY_BODY,
            415,
            "unsupported_media_type",
        ),
        case(
            "no Content-Type",
            None,
            POLICY_BODY,
            415,
            "unsupported_media_type",
        ),
        invalid(
            "accountPwd twice",
            format!(r#"{{"accountPwd":"x","accountPwd":"{CURRENT}","newPhonePwd":"{NEW}"}}"#),
        ),
        invalid(
            "newPhonePwd twice",
            format!(r#"{{"accountPwd":"{CURRENT}","newPhonePwd":"{NEW}","newPhonePwd":"x"}}"#),
        ),
        invalid(
            "an escaped NUL in the new password",
            r#"{"accountPwd":"Same~Pass123","newPhonePwd":"Sip~\u0000Phone25"}"#,
        ),
        invalid(
            "an escaped ESC sequence in the new password",
            r#"{"accountPwd":"Same~Pass123","newPhonePwd":"\u001b[31mSip~Ph1"}"#,
        ),
        invalid(
            "a lone escaped surrogate",
            r#"{"accountPwd":"Same~Pass123","newPhonePwd":"Sip~Ph1\ud800"}"#,
        ),
        case(
            "an escaped U+2028 in the new password",
            JSON,
            r#"{"accountPwd":"Same~Pass123","newPhonePwd":"Sip~Ph1\u2028x"}"#,
            400,
            "password_policy",
        ),
        invalid(
            "a raw NUL byte inside a string",
            b"{\"accountPwd\":\"Same~Pass123\",\"newPhonePwd\":\"Sip~\0Phone25\"}".to_vec(),
        ),
        invalid(
            "invalid UTF-8 inside a string",
            b"{\"accountPwd\":\"Same~Pass123\",\"newPhonePwd\":\"Sip~\xff\xfePhone\"}".to_vec(),
        ),
        invalid(
            "a 3000-character current password",
            format!(
                r#"{{"accountPwd":"{}","newPhonePwd":"{NEW}"}}"#,
                "a".repeat(3000)
            ),
        ),
        case(
            "a 17-character new password",
            JSON,
            format!(r#"{{"accountPwd":"{CURRENT}","newPhonePwd":"Sip~Phone2025abcd"}}"#),
            400,
            "password_policy",
        ),
        invalid(
            "numbers instead of strings",
            r#"{"accountPwd":12345678,"newPhonePwd":87654321}"#,
        ),
        invalid(
            "booleans instead of strings",
            r#"{"accountPwd":true,"newPhonePwd":false}"#,
        ),
        invalid("null values", r#"{"accountPwd":null,"newPhonePwd":null}"#),
        invalid(
            "objects as values",
            r#"{"accountPwd":{"$ne":""},"newPhonePwd":{"$ne":""}}"#,
        ),
        invalid(
            "an extra field",
            format!(r#"{{"accountPwd":"{CURRENT}","newPhonePwd":"{NEW}","userAccount":"a1001"}}"#),
        ),
        invalid(
            "a __proto__ field",
            format!(
                r#"{{"accountPwd":"{CURRENT}","newPhonePwd":"{NEW}","__proto__":{{"admin":true}}}}"#
            ),
        ),
        invalid(
            "field names in another case",
            format!(r#"{{"AccountPwd":"{CURRENT}","NewPhonePwd":"{NEW}"}}"#),
        ),
        invalid("an empty object", "{}"),
        invalid("an array", format!(r#"["{CURRENT}","{NEW}"]"#)),
        invalid("an array of the object", format!("[{POLICY_BODY}]")),
        invalid("a JSON string", format!("{:?}", POLICY_BODY)),
        invalid("a byte order mark before the object", with_bom),
        invalid("trailing garbage", format!("{POLICY_BODY}garbage")),
        invalid("two objects", format!("{POLICY_BODY}{POLICY_BODY}")),
        invalid("a comment", format!("/* hi */{POLICY_BODY}")),
        invalid("whitespace only", "   \r\n\t "),
        invalid("an empty body", ""),
    ];
    let count = cases.len();
    for case in cases {
        let name = format!("body: {}", case.name);
        let bearer = format!("Bearer {}", suite.admin_token());
        let mut headers = vec![("authorization", bearer.as_str())];
        if let Some(content_type) = case.content_type {
            headers.push(("content-type", content_type));
        }
        let mark = suite.mark();
        let answer = suite
            .send(
                &name,
                Method::POST,
                &Harness::endpoint(TARGET),
                &headers,
                case.body,
            )
            .await;
        assert_problem(&answer, case.status, case.code, &name);
        suite.assert_outcomes(mark, &[(case.code, case.status)], &name);
        suite.assert_trail_intact(&name);
        suite.assert_alive(&name).await;
    }
    assert!(count >= 40, "{count} cases");
}

/// Bodies whose framing lies, sent as raw bytes (followed by the sentinel request, whose
/// 404 proves the connection survived; see `http1`).
#[tokio::test]
async fn lying_and_oversized_framings_are_refused() {
    let suite = Suite::start().await;
    let tok = suite.admin_token();
    let head = |extra: &str| {
        format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer {tok}\r\n{extra}\r\n",
            Harness::endpoint(TARGET)
        )
    };
    let len = POLICY_BODY.len();
    let chunk = "a".repeat(1024);
    let over: String = (0..5).map(|_| format!("400\r\n{chunk}\r\n")).collect();
    type Want = (u16, Option<&'static str>);
    /// Label, bytes, responses, audit outcomes.
    type Framing = (&'static str, String, Vec<Want>, Vec<(&'static str, u16)>);
    let cases: Vec<Framing> = vec![
        (
            "a chunked body over 4 KiB",
            format!("{}{over}0\r\n\r\n", head("Transfer-Encoding: chunked\r\n")),
            // An answer sent before the whole body was read closes the connection, so the
            // rest of the chunks (and anything after them) is never parsed as a request.
            vec![(413, Some("payload_too_large"))],
            vec![("payload_too_large", 413)],
        ),
        (
            "a declared length shorter than the body",
            format!("{}{POLICY_BODY}", head("Content-Length: 20\r\n")),
            vec![(400, Some("invalid_request")), (400, None)],
            vec![("invalid_request", 400)],
        ),
        (
            "a declared length longer than the body: the next request becomes body",
            format!(
                "{}{POLICY_BODY}",
                head(&format!("Content-Length: {}\r\n", len + 40))
            ),
            vec![(400, Some("invalid_request")), (400, None)],
            vec![("invalid_request", 400)],
        ),
        (
            "a declared length of 4097 with a small body",
            format!("{}{POLICY_BODY}", head("Content-Length: 4097\r\n")),
            vec![(413, Some("payload_too_large"))],
            vec![("payload_too_large", 413)],
        ),
    ];
    for (label, bytes, want, audit) in cases {
        let name = format!("body framing: {label}");
        let mut bytes = bytes.into_bytes();
        bytes.extend_from_slice(SENTINEL.as_bytes());
        let mark = suite.mark();
        let received = exchange(suite.h.addr, &bytes, &name).await;
        let got: Vec<(u16, Option<String>)> = parse_responses(&received, &name)
            .iter()
            .map(|r| (r.status, r.code()))
            .collect();
        let want: Vec<(u16, Option<String>)> = want
            .iter()
            .map(|(s, c)| (*s, c.map(str::to_owned)))
            .collect();
        assert_eq!(got, want, "{name}");
        suite.assert_outcomes(mark, &audit, &name);
        suite.assert_trail_intact(&name);
        suite.assert_alive(&name).await;
    }
}

/// Check order (docs/api.md): the token is checked before the body is read, so a bad body
/// from a caller without a valid token, or one the policy refuses, says nothing about the
/// body. Media type and declared length come from the head, before the token.
// after issue-11 pipeline order
#[tokio::test]
async fn the_token_is_judged_before_the_body() {
    let suite = Suite::start().await;
    let forbidden = suite
        .h
        .idp
        .mint_for("self-only", AUDIENCE, Some("agent9"), false);
    let bad = format!("Bearer {}x", suite.admin_token());
    let own = format!("Bearer {forbidden}");
    /// Label, headers, body, status, code.
    type Ordered<'a> = (
        &'static str,
        Vec<(&'static str, &'a str)>,
        &'static str,
        u16,
        &'static str,
    );
    let cases: Vec<Ordered<'_>> = vec![
        // after issue-11 pipeline order
        (
            "garbage body, no token",
            vec![("content-type", "application/json")],
            "{not json",
            401,
            "unauthenticated",
        ),
        // after issue-11 pipeline order
        (
            "garbage body, a bad signature",
            vec![
                ("content-type", "application/json"),
                ("authorization", &bad),
            ],
            "{not json",
            401,
            "unauthenticated",
        ),
        // after issue-11 pipeline order
        (
            "an empty object, a caller the policy refuses",
            vec![
                ("content-type", "application/json"),
                ("authorization", &own),
            ],
            "{}",
            403,
            "forbidden",
        ),
        // Unchanged by the new order: refused from the head, before the token.
        (
            "no Content-Type and no token",
            vec![],
            "{}",
            415,
            "unsupported_media_type",
        ),
    ];
    for (label, headers, body, status, code) in cases {
        let name = format!("pipeline order: {label}");
        let mark = suite.mark();
        let answer = suite
            .send(
                &name,
                Method::POST,
                &Harness::endpoint(TARGET),
                &headers,
                body,
            )
            .await;
        assert_problem(&answer, status, code, &name);
        suite.assert_outcomes(mark, &[(code, status)], &name);
        suite.assert_trail_intact(&name);
        suite.assert_alive(&name).await;
    }
}

/// Hostile `Idempotency-Key` values on a change the vendor would accept: each is refused
/// before the vendor (400 `invalid_request`) and stores nothing.
#[tokio::test]
async fn hostile_idempotency_keys_are_refused_before_the_vendor() {
    let suite = Suite::start().await;
    let long = "k".repeat(129);
    let cases: Vec<(&str, Vec<&[u8]>)> = vec![
        ("129 characters", vec![long.as_bytes()]),
        ("empty", vec![b""]),
        ("a space", vec![b"key one"]),
        ("non-ASCII bytes", vec!["kl\u{e9}".as_bytes()]),
        ("two headers", vec![b"key-1", b"key-2"]),
    ];
    for (label, keys) in cases {
        let name = format!("Idempotency-Key: {label}");
        let mut request = http::Request::post(suite.h.url(&Harness::endpoint(TARGET)))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", suite.admin_token()));
        for key in keys {
            request = request.header(
                "idempotency-key",
                http::HeaderValue::from_bytes(key).unwrap(),
            );
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(
                super::support::valid_body(),
            )))
            .unwrap();
        let mark = suite.mark();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let response = super::support::within(&name, client.request(request))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{name}");
        suite.assert_outcomes(mark, &[("invalid_request", 400)], &name);
        suite.assert_trail_intact(&name);
        suite.assert_alive(&name).await;
    }
    assert_eq!(
        suite.h.sim.agent_password(TARGET).as_deref(),
        Some(CURRENT),
        "the target's password never changed"
    );
}
