//! The Prometheus instruments the pipeline records into, and their labels.
//!
//! A leaf: it imports no other sipgw module, so every part can record into it without
//! depending on who reads the values. Each part owns the instruments it updates (the gateway
//! its request counters, the vendor client its call counters, the token cache and key store
//! their refresh counters, the audit writer its fsync histogram); the instruments are shared
//! handles, and the admin listener's registry ([`crate::admin::metrics`]) registers clones
//! of them once at start-up, beside the values it reads as state at each scrape.
//!
//! Every label takes values from a fixed, small set (problem codes, HTTP statuses, a few
//! words): nothing from a request (agent, caller, path) becomes a label, so no input can
//! grow the registry.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::ids::Scope;

/// Latency buckets (seconds) from a cache-hit refusal (well under a millisecond) to a vendor
/// call that runs into its timeout (seconds).
const LATENCY_BUCKETS: [f64; 15] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// fsync buckets (seconds): from a fast NVMe flush to a disk in trouble.
const FSYNC_BUCKETS: [f64; 13] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
];

/// A histogram of request or call latencies.
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A histogram of fsync durations.
pub fn fsync_histogram() -> Histogram {
    Histogram::new(FSYNC_BUCKETS)
}

/// `{code}`: a problem code of the error table, or `ok`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The answer's `code`.
    pub code: &'static str,
}

/// `{scope}`: which quota refused (`caller` or `agent`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    /// The quota's scope.
    pub scope: Scope,
}

/// `{reason}`: why an audit record was suppressed (`caller`, `network`: that key's records
/// per minute were spent; `budget`: the global budget was).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Which limit suppressed it.
    pub reason: &'static str,
}

/// `{result}`: `ok` or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// How the refresh went.
    pub result: &'static str,
}

impl ResultLabel {
    /// `ok` when `ok`, else `error`.
    pub fn of(ok: bool) -> Self {
        Self {
            result: if ok { "ok" } else { "error" },
        }
    }
}

/// Which vendor API a call went to.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum VendorCall {
    /// `tokenByAkSk`.
    Token,
    /// `updateSipPhonePassword`.
    Update,
}

impl EncodeLabelValue for VendorCall {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Self::Token => "token",
            Self::Update => "update",
        })
    }
}

/// How a vendor call ended: an HTTP status, or no answer at all.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum VendorStatus {
    /// The vendor answered with this status.
    Http(u16),
    /// No answer within the deadline.
    Timeout,
    /// No connection could be made.
    ConnectError,
    /// The connection failed mid-way.
    TransportError,
}

impl EncodeLabelValue for VendorStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        match self {
            Self::Http(status) => write!(encoder, "{status}"),
            Self::Timeout => encoder.write_str("timeout"),
            Self::ConnectError => encoder.write_str("connect_error"),
            Self::TransportError => encoder.write_str("transport_error"),
        }
    }
}

/// `{call, status}` of a vendor request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VendorLabels {
    /// `token` or `update`.
    pub call: VendorCall,
    /// The HTTP status, or how the call failed without one.
    pub status: VendorStatus,
}

/// `{call}` of a vendor request duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabel {
    /// `token` or `update`.
    pub call: VendorCall,
}

/// Instruments the vendor client updates; clones share the values.
#[derive(Clone, Debug)]
pub struct VendorMetrics {
    /// `sipgw_vendor_requests_total{call, status}`.
    pub requests: Family<VendorLabels, Counter>,
    /// `sipgw_vendor_request_duration_seconds{call}`.
    pub duration: Family<CallLabel, Histogram>,
}

impl Default for VendorMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl VendorMetrics {
    /// Counts one call and its duration.
    pub fn observe(&self, call: VendorCall, status: VendorStatus, seconds: f64) {
        self.requests
            .get_or_create(&VendorLabels { call, status })
            .inc();
        self.duration
            .get_or_create(&CallLabel { call })
            .observe(seconds);
    }
}

/// Instruments the request pipeline updates.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    /// `sipgw_requests_total{code}`.
    pub requests: Family<CodeLabel, Counter>,
    /// `sipgw_request_duration_seconds`.
    pub duration: Histogram,
    /// `sipgw_rate_limited_total{scope}`.
    pub rate_limited: Family<ScopeLabel, Counter>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: latency_histogram(),
            rate_limited: Family::default(),
        }
    }
}
