//! What a client can be told, and the one place that turns it into a response.
//!
//! Every refusal of the gateway is an [`ApiError`]. [`ApiError::status`] and
//! [`ApiError::code`] are exhaustive matches (no `_ =>`), so adding a variant forces a
//! decision about its status and stable code (docs/api.md). Bodies are RFC 9457 problem
//! documents. Internal causes (socket errors, vendor bodies) are logged where they happen and
//! never copied into a response: a detail is either fixed text or built from values that
//! cannot hold a secret.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::auth::AuthError;
use crate::ids::{QuotaSpec, Scope};
use crate::password_policy::PolicyViolation;

/// Header echoed on every response (docs/api.md).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Media type of every error body (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Longest vendor `resultMessage` passed on to the caller.
const MAX_VENDOR_MESSAGE_CHARS: usize = 256;

/// A refusal the client sees. The variants mirror the table in docs/api.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is malformed; the detail says which part, never a value.
    InvalidRequest(Cow<'static, str>),
    /// 400: the new password breaks the configured rule.
    PasswordPolicy(PolicyViolation),
    /// 401: no valid JWT; the reason says which rule failed, in general words.
    Unauthenticated(AuthError),
    /// 403: a valid caller that may not change this agent's password.
    Forbidden,
    /// 404: any path other than the endpoint.
    NotFound,
    /// 405: another method on the endpoint.
    MethodNotAllowed,
    /// 408: the body did not arrive within `server.request_timeout_ms` (an addition to the
    /// contract's table, documented in docs/api.md).
    RequestTimeout,
    /// 413: the body is over 4 KiB.
    PayloadTooLarge,
    /// 415: the body is not declared as JSON.
    UnsupportedMediaType,
    /// 409: another change for this agent is in flight and did not finish in time (an
    /// addition to the contract's table, asked for by issue 4).
    ChangeInProgress,
    /// 422: an `Idempotency-Key` seen before arrived with a different body.
    IdempotencyKeyReused,
    /// 429: the agent had too many vendor rejections in a row; blocked for a while.
    LockoutProtection {
        /// Until the block ends.
        retry_after: Duration,
    },
    /// 503: the lockout shield's shared state (Redis) cannot be read, so the change is
    /// refused rather than risk the vendor's lockout (an addition to the contract's table).
    LockoutStateUnavailable,
    /// 503: the audit `attempt` record could not be made durable: fail closed, no vendor call.
    AuditUnavailable,
    /// 429: a quota is spent.
    RateLimited {
        /// Which quota: the caller's or the agent's.
        scope: Scope,
        /// The quota, for the `RateLimit-Policy` header.
        spec: QuotaSpec,
        /// Until one change is allowed again.
        retry_after: Duration,
    },
    /// 422: the vendor answered `resultCode "1"`; carries its `resultMessage`.
    VendorRejected {
        /// The vendor's explanation, passed on (truncated) so the caller can act on it.
        vendor_message: String,
    },
    /// 502: the vendor failed (400/404/500, an unparsable body, a failed connection).
    VendorError,
    /// 503: no valid AccessToken could be had from `tokenByAkSk`.
    UpstreamAuthUnavailable,
    /// 504: the vendor did not answer within `vendor.timeout_ms`.
    VendorTimeout,
}

impl ApiError {
    /// HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::PasswordPolicy(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ChangeInProgress => StatusCode::CONFLICT,
            Self::VendorRejected { .. } | Self::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::LockoutProtection { .. } | Self::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::VendorError => StatusCode::BAD_GATEWAY,
            Self::UpstreamAuthUnavailable
            | Self::LockoutStateUnavailable
            | Self::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::VendorTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable machine-readable code (docs/api.md); also used for metrics and audit.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::PasswordPolicy(_) => "password_policy",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ChangeInProgress => "change_in_progress",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::LockoutProtection { .. } => "lockout_protection",
            Self::LockoutStateUnavailable => "lockout_state_unavailable",
            Self::AuditUnavailable => "audit_unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::VendorRejected { .. } => "vendor_rejected",
            Self::VendorError => "vendor_error",
            Self::UpstreamAuthUnavailable => "upstream_auth_unavailable",
            Self::VendorTimeout => "vendor_timeout",
        }
    }

    /// Human-readable explanation for this occurrence.
    fn detail(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidRequest(why) => why.clone(),
            Self::PasswordPolicy(violation) => violation.to_string().into(),
            Self::Unauthenticated(reason) => reason.to_string().into(),
            Self::Forbidden => "the caller may not change this agent's password".into(),
            Self::NotFound => {
                "the only endpoint is POST /v1/agents/{userAccount}/sip-phone-password".into()
            }
            Self::MethodNotAllowed => "this endpoint accepts POST only".into(),
            Self::RequestTimeout => "the request body did not arrive in time".into(),
            Self::PayloadTooLarge => "the request body is over 4096 bytes".into(),
            Self::UnsupportedMediaType => "the request body must be application/json".into(),
            Self::ChangeInProgress => {
                "another change for this agent is in progress; retry when it has finished".into()
            }
            Self::IdempotencyKeyReused => {
                "this Idempotency-Key was used before with a different request body".into()
            }
            Self::LockoutProtection { .. } => "this agent's recent changes were refused by the \
                 vendor; further changes are blocked for a while so that the vendor does not lock \
                 the agent out"
                .into(),
            Self::LockoutStateUnavailable => "the gateway cannot read this agent's lockout state \
                 right now; the change is refused so that the vendor does not lock the agent out"
                .into(),
            Self::AuditUnavailable => "the audit trail cannot record the change right now, so it \
                 is not sent to the vendor"
                .into(),
            Self::RateLimited { scope, .. } => {
                format!("the {scope} quota of password changes is spent").into()
            }
            Self::VendorRejected { .. } => {
                "the vendor refused the change; see vendorMessage".into()
            }
            Self::VendorError => "the vendor failed to process the request".into(),
            Self::UpstreamAuthUnavailable => {
                "the gateway cannot obtain a vendor AccessToken right now".into()
            }
            Self::VendorTimeout => {
                "the vendor did not answer in time; the change may or may not have been applied"
                    .into()
            }
        }
    }

    /// The RFC 9457 problem document.
    pub fn problem<'a>(&'a self, request_id: &'a str) -> Problem<'a> {
        let status = self.status();
        let code = self.code();
        let vendor_message = match self {
            Self::VendorRejected { vendor_message } => Some(
                vendor_message
                    .chars()
                    .take(MAX_VENDOR_MESSAGE_CHARS)
                    .collect(),
            ),
            _ => None,
        };
        Problem {
            code,
            detail: self.detail(),
            request_id,
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            problem_type: ProblemType(code),
            vendor_message,
        }
    }

    /// Renders the problem document, with `X-Request-Id` and per-status headers.
    pub fn to_response(&self, request_id: &str) -> Response<Full<Bytes>> {
        let mut response = json_response(self.status(), &self.problem(request_id), request_id);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match self {
            Self::MethodNotAllowed => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            // RFC 6750 §3: tells the client to obtain a new token.
            Self::Unauthenticated(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            Self::LockoutProtection { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            // Redis is usually back within seconds (a restart, a fail-over).
            Self::LockoutStateUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(5u64));
            }
            // RFC 9110 Retry-After, and draft-ietf-httpapi-ratelimit-headers' RateLimit-Policy
            // (the quota) and RateLimit (none left, and when one comes back).
            Self::RateLimited {
                scope,
                spec,
                retry_after,
            } => {
                let secs = retry_after_secs(*retry_after);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
                if let Ok(policy) = HeaderValue::from_str(&spec.policy_header(*scope)) {
                    headers.insert("ratelimit-policy", policy);
                }
                if let Ok(state) = HeaderValue::from_str(&format!("\"{scope}\";r=0;t={secs}")) {
                    headers.insert("ratelimit", state);
                }
            }
            _ => {}
        }
        response
    }
}

/// Every refusal the gateway can send, as (status, code): the error table that
/// `openapi.yaml` and docs/api.md document (`tests/openapi.rs` compares them both ways).
pub fn catalogue() -> impl Iterator<Item = (StatusCode, &'static str)> {
    ApiError::samples()
        .into_iter()
        .map(|e| (e.status(), e.code()))
}

/// The `code` of a success in metrics, logs and the audit trail (a success has no problem
/// document).
pub const OK_CODE: &str = "ok";

/// Every `code` an answer can carry: [`OK_CODE`] and each code of the [`catalogue`]. The
/// values of `sipgw_requests_total{code}`, all present at 0 from start-up.
pub fn answer_codes() -> impl Iterator<Item = &'static str> {
    std::iter::once(OK_CODE).chain(catalogue().map(|(_, code)| code))
}

/// `Retry-After` in whole seconds, rounded up (RFC 9110 §10.2.3), at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

impl ApiError {
    /// One value of each variant, in declaration order: the one list of the error table,
    /// from which [`catalogue`] and the tests that render every refusal are derived. Status,
    /// code and headers do not depend on the payloads (a `Retry-After` is sent whatever its
    /// value). The unit test `the_catalogue_has_every_variant_once` keeps it complete.
    pub fn samples() -> Vec<ApiError> {
        let spec = QuotaSpec {
            burst: std::num::NonZeroU32::MIN,
            per: Duration::from_secs(60),
        };
        vec![
            Self::InvalidRequest("the request is malformed".into()),
            Self::PasswordPolicy(PolicyViolation::SameAsCurrent),
            Self::Unauthenticated(AuthError::Expired),
            Self::Forbidden,
            Self::NotFound,
            Self::MethodNotAllowed,
            Self::RequestTimeout,
            Self::PayloadTooLarge,
            Self::UnsupportedMediaType,
            Self::ChangeInProgress,
            Self::IdempotencyKeyReused,
            Self::LockoutProtection {
                retry_after: Duration::from_secs(60),
            },
            Self::LockoutStateUnavailable,
            Self::AuditUnavailable,
            Self::RateLimited {
                scope: Scope::Agent,
                spec,
                retry_after: Duration::from_secs(600),
            },
            Self::VendorRejected {
                vendor_message: "wrong password".into(),
            },
            Self::VendorError,
            Self::UpstreamAuthUnavailable,
            Self::VendorTimeout,
        ]
    }
}

/// An RFC 9457 problem document, serialised straight to its bytes. The members are in
/// alphabetical order, as earlier versions (a JSON tree) wrote them: an answer stored for
/// idempotent replays (on Redis, shared with other replicas) reads back the same.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem<'a> {
    /// The stable code.
    code: &'static str,
    /// What went wrong, in words.
    detail: Cow<'static, str>,
    /// The request's id.
    request_id: &'a str,
    /// The HTTP status, repeated.
    status: u16,
    /// The status's reason phrase.
    title: &'static str,
    /// `urn:sipgw:problem:<code>`.
    #[serde(rename = "type")]
    problem_type: ProblemType,
    /// The vendor's `resultMessage`, cut, for a rejected change.
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor_message: Option<String>,
}

/// `urn:sipgw:problem:<code>`, written without building the string first.
#[derive(Debug)]
struct ProblemType(&'static str);

impl Serialize for ProblemType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("urn:sipgw:problem:{}", self.0))
    }
}

/// A JSON response with the headers every answer of the gateway carries. Answers concern
/// credentials, so no intermediary may store them (`Cache-Control: no-store`).
pub fn json_response(
    status: StatusCode,
    body: &impl Serialize,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(json_bytes(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Request ids are validated or generated by us, so they are always valid header values.
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// A body's JSON. The gateway's bodies are plain structs of strings and numbers, which
/// always serialise.
pub fn json_bytes(body: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(body).expect("answer bodies always serialize"))
}

#[cfg(test)]
mod tests;
