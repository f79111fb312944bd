//! Prometheus metrics (DESIGN.md §6), served as text on the admin listener's `/metrics`.
//!
//! Each part owns the instruments it updates (the gateway its request counters, the vendor
//! client its call counters, the token cache and key store their refresh counters, the
//! audit writer its fsync histogram); the instruments are shared handles, so [`registry`]
//! registers clones of them once at start-up. Values that already exist as state (token
//! expiry, audit record count, the Redis fallback) are read at scrape time instead of
//! being copied into a second counter that could drift from them.
//!
//! Every label takes values from a fixed, small set (problem codes, HTTP statuses, a few
//! words): nothing from a request (agent, caller, path) becomes a label, so no input can
//! grow the registry.

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::gateway::Gateway;
use crate::ids::Scope;
use crate::server::ConnectionStats;
use crate::server::slots::Shed;
use crate::tls::ServerTls;

/// `Content-Type` of the Prometheus text exposition format 0.0.4.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

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

/// One listener's connection slots, by the listener's name (`api`, `admin`).
pub type ListenerStats = (&'static str, Arc<ConnectionStats>);

/// The registry for one gateway (and its inbound TLS, when configured, and its listeners'
/// connection slots): its instruments, plus the values read at scrape time.
pub fn registry(
    gateway: &Arc<Gateway>,
    tls: Option<&Arc<ServerTls>>,
    listeners: Vec<ListenerStats>,
) -> Registry {
    let mut registry = Registry::with_prefix("sipgw");
    registry.register(
        "build",
        "The running sipgw version",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    let requests = gateway.request_metrics();
    registry.register(
        "requests",
        "Requests answered on the API listener, by problem code (ok for a success)",
        requests.requests.clone(),
    );
    registry.register_with_unit(
        "request_duration",
        "Time from a request's head to its answer on the API listener",
        Unit::Seconds,
        requests.duration.clone(),
    );
    registry.register(
        "rate_limited",
        "Requests refused by a quota, by scope (caller or agent)",
        requests.rate_limited.clone(),
    );
    let vendor = gateway.vendor_metrics();
    registry.register(
        "vendor_requests",
        "Calls to the vendor, by API (token or update) and HTTP status (or how it failed without one)",
        vendor.requests.clone(),
    );
    registry.register_with_unit(
        "vendor_request_duration",
        "Duration of one vendor call, by API",
        Unit::Seconds,
        vendor.duration.clone(),
    );
    registry.register(
        "token_refreshes",
        "Vendor AccessToken fetches, by result",
        gateway.tokens().refreshes().clone(),
    );
    registry.register(
        "jwks_refreshes",
        "JWT key set fetches, by result (none for a key set from a file)",
        gateway.keys().refreshes().clone(),
    );
    registry.register_with_unit(
        "audit_fsync",
        "Duration of one fsync of the audit trail",
        Unit::Seconds,
        gateway.auditor().writer().stats().fsync_duration.clone(),
    );
    registry.register(
        "audit_suppressed",
        "Audit records of refusals not written in full (counted in a summary), by reason (caller, network, budget)",
        gateway.auditor().suppressed().clone(),
    );
    registry.register(
        "audit_trail_tampered",
        "The live audit file found removed, replaced or altered (the writer then stops), or missing records found at start-up, by kind",
        gateway.auditor().writer().stats().tampered.clone(),
    );
    if let Some(tls) = tls {
        registry.register(
            "tls_reloads",
            "Reloads of the API listener's TLS files (SIGHUP or a change on disk), by result",
            tls.reloads().clone(),
        );
    }
    registry.register_collector(Box::new(StateCollector {
        gateway: Arc::clone(gateway),
        tls: tls.cloned(),
        listeners,
    }));
    registry
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, registry);
    text
}

/// Values that exist as state elsewhere, read at each scrape. Names are given without the
/// registry's `sipgw_` prefix (and counters without `_total`): the encoder adds them.
struct StateCollector {
    /// Token, audit and limits state.
    gateway: Arc<Gateway>,
    /// The API listener's TLS, when configured.
    tls: Option<Arc<ServerTls>>,
    /// The listeners' connection slots.
    listeners: Vec<ListenerStats>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let gateway = &self.gateway;
        let not_after = self.tls.as_ref().and_then(|tls| tls.not_after());
        if let Some(seconds) = not_after
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64)
        {
            gauge(
                &mut encoder,
                "tls_cert_not_after",
                "Expiry (Unix time) of the API listener's certificate in use.",
                Some(&Unit::Seconds),
                seconds,
            )?;
        }
        // Absent while no token is held: an alert on "absent or below N" covers both.
        if let Some(seconds) = gateway.tokens().expires_in() {
            gauge(
                &mut encoder,
                "token_expires_in",
                "Seconds until the held vendor AccessToken expires.",
                Some(&Unit::Seconds),
                seconds,
            )?;
        }
        let stats = gateway.auditor().writer().stats();
        counter(
            &mut encoder,
            "audit_records",
            "Audit records made durable (per audit.fsync).",
            stats.records.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "audit_write_failures",
            "Batches of audit records that could not be written or synced, and failed fsyncs of acknowledged records.",
            stats.failures.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            "limits_degraded",
            "1 while the Redis backend is unreachable and quotas fall back to local limits.",
            None,
            i64::from(gateway.limits().degraded()),
        )?;
        gauge(
            &mut encoder,
            "lockout_rebuild_incomplete",
            "1 while the lockout shield refuses every change because part of the audit trail could not be read back at start-up.",
            None,
            i64::from(gateway.limits().lockout_unknown()),
        )?;
        counter(
            &mut encoder,
            "redis_transitions",
            "Times the Redis backend went from reachable to unreachable or back.",
            gateway.limits().redis_transitions(),
        )?;
        store_gauges(&mut encoder, gateway)?;
        connections(&mut encoder, &self.listeners)
    }
}

/// `sipgw_limit_store_entries{store}` and `sipgw_limit_store_capacity{store}`: every
/// per-key store's entries and cap (README "Memory budget").
fn store_gauges(encoder: &mut DescriptorEncoder, gateway: &Gateway) -> std::fmt::Result {
    let [verified, refused] = gateway.authenticator().cache_sizes();
    let mut sizes: Vec<(&str, usize, Option<usize>)> = gateway
        .limits()
        .store_sizes()
        .iter()
        .map(|s| (s.store, s.entries, s.capacity))
        .collect();
    sizes.push(("verified_tokens", verified.0, Some(verified.1)));
    sizes.push(("refused_tokens", refused.0, Some(refused.1)));
    let families = [
        (
            "limit_store_entries",
            "Entries held by each per-key store (quotas, lockout, turns, idempotency, token caches).",
            false,
        ),
        (
            "limit_store_capacity",
            "Most entries each per-key store holds (absent where bounded by the requests in flight).",
            true,
        ),
    ];
    for (name, help, capacity) in families {
        let gauge = ConstGauge::new(0i64);
        let mut metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
        for &(store, entries, cap) in &sizes {
            let value = if capacity { cap } else { Some(entries) };
            if let Some(value) = value {
                let labels = [("store", store)];
                ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
                    .encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

/// `connections_open{listener}` and `connections_shed_total{listener, cap, action}`: every
/// series present from start-up, at 0 until something happens.
fn connections(encoder: &mut DescriptorEncoder, listeners: &[ListenerStats]) -> std::fmt::Result {
    let mut open = encoder.encode_descriptor(
        "connections_open",
        "Connections holding a slot on a listener.",
        None,
        MetricType::Gauge,
    )?;
    for (listener, stats) in listeners {
        let value = i64::try_from(stats.open()).unwrap_or(i64::MAX);
        ConstGauge::new(value).encode(open.encode_family(&[("listener", *listener)])?)?;
    }
    let mut shed = encoder.encode_descriptor(
        "connections_shed",
        "Connections shed at a listener's cap or a client's (cap): an idle one closed for a newcomer (evicted), or a newcomer closed because every slot was busy (refused).",
        None,
        MetricType::Counter,
    )?;
    for (listener, stats) in listeners {
        for how in Shed::ALL {
            let (cap, action) = how.labels();
            let labels = [("listener", *listener), ("cap", cap), ("action", action)];
            ConstCounter::new(stats.shed(how)).encode(shed.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> std::fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}
