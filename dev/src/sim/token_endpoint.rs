//! `POST tokenByAkSk`: trade the app key and secret for an AccessToken.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::routes::{
    NoResponse, ReadBody, SimResponse, error_response, is_post, json_response, method_not_allowed,
    read_body,
};
use super::{Shared, lock, tokens};

/// Header carrying the lifetime the client asks for, in seconds.
const TOKEN_EXPIRE_HEADER: &str = "x-token-expire";

/// The request body. Unknown fields are ignored, as a lenient vendor gateway would.
#[derive(Deserialize)]
struct Credentials {
    /// The app key (AK).
    app_key: String,
    /// The app secret (SK).
    app_secret: String,
}

/// Answers one token request, in this order: count it, read the body, apply the token
/// faults, validate `X-Token-Expire` (400), the body (400), the credentials (401), then issue.
pub(crate) async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<SimResponse, NoResponse> {
    // Counted before anything can fail, so tests see every attempt the gateway made.
    shared.token_requests.fetch_add(1, Ordering::Relaxed);
    let faults = shared.faults.snapshot();
    if !is_post(request.method()) {
        return Ok(method_not_allowed());
    }
    let (parts, body) = request.into_parts();
    // Read first even when faulted, so the connection stays usable for keep-alive.
    let body = read_body(body).await?;

    if let Some(delay) = faults.token_delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = faults.token_status {
        tracing::debug!(%status, "token endpoint: simulated fault status");
        return Ok(error_response(status, "simulated fault"));
    }

    let requested_ttl = parts.headers.get(TOKEN_EXPIRE_HEADER).map(|v| v.as_bytes());
    let ttl = match tokens::parse_ttl(requested_ttl, shared.max_token_ttl_secs) {
        Ok(ttl) => ttl,
        Err(bad) => return Ok(error_response(StatusCode::BAD_REQUEST, &bad.to_string())),
    };
    let ReadBody::Complete(bytes) = body else {
        return Ok(error_response(
            StatusCode::BAD_REQUEST,
            "request body too large",
        ));
    };
    let Ok(credentials) = serde_json::from_slice::<Credentials>(&bytes) else {
        return Ok(error_response(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object with string fields app_key and app_secret",
        ));
    };
    if credentials.app_key != shared.app_key || credentials.app_secret != shared.app_secret {
        tracing::debug!("token endpoint: wrong app key or secret");
        return Ok(error_response(
            StatusCode::UNAUTHORIZED,
            "app_key or app_secret is incorrect",
        ));
    }

    let token = uuid::Uuid::new_v4().simple().to_string();
    lock(&shared.tokens).issue(token.clone(), ttl, Instant::now());
    shared.tokens_issued.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(ttl_secs = ttl.as_secs(), "token endpoint: token issued");

    // A clock before 1970 is a broken host, not a client error; report 0 rather than fail.
    let create_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    // The vendor sends CreateTime and Expires as strings holding integers.
    let body = json!({
        "AccessToken": token,
        "ApplyType": "Bearer",
        "CreateTime": create_time.to_string(),
        "Expires": ttl.as_secs().to_string(),
        "Scope": "default",
        "AppKey": credentials.app_key,
        "UserID": "Anonymous",
    });
    Ok(json_response(StatusCode::OK, &body))
}
