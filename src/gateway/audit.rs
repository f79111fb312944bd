//! The pipeline's link to the audit trail: what a request's records say, and when they are
//! written (DESIGN.md §5).
//!
//! - An `attempt` record is made durable before the vendor is called; if it cannot be, the
//!   change is refused (503 `audit_unavailable`) and the vendor never sees it.
//! - Every request on the endpoint ends with one `outcome` record, written before the
//!   answer leaves. Outcomes of requests refused before authentication, and of quota
//!   refusals, go through flood control (per client IP; a `summary` record counts what was
//!   suppressed).
//! - Records carry no password, token or secret: only the fields of [`Event`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::record::{CallerInfo, Event, Kind, VendorInfo};
use crate::audit::throttle::{Closed, Decision, Throttle};
use crate::audit::writer::{AuditWriter, WriterConfig};
use crate::config::AuditConfig;
use crate::error::ApiError;

/// Window of the unauthenticated records' flood control.
const FLOOD_WINDOW: Duration = Duration::from_secs(60);
/// The status of a quota refusal, on the summaries of their flood windows.
const RATE_LIMITED: u16 = 429;

/// What the audit trail learns about a request as the pipeline proceeds.
#[derive(Debug, Default)]
pub struct Trace {
    /// Whether the path was the endpoint (other paths are not audited).
    pub endpoint: bool,
    /// `iss` and `sub`, once authenticated.
    pub caller: Option<(String, String)>,
    /// The agent, once the path named a valid one.
    pub agent: Option<String>,
    /// The vendor's answer, once called.
    pub vendor: Option<VendorInfo>,
    /// Whether the vendor may have checked the current password although no clear answer
    /// came (a timeout, a cut connection, a 5xx): the lockout shield counts such a call.
    pub vendor_may_have_checked: bool,
    /// Whether the caller's own quota refused the request (flood-controlled per caller).
    pub caller_quota_refused: bool,
}

/// Writes a request's records.
pub struct Auditor {
    /// The trail.
    writer: AuditWriter,
    /// Flood control for unauthenticated requests.
    throttle: Throttle,
    /// Flood control for refusals by a caller's own quota, per caller (`iss`, `sub`) and
    /// client IP: such a caller is named on the record, but its refusals change nothing
    /// and must not fill the disk. (Per-agent quota refusals are always recorded: they come
    /// after the caller's quota, which bounds them.)
    quota_throttle: Throttle<CallerKey>,
}

/// Whose refusals a quota flood window counts: `iss`, `sub` and the client IP.
type CallerKey = (String, String, IpAddr);

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
        })?;
        Ok(Self {
            writer,
            throttle: Throttle::new(config.unauthenticated_per_minute, FLOOD_WINDOW),
            quota_throttle: Throttle::new(config.rate_limited_per_minute, FLOOD_WINDOW),
        })
    }

    /// The writer (its counters).
    pub fn writer(&self) -> &AuditWriter {
        &self.writer
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
        code: &str,
        status: u16,
        latency_ms: u64,
    ) {
        // Anything refused before authentication (bad tokens, but also garbage bodies or
        // wrong methods) is flood-controlled: nobody accountable sent it.
        // So are refusals by a caller's own quota: past it, a caller is recorded a few
        // times a minute, then counted in a summary that names it.
        let now = tokio::time::Instant::now();
        let decision = match &trace.caller {
            None => {
                let (decision, closed) = self.throttle.decide(ip, now);
                self.ip_summaries(closed).await;
                decision
            }
            Some((iss, sub)) if trace.caller_quota_refused => {
                let key = (iss.clone(), sub.clone(), ip);
                let (decision, closed) = self.quota_throttle.decide(key, now);
                self.caller_summaries(closed).await;
                decision
            }
            Some(_) => Decision::Write,
        };
        if decision == Decision::Suppress {
            return;
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
            self.ip_summaries(self.throttle.sweep(now)).await;
            self.caller_summaries(self.quota_throttle.sweep(now)).await;
        }
    }

    /// On shutdown: writes the summaries of open flood windows and makes every record
    /// durable, whatever the `fsync` policy.
    pub async fn close(&self) {
        let later = tokio::time::Instant::now() + FLOOD_WINDOW;
        self.ip_summaries(self.throttle.sweep(later)).await;
        self.caller_summaries(self.quota_throttle.sweep(later))
            .await;
        if let Err(error) = self.writer.flush().await {
            tracing::error!(%error, "audit trail could not be flushed at shutdown");
        }
    }

    /// Summaries of unauthenticated floods: the client IP and the count.
    async fn ip_summaries(&self, closed: Vec<Closed<IpAddr>>) {
        for window in closed {
            let caller = CallerInfo {
                iss: None,
                sub: None,
                client_ip: window
                    .key
                    .map_or_else(|| "*".to_owned(), |ip| ip.to_string()),
            };
            self.summary(caller, None, window.suppressed).await;
        }
    }

    /// Summaries of callers past their quota: the caller, its IP, 429 and the count.
    async fn caller_summaries(&self, closed: Vec<Closed<CallerKey>>) {
        for window in closed {
            let caller = match window.key {
                Some((iss, sub, ip)) => CallerInfo {
                    iss: Some(iss),
                    sub: Some(sub),
                    client_ip: ip.to_string(),
                },
                None => CallerInfo {
                    iss: None,
                    sub: None,
                    client_ip: "*".to_owned(),
                },
            };
            self.summary(caller, Some(RATE_LIMITED), window.suppressed)
                .await;
        }
    }

    async fn summary(&self, caller: CallerInfo, http_status: Option<u16>, suppressed: u64) {
        let event = Event {
            kind: Kind::Summary,
            request_id: None,
            caller,
            agent: None,
            code: "suppressed".into(),
            http_status,
            vendor: None,
            latency_ms: None,
            suppressed: Some(suppressed),
        };
        if let Err(error) = self.writer.append(event).await {
            tracing::error!(%error, "audit summary record failed");
        }
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
        caller: CallerInfo {
            iss: trace.caller.as_ref().map(|(iss, _)| iss.clone()),
            sub: trace.caller.as_ref().map(|(_, sub)| sub.clone()),
            client_ip: ip.to_string(),
        },
        agent: trace.agent.clone(),
        code: code.to_owned(),
        http_status,
        vendor: trace.vendor.clone(),
        latency_ms,
        suppressed: None,
    }
}
