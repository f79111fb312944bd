//! The admin listener (docs/operating.md), separate from the API port: `GET /healthz` (alive),
//! `GET /readyz` (ready to change passwords) and `GET /metrics` (Prometheus text).
//!
//! Readiness: 200 once the JWT key set is loaded and a vendor AccessToken is held, as long
//! as the audit trail was not tampered with under the writer (and, with Redis, Redis has not
//! refused our credentials); 503 otherwise, with a JSON body naming each unmet condition. A
//! degraded dependency (the
//! Redis backend answering from local fallbacks) is reported but stays 200: the gateway
//! still serves, more conservatively.
//!
//! The listener is handed only what it reads: [`Readiness`] (the parts behind `/readyz`)
//! and [`metrics::Sources`] (what `/metrics` registers and reads at each scrape). The
//! standard `process_*` metrics are read from `/proc/self` on Linux (`process`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use serde_json::json;

pub mod metrics;
#[cfg(target_os = "linux")]
mod process;

use crate::auth::keys::KeyStore;
use crate::gateway::Auditor;
use crate::limits::Limits;
use crate::vendor::TokenCache;

/// The parts whose state decides readiness; the composition root ([`crate::app`]) hands
/// them over, and nothing else.
#[derive(Clone)]
pub struct Readiness {
    /// The JWT key set: loaded or not.
    pub keys: Arc<KeyStore>,
    /// The vendor AccessToken cache: a usable token held or not.
    pub tokens: Arc<TokenCache>,
    /// The limits: Redis credentials, the fallback, the lockout rebuild.
    pub limits: Arc<Limits>,
    /// The audit trail: tampered with under the writer or not.
    pub auditor: Arc<Auditor>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readiness")
    }
}

/// Answers one admin request; `registry` holds the process's metrics.
pub fn handle(
    ready: &Readiness,
    registry: &Registry,
    request: &Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "status": "method not allowed" }),
        ));
    }
    Ok(match request.uri().path() {
        "/healthz" => reply(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" => readiness(ready),
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(metrics::render(registry))));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        _ => reply(StatusCode::NOT_FOUND, &json!({ "status": "not found" })),
    })
}

impl Readiness {
    /// The conditions `/readyz` waits for that do not hold now, by the names its 503 body
    /// gives them; empty when it answers 200. Public so that the systemd notifier's
    /// `READY=1` means exactly what `/readyz` means.
    pub fn unmet(&self) -> Vec<&'static str> {
        let mut unmet = Vec::new();
        if !self.keys.is_loaded() {
            unmet.push("jwks_not_loaded");
        }
        if !self.tokens.has_usable_token() {
            unmet.push("no_vendor_token");
        }
        // Not a blip that the fallbacks ride out: every change is refused (the lockout state
        // cannot be read) until an operator fixes the credentials.
        if self.limits.redis_credentials_refused() {
            unmet.push("redis_credentials_refused");
        }
        // The trail was removed or altered under the writer: every change is refused until
        // an operator restarts sipgw (docs/audit.md).
        if self.auditor.writer().halted().is_some() {
            unmet.push("audit_trail_tampered");
        }
        // Start-up: the lockout counts are still being read back from the audit trail, and
        // the API listener does not serve yet.
        if self.limits.rebuilding() {
            unmet.push("lockout_rebuilding");
        }
        unmet
    }
}

fn readiness(ready: &Readiness) -> Response<Full<Bytes>> {
    let unmet = ready.unmet();
    let tampered = ready.auditor.writer().halted();
    let mut degraded = Vec::new();
    if ready.limits.degraded() {
        degraded.push("redis_unreachable_using_local_limits");
    }
    if ready.limits.lockout_unknown() {
        degraded.push("lockout_history_unreadable_refusing_changes");
    }
    if unmet.is_empty() {
        reply(
            StatusCode::OK,
            &json!({ "status": "ready", "degraded": degraded }),
        )
    } else {
        let mut body = json!({ "status": "not_ready", "unmet": unmet, "degraded": degraded });
        if let Some(kind) = tampered {
            body["audit_trail"] = json!(kind.as_str());
        }
        reply(StatusCode::SERVICE_UNAVAILABLE, &body)
    }
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// What the admin handler answers, as [`crate::server::run`] wants it.
type Answer = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// Handler for [`crate::server::run`]: readiness from `ready`, `/metrics` from a registry
/// built once from `sources`.
pub fn handler(
    ready: Readiness,
    sources: metrics::Sources,
) -> impl Fn(Request<Incoming>, std::net::SocketAddr) -> Answer + Clone + Send + Sync + 'static {
    let registry = Arc::new(metrics::registry(sources));
    let ready = Arc::new(ready);
    move |request, _peer| std::future::ready(handle(&ready, &registry, &request))
}
