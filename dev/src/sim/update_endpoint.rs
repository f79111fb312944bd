//! `POST updateSipPhonePassword`: change an agent's SIP phone password.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::faults::FaultSettings;
use super::record::NO_RESPONSE;
use super::routes::{
    NoResponse, ReadBody, SimResponse, error_response, is_post, json_response, method_not_allowed,
    read_body,
};
use super::{Shared, lock};

/// Optional header that, when sent, must carry the app key the token was issued to.
const APP_KEY_HEADER: &str = "x-app-key";

/// The body as received, decided once and used both for the record and for the checks.
enum Received {
    /// Valid JSON (of any shape).
    Json(Value),
    /// Not JSON; kept as its lossily decoded text.
    NotJson(String),
    /// Over the body size limit.
    TooLarge,
}

impl Received {
    fn from_body(body: ReadBody) -> Self {
        match body {
            ReadBody::TooLarge => Self::TooLarge,
            ReadBody::Complete(bytes) => match serde_json::from_slice(&bytes) {
                Ok(value) => Self::Json(value),
                Err(_) => Self::NotJson(String::from_utf8_lossy(&bytes).into_owned()),
            },
        }
    }

    fn to_record(&self) -> Value {
        match self {
            Self::Json(value) => value.clone(),
            Self::NotJson(text) => Value::String(text.clone()),
            Self::TooLarge => Value::Null,
        }
    }
}

/// The three fields of a change, from either body shape. No `Debug`: it holds passwords.
pub(crate) struct ChangeRequest {
    /// `userAccount`: the agent.
    pub(crate) user_account: String,
    /// `accountPwd`: the agent's current password.
    pub(crate) account_pwd: String,
    /// `newPhonePwd`: the password to set.
    pub(crate) new_phone_pwd: String,
}

/// Why a body is malformed (the vendor answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    /// Not JSON, or JSON that is not an object.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// `requestParam` is present but is not an object.
    #[error("requestParam must be a JSON object")]
    RequestParamNotObject,
    /// One of the three fields is absent or not a string.
    #[error("{0} is missing or is not a string")]
    Field(&'static str),
    /// Over the body size limit.
    #[error("request body too large")]
    TooLarge,
}

impl ChangeRequest {
    /// Accepts both shapes docs/vendor.md describes: the fields wrapped in `requestParam`
    /// (the reference's table) and flat at the top level (the reference's example). When
    /// `requestParam` is present it is the one read.
    pub(crate) fn from_json(value: &Value) -> Result<Self, BodyError> {
        let top = value.as_object().ok_or(BodyError::NotAnObject)?;
        let params = match top.get("requestParam") {
            Some(Value::Object(params)) => params,
            Some(_) => return Err(BodyError::RequestParamNotObject),
            None => top,
        };
        Ok(Self {
            account_pwd: string_field(params, "accountPwd")?,
            new_phone_pwd: string_field(params, "newPhonePwd")?,
            user_account: string_field(params, "userAccount")?,
        })
    }
}

fn string_field(params: &Map<String, Value>, name: &'static str) -> Result<String, BodyError> {
    match params.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(BodyError::Field(name)),
    }
}

/// Answers one update request: count and record it, then [`respond`], then note the
/// status in the record.
pub(crate) async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<SimResponse, NoResponse> {
    let faults = shared.faults.snapshot();
    let (parts, body) = request.into_parts();
    // The request counts as "reached the update path" once its body has arrived; a client
    // that vanishes mid-body never made a call the vendor could act on.
    let received = Received::from_body(read_body(body).await?);
    shared.update_count.fetch_add(1, Ordering::Relaxed);
    // Recorded on arrival, not on completion, so the log keeps arrival order and shows
    // requests still sleeping in a delay fault or held (status NO_RESPONSE until answered).
    let seq = shared
        .record_requests
        .then(|| lock(&shared.updates).push(parts.headers.clone(), received.to_record()));

    let outcome = respond(shared, faults, &parts, received).await;

    if let Some(seq) = seq {
        let status = outcome
            .as_ref()
            .map_or(NO_RESPONSE, |response| response.status().as_u16());
        lock(&shared.updates).set_status(seq, status);
    }
    outcome
}

/// The ordered checks: method, faults (delay, hold, drop, status, garbage, reject), token (401),
/// app key (401), body (400), then the business verdict (always 200).
async fn respond(
    shared: &Shared,
    faults: FaultSettings,
    parts: &Parts,
    received: Received,
) -> Result<SimResponse, NoResponse> {
    if !is_post(&parts.method) {
        return Ok(method_not_allowed());
    }
    if let Some(delay) = faults.update_delay {
        tokio::time::sleep(delay).await;
    }
    shared.faults.wait_while_updates_held().await;
    if faults.update_drop {
        tracing::debug!("update endpoint: simulated fault, dropping the connection");
        return Err(NoResponse::FaultDrop);
    }
    if let Some(status) = faults.update_status {
        tracing::debug!(%status, "update endpoint: simulated fault status");
        return Ok(error_response(status, "simulated fault"));
    }
    if faults.update_garbage {
        return Ok(garbage_response());
    }
    if faults.reject_all_tokens || !has_live_token(shared, &parts.headers) {
        tracing::debug!("update endpoint: missing, invalid or expired AccessToken");
        return Ok(error_response(
            StatusCode::UNAUTHORIZED,
            "AccessToken is missing, invalid or expired",
        ));
    }
    if !app_key_matches(shared, &parts.headers) {
        tracing::debug!("update endpoint: x-app-key does not match");
        return Ok(error_response(
            StatusCode::UNAUTHORIZED,
            "x-app-key does not match the app key",
        ));
    }
    let change = match received {
        Received::Json(value) => ChangeRequest::from_json(&value),
        Received::NotJson(_) => Err(BodyError::NotAnObject),
        Received::TooLarge => Err(BodyError::TooLarge),
    };
    let change = match change {
        Ok(change) => change,
        Err(error) => return Ok(error_response(StatusCode::BAD_REQUEST, &error.to_string())),
    };

    if shared.always_succeed {
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "resultCode": "0", "resultMessage": "success" }),
        ));
    }
    let outcome = lock(&shared.accounts).change_password(
        &change.user_account,
        &change.account_pwd,
        &change.new_phone_pwd,
        Instant::now(),
    );
    tracing::debug!(
        account = %change.user_account,
        result_code = outcome.result_code(),
        "update endpoint: answered"
    );
    let body = json!({
        "resultCode": outcome.result_code(),
        "resultMessage": outcome.result_message(),
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// `Authorization` is exactly `Bearer <token>` (one space) and the token is live.
fn has_live_token(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    lock(&shared.tokens).is_live(token, Instant::now())
}

/// `x-app-key` is absent (optional in the reference) or equals the app key.
fn app_key_matches(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(APP_KEY_HEADER)
        .is_none_or(|value| value.as_bytes() == shared.app_key.as_bytes())
}

/// A 200 whose body is not JSON, like an HTML error page from a misbehaving proxy.
fn garbage_response() -> SimResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"<html><body>simulated garbage</body></html>",
    )));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(change: &ChangeRequest) -> (&str, &str, &str) {
        (
            change.user_account.as_str(),
            change.account_pwd.as_str(),
            change.new_phone_pwd.as_str(),
        )
    }

    #[test]
    fn accepts_wrapped_and_flat_shapes() {
        let wrapped = json!({"requestParam": {
            "accountPwd": "Old1pass", "newPhonePwd": "New1pass", "userAccount": "a1"}});
        let flat =
            json!({"accountPwd": "Old1pass", "newPhonePwd": "New1pass", "userAccount": "a1"});
        for body in [wrapped, flat] {
            let change = ChangeRequest::from_json(&body).expect("valid body");
            assert_eq!(fields(&change), ("a1", "Old1pass", "New1pass"));
        }
    }

    #[test]
    fn request_param_wins_over_flat_fields() {
        let body = json!({
            "requestParam": {"accountPwd": "p", "newPhonePwd": "n", "userAccount": "inner"},
            "accountPwd": "x", "newPhonePwd": "y", "userAccount": "outer"});
        let change = ChangeRequest::from_json(&body).expect("valid body");
        assert_eq!(change.user_account, "inner");
    }

    #[test]
    fn refuses_missing_or_non_string_fields() {
        let cases = [
            (json!([1, 2]), BodyError::NotAnObject),
            (
                json!({"requestParam": "x"}),
                BodyError::RequestParamNotObject,
            ),
            (
                json!({"newPhonePwd": "n", "userAccount": "a"}),
                BodyError::Field("accountPwd"),
            ),
            (
                json!({"accountPwd": "p", "newPhonePwd": 5, "userAccount": "a"}),
                BodyError::Field("newPhonePwd"),
            ),
            (
                json!({"requestParam": {"accountPwd": "p", "newPhonePwd": "n"}}),
                BodyError::Field("userAccount"),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                ChangeRequest::from_json(&body).err(),
                Some(expected),
                "{body}"
            );
        }
    }
}
