//! The request's shape (`src/request.rs`): route, `userAccount`, media type, declared
//! length, `X-Request-Id` and body.
//!
//! Input: four fields separated by the first three `\n` bytes: the path, the
//! `Content-Type` value, the `Content-Length` value (also used as the `X-Request-Id`), and
//! the body (the rest, any bytes). Header values that HTTP cannot carry are left out, as
//! hyper would never deliver them.

#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use serde_json::Value;
use sipgw::request::{
    MAX_BODY_BYTES, MAX_PASSWORD_CHARS, MAX_USER_ACCOUNT_LEN, check_content_type,
    check_declared_length, match_endpoint, parse_body, parse_user_account, request_id,
};

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(4, |b| *b == b'\n');
    let path = fields.next().unwrap_or_default();
    let content_type = fields.next().unwrap_or_default();
    let content_length = fields.next().unwrap_or_default();
    let body = fields.next().unwrap_or_default();

    if let Ok(path) = std::str::from_utf8(path) {
        check_path(path);
    }
    check_head(content_type, content_length);
    check_body(body);
});

fn check_path(path: &str) {
    let Some(segment) = match_endpoint(path) else {
        return;
    };
    // The route is exactly prefix, one segment, suffix.
    assert_eq!(
        path,
        format!("/v1/agents/{segment}/sip-phone-password"),
        "match_endpoint returned a segment that does not rebuild the path"
    );
    assert!(!segment.contains('/'), "segment {segment:?} holds a slash");
    if let Ok(account) = parse_user_account(segment) {
        // docs/api.md: 1-64 characters of [A-Za-z0-9._@-].
        assert!(
            (1..=MAX_USER_ACCOUNT_LEN).contains(&account.len()),
            "accepted account of {} bytes",
            account.len()
        );
        assert!(
            account
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-')),
            "accepted account {account:?} outside [A-Za-z0-9._@-]"
        );
        // An accepted account holds no `%`, so it decodes to itself.
        assert_eq!(
            parse_user_account(&account).as_deref(),
            Ok(account.as_str())
        );
    }
}

fn check_head(content_type: &[u8], content_length: &[u8]) {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_bytes(content_length) {
        headers.insert(header::CONTENT_LENGTH, value.clone());
        headers.insert("x-request-id", value);
    }
    if check_content_type(&headers).is_ok() {
        let value = headers[header::CONTENT_TYPE]
            .to_str()
            .expect("accepted as text");
        let media = value.split(';').next().unwrap_or_default().trim();
        assert!(
            media.eq_ignore_ascii_case("application/json"),
            "accepted media type {value:?}"
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(
        check_declared_length(&headers).is_err(),
        declared.is_some_and(|n| n > MAX_BODY_BYTES as u64),
        "declared length {declared:?}"
    );
    // Request ids are echoed in headers and logs: always a short visible token.
    let id = request_id(&headers);
    assert!(
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')),
        "request id {id:?}"
    );
}

fn check_body(body: &[u8]) {
    let Ok(parsed) = parse_body(body) else {
        return;
    };
    let account_pwd = parsed.account_pwd.expose_secret();
    let new_phone_pwd = parsed.new_phone_pwd.expose_secret();
    for value in [account_pwd, new_phone_pwd] {
        assert!(!value.is_empty(), "accepted an empty password");
        assert!(
            value.chars().count() <= MAX_PASSWORD_CHARS,
            "accepted an over-long password"
        );
        assert!(
            !value.chars().any(char::is_control),
            "accepted a control character"
        );
    }
    // What the gateway read is what any JSON reader reads: an object of exactly the two
    // fields, with the same values (no duplicate member where another reader would pick
    // the other one, no other shape that serde happened to accept).
    let generic: Value = serde_json::from_slice(body).expect("an accepted body is JSON");
    let object = generic.as_object().expect("an accepted body is an object");
    assert_eq!(object.len(), 2, "accepted a body with other fields");
    assert_eq!(object["accountPwd"], account_pwd);
    assert_eq!(object["newPhonePwd"], new_phone_pwd);
    // And it round-trips: the body as the gateway would write it parses to the same values.
    let again = serde_json::json!({"accountPwd": account_pwd, "newPhonePwd": new_phone_pwd});
    let reparsed = parse_body(again.to_string().as_bytes()).expect("a re-serialized body parses");
    assert_eq!(reparsed.account_pwd.expose_secret(), account_pwd);
    assert_eq!(reparsed.new_phone_pwd.expose_secret(), new_phone_pwd);
}
