//! The pipeline's link to the audit trail: what a request's records say, and when they are
//! written (docs/audit.md).
//!
//! - An `attempt` record is made durable before the vendor is called; if it cannot be, the
//!   change is refused (503 `audit_unavailable`) and the vendor never sees it.
//! - Every request on the endpoint ends with one `outcome` record, written before the
//!   answer leaves. The outcome of a request that never reached the vendor (no `attempt`
//!   record: every refusal, and an `Idempotency-Key` replay) goes through flood control
//!   ([`super::flood`]); the records of a change that reached the vendor never do.
//! - Records carry no password, token or secret: only the fields of [`Event`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::flood::Flood;
use crate::audit::chain::hex;
use crate::audit::config::AuditConfig;
use crate::audit::record::{CallerInfo, Event, GrantKind, Kind, VendorInfo};
use crate::audit::writer::{AuditWriter, WriterConfig};
use crate::auth::Grant;
use crate::error::ApiError;
use crate::ids::CallerId;
use crate::metrics::ReasonLabel;

/// What the audit trail learns about a request as the pipeline proceeds: the facts its
/// records carry, and whether an `attempt` record was written. Nothing here steers the
/// pipeline itself.
#[derive(Debug, Default)]
pub struct Trace {
    /// Whether the path was the endpoint (other paths are not audited).
    pub endpoint: bool,
    /// The end user's address, when a trusted proxy named it (`server.trusted_proxies`).
    pub forwarded_for: Option<IpAddr>,
    /// The caller, once authenticated.
    pub caller: Option<CallerId>,
    /// The caller's display name (`auth.display_claim`), once authenticated.
    pub caller_name: Option<String>,
    /// The agent as written, once the path named a valid one.
    pub agent: Option<String>,
    /// The rule that authorized the change, once authorized.
    pub grant: Option<GrantKind>,
    /// For an `Idempotency-Key` replay: the id of the request whose outcome it repeats.
    pub replay_of: Option<String>,
    /// The vendor's answer, once called.
    pub vendor: Option<VendorInfo>,
    /// Whether an `attempt` record was (or may have been) written: the change reached, or
    /// was about to reach, the vendor, so its outcome is never flood-controlled.
    pub attempted: bool,
    /// The request's trace, when it has one (continued from the caller's `traceparent`,
    /// or started by sipgw while traces are exported): reviewers find its spans by it.
    pub trace_id: Option<opentelemetry::trace::TraceId>,
}

/// Writes a request's records.
pub struct Auditor {
    /// The trail.
    writer: AuditWriter,
    /// Flood control for the records of refusals.
    flood: Flood,
}

impl Auditor {
    /// Opens the trail (continuing its chain).
    pub fn open(config: &AuditConfig) -> std::io::Result<Self> {
        let writer = AuditWriter::open(WriterConfig {
            path: config.path.clone(),
            max_bytes: config.max_bytes,
            fsync: config.fsync,
            stdout: config.stdout,
            key: config.key.clone(),
            file_mode: config.file_mode,
            allow_new_chain: config.allow_new_chain,
            instance: config.instance.clone(),
            checkpoint_every: config.checkpoint_every,
            checkpoint_interval: config.checkpoint_interval,
        })?;
        Ok(Self {
            writer,
            flood: Flood::new(&config.flood),
        })
    }

    /// The writer (its counters).
    pub fn writer(&self) -> &AuditWriter {
        &self.writer
    }

    /// `sipgw_audit_suppressed_total{reason}`, for the metrics registry.
    pub fn suppressed(&self) -> &Family<ReasonLabel, Counter> {
        self.flood.suppressed()
    }

    /// The durable `attempt` record, before the vendor call.
    pub async fn attempt(
        &self,
        request_id: &str,
        trace: &Trace,
        ip: IpAddr,
    ) -> Result<(), ApiError> {
        let event = event(Kind::Attempt, request_id, trace, ip, "attempt", None, None);
        self.writer.append(event).await.map(drop).map_err(|error| {
            tracing::error!(request_id, %error, "audit attempt record failed; the change is refused");
            ApiError::AuditUnavailable
        })
    }

    /// The `outcome` record. A failure here cannot undo what happened; it is logged.
    pub async fn outcome(
        &self,
        request_id: &str,
        trace: &Trace,
        ip: IpAddr,
        code: &'static str,
        status: u16,
        latency_ms: u64,
    ) {
        // A change that reached the vendor keeps both its records, whatever else floods.
        // Anything else changed nothing at the vendor: past a few per key and minute it
        // is counted, not written.
        if !trace.attempted {
            let (write, summaries) =
                self.flood
                    .admit(trace.caller.as_ref(), ip, code, tokio::time::Instant::now());
            self.write_summaries(summaries).await;
            if !write {
                return;
            }
        }
        let event = event(
            Kind::Outcome,
            request_id,
            trace,
            ip,
            code,
            Some(status),
            Some(latency_ms),
        );
        if let Err(error) = self.writer.append(event).await {
            tracing::error!(request_id, %error, "audit outcome record failed");
        }
    }

    /// Writes summaries for flood windows that closed; runs until its task is dropped.
    pub async fn run_sweeper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let now = tokio::time::Instant::now();
            self.write_summaries(self.flood.sweep(now)).await;
        }
    }

    /// On shutdown: writes the summaries of open flood windows, then a last checkpoint, and
    /// makes every record durable, whatever the `fsync` policy.
    pub async fn close(&self) {
        self.write_summaries(self.flood.close_all()).await;
        if let Err(error) = self.writer.close().await {
            tracing::error!(%error, "audit trail could not be flushed at shutdown");
        }
    }

    async fn write_summaries(&self, summaries: Vec<Event>) {
        for summary in summaries {
            if let Err(error) = self.writer.append(summary).await {
                tracing::error!(%error, "audit summary record failed");
            }
        }
    }
}

/// How a record names the rule that authorized a change.
pub(super) fn grant_kind(grant: &Grant) -> GrantKind {
    match grant {
        Grant::SelfService => GrantKind::SelfService,
        Grant::AdminScope(_) => GrantKind::AdminScope,
        Grant::AdminRole(_) => GrantKind::AdminRole,
    }
}

fn event(
    kind: Kind,
    request_id: &str,
    trace: &Trace,
    ip: IpAddr,
    code: &str,
    http_status: Option<u16>,
    latency_ms: Option<u64>,
) -> Event {
    Event {
        kind,
        request_id: Some(request_id.to_owned()),
        trace_id: trace.trace_id.map(|id| hex(&id.to_bytes())),
        caller: CallerInfo {
            iss: trace.caller.as_ref().map(|c| c.iss().to_owned()),
            sub: trace.caller.as_ref().map(|c| c.sub().to_owned()),
            client_ip: address(ip),
        },
        caller_name: trace.caller_name.clone(),
        forwarded_for: trace.forwarded_for.map(address),
        agent: trace.agent.clone(),
        grant: trace.grant,
        code: code.to_owned(),
        http_status,
        replay_of: trace.replay_of.clone(),
        vendor: trace.vendor.clone(),
        latency_ms,
        suppressed: None,
        flood: None,
    }
}

/// `ip` as its `Display` writes it; an IPv4 address (nearly every client) without going
/// through `core::fmt`, which costs more than the rest of the record's fields.
fn address(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    #[test]
    fn addresses_read_as_their_display() {
        for octet in 0..=255 {
            let ip = IpAddr::V4(Ipv4Addr::new(octet, 255 - octet, octet / 10, 100));
            assert_eq!(address(ip), ip.to_string());
        }
        for ip in [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
            "2001:db8::7".parse().unwrap(),
        ] {
            assert_eq!(address(ip), ip.to_string());
        }
    }

    #[test]
    fn a_trace_id_reads_as_its_display() {
        for id in [1u128, u128::MAX, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736] {
            let id = opentelemetry::trace::TraceId::from_bytes(id.to_be_bytes());
            assert_eq!(hex(&id.to_bytes()), id.to_string());
        }
    }
}
