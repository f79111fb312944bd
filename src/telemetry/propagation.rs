//! W3C Trace Context: a caller's `traceparent`/`tracestate` continued, and passed on to the
//! vendor.
//!
//! With export on, the request span's parent is the caller's span, and the vendor call
//! carries the vendor-call span as its parent. With export off nothing is generated: the
//! caller's context, when well-formed, reaches the vendor as it came (re-written in its
//! canonical form), as a transparent proxy would pass it. A malformed header, or a
//! duplicated `traceparent`, is ignored: a new trace, never an error.

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TraceId};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header naming the caller's trace and span.
const TRACEPARENT: &str = "traceparent";

/// The W3C header carrying vendors' own trace data along with `traceparent`.
const TRACESTATE: &str = "tracestate";

/// Continues the caller's trace in `span` (the request's span, before anything runs in it)
/// and returns the request's trace id: the one sipgw exports under, or, with export off,
/// the caller's. `None` when there is neither.
///
/// With `exporting` false (no trace layer is installed) the span has no context to read:
/// only the caller's header is looked at, and a request without one costs nothing.
pub fn continue_trace(
    span: &tracing::Span,
    headers: &HeaderMap,
    exporting: bool,
) -> Option<TraceId> {
    let caller = caller_context(headers);
    if !exporting {
        return caller.map(|parent| parent.span().span_context().trace_id());
    }
    if let Some(parent) = &caller {
        // Fails only when no trace layer is installed (export off): nothing to continue.
        let _ = span.set_parent(parent.clone());
    }
    let own = span.context();
    let own = own.span();
    if own.span_context().is_valid() {
        return Some(own.span_context().trace_id());
    }
    caller.map(|parent| parent.span().span_context().trace_id())
}

/// The `traceparent` (and `tracestate`) for a call made in the current span: that span as
/// the parent when traces are exported; else the caller's context from `caller` as it came;
/// else none. With `exporting` false the current span is not looked at (it has no
/// context), so a request without a `traceparent` costs nothing here.
pub fn outgoing(caller: &HeaderMap, exporting: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let current = exporting
        .then(|| tracing::Span::current().context())
        .filter(|current| current.span().span_context().is_valid());
    let context = match current.or_else(|| caller_context(caller)) {
        Some(context) => context,
        None => return headers,
    };
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(&mut headers));
    // The propagator writes an empty `tracestate` when there is none; W3C allows leaving
    // it out, which says the same to any reader.
    if headers
        .get(TRACESTATE)
        .is_some_and(|state| state.is_empty())
    {
        headers.remove(TRACESTATE);
    }
    headers
}

/// The caller's trace context, when it sent exactly one well-formed `traceparent`.
fn caller_context(headers: &HeaderMap) -> Option<Context> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    // Most requests carry none: no parsing, no allocation.
    values.next()?;
    if values.next().is_some() {
        return None;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    context.span().span_context().is_valid().then_some(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn without_export_the_callers_context_is_the_trace_and_goes_on_unchanged() {
        let caller = headers(&[("traceparent", PARENT), ("tracestate", "vendor=x1,other=y")]);
        let span = tracing::Span::none();
        for exporting in [false, true] {
            let id = continue_trace(&span, &caller, exporting).unwrap();
            assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            let out = outgoing(&caller, exporting);
            assert_eq!(out["traceparent"], PARENT);
            assert_eq!(out["tracestate"], "vendor=x1,other=y");
        }
    }

    #[test]
    fn malformed_or_duplicated_context_is_ignored() {
        for bad in [
            headers(&[("traceparent", "00-xyz-00f067aa0ba902b7-01")]),
            headers(&[(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )]),
            headers(&[(
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )]),
            headers(&[("traceparent", PARENT), ("traceparent", PARENT)]),
            headers(&[("tracestate", "vendor=x1")]),
            HeaderMap::new(),
        ] {
            for exporting in [false, true] {
                assert_eq!(
                    continue_trace(&tracing::Span::none(), &bad, exporting),
                    None,
                    "{bad:?}"
                );
                assert!(outgoing(&bad, exporting).is_empty(), "{bad:?}");
            }
        }
    }
}
