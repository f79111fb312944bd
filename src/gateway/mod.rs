//! The password-change pipeline: the ordered checks of docs/api.md, top to bottom.
//!
//! [`Gateway::handle`] is the only entry point of the API listener. It reads the request id,
//! runs `Gateway::change_password` (its phases are in `pipeline`) and renders its result: a
//! success, or an [`crate::error::ApiError`] through the single mapping in [`crate::error`].
//! Each step says why it stands where it does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use tracing::Instrument;

/// A span of one pipeline phase, child of the current span (the request's): exported
/// with the trace, left out of the log lines (see [`crate::telemetry::spans`]).
macro_rules! phase_span {
    (parent: $parent:expr, $name:literal) => {
        tracing::info_span!(
            target: crate::telemetry::spans::PHASE_TARGET,
            parent: $parent,
            $name
        )
    };
    ($name:literal $(, $($field:tt)*)?) => {
        tracing::info_span!(
            target: crate::telemetry::spans::PHASE_TARGET,
            $name
            $(, $($field)*)?
        )
    };
}

mod audit;
mod flood;
mod pipeline;
mod reply;
mod vendor_call;

pub use audit::{Auditor, Trace};
use pipeline::Progress;
use reply::{declares_body, replay, success_body};

use crate::auth::Authenticator;
use crate::error::{OK_CODE, json_response};
use crate::limits::Limits;
use crate::limits::idempotency::Stored;
use crate::metrics::{CodeLabel, RequestMetrics};
use crate::password_policy::PasswordPolicy;
use crate::request;
use crate::request::forwarded::TrustedProxies;
use crate::telemetry::{propagation, spans};
use crate::terminal;
use crate::vendor::{TokenCache, VendorClient};

/// What the pipeline is made of: the parts a request needs, built once at start-up. The
/// shared ones are handles (`Arc`s, instruments that share their values), so whoever built
/// them keeps its own handle to run their background tasks or read their state.
pub struct Parts {
    /// Checks callers' JWTs and holds the key set.
    pub auth: Arc<Authenticator>,
    /// Writes the audit trail.
    pub auditor: Arc<Auditor>,
    /// Quotas, lockout shield, per-agent serialization, idempotency.
    pub limits: Arc<Limits>,
    /// The compiled `[password_policy]`.
    pub policy: PasswordPolicy,
    /// Bound on a whole request once its head has arrived.
    pub request_timeout: std::time::Duration,
    /// The vendor's pooled HTTP client.
    pub vendor: VendorClient,
    /// The shared AccessToken cache, refreshed in the background.
    pub tokens: Arc<TokenCache>,
    /// Request counters and durations.
    pub metrics: RequestMetrics,
    /// Proxies whose forwarding headers name the end user, for the audit trail.
    pub trusted_proxies: TrustedProxies,
    /// Whether request spans are exported (`[telemetry] otlp_endpoint`): only then do they
    /// carry a trace context worth reading; without it, a request that brings no
    /// `traceparent` costs no trace work at all.
    pub exporting_traces: bool,
}

/// Everything a request needs, built once at start-up and shared by all connections.
pub struct Gateway {
    /// Checks callers' JWTs and holds the key set.
    auth: Arc<Authenticator>,
    /// Writes the audit trail.
    auditor: Arc<Auditor>,
    /// Quotas, lockout shield, per-agent serialization, idempotency.
    limits: Arc<Limits>,
    /// The compiled `[password_policy]`.
    policy: PasswordPolicy,
    /// Bound on a whole request once its head has arrived.
    request_timeout: std::time::Duration,
    /// The vendor's pooled HTTP client.
    vendor: VendorClient,
    /// The shared AccessToken cache, refreshed in the background.
    tokens: Arc<TokenCache>,
    /// Request counters and durations.
    metrics: RequestMetrics,
    /// Proxies whose forwarding headers name the end user, for the audit trail.
    trusted_proxies: TrustedProxies,
    /// Whether request spans are exported (their trace context is then read and passed on).
    exporting_traces: bool,
}

/// When a request must be answered: `server.request_timeout_ms` after its head arrived.
type Deadline = tokio::time::Instant;

/// What a successful pass through the pipeline answers.
enum Reply {
    /// The vendor accepted the change; its `resultMessage`.
    Accepted {
        /// The vendor's `resultMessage`.
        message: String,
    },
    /// A retry: the first request's outcome, as it was.
    Replayed(Arc<Stored>),
}

impl Gateway {
    /// Assembles the pipeline from parts built once at start-up (by [`crate::app`]): the
    /// gateway holds them and hands none of them out.
    pub fn new(parts: Parts) -> Self {
        let Parts {
            auth,
            auditor,
            limits,
            policy,
            request_timeout,
            vendor,
            tokens,
            metrics,
            trusted_proxies,
            exporting_traces,
        } = parts;
        Self {
            auth,
            auditor,
            limits,
            policy,
            request_timeout,
            vendor,
            tokens,
            metrics,
            trusted_proxies,
            exporting_traces,
        }
    }

    /// Serves one request on the API listener.
    ///
    /// Everything logged while the request is handled happens inside its `request` span
    /// (request id, client IP, route, the trace id when there is a trace; the caller's `sub`
    /// and the agent once known), and the last event, `request`, adds the status, code and
    /// latency. The span continues the caller's `traceparent`; the pipeline's phases are
    /// its child spans (docs/operating.md, "Traces").
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let request_id = request::request_id(req.headers());
        let span = tracing::info_span!(
            "request",
            // Strings as they are rather than `Display`ed: the same text, for less work.
            request_id = request_id.as_str(),
            client_ip = %peer.ip(),
            // Paths may hold raw non-ASCII (C1, bidi controls): escaped for log readers.
            route = terminal::escape(req.uri().path()).as_ref(),
            forwarded_for = tracing::field::Empty,
            sub = tracing::field::Empty,
            agent = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let mut progress = Progress::default();
        progress.trace.trace_id =
            propagation::continue_trace(&span, req.headers(), self.exporting_traces);
        if let Some(trace_id) = progress.trace.trace_id {
            span.record("trace_id", tracing::field::display(trace_id));
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let unread_body_closes = req.version() < Version::HTTP_2 && declares_body(req.headers());
        // Only a trusted proxy's word is taken, and only as an IP address: see
        // `request::forwarded`.
        progress.trace.forwarded_for = self
            .trusted_proxies
            .client_address(peer.ip(), req.headers());
        if let Some(client) = progress.trace.forwarded_for {
            span.record("forwarded_for", tracing::field::display(client));
        }
        let result = self
            .change_password(req, &request_id, deadline, peer.ip(), &mut progress)
            .instrument(span.clone())
            .await;
        let (mut response, code) = match result {
            Ok(Reply::Accepted { message }) => (
                json_response(
                    StatusCode::OK,
                    &success_body(&message, &request_id),
                    &request_id,
                ),
                OK_CODE,
            ),
            Ok(Reply::Replayed(stored)) => {
                progress.trace.replay_of = Some(stored.request_id().to_owned());
                (replay(&stored, &request_id), stored.code())
            }
            Err(error) => (error.to_response(&request_id), error.code()),
        };
        // Refused before its body was read: hyper drains what already arrived or else
        // closes the connection, so the rest of the body is never parsed as a request.
        // Saying so lets the client know not to reuse the connection.
        if unread_body_closes && !progress.body_read {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        let latency = started.elapsed();
        // Requests on the endpoint end with an outcome record, written before the answer
        // leaves; other paths are not password changes.
        if progress.trace.endpoint {
            let status = response.status().as_u16();
            let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
            self.auditor
                .outcome(
                    &request_id,
                    &progress.trace,
                    peer.ip(),
                    code,
                    status,
                    latency_ms,
                )
                .instrument(phase_span!(parent: &span, "sipgw.audit_outcome"))
                .await;
        }
        // The answer leaves only now, after the outcome record: the histogram and the log
        // line count that write too (the record itself can only hold the time before it).
        let answered = started.elapsed();
        self.metrics
            .requests
            .get_or_create(&CodeLabel { code })
            .inc();
        self.metrics.duration.observe(answered.as_secs_f64());
        if self.exporting_traces {
            spans::record_answer(&span, response.status().as_u16(), code);
        }
        span.in_scope(|| {
            tracing::info!(
                target: crate::telemetry::ACCESS_TARGET,
                status = response.status().as_u16(),
                code,
                latency_ms = answered.as_secs_f64() * 1000.0,
                "request"
            );
        });
        response
    }
}
