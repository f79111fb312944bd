//! The issuer's two HTTP resources: the JWKS and the OIDC discovery document.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::DevIssuer;
use crate::serve::Limits;

/// Path of the JWKS.
pub const JWKS_PATH: &str = "/jwks.json";
/// Path of the discovery document (OpenID Connect Discovery 1.0 §4).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Bounds for the listener: a handful of test clients and one gateway, so small.
/// Its clients are on loopback: the gateways under test and the demo.
const LIMITS: Limits = Limits {
    max_connections: 256,
    max_header_bytes: 16 * 1024,
    header_read_timeout: Duration::from_secs(10),
    shutdown_grace: Duration::from_secs(1),
};

/// Serves `listener` until the runtime stops. `addr` is the listener's address, which the
/// discovery document names in `jwks_uri`.
pub(super) async fn run(issuer: DevIssuer, listener: tokio::net::TcpListener, addr: SocketAddr) {
    // Answers are computed synchronously from in-memory state; the future only hands them over.
    let handler = move |request, _peer| {
        let response = handle(&issuer, addr, &request);
        async move { Ok::<_, Infallible>(response) }
    };
    crate::serve::run(listener, LIMITS, handler, std::future::pending()).await;
}

/// Answers one request. Every request that reaches a known path is counted, whatever its
/// method or the failure switch, so tests can see how often the gateway tried.
fn handle(
    issuer: &DevIssuer,
    addr: SocketAddr,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path == JWKS_PATH {
        issuer.count_jwks_request();
        serve(issuer, request.method(), || issuer.jwks_json())
    } else if path == DISCOVERY_PATH {
        issuer.count_discovery_request();
        serve(issuer, request.method(), || issuer.discovery_document(addr))
    } else {
        json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"}))
    }
}

/// The answer on a known path: 405 for anything but GET, 500 while failing, else `body`.
fn serve(
    issuer: &DevIssuer,
    method: &Method,
    body: impl FnOnce() -> Value,
) -> Response<Full<Bytes>> {
    if method != Method::GET {
        let mut response = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed"}),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    if issuer.is_failing() {
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": "simulated identity provider failure"}),
        );
    }
    json_response(StatusCode::OK, &body())
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
