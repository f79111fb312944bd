//! OpenTelemetry traces end to end: the `sipgw` binary exports its spans to a collector
//! started here (OTLP/HTTP protobuf, decoded), continues the caller's `traceparent`, passes
//! the trace on to the vendor, and names the trace in its log lines and audit records.

#[path = "telemetry/collector.rs"]
mod collector;
mod common;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use collector::{Collector, Received};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sipgw_dev::sim::VendorSim;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
/// The caller's trace and span, as its `traceparent` names them.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
/// The pipeline's phases, in order.
const PHASES: [&str; 5] = [
    "sipgw.authenticate",
    "sipgw.admit",
    "sipgw.audit_attempt",
    "sipgw.vendor_call",
    "sipgw.audit_outcome",
];

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// A `sipgw serve` child in front of a simulator and an issuer in this process.
struct Gateway {
    child: Child,
    addr: String,
    lines: Receiver<String>,
    sim: VendorSim,
    token: String,
    trail: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts the binary with `telemetry` as its `[telemetry]` section's body.
    async fn start(name: &str, telemetry: &str) -> Self {
        let upstreams = Upstreams::start().await;
        let sections = upstreams.config_sections();
        let dir = fresh_dir(name);
        let trail = dir.join("audit").join("sipgw-audit.jsonl");
        let config = dir.join("sipgw.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n\
                 [audit]\npath = {:?}\ncheckpoint_every = 0\ncheckpoint_interval_secs = 0\n\
                 [telemetry]\n{telemetry}\n{sections}",
                trail.display().to_string()
            ),
        )
        .unwrap();
        let mut child = serve_command(&config)
            // Debug: the "caller authorized" line is logged inside a phase span.
            .env("RUST_LOG", "info,sipgw=debug")
            // Export every 100 ms rather than every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .spawn()
            .unwrap();
        let (lines, _, addr) = listening(&mut child, Duration::from_secs(30));
        let token = upstreams
            .idp
            .mint_for("alice", AUDIENCE, Some(AGENT), false);
        Self {
            child,
            addr,
            lines,
            sim: upstreams.sim,
            token,
            trail,
        }
    }

    /// A change of `AGENT`'s password with these extra headers: its status and request id.
    async fn change(&self, current: &str, new: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let client: Client<_, Full<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut request =
            http::Request::post(format!("http://{}{}", self.addr, Harness::endpoint(AGENT)))
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {}", self.token));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = bytes::Bytes::from(change_body(current, new));
        let response = client
            .request(request.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ = response.into_body().collect().await;
        (status, id)
    }

    /// The log lines of request `id` up to its last one (`request`), as JSON.
    fn log_of(&self, id: &str) -> Vec<serde_json::Value> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .expect("the request's last log line");
            let json: serde_json::Value = serde_json::from_str(&line).unwrap();
            if json["span"]["request_id"] != id {
                continue;
            }
            let last = json["message"] == "request";
            lines.push(json);
            if last {
                return lines;
            }
        }
    }

    /// The audit records of request `id` (attempt, outcome).
    fn records_of(&self, id: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.trail)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["requestId"] == id)
            .collect()
    }

    /// The `traceparent` and `tracestate` of the last update the vendor received.
    fn vendor_saw(&self) -> (Option<String>, Option<String>) {
        let updates = self.sim.update_requests();
        let last = updates.last().expect("the vendor was called");
        let header = |name| {
            last.headers
                .get(name)
                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
        };
        (header("traceparent"), header("tracestate"))
    }

    /// SIGTERM: the gateway drains, flushes its spans and exits 0.
    fn terminate(mut self) {
        send_signal(&self.child, "TERM");
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
    }
}

fn named<'a>(spans: &'a [Received], name: &str) -> &'a Received {
    spans
        .iter()
        .find(|s| s.span.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_trace_goes_through_every_phase_to_the_vendor() {
    let (collector, collector_addr) = Collector::start().await;
    let endpoint = format!("otlp_endpoint = \"http://{collector_addr}\"");
    let gateway = Gateway::start("otel-tree", &endpoint).await;
    let parent = traceparent(TRACE, CALLER_SPAN);
    let (status, id) = gateway
        .change(
            CURRENT,
            NEW,
            &[("traceparent", &parent), ("tracestate", TRACESTATE)],
        )
        .await;
    assert_eq!(status, 200);

    let mut names = vec!["request"];
    names.extend(PHASES);
    let spans = collector.trace(TRACE, &names).await;
    let request = named(&spans, "request");
    assert_eq!(
        request.parent_id(),
        CALLER_SPAN,
        "the caller's span is the parent"
    );
    assert_eq!(
        request.attribute("request_id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(request.attribute("agent").as_deref(), Some(AGENT));
    assert_eq!(request.attribute("sub").as_deref(), Some("alice"));
    assert_eq!(request.resource["service.name"], "sipgw");
    for phase in PHASES {
        assert_eq!(
            named(&spans, phase).parent_id(),
            request.span_id(),
            "{phase} is a child of the request's span"
        );
    }
    let vendor_call = named(&spans, "sipgw.vendor_call");
    assert_eq!(vendor_call.span.kind, 3, "the vendor call is a client span");

    // The vendor is told the vendor-call span is the parent, in the caller's trace.
    let (vendor_parent, vendor_state) = gateway.vendor_saw();
    assert_eq!(
        vendor_parent.as_deref(),
        Some(traceparent(TRACE, &vendor_call.span_id()).as_str())
    );
    assert_eq!(vendor_state.as_deref(), Some(TRACESTATE));

    // The audit records and the log lines carry the trace id.
    let records = gateway.records_of(&id);
    assert_eq!(records.len(), 2, "attempt and outcome");
    for record in &records {
        assert_eq!(record["traceId"], TRACE, "{}", record["kind"]);
    }
    let log = gateway.log_of(&id);
    assert!(log.iter().all(|line| line["span"]["trace_id"] == TRACE));
    // A line logged inside a phase names the request's span, not the phase's.
    let authorized = log
        .iter()
        .find(|line| line["message"] == "caller authorized")
        .expect("the debug line of authorization");
    assert_eq!(authorized["span"]["name"], "request");
    assert_eq!(
        authorized["span"]["sub"], "alice",
        "recorded from inside a phase"
    );

    // No secret in any span: the passwords, the caller's JWT, the app secret, the
    // vendor's AccessToken.
    let access_token = {
        let updates = gateway.sim.update_requests();
        let bearer = updates[0].headers["authorization"]
            .to_str()
            .unwrap()
            .to_owned();
        bearer.trim_start_matches("Bearer ").to_owned()
    };
    let raw = String::from_utf8_lossy(&collector.raw()).into_owned();
    for secret in [CURRENT, NEW, APP_SECRET, &gateway.token, &access_token] {
        assert!(!raw.contains(secret), "a secret was exported");
    }
    let trail = gateway.trail.parent().unwrap().to_owned();
    gateway.terminate();

    // The field is covered by the chain like any other, and the readers carry it.
    let (code, _) = audit(&["verify"], &trail);
    assert_eq!(code, Some(0), "the trail verifies");
    let (code, csv) = audit(&["show", "--format", "csv"], &trail);
    assert_eq!(code, Some(0));
    assert!(csv.lines().next().unwrap().contains(",traceId,"));
    assert_eq!(csv.matches(&format!(",{TRACE},")).count(), 2, "{csv}");
    let (code, ecs) = audit(&["export", "--format", "ecs"], &trail);
    assert_eq!(code, Some(0));
    let traced = ecs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|doc| doc["trace"]["id"] == TRACE)
        .count();
    assert_eq!(traced, 2, "attempt and outcome carry trace.id");
}

/// `sipgw audit SUBCOMMAND ARGS TRAIL`: its exit status and stdout.
fn audit(args: &[&str], trail: &std::path::Path) -> (Option<i32>, String) {
    let output = Command::new(SIPGW)
        .arg("audit")
        .args(args)
        .arg(trail)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_traceparent_starts_a_fresh_trace() {
    let (collector, collector_addr) = Collector::start().await;
    let endpoint = format!("otlp_endpoint = \"http://{collector_addr}/\"");
    let gateway = Gateway::start("otel-malformed", &endpoint).await;
    let malformed = format!("00-{TRACE}-not-a-span-01");
    let (status, id) = gateway
        .change(
            CURRENT,
            NEW,
            &[("traceparent", &malformed), ("tracestate", TRACESTATE)],
        )
        .await;
    assert_eq!(status, 200, "a malformed traceparent is no error");

    let request = collector.request_span(&id).await;
    assert_ne!(request.trace_id(), TRACE);
    assert_eq!(request.parent_id(), "", "a root span");
    let spans = collector.trace(&request.trace_id(), &PHASES).await;
    let vendor_call = named(&spans, "sipgw.vendor_call");
    let (vendor_parent, vendor_state) = gateway.vendor_saw();
    assert_eq!(
        vendor_parent.as_deref(),
        Some(traceparent(&request.trace_id(), &vendor_call.span_id()).as_str())
    );
    assert_eq!(
        vendor_state, None,
        "the caller's tracestate went with its traceparent"
    );
    for record in gateway.records_of(&id) {
        assert_eq!(record["traceId"], request.trace_id().as_str());
    }
    assert_eq!(request.attribute("sipgw.code").as_deref(), Some("ok"));
    assert_eq!(
        request.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        request.span.status.map_or(0, |s| s.code),
        0,
        "unset: no error"
    );

    // A vendor failure (502): the request's span is marked as an error, with the code.
    gateway.sim.faults().set_update_status(Some(500));
    let (status, id) = gateway.change(NEW, CURRENT, &[]).await;
    assert_eq!(status, 502);
    let failed = collector.request_span(&id).await;
    assert_eq!(
        failed.attribute("sipgw.code").as_deref(),
        Some("vendor_error")
    );
    let failed_status = failed.span.status.expect("a status");
    assert_eq!(
        (failed_status.code, failed_status.message.as_str()),
        (2, "vendor_error")
    );
    gateway.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_does_not_fail_the_changes() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let endpoint = format!("otlp_endpoint = \"http://{dead}\"");
    let gateway = Gateway::start("otel-dead", &endpoint).await;
    let parent = traceparent(TRACE, CALLER_SPAN);
    for (current, new) in [(CURRENT, NEW), (NEW, CURRENT), (CURRENT, NEW)] {
        let (status, id) = gateway
            .change(current, new, &[("traceparent", &parent)])
            .await;
        assert_eq!(status, 200);
        let (vendor_parent, _) = gateway.vendor_saw();
        let vendor_parent = vendor_parent.expect("the trace still reaches the vendor");
        assert!(vendor_parent.starts_with(&format!("00-{TRACE}-")));
        assert!(
            !vendor_parent.contains(CALLER_SPAN),
            "parent: the vendor-call span"
        );
        assert_eq!(gateway.records_of(&id)[0]["traceId"], TRACE);
    }
    // Shutdown's last export fails too, and the gateway still stops cleanly.
    gateway.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_export_the_callers_context_reaches_the_vendor_as_it_came() {
    let gateway = Gateway::start("otel-off", "").await;
    let parent = traceparent(TRACE, CALLER_SPAN);
    let (status, id) = gateway
        .change(
            CURRENT,
            NEW,
            &[("traceparent", &parent), ("tracestate", TRACESTATE)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        gateway.vendor_saw(),
        (Some(parent), Some(TRACESTATE.to_owned()))
    );
    for record in gateway.records_of(&id) {
        assert_eq!(record["traceId"], TRACE);
    }
    assert!(
        gateway
            .log_of(&id)
            .iter()
            .all(|l| l["span"]["trace_id"] == TRACE)
    );

    // No context from the caller: none is made up.
    let (status, id) = gateway.change(NEW, CURRENT, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(gateway.vendor_saw(), (None, None));
    for record in gateway.records_of(&id) {
        assert!(record.get("traceId").is_none(), "{record}");
    }
    assert!(
        gateway
            .log_of(&id)
            .iter()
            .all(|l| l["span"].get("trace_id").is_none())
    );
    gateway.terminate();
}
