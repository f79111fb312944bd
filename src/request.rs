//! The shape of a password-change request: route, `userAccount`, media type, body.
//!
//! The route, `userAccount`, media type and declared length are the first checks of the
//! pipeline (docs/api.md), from the head: cheap, pure, and done before anything that costs
//! more. The body is parsed only after the caller was authenticated and authorized. Error details describe what is wrong in general
//! words; they never repeat a value from the body, because the body holds passwords (serde's
//! own messages can quote a value, so they are not passed on).
//!
//! [`forwarded`]: who the end user is behind a trusted reverse proxy, for the audit trail.

use std::borrow::Cow;

use http::{HeaderMap, header};
use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::ApiError;

pub mod forwarded;

/// The one stable endpoint: `POST /v1/agents/{userAccount}/sip-phone-password`.
const PATH_PREFIX: &str = "/v1/agents/";
const PATH_SUFFIX: &str = "/sip-phone-password";
/// Body limit of the endpoint (docs/api.md).
pub const MAX_BODY_BYTES: usize = 4096;
/// `userAccount`: 1–64 characters of `[A-Za-z0-9._@-]` (docs/api.md).
pub const MAX_USER_ACCOUNT_LEN: usize = 64;
/// Bound on either password: generous, since older rule groups may have allowed longer
/// passwords; the rule's own `max_len` (at most this) then refuses long new ones by name.
pub const MAX_PASSWORD_CHARS: usize = crate::password_policy::MAX_PASSWORD_LEN;
/// Bound on a caller-supplied `X-Request-Id`; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Returns the raw `{userAccount}` segment when `path` is the endpoint, `None` otherwise.
pub fn match_endpoint(path: &str) -> Option<&str> {
    let account = path.strip_prefix(PATH_PREFIX)?.strip_suffix(PATH_SUFFIX)?;
    (!account.contains('/')).then_some(account)
}

/// Decodes percent-escapes (clients may send `@` as `%40`) and checks the character set.
pub fn parse_user_account(segment: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::InvalidRequest(
            "userAccount must be 1-64 characters of A-Z a-z 0-9 . _ @ -".into(),
        )
    };
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| bad())?;
    let valid = (1..=MAX_USER_ACCOUNT_LEN).contains(&decoded.len())
        && decoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if valid {
        Ok(decoded.into_owned())
    } else {
        Err(bad())
    }
}

/// Accepts `application/json` with optional parameters (e.g. `; charset=utf-8`).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Refuses early when the declared length is already over the limit.
pub fn check_declared_length(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => Err(ApiError::PayloadTooLarge),
        _ => Ok(()),
    }
}

/// The caller's `X-Request-Id` when it is a sane token, otherwise a fresh UUID v4. Ids are
/// echoed in headers and written to logs, so only visible ASCII without separators is kept.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(crate::error::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map_or_else(new_request_id, str::to_owned)
}

/// A new request id: a random (version 4) UUID. It names a request, it guards nothing (a
/// client may send its own `X-Request-Id`, kept when sane), so its randomness comes from
/// the thread's fast generator rather than the kernel: a `getrandom` call per request
/// was one of the hot path's system calls.
fn new_request_id() -> String {
    let bytes = fastrand::u128(..).to_le_bytes();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

/// The body of a change, with both passwords held as secrets (redacted `Debug`, zeroized).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangeBody {
    /// The agent's current password, verified by the vendor.
    pub account_pwd: SecretString,
    /// The new SIP phone password.
    pub new_phone_pwd: SecretString,
}

impl std::fmt::Debug for ChangeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeBody { accountPwd: [REDACTED], newPhonePwd: [REDACTED] }")
    }
}

/// Parses and checks the body's shape (the password rule is checked later, by its own step).
pub fn parse_body(bytes: &[u8]) -> Result<ChangeBody, ApiError> {
    const SHAPE: &str =
        "body must be a JSON object with exactly the string fields accountPwd and newPhonePwd";
    // serde would also build the struct from a JSON array (`["old", "new"]`); the contract
    // says object, so anything else is refused before parsing.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::InvalidRequest(SHAPE.into()));
    }
    let body: ChangeBody = serde_json::from_slice(bytes).map_err(|e| {
        let why: Cow<'static, str> = if e.is_data() {
            SHAPE.into()
        } else {
            "body is not valid JSON".into()
        };
        ApiError::InvalidRequest(why)
    })?;
    check_value("accountPwd", body.account_pwd.expose_secret())?;
    check_value("newPhonePwd", body.new_phone_pwd.expose_secret())?;
    Ok(body)
}

fn check_value(field: &'static str, value: &str) -> Result<(), ApiError> {
    let max_chars = MAX_PASSWORD_CHARS;
    if value.is_empty() {
        return Err(ApiError::InvalidRequest(
            format!("{field} must not be empty").into(),
        ));
    }
    if value.chars().count() > max_chars {
        return Err(ApiError::InvalidRequest(
            format!("{field} must be at most {max_chars} characters").into(),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest(
            format!("{field} must not contain control characters").into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_the_endpoint_path_matches() {
        assert_eq!(
            match_endpoint("/v1/agents/a1001/sip-phone-password"),
            Some("a1001")
        );
        assert_eq!(match_endpoint("/v1/agents//sip-phone-password"), Some(""));
        assert_eq!(match_endpoint("/v1/agents/a/b/sip-phone-password"), None);
        assert_eq!(match_endpoint("/v1/agents/a1001/sip-phone-password/"), None);
        assert_eq!(match_endpoint("/v1/agents/a1001"), None);
        assert_eq!(match_endpoint("/"), None);
    }

    #[test]
    fn user_account_rules() {
        assert_eq!(
            parse_user_account("agent.one_2@corp-x").unwrap(),
            "agent.one_2@corp-x"
        );
        assert_eq!(parse_user_account("a%40b").unwrap(), "a@b");
        assert_eq!(parse_user_account(&"a".repeat(64)).unwrap().len(), 64);
        for bad in [
            "", "a b", "a%20b", "%2F", "a%2Fb", "ä", "%C3%A4", "a%ZZ", "a;b",
        ] {
            assert!(
                parse_user_account(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        assert!(parse_user_account(&"a".repeat(65)).is_err());
    }

    #[test]
    fn content_type_must_be_json() {
        let mut h = HeaderMap::new();
        assert_eq!(check_content_type(&h), Err(ApiError::UnsupportedMediaType));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(check_content_type(&h), Ok(()));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(check_content_type(&h), Err(ApiError::UnsupportedMediaType));
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
        let mut h = HeaderMap::new();
        h.insert(
            crate::error::REQUEST_ID_HEADER,
            HeaderValue::from_static("abc-123"),
        );
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            crate::error::REQUEST_ID_HEADER,
            HeaderValue::from_static("a b"),
        );
        let generated = request_id(&h);
        assert!(uuid::Uuid::parse_str(&generated).is_ok());
        let new = uuid::Uuid::parse_str(&request_id(&HeaderMap::new())).unwrap();
        assert_eq!(new.get_version(), Some(uuid::Version::Random));
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn bodies_are_checked_without_echoing_values() {
        let ok = parse_body(br#"{"accountPwd":"Old-Pass1","newPhonePwd":"New~Pass2"}"#).unwrap();
        assert_eq!(ok.new_phone_pwd.expose_secret(), "New~Pass2");
        let cases: [&[u8]; 8] = [
            b"not json",
            br#"{"accountPwd":"a"}"#,
            br#"{"accountPwd":"a","newPhonePwd":"b","extra":1}"#,
            br#"{"accountPwd":12345678,"newPhonePwd":"b"}"#,
            br#"{"accountPwd":"","newPhonePwd":"b"}"#,
            br#"{"accountPwd":"a","newPhonePwd":""}"#,
            br#"{"accountPwd":"a\u0000","newPhonePwd":"b"}"#,
            br#"["a","b"]"#,
        ];
        for body in cases {
            let err = parse_body(body).unwrap_err();
            assert_eq!(err.code(), "invalid_request");
            let detail = format!("{err:?}");
            assert!(!detail.contains("12345678"), "{detail}");
        }
        let long = format!(
            r#"{{"accountPwd":"{}","newPhonePwd":"b"}}"#,
            "a".repeat(129)
        );
        assert!(parse_body(long.as_bytes()).is_err());
    }

    #[test]
    fn debug_of_a_body_is_redacted() {
        let body = parse_body(br#"{"accountPwd":"Old-Pass1","newPhonePwd":"New~Pass2"}"#).unwrap();
        let text = format!("{body:?}");
        assert!(!text.contains("Old-Pass1") && !text.contains("New~Pass2"));
    }
}
