//! How the pipeline reads a request's body and writes its answers: success bodies,
//! replays of remembered outcomes, and the outcome to remember for an `Idempotency-Key`.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::Deadline;
use crate::error::ApiError;
use crate::limits::idempotency::{self, Outcome, Stored};
use crate::request::MAX_BODY_BYTES;

/// Reads the body within `MAX_BODY_BYTES`, before the request's deadline.
pub(super) async fn read_body(body: Incoming, deadline: Deadline) -> Result<Bytes, ApiError> {
    let limited = Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout_at(deadline, limited.collect()).await {
        Err(_) => Err(ApiError::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge)
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "request body could not be read");
            Err(ApiError::InvalidRequest(
                "the request body could not be read".into(),
            ))
        }
    }
}

/// Whether a request's head announces a body (a non-zero `Content-Length`, or any
/// `Transfer-Encoding`).
pub(super) fn declares_body(headers: &http::HeaderMap) -> bool {
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0");
    length || headers.contains_key(http::header::TRANSFER_ENCODING)
}

/// The success body; a replay renders it with the same function.
pub(super) use crate::limits::idempotency::success_body;

/// The outcome to remember for an `Idempotency-Key`: only one that reached the vendor (a
/// vendor answer, or an unknown outcome after a timeout or a cut connection); refusals
/// before it, and a vendor that refused our credentials (nothing changed), release the key.
pub(super) fn stored_outcome(
    result: &Result<String, ApiError>,
    request_id: &str,
) -> Option<Stored> {
    let (outcome, message) = match result {
        Ok(message) => (Outcome::Accepted, message.as_str()),
        Err(ApiError::VendorRejected { vendor_message }) => {
            (Outcome::VendorRejected, vendor_message.as_str())
        }
        Err(ApiError::VendorError) => (Outcome::VendorError, ""),
        Err(ApiError::VendorTimeout) => (Outcome::VendorTimeout, ""),
        Err(_) => return None,
    };
    Some(Stored::new(outcome, request_id, message))
}

/// Answers a retry with the first outcome, marked as a replay.
pub(super) fn replay(stored: &Stored, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(stored.body()));
    *response.status_mut() = StatusCode::from_u16(stored.status()).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(stored.content_type()),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        "idempotent-replayed",
        http::HeaderValue::from_static("true"),
    );
    if let Ok(id) = http::HeaderValue::from_str(request_id) {
        headers.insert(crate::error::REQUEST_ID_HEADER, id);
    }
    response
}

/// The request's `Idempotency-Key`, if any; more than one, or a malformed one, is a 400.
pub(super) fn idempotency_key(headers: &http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let bad = || {
        ApiError::InvalidRequest(
            "Idempotency-Key must be one header of 1-128 visible ASCII characters".into(),
        )
    };
    let mut values = headers.get_all("idempotency-key").iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => {
            let key = value.to_str().map_err(|_| bad())?;
            if idempotency::valid_key(key) {
                Ok(Some(key))
            } else {
                Err(bad())
            }
        }
        (Some(_), Some(_)) => Err(bad()),
    }
}
