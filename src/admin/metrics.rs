//! The admin listener's `/metrics`: the registry of every part's instruments, and the
//! values that already exist as state (token expiry, audit record count, the Redis
//! fallback, connection slots), read at each scrape instead of being copied into a second
//! counter that could drift from them.
//!
//! It lives beside the admin listener rather than in [`crate::metrics`], so that the
//! instruments' module stays a leaf: the parts record into it without depending on who
//! reads the values.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::auth::Authenticator;
use crate::gateway::Auditor;
use crate::limits::Limits;
use crate::metrics::{RequestMetrics, VendorMetrics};
use crate::server::ConnectionStats;
use crate::server::slots::Shed;
use crate::tls::ServerTls;
use crate::vendor::TokenCache;

/// `Content-Type` of the Prometheus text exposition format 0.0.4.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One listener's connection slots, by the listener's name (`api`, `admin`).
pub type ListenerStats = (&'static str, Arc<ConnectionStats>);

/// What the registry reads: each part's instruments, and the parts whose state is read at
/// each scrape. The composition root ([`crate::app`]) fills it from the parts it built.
#[derive(Clone)]
pub struct Sources {
    /// The pipeline's request counters and durations.
    pub requests: RequestMetrics,
    /// The vendor client's call counters and durations.
    pub vendor: VendorMetrics,
    /// The AccessToken cache (refreshes; the held token's expiry).
    pub tokens: Arc<TokenCache>,
    /// The token check (key set refreshes; its caches' sizes).
    pub auth: Arc<Authenticator>,
    /// The audit trail (fsyncs, records, failures, suppressions, tampering).
    pub auditor: Arc<Auditor>,
    /// The limits (store sizes, the Redis fallback, the lockout rebuild).
    pub limits: Arc<Limits>,
    /// The API listener's TLS, when configured (reloads, certificate expiry).
    pub tls: Option<Arc<ServerTls>>,
    /// The listeners' connection slots.
    pub listeners: Vec<ListenerStats>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("tls", &self.tls.is_some())
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// The registry for one gateway process: its parts' instruments and the values read at
/// each scrape, under `sipgw_`, and on Linux the standard `process_*` metrics, unprefixed.
pub fn registry(sources: Sources) -> Registry {
    let mut root = Registry::default();
    #[cfg(target_os = "linux")]
    root.register_collector(Box::new(super::process::ProcessCollector::new()));
    let registry = root.sub_registry_with_prefix("sipgw");
    registry.register(
        "build",
        "The running sipgw version",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    register_pipeline(registry, &sources);
    register_dependencies(registry, &sources);
    registry.register_collector(Box::new(StateCollector { sources }));
    root
}

/// The request and vendor call instruments.
fn register_pipeline(registry: &mut Registry, sources: &Sources) {
    let requests = &sources.requests;
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
    let vendor = &sources.vendor;
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
}

/// The instruments of the token cache, the key set, the audit trail and the TLS files.
fn register_dependencies(registry: &mut Registry, sources: &Sources) {
    registry.register(
        "token_refreshes",
        "Vendor AccessToken fetches, by result",
        sources.tokens.refreshes().clone(),
    );
    registry.register(
        "jwks_refreshes",
        "JWT key set fetches, by result (none for a key set from a file)",
        sources.auth.keys().refreshes().clone(),
    );
    let writer = sources.auditor.writer();
    registry.register_with_unit(
        "audit_fsync",
        "Duration of one fsync of the audit trail",
        Unit::Seconds,
        writer.stats().fsync_duration.clone(),
    );
    registry.register(
        "audit_suppressed",
        "Audit records of refusals not written in full (counted in a summary), by reason (caller, network, budget)",
        sources.auditor.suppressed().clone(),
    );
    registry.register(
        "audit_trail_tampered",
        "The live audit file found removed, replaced or altered (the writer then stops), or missing records found at start-up, by kind",
        writer.stats().tampered.clone(),
    );
    if let Some(tls) = &sources.tls {
        registry.register(
            "tls_reloads",
            "Reloads of the API listener's TLS files (SIGHUP or a change on disk), by result",
            tls.reloads().clone(),
        );
    }
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
    /// Token, audit, limits, TLS and connection state.
    sources: Sources,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let sources = &self.sources;
        if let Some(not_after) = sources.tls.as_ref().and_then(|tls| tls.not_after()) {
            gauge(
                &mut encoder,
                "tls_cert_expiry_timestamp",
                "Expiry (Unix time) of the API listener's certificate in use.",
                Some(&Unit::Seconds),
                unix_seconds(not_after),
            )?;
        }
        let keys = sources.auth.keys();
        // A set from a file cannot go stale: nothing to show. A fetched one shows 0 until
        // its first success, so "too long ago" covers "never" too.
        if keys.is_remote() {
            gauge(
                &mut encoder,
                "jwks_last_success_timestamp",
                "When (Unix time) the JWT key set was last fetched successfully, changed or not; 0 before the first success.",
                Some(&Unit::Seconds),
                keys.last_success().map_or(0, unix_seconds),
            )?;
        }
        // Absent while no token is held: an alert on "absent or below N" covers both.
        if let Some(seconds) = sources.tokens.expires_in() {
            gauge(
                &mut encoder,
                "token_expires_in",
                "Seconds until the held vendor AccessToken expires.",
                Some(&Unit::Seconds),
                seconds,
            )?;
        }
        let stats = sources.auditor.writer().stats();
        counter(
            &mut encoder,
            "audit_records",
            "Audit records made durable (per audit.fsync).",
            stats.records.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "audit_checkpoints",
            "Audit checkpoint records written (each also logged, as an anchor to keep off the host).",
            stats.checkpoints.load(std::sync::atomic::Ordering::Relaxed),
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
            i64::from(sources.limits.degraded()),
        )?;
        gauge(
            &mut encoder,
            "lockout_rebuild_incomplete",
            "1 while the lockout shield refuses every change because part of the audit trail could not be read back at start-up.",
            None,
            i64::from(sources.limits.lockout_unknown()),
        )?;
        counter(
            &mut encoder,
            "redis_transitions",
            "Times the Redis backend went from reachable to unreachable or back.",
            sources.limits.redis_transitions(),
        )?;
        store_gauges(&mut encoder, sources)?;
        connections(&mut encoder, &sources.listeners)
    }
}

/// `sipgw_limit_store_entries{store}` and `sipgw_limit_store_capacity{store}`: every
/// per-key store's entries and cap (docs/operating.md, "Memory budget").
fn store_gauges(encoder: &mut DescriptorEncoder, sources: &Sources) -> std::fmt::Result {
    let [verified, refused] = sources.auth.cache_sizes();
    let mut sizes: Vec<(&str, usize, Option<usize>)> = sources
        .limits
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

/// Whole seconds since the Unix epoch (0 before it).
fn unix_seconds(time: std::time::SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
