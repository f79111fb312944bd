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
//! grow the registry. Every value known in advance is created at 0 when its instrument is
//! (the constructors below), so that `rate()` and alerts see the first event instead of a
//! series that appears already at 1.

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
    /// Both results, `ok` and `error`.
    pub const ALL: [Self; 2] = [Self { result: "ok" }, Self { result: "error" }];

    /// `ok` when `ok`, else `error`.
    pub fn of(ok: bool) -> Self {
        Self {
            result: if ok { "ok" } else { "error" },
        }
    }
}

/// A counter family by result with both `ok` and `error` present at 0: the refresh and
/// reload counters' constructor.
pub fn result_family() -> Family<ResultLabel, Counter> {
    let family = Family::default();
    for label in &ResultLabel::ALL {
        drop(family.get_or_create(label));
    }
    family
}

/// Which vendor API a call went to.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum VendorCall {
    /// `tokenByAkSk`.
    Token,
    /// `updateSipPhonePassword`.
    Update,
}

impl VendorCall {
    /// Both calls.
    pub const ALL: [Self; 2] = [Self::Token, Self::Update];
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

impl VendorStatus {
    /// The outcomes known in advance, created at 0 for both calls: the statuses the vendor
    /// documents (200, and 400, 401, 404, 500 for its errors) and the three ways a call
    /// fails without one. Any other status (a proxy's 502, say) is counted from its first
    /// occurrence: statuses are open-ended, and a series for each of them would be noise.
    pub const KNOWN: [Self; 8] = [
        Self::Http(200),
        Self::Http(400),
        Self::Http(401),
        Self::Http(404),
        Self::Http(500),
        Self::Timeout,
        Self::ConnectError,
        Self::TransportError,
    ];
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
    /// Both calls' durations and their [`VendorStatus::KNOWN`] outcomes, at 0.
    fn default() -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
        };
        for call in VendorCall::ALL {
            for status in VendorStatus::KNOWN {
                drop(
                    metrics
                        .requests
                        .get_or_create(&VendorLabels { call, status }),
                );
            }
            drop(metrics.duration.get_or_create(&CallLabel { call }));
        }
        metrics
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

impl RequestMetrics {
    /// The instruments, with `codes` (every code an answer can carry:
    /// `crate::error::answer_codes`, passed in so that this module stays a leaf) and both
    /// quota scopes present at 0.
    pub fn new(codes: impl IntoIterator<Item = &'static str>) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: latency_histogram(),
            rate_limited: Family::default(),
        };
        for code in codes {
            drop(metrics.requests.get_or_create(&CodeLabel { code }));
        }
        for scope in Scope::ALL {
            drop(metrics.rate_limited.get_or_create(&ScopeLabel { scope }));
        }
        metrics
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    /// The text exposition of one family registered as `name`.
    fn exposed<M>(name: &str, metric: M) -> String
    where
        M: prometheus_client::registry::Metric,
    {
        let mut registry = Registry::default();
        registry.register(name, "help", metric);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn request_codes_and_scopes_exist_before_any_request() {
        let metrics = RequestMetrics::new(["ok", "forbidden"]);
        let requests = exposed("requests", metrics.requests.clone());
        assert!(
            requests.contains("requests_total{code=\"ok\"} 0\n"),
            "{requests}"
        );
        assert!(requests.contains("requests_total{code=\"forbidden\"} 0\n"));
        let scopes = exposed("rate_limited", metrics.rate_limited.clone());
        assert!(
            scopes.contains("rate_limited_total{scope=\"caller\"} 0\n"),
            "{scopes}"
        );
        assert!(scopes.contains("rate_limited_total{scope=\"agent\"} 0\n"));
    }

    #[test]
    fn results_and_vendor_outcomes_exist_before_any_event() {
        let results = exposed("refreshes", result_family());
        assert!(
            results.contains("refreshes_total{result=\"ok\"} 0\n"),
            "{results}"
        );
        assert!(results.contains("refreshes_total{result=\"error\"} 0\n"));
        let vendor = VendorMetrics::default();
        let calls = exposed("vendor_requests", vendor.requests.clone());
        for call in ["token", "update"] {
            for status in [
                "200",
                "401",
                "500",
                "timeout",
                "connect_error",
                "transport_error",
            ] {
                let series =
                    format!("vendor_requests_total{{call=\"{call}\",status=\"{status}\"}} 0\n");
                assert!(calls.contains(&series), "{series} missing:\n{calls}");
            }
        }
        let durations = exposed("vendor_duration", vendor.duration.clone());
        assert!(
            durations.contains("vendor_duration_count{call=\"update\"} 0\n"),
            "{durations}"
        );
        assert!(durations.contains("vendor_duration_count{call=\"token\"} 0\n"));
    }
}
