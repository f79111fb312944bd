//! Path and method dispatch, and the pieces both endpoints share: reading a bounded body,
//! building JSON responses, and the error that makes hyper drop a connection.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{Shared, token_endpoint, update_endpoint};

/// Path of the vendor's `tokenByAkSk` call.
pub const TOKEN_PATH: &str = "/apigovernance/api/oauth/tokenByAkSk";
/// Path of the vendor's `updateSipPhonePassword` call.
pub const UPDATE_PATH: &str = "/apiaccess/rest/cc-management/v1/sipPhone/updateSipPhonePassword";

/// Largest request body read. Both calls carry a few short strings; this bounds memory per
/// request against a runaway client.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The response body type of every answer.
pub(crate) type SimResponse = Response<Full<Bytes>>;

/// Why a request ends without a response. Returning it from the service makes hyper close
/// the HTTP/1 connection (or reset the HTTP/2 stream) without writing anything.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoResponse {
    /// The `update_drop` fault asked for it.
    #[error("simulated fault: connection dropped without a response")]
    FaultDrop,
    /// The client's body could not be read (it went away or sent a broken framing).
    #[error("could not read the request body")]
    BodyRead(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What reading a body gave.
pub(crate) enum ReadBody {
    /// The whole body.
    Complete(Bytes),
    /// The body was larger than [`MAX_BODY_BYTES`].
    TooLarge,
}

/// Routes one request. Unknown paths get 404 and known paths with another method 405, as
/// the vendor's API gateway does.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<SimResponse, NoResponse> {
    let path = request.uri().path();
    if path == TOKEN_PATH {
        token_endpoint::handle(&shared, request).await
    } else if path == UPDATE_PATH {
        update_endpoint::handle(&shared, request).await
    } else {
        tracing::debug!(%path, "unknown path");
        Ok(error_response(StatusCode::NOT_FOUND, "path not found"))
    }
}

/// Reads the whole body, up to [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(body: Incoming) -> Result<ReadBody, NoResponse> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(ReadBody::Complete(collected.to_bytes())),
        Err(error) if error.is::<LengthLimitError>() => Ok(ReadBody::TooLarge),
        Err(error) => Err(NoResponse::BodyRead(error)),
    }
}

/// Whether the request uses the one method both calls accept.
pub(crate) fn is_post(method: &Method) -> bool {
    method == Method::POST
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> SimResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A non-200 answer. The vendor reference documents no error body, so the simulator uses
/// the `error_code` / `error_msg` shape of the vendor's API gateway; clients should rely on
/// the status only.
pub(crate) fn error_response(status: StatusCode, message: &str) -> SimResponse {
    let body = json!({
        "error_code": format!("SIM.{}", status.as_u16()),
        "error_msg": message,
    });
    json_response(status, &body)
}

/// 405 for a known path with another method, naming the allowed one (RFC 9110 §15.5.6).
pub(crate) fn method_not_allowed() -> SimResponse {
    let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}
