//! What a request's span says of its answer in an exported trace.

use opentelemetry::trace::Status;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of the pipeline's phase spans (`sipgw.authenticate`, ...): they
/// exist for traces only, so the log layer leaves them out and a log line keeps naming the
/// request's span (request id, route, caller, agent) as its current span.
pub const PHASE_TARGET: &str = "sipgw::phase";

/// Puts the answer on the request's span: `http.response.status_code` and `sipgw.code`
/// as attributes, and an error status for a 5xx (the gateway or a dependency failed; a
/// refusal of the caller is not an error of sipgw's). Only the exported span gets them: the
/// request's last log line already says both. Does nothing with export off.
pub fn record_answer(span: &tracing::Span, status: u16, code: &'static str) {
    span.set_attribute("http.response.status_code", i64::from(status));
    span.set_attribute("sipgw.code", code);
    if status >= 500 {
        span.set_status(Status::error(code));
    }
}
