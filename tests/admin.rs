//! The admin listener: `/healthz`, `/readyz` and `/metrics` (docs/operating.md).

mod common;

use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// GET `path` on `addr`: status, `Content-Type` and body.
async fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(
            http::Request::get(format!("http://{addr}{path}"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = get_text(addr, path).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// The samples of a Prometheus text exposition, `name{labels}` to value.
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
            (
                series.to_owned(),
                value.parse().expect("a sample's value is a number"),
            )
        })
        .collect()
}

/// The value of `series`, or 0 when absent (an HTTP status the vendor never sent).
fn value(samples: &std::collections::HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// Polls `/readyz` until it answers `want` (bounded).
async fn readyz_until(h: &Harness, want: u16) -> serde_json::Value {
    for _ in 0..200 {
        let (status, body) = get(h.admin_addr, "/readyz").await;
        if status == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "/readyz never answered {want}: last {:?}",
        get(h.admin_addr, "/readyz").await
    );
}

#[tokio::test]
async fn healthz_answers_and_readyz_turns_ready_once_keys_and_token_are_held() {
    let h = Harness::start().await;
    assert_eq!(
        get(h.admin_addr, "/healthz").await,
        (200, serde_json::json!({ "status": "ok" }))
    );
    let ready = readyz_until(&h, 200).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["degraded"], serde_json::json!([]));
    assert_eq!(get(h.admin_addr, "/other").await.0, 404);
    // The admin listener is not the API: the endpoint is not served there.
    assert_eq!(get(h.admin_addr, &Harness::endpoint(AGENT)).await.0, 404);
}

#[tokio::test]
async fn readyz_names_a_missing_vendor_token() {
    let sim = sipgw_dev::sim::VendorSim::new(sim_config());
    sim.faults().set_token_status(Some(500));
    let sim_addr = sim
        .spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
    let h = Harness::start_gateway(sim, sim_addr, |_| {}).await;
    let not_ready = readyz_until(&h, 503).await;
    assert_eq!(not_ready["status"], "not_ready");
    assert!(
        not_ready["unmet"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("no_vendor_token")),
        "{not_ready}"
    );
    // Once the vendor recovers, the gateway becomes ready by itself.
    h.sim.faults().set_token_status(None);
    readyz_until(&h, 200).await;
}

#[tokio::test]
async fn readyz_names_a_key_set_that_cannot_be_fetched_at_start() {
    // A port nobody listens on: the IdP is unreachable from the start.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let h = Harness::start_with(sim_config(), |file| {
        file.auth.jwks_url = Some(format!("http://{closed_addr}/jwks.json"));
    })
    .await;
    let not_ready = readyz_until(&h, 503).await;
    // The vendor token arrives (the simulator is up) while the keys never do.
    for _ in 0..100 {
        let (_, body) = get(h.admin_addr, "/readyz").await;
        if body["unmet"] == serde_json::json!(["jwks_not_loaded"]) {
            assert_eq!(body["status"], "not_ready");
            assert_eq!(
                get(h.admin_addr, "/healthz").await.0,
                200,
                "alive all the same"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never named only jwks_not_loaded; first answer {not_ready}");
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let audit_path = fresh_dir("metrics-audit").join("trail.jsonl");
    let trail = audit_path.display().to_string();
    // One change per agent per hour, so that a second change to the same agent is refused.
    let h = Harness::start_with(sim_config(), |file| {
        file.audit.path = trail;
        file.rate_limit.per_agent = sipgw::limits::config::QuotaSection {
            burst: 1,
            per_secs: 3600,
        };
    })
    .await;
    readyz_until(&h, 200).await;

    // A known mix: 2 changes, 1 vendor rejection, 1 password-rule refusal, 1 request without
    // a token, 1 unknown path, 1 per-agent quota refusal.
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(h.change("agent0", CURRENT, NEW).await.status, 200);
    assert_eq!(
        h.change("agent1", "Wrong~Pass77", NEW).await.code(),
        "vendor_rejected"
    );
    assert_eq!(
        h.change("agent2", CURRENT, "weakpassword").await.code(),
        "password_policy"
    );
    let anonymous = h
        .send_raw(
            http::Method::POST,
            &Harness::endpoint("agent3"),
            &[("content-type", "application/json")],
            r#"{"accountPwd":"Welcome~2024","newPhonePwd":"Sip~Phone2025"}"#,
        )
        .await;
    assert_eq!(anonymous.code(), "unauthenticated");
    assert_eq!(
        h.send(http::Method::GET, "/nowhere", &[], "").await.code(),
        "not_found"
    );
    assert_eq!(h.change(AGENT, NEW, CURRENT).await.code(), "rate_limited");

    let (status, content_type, text) = get_text(h.admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let m = samples(&text);
    let expected_requests = [
        ("ok", 2.0),
        ("vendor_rejected", 1.0),
        ("password_policy", 1.0),
        ("unauthenticated", 1.0),
        ("not_found", 1.0),
        ("rate_limited", 1.0),
    ];
    for (code, count) in expected_requests {
        assert_eq!(
            value(&m, &format!("sipgw_requests_total{{code=\"{code}\"}}")),
            count,
            "requests with code {code}:\n{text}"
        );
    }
    assert_eq!(
        value(&m, "sipgw_request_duration_seconds_count"),
        7.0,
        "{text}"
    );
    assert_eq!(
        value(&m, "sipgw_request_duration_seconds_bucket{le=\"+Inf\"}"),
        7.0
    );
    assert_eq!(
        value(&m, "sipgw_rate_limited_total{scope=\"agent\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(value(&m, "sipgw_rate_limited_total{scope=\"caller\"}"), 0.0);
    // Three changes reached the vendor (the rejection is a 200 with resultCode "1"), and
    // the simulator agrees.
    assert_eq!(h.sim.update_requests().len(), 3);
    assert_eq!(
        value(
            &m,
            "sipgw_vendor_requests_total{call=\"update\",status=\"200\"}"
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            "sipgw_vendor_request_duration_seconds_count{call=\"update\"}"
        ),
        3.0
    );
    let token_calls = h.sim.token_requests() as f64;
    assert!(token_calls >= 1.0);
    assert_eq!(
        value(
            &m,
            "sipgw_vendor_requests_total{call=\"token\",status=\"200\"}"
        ),
        token_calls,
        "{text}"
    );
    assert_eq!(
        value(&m, "sipgw_token_refreshes_total{result=\"ok\"}"),
        token_calls
    );
    assert_eq!(
        value(&m, "sipgw_token_refreshes_total{result=\"error\"}"),
        0.0
    );
    let expires_in = value(&m, "sipgw_token_expires_in_seconds");
    assert!(expires_in > 0.0 && expires_in <= 600.0, "{text}");
    assert!(
        value(&m, "sipgw_jwks_refreshes_total{result=\"ok\"}") >= 1.0,
        "{text}"
    );
    // Records: an attempt and an outcome per vendor call (3), one outcome per other request
    // on the endpoint (3); the unknown path is not a password change.
    assert_eq!(value(&m, "sipgw_audit_records_total"), 9.0, "{text}");
    let trail_lines = std::fs::read_to_string(&audit_path)
        .unwrap()
        .lines()
        .count();
    assert_eq!(trail_lines, 9);
    // fsync = "always": every batch was synced and timed.
    assert!(
        value(&m, "sipgw_audit_fsync_seconds_count") >= 1.0,
        "{text}"
    );
    assert_eq!(value(&m, "sipgw_audit_write_failures_total"), 0.0);
    assert_eq!(value(&m, "sipgw_limits_degraded"), 0.0);
    assert_eq!(
        value(
            &m,
            &format!(
                "sipgw_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0,
        "{text}"
    );
    // The metrics table of docs/operating.md lists exactly what is exposed.
    let exposed: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    let operating = include_str!("../docs/operating.md");
    let table = operating
        .split("\n## Metrics\n")
        .nth(1)
        .expect("docs/operating.md has a \"## Metrics\" section")
        .split("\n## ")
        .next()
        .unwrap();
    let documented: std::collections::BTreeSet<&str> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|line| line.split('`').next().unwrap())
        .collect();
    // TLS metrics exist only with inbound TLS (tests/tls.rs scrapes them there).
    let tls_only = std::collections::BTreeSet::from([
        "sipgw_tls_reloads_total",
        "sipgw_tls_cert_expiry_timestamp_seconds",
    ]);
    let without_tls: std::collections::BTreeSet<&str> =
        documented.difference(&tls_only).copied().collect();
    assert_eq!(
        exposed, without_tls,
        "docs/operating.md \"Metrics\" vs /metrics"
    );
    // Nothing from a request (agent names, callers, paths) becomes a label.
    for leaked in ["agent1", "ops-robot", "/nowhere"] {
        assert!(!text.contains(leaked), "{leaked} in /metrics:\n{text}");
    }
}

/// While the lockout counts are rebuilt from the audit trail at start-up, `/healthz`
/// answers and `/readyz` says why the gateway is not ready yet.
#[tokio::test]
async fn readyz_names_a_lockout_rebuild_in_progress() {
    let h = Harness::start().await;
    readyz_until(&h, 200).await;
    // A second gateway on the same config, its admin handler on a socket of its own, so
    // that the test can hold it in the rebuilding state.
    let mut file = file_config(h.sim_addr, h.idp_addr);
    file.audit.path = fresh_dir("admin-rebuilding")
        .join("sipgw-audit.jsonl")
        .display()
        .to_string();
    let config = sipgw::config::Config::from_file(file, |name| {
        (name == "SIPGW_APP_SECRET").then(|| APP_SECRET.to_owned())
    })
    .unwrap();
    let parts = sipgw::app::Parts::build(&config).unwrap();
    parts.limits.set_rebuilding(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = sipgw::admin::handler(parts.readiness(), parts.metric_sources(None, Vec::new()));
    let server = tokio::spawn(sipgw::server::run(
        listener,
        config.server.admin_limits.clone(),
        handler,
        std::future::pending::<()>(),
    ));
    let (status, _) = get(addr, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["unmet"]
            .as_array()
            .unwrap()
            .contains(&"lockout_rebuilding".into()),
        "{body}"
    );
    parts.limits.set_rebuilding(false);
    let (_, body) = get(addr, "/readyz").await;
    assert!(
        !body["unmet"]
            .as_array()
            .is_some_and(|unmet| unmet.contains(&"lockout_rebuilding".into())),
        "{body}"
    );
    server.abort();
}
