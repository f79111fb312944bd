//! The operator's kit against the real thing: the alert rules
//! (`deploy/prometheus/sipgw-alerts.yaml`) pass `promtool check rules` and their unit tests,
//! the dashboard's expressions parse, every metric and label value either names is exposed
//! by a running gateway's `/metrics`, and that scrape shows the pre-initialised zeros and
//! the process metrics from the first second.
//!
//! promtool comes with Debian's `prometheus` package. Without it the promtool checks are
//! skipped with a message; `.ci/run` installs it and sets `SIPGW_REQUIRE_LOAD_TOOLS=1`,
//! which turns a missing promtool into a failure.

mod common;
#[path = "observability/exposition.rs"]
mod exposition;
#[path = "observability/promtool.rs"]
mod promtool;
mod yaml;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use exposition::{Sample, label_values, samples, selectors, value};
use promtool::{promtool, run_promtool};
use serde_json::Value;

const ALERTS: &str = "deploy/prometheus/sipgw-alerts.yaml";
const ALERT_TESTS: &str = "deploy/prometheus/sipgw-alerts.test.yaml";
const DASHBOARD: &str = "deploy/grafana/sipgw-dashboard.json";

/// Metrics only a gateway with inbound TLS exposes; tests/tls.rs scrapes them there.
const TLS_ONLY: [&str; 2] = [
    "sipgw_tls_cert_expiry_timestamp_seconds",
    "sipgw_tls_reloads_total",
];

/// Every alerting rule of the rule file.
fn alert_rules() -> Vec<Value> {
    let doc = yaml::load_one(&yaml::repo_path(ALERTS));
    let groups = doc["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

/// The dashboard's expressions: every panel target and every variable query, with the
/// Grafana variables a query may hold replaced by what Prometheus can parse.
fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(yaml::repo_path(DASHBOARD)).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a target's expr").to_owned())
        .collect();
    assert!(exprs.len() > 20, "too few panel targets: {exprs:?}");
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            // label_values(SELECTOR, label): the selector is what must exist.
            let inner = query.trim_start_matches("label_values(");
            exprs.push(inner.rsplit_once(',').unwrap().0.to_owned());
        }
    }
    exprs
        .into_iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$job", ".+")
                .replace("$instance", ".+")
        })
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let dir = yaml::repo_path("deploy/prometheus");
    let checked = run_promtool(
        &promtool,
        &dir,
        &["check", "rules", "sipgw-alerts.yaml"],
        "",
    );
    let rules = alert_rules().len();
    assert!(
        checked.contains(&format!("SUCCESS: {rules} rules found")),
        "{checked}"
    );
    let tested = run_promtool(
        &promtool,
        &dir,
        &["test", "rules", "sipgw-alerts.test.yaml"],
        "",
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn the_dashboards_expressions_parse() {
    let Some(promtool) = promtool() else { return };
    // promtool has no expression checker of its own: each expression becomes a recording
    // rule of a throw-away rule file, which `check rules` parses.
    let rules: Vec<String> = dashboard_expressions()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "      - record: dashboard:expr_{i}\n        expr: {}\n",
                serde_json::json!(e)
            )
        })
        .collect();
    let file = format!(
        "groups:\n  - name: dashboard\n    rules:\n{}",
        rules.concat()
    );
    let dir = fresh_dir("dashboard-rules");
    std::fs::write(dir.join("dashboard.yaml"), file).unwrap();
    let out = run_promtool(&promtool, &dir, &["check", "rules", "dashboard.yaml"], "");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{out}"
    );
}

#[test]
fn every_dashboard_panel_reads_the_chosen_data_source() {
    let text = std::fs::read_to_string(yaml::repo_path(DASHBOARD)).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance"]);
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids repeat: {panel}"
        );
        if panel["type"] != "row" {
            // Pinned to no particular data source, so the file imports anywhere.
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
            assert!(panel["description"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }
}

#[test]
fn every_alert_says_what_to_do_and_is_tested_both_ways() {
    let tests = yaml::load_one(&yaml::repo_path(ALERT_TESTS));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    let operating = include_str!("../docs/operating.md");
    let alerts_section = operating
        .split("\n## Alerts\n")
        .nth(1)
        .expect("docs/operating.md has an \"## Alerts\" section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut names = BTreeSet::new();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().expect("an alerting rule").to_owned();
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        for annotation in ["summary", "description", "runbook"] {
            let text = rule["annotations"][annotation].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: no {annotation} worth reading");
        }
        let tested = |firing: bool| {
            cases.iter().any(|c| {
                c["alertname"] == name.as_str()
                    && c["exp_alerts"]
                        .as_array()
                        .is_some_and(|a| a.is_empty() != firing)
            })
        };
        assert!(tested(true), "{name}: no unit test where it fires");
        assert!(tested(false), "{name}: no unit test where it stays quiet");
        assert!(
            alerts_section.contains(&format!("| `{name}` |")),
            "{name} is missing from docs/operating.md \"Alerts\""
        );
        names.insert(name);
    }
    let documented = alerts_section.matches("| `Sipgw").count();
    assert_eq!(
        documented,
        names.len(),
        "docs/operating.md lists an alert the rules lack"
    );
}

#[test]
fn the_5xx_ratio_counts_exactly_the_catalogues_5xx_codes() {
    let server_errors: BTreeSet<&str> = sipgw::error::catalogue()
        .filter(|(status, _)| status.is_server_error())
        .map(|(_, code)| code)
        .collect();
    let rule = alert_rules()
        .into_iter()
        .find(|r| r["alert"] == "SipgwHighServerErrorRatio")
        .expect("the 5xx ratio alert");
    let dashboard = dashboard_expressions();
    let panel = dashboard
        .iter()
        .find(|e| e.contains("upstream_auth_unavailable"))
        .unwrap();
    for expr in [rule["expr"].as_str().unwrap(), panel.as_str()] {
        let found = selectors(expr);
        let codes: BTreeSet<&str> = found
            .iter()
            .flat_map(|s| s.matchers.iter())
            .filter(|m| m.label == "code")
            .flat_map(|m| m.value.split('|'))
            .collect();
        assert_eq!(codes, server_errors, "{expr}");
    }
}

/// Polls `/readyz` until 200 (bounded), so that the token and key set gauges exist.
async fn ready(h: &Harness) {
    for _ in 0..200 {
        if scrape_path(h, "/readyz").await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz never answered 200");
}

/// GET `path` on the admin listener: status and body.
async fn scrape_path(h: &Harness, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri = format!("http://{}{path}", h.admin_addr);
    let response = client
        .request(http::Request::get(uri).body(Default::default()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn every_series_the_alerts_and_dashboard_read_is_exposed() {
    let h = Harness::start().await;
    ready(&h).await;
    let (_, text) = scrape_path(&h, "/metrics").await;
    let scraped = samples(&text);
    let mut exprs: Vec<String> = alert_rules()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_owned())
        .collect();
    exprs.extend(dashboard_expressions());
    let mut checked = 0;
    for expr in &exprs {
        let found = selectors(expr);
        assert!(!found.is_empty(), "no metric in {expr}");
        for selector in found {
            let metric = selector.metric.as_str();
            // `up` is Prometheus's own series for each target.
            if metric == "up" || TLS_ONLY.contains(&metric) {
                continue;
            }
            let labels = label_values(&scraped, metric);
            assert!(
                scraped.iter().any(|s| s.name == metric),
                "{metric} (in {expr}) is not in /metrics:\n{text}"
            );
            for matcher in &selector.matchers {
                let Some(values) = matcher.named_values() else {
                    continue;
                };
                if ["job", "instance"].contains(&matcher.label.as_str()) {
                    continue; // the scraper's target labels
                }
                let exposed = labels.get(&matcher.label).cloned().unwrap_or_default();
                for v in values {
                    assert!(
                        exposed.contains(v),
                        "{metric}{{{}{}\"{v}\"}} in {expr}: /metrics has {exposed:?}",
                        matcher.label,
                        matcher.op
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} selectors checked");
    // The conditional ones are absent here, and a TLS test reads them where they exist.
    for metric in TLS_ONLY {
        assert!(
            !scraped.iter().any(|s| s.name == metric),
            "{metric} without TLS"
        );
        assert!(
            include_str!("tls.rs").contains(metric),
            "tests/tls.rs never reads {metric}"
        );
    }
}

/// A sample that must exist, with its value.
fn present(scraped: &[Sample], name: &str, labels: &[(&str, &str)], text: &str) -> f64 {
    value(scraped, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
}

#[tokio::test]
async fn metrics_from_the_first_second_hold_every_known_series() {
    let started = unix_now() as f64;
    let h = Harness::start().await;
    // Before any request, and whether or not the first fetches have finished.
    let (status, text) = scrape_path(&h, "/metrics").await;
    assert_eq!(status, 200);
    let m = samples(&text);
    let codes: Vec<&str> = sipgw::error::answer_codes().collect();
    assert!(codes.contains(&"ok") && codes.contains(&"lockout_protection"));
    for code in codes {
        let n = present(&m, "sipgw_requests_total", &[("code", code)], &text);
        assert_eq!(n, 0.0, "{code}");
    }
    for scope in ["caller", "agent"] {
        assert_eq!(
            present(&m, "sipgw_rate_limited_total", &[("scope", scope)], &text),
            0.0
        );
    }
    for family in ["sipgw_token_refreshes_total", "sipgw_jwks_refreshes_total"] {
        for result in ["ok", "error"] {
            present(&m, family, &[("result", result)], &text);
        }
    }
    for call in ["token", "update"] {
        for status in ["200", "401", "500", "timeout", "connect_error"] {
            present(
                &m,
                "sipgw_vendor_requests_total",
                &[("call", call), ("status", status)],
                &text,
            );
        }
    }
    assert_eq!(
        present(
            &m,
            "sipgw_vendor_requests_total",
            &[("call", "update"), ("status", "200")],
            &text
        ),
        0.0
    );
    for reason in ["caller", "network", "budget"] {
        assert_eq!(
            present(
                &m,
                "sipgw_audit_suppressed_total",
                &[("reason", reason)],
                &text
            ),
            0.0
        );
    }
    // The process metrics, plausible for this test process (the gateway runs inside it).
    let rss = present(&m, "process_resident_memory_bytes", &[], &text);
    let virtual_bytes = present(&m, "process_virtual_memory_bytes", &[], &text);
    assert!(
        rss > 1_000_000.0 && virtual_bytes > rss,
        "rss {rss}, virtual {virtual_bytes}"
    );
    let fds = present(&m, "process_open_fds", &[], &text);
    let max_fds = present(&m, "process_max_fds", &[], &text);
    // At least stdio and the two listeners; within the limit.
    assert!(fds >= 5.0 && fds <= max_fds, "open {fds}, max {max_fds}");
    let start = present(&m, "process_start_time_seconds", &[], &text);
    assert!(
        start <= started + 1.0 && start > started - 900.0,
        "start {start}, now {started}"
    );
    assert!(present(&m, "process_cpu_seconds_total", &[], &text) >= 0.0);
    // Once the key set is fetched, its age is known and small.
    ready(&h).await;
    let (_, text) = scrape_path(&h, "/metrics").await;
    let fetched = present(
        &samples(&text),
        "sipgw_jwks_last_success_timestamp_seconds",
        &[],
        &text,
    );
    assert!(
        fetched >= started - 1.0 && fetched <= unix_now() as f64 + 1.0,
        "{fetched}"
    );

    let Some(promtool) = promtool() else { return };
    // The exposition itself lints clean.
    run_promtool(
        &promtool,
        &std::env::temp_dir(),
        &["check", "metrics"],
        &text,
    );
}

#[tokio::test]
async fn the_key_set_age_is_absent_for_a_file_and_zero_until_a_first_fetch() {
    // From a file: nothing can go stale, nothing is fetched.
    let idp = sipgw_dev::dev_issuer::DevIssuer::new(ISSUER);
    let path = fresh_dir("jwks-file").join("jwks.json");
    std::fs::write(&path, idp.jwks_json().to_string()).unwrap();
    let from_file = Harness::start_with(sim_config(), |c| {
        c.auth.jwks_url = None;
        c.auth.jwks_file = Some(path.display().to_string());
    })
    .await;
    let (_, text) = scrape_path(&from_file, "/metrics").await;
    let m = samples(&text);
    assert!(
        !text.contains("sipgw_jwks_last_success_timestamp_seconds"),
        "{text}"
    );
    for result in ["ok", "error"] {
        let fetches = present(
            &m,
            "sipgw_jwks_refreshes_total",
            &[("result", result)],
            &text,
        );
        assert_eq!(fetches, 0.0);
    }
    // From an IdP that never answers: 0, which SipgwJwksStale reads as "too long ago".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let unreachable = Harness::start_with(sim_config(), |c| {
        c.auth.jwks_url = Some(format!("http://{closed_addr}/jwks.json"));
    })
    .await;
    for _ in 0..200 {
        let (_, text) = scrape_path(&unreachable, "/metrics").await;
        let m = samples(&text);
        if value(&m, "sipgw_jwks_refreshes_total", &[("result", "error")]) >= Some(1.0) {
            let age = present(&m, "sipgw_jwks_last_success_timestamp_seconds", &[], &text);
            assert_eq!(age, 0.0, "no fetch succeeded");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the key set fetch never failed");
}
