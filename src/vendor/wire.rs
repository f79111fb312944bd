//! The vendor's JSON, in and out (docs/vendor.md). Pure functions, unit-tested.

use std::time::Duration;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::UpdateRequest;
use super::config::BodyShape;

/// A token as `tokenByAkSk` granted it.
pub struct FetchedToken {
    /// The AccessToken itself.
    pub value: SecretString,
    /// `Expires`: how long it lives from the moment it was issued.
    pub lifetime: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TokenBody {
    access_token: SecretString,
    expires: Value,
    #[serde(default)]
    create_time: Option<Value>,
}

/// `Expires` and `CreateTime` are documented as strings holding integers ("600"); a bare
/// number is accepted too, since nothing is lost by it.
fn integer_in_string(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Parses a `tokenByAkSk` success body; `None` when it is not what the vendor documents.
pub fn parse_token(body: &[u8]) -> Option<FetchedToken> {
    let parsed: TokenBody = serde_json::from_slice(body).ok()?;
    let lifetime = integer_in_string(&parsed.expires).filter(|&secs| secs > 0)?;
    // CreateTime is informative only (we time the token by our own clock), but a body where
    // it is present and not an integer is not the documented one.
    if let Some(created) = &parsed.create_time {
        integer_in_string(created)?;
    }
    let token = parsed.access_token.expose_secret();
    // The token travels in a header: it must be a non-empty run of visible ASCII.
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(FetchedToken {
        value: parsed.access_token,
        lifetime: Duration::from_secs(lifetime),
    })
}

/// The vendor's verdict on a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// `"0"` success, `"1"` failure.
    pub result_code: String,
    /// The vendor's explanation.
    pub result_message: String,
}

impl UpdateOutcome {
    /// `resultCode "0"`.
    pub fn is_success(&self) -> bool {
        self.result_code == "0"
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateBody {
    result_code: Value,
    #[serde(default)]
    result_message: Option<String>,
}

/// Parses an `updateSipPhonePassword` 200 body; only `resultCode` "0" and "1" are known.
pub fn parse_update(body: &[u8]) -> Option<UpdateOutcome> {
    let parsed: UpdateBody = serde_json::from_slice(body).ok()?;
    let code = match &parsed.result_code {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if code != "0" && code != "1" {
        return None;
    }
    Some(UpdateOutcome {
        result_code: code,
        result_message: parsed.result_message.unwrap_or_default(),
    })
}

/// The fields of a change, in the order the vendor's examples give them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpdateFields<'a> {
    account_pwd: &'a str,
    new_phone_pwd: &'a str,
    user_account: &'a str,
}

/// The fields wrapped in `requestParam` ([`BodyShape::Wrapped`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wrapped<'a> {
    request_param: UpdateFields<'a>,
}

/// The change's body in the configured shape (docs/vendor.md, "Body shape"): serialised
/// straight from the request's fields, with no intermediate JSON tree.
pub fn update_body(shape: BodyShape, change: &UpdateRequest<'_>) -> Bytes {
    let fields = UpdateFields {
        account_pwd: change.account_pwd.expose_secret(),
        new_phone_pwd: change.new_phone_pwd.expose_secret(),
        user_account: change.user_account,
    };
    let body = match shape {
        BodyShape::Wrapped => serde_json::to_vec(&Wrapped {
            request_param: fields,
        }),
        BodyShape::Flat => serde_json::to_vec(&fields),
    };
    Bytes::from(body.expect("strings always serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_fields_are_integers_in_strings() {
        let t = parse_token(
            br#"{"AccessToken":"abc","ApplyType":"Bearer","CreateTime":"1545650171","Expires":"600","Scope":"s","AppKey":"k","UserID":"Anonymous"}"#,
        )
        .unwrap();
        assert_eq!(t.value.expose_secret(), "abc");
        assert_eq!(t.lifetime, Duration::from_secs(600));
        assert!(parse_token(br#"{"AccessToken":"abc","Expires":600}"#).is_some());
    }

    #[test]
    fn unusable_token_bodies_are_refused() {
        for body in [
            &br#"{"AccessToken":"abc","Expires":"soon"}"#[..],
            br#"{"AccessToken":"abc","Expires":"0"}"#,
            br#"{"AccessToken":"abc"}"#,
            br#"{"AccessToken":"","Expires":"600"}"#,
            br#"{"AccessToken":"a b","Expires":"600"}"#,
            br#"{"AccessToken":"abc","Expires":"600","CreateTime":"yesterday"}"#,
            b"<html>",
        ] {
            assert!(
                parse_token(body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn update_outcomes() {
        let ok = parse_update(br#"{"resultCode":"0","resultMessage":"success"}"#).unwrap();
        assert!(ok.is_success());
        let no = parse_update(br#"{"resultCode":"1","resultMessage":"wrong password"}"#).unwrap();
        assert!(!no.is_success());
        assert_eq!(no.result_message, "wrong password");
        assert!(parse_update(br#"{"resultCode":"7"}"#).is_none());
        assert!(parse_update(b"garbage").is_none());
    }

    #[test]
    fn both_body_shapes() {
        let (old, new) = (
            SecretString::from("Old-Pass1"),
            SecretString::from("New~Pass2"),
        );
        let no_trace = http::HeaderMap::new();
        let change = UpdateRequest {
            user_account: "a1001",
            account_pwd: &old,
            new_phone_pwd: &new,
            request_id: "r",
            trace_headers: &no_trace,
        };
        let wrapped: Value =
            serde_json::from_slice(&update_body(BodyShape::Wrapped, &change)).unwrap();
        assert_eq!(wrapped["requestParam"]["userAccount"], "a1001");
        assert_eq!(wrapped["requestParam"]["accountPwd"], "Old-Pass1");
        assert_eq!(wrapped.as_object().unwrap().len(), 1);
        let flat: Value = serde_json::from_slice(&update_body(BodyShape::Flat, &change)).unwrap();
        assert_eq!(flat["newPhonePwd"], "New~Pass2");
        assert_eq!(flat.as_object().unwrap().len(), 3);
        // The exact bytes, as earlier versions (a JSON tree, keys sorted) sent them.
        assert_eq!(
            &update_body(BodyShape::Wrapped, &change)[..],
            br#"{"requestParam":{"accountPwd":"Old-Pass1","newPhonePwd":"New~Pass2","userAccount":"a1001"}}"#
        );
    }
}
