//! The JSON log lines (`sipgw::telemetry::JsonLayer`): the same lines as
//! `tracing-subscriber`'s JSON format wrote for the same events, valid JSON whatever the
//! values, a span's recorded fields on later lines; and the access line, which
//! `RUST_LOG=…,sipgw::access=off` turns off without losing a request's warnings.

#[path = "logging/capture.rs"]
mod capture;
mod common;

use std::time::Duration;

use capture::Capture;
use common::*;
use http_body_util::{BodyExt, Full};
use sipgw::telemetry::{ACCESS_TARGET, JsonLayer, spans::PHASE_TARGET};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The log filter of `serve` by default, phase spans left out as `Logging` leaves them.
fn filter(directives: &str) -> EnvFilter {
    EnvFilter::new(format!("{directives},{PHASE_TARGET}=off"))
}

/// The lines `work` logs through our layer with `directives` as `RUST_LOG`.
fn ours(directives: &str, work: impl FnOnce()) -> Vec<String> {
    let capture = Capture::default();
    let layer = JsonLayer::new(capture.clone()).with_filter(filter(directives));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), work);
    capture.lines()
}

/// The lines `work` logs through the JSON format the log used before, configured as it was.
fn theirs(directives: &str, work: impl FnOnce()) -> Vec<String> {
    let capture = Capture::default();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(capture.clone())
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_filter(filter(directives));
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), work);
    capture.lines()
}

/// `line` with its timestamp's value left out (the two layers read the clock apart), once
/// it is seen to be UTC, RFC 3339, in microseconds.
fn timeless(line: &str) -> String {
    let timestamp =
        regex::Regex::new(r#"^\{"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z","#).unwrap();
    assert!(timestamp.is_match(line), "{line}");
    timestamp.replace(line, "{").into_owned()
}

/// What the gateway logs for one request, and more: span fields recorded later and
/// twice, a phase span (filtered out) around a line, an explicit parent, every kind of
/// value, a line outside any span, and a debug line that `info` filters out.
fn a_request() {
    let span = tracing::info_span!(
        "request",
        request_id = %"ticket-4711",
        client_ip = %std::net::Ipv4Addr::LOCALHOST,
        route = "/v1/agents/a1001/sip-phone-password",
        forwarded_for = tracing::field::Empty,
        sub = tracing::field::Empty,
        agent = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        attempt = 1u64,
        r#type = ?"change",
    );
    span.record("agent", "a1001");
    span.record("sub", "mallory");
    span.record("sub", "alice");
    span.record("attempt", 2u64);
    span.in_scope(|| {
        let phase = tracing::info_span!(target: PHASE_TARGET, "sipgw.admit");
        phase.in_scope(|| tracing::warn!(request_id = "ticket-4711", "lockout shield"));
        tracing::debug!(rule = "self", "caller authorized");
        let error = std::io::Error::other("connection reset");
        tracing::error!(
            error = &error as &dyn std::error::Error,
            ok = false,
            delta = -3i64,
            "vendor call failed"
        );
        tracing::info!(
            target: ACCESS_TARGET,
            status = 200u16,
            code = "ok",
            latency_ms = 41.7,
            "request"
        );
    });
    tracing::info!(parent: &span, bytes = &b"ab"[..], big = 1u128 << 70, "explicit parent");
    tracing::info!(addr = %"127.0.0.1:8080", "sipgw listening");
}

#[test]
fn lines_are_those_of_the_json_format_they_replace() {
    let ours = ours("info", a_request);
    let theirs = theirs("info", a_request);
    assert_eq!(ours.len(), 5, "{ours:#?}");
    let ours: Vec<String> = ours.iter().map(|l| timeless(l)).collect();
    let theirs: Vec<String> = theirs.iter().map(|l| timeless(l)).collect();
    assert_eq!(ours, theirs);
    // The access line keeps what the operating docs promise, under the names they give.
    let access: serde_json::Value = serde_json::from_str(&ours[2]).unwrap();
    assert_eq!(access["message"], "request");
    assert_eq!(access["target"], ACCESS_TARGET);
    assert_eq!(access["status"], 200);
    assert_eq!(access["code"], "ok");
    assert_eq!(access["latency_ms"], 41.7);
    assert_eq!(access["span"]["request_id"], "ticket-4711");
    assert_eq!(access["span"]["sub"], "alice");
    assert_eq!(access["span"]["agent"], "a1001");
    assert_eq!(access["span"]["name"], "request");
}

#[test]
fn a_recorded_field_replaces_its_value_on_later_lines() {
    let lines = ours("info", || {
        let span = tracing::info_span!("request", sub = tracing::field::Empty);
        span.in_scope(|| tracing::info!("before"));
        span.record("sub", "alice");
        span.in_scope(|| tracing::info!("once"));
        span.record("sub", "bob");
        span.in_scope(|| tracing::info!("twice"));
    });
    let spans: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["span"].clone())
        .collect();
    assert_eq!(spans[0], serde_json::json!({"name": "request"}));
    assert_eq!(
        spans[1],
        serde_json::json!({"sub": "alice", "name": "request"})
    );
    assert_eq!(
        spans[2],
        serde_json::json!({"sub": "bob", "name": "request"})
    );
    assert_eq!(lines[2].matches("\"sub\"").count(), 1, "{}", lines[2]);
}

#[test]
fn hostile_values_give_valid_json_that_reads_back_as_they_were() {
    let mut every_control: String = (0u8..0x20).map(char::from).collect();
    every_control.push('\u{7f}');
    let hostile = [
        every_control.as_str(),
        "quote \" backslash \\ slash / \\u0000",
        "line\nbreak\r\n{\"level\":\"ERROR\"}",
        "\u{1b}[31m\u{9b}2J\u{202e}gnp.exe\u{2028}\u{2029}\u{feff}",
        "😀 é 漢字 \u{10ffff}",
        "",
    ];
    for value in hostile {
        let lines = ours("trace", || {
            let span = tracing::info_span!("request", sub = value, route = tracing::field::Empty);
            span.record("route", tracing::field::debug(value));
            span.in_scope(|| {
                tracing::info!(field = value, shown = %value, debugged = ?value, "{value}");
            });
        });
        assert_eq!(lines.len(), 1, "one line for one event: {lines:?}");
        let line: serde_json::Value =
            serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("{e}: {:?}", lines[0]));
        assert_eq!(line["field"], value);
        assert_eq!(line["shown"], value);
        assert_eq!(line["debugged"], format!("{value:?}"));
        assert_eq!(line["message"], value);
        assert_eq!(line["span"]["sub"], value);
        assert_eq!(line["span"]["route"], format!("{value:?}"));
    }
}

#[test]
fn the_access_line_has_a_target_of_its_own_to_turn_off() {
    let off = ours(&format!("info,{ACCESS_TARGET}=off"), a_request);
    let messages: Vec<String> = off
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert_eq!(
        messages,
        [
            "\"lockout shield\"",
            "\"vendor call failed\"",
            "\"explicit parent\"",
            "\"sipgw listening\""
        ]
    );
}

/// `sipgw serve` with the access line off: a change whose AccessToken the vendor refuses
/// still logs its warning, in its request's span, and no `request` line at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_the_access_line_keeps_the_requests_warnings() {
    let upstreams = Upstreams::start().await;
    let dir = fresh_dir("logging-access-off");
    let config = dir.join("sipgw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [audit]\npath = {:?}\n{}",
            dir.join("audit")
                .join("sipgw-audit.jsonl")
                .display()
                .to_string(),
            upstreams.config_sections()
        ),
    )
    .unwrap();
    let mut child = serve_command(&config)
        .env("RUST_LOG", format!("info,{ACCESS_TARGET}=off"))
        .spawn()
        .unwrap();
    let (lines, mut log, addr) = listening(&mut child, Duration::from_secs(30));
    let token = upstreams
        .idp
        .mint_for("alice", AUDIENCE, Some(AGENT), false);
    let change = |current: &'static str, new: &'static str| {
        let request = http::Request::post(format!("http://{addr}{}", Harness::endpoint(AGENT)))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(bytes::Bytes::from(change_body(current, new))))
            .unwrap();
        async move {
            let response = http_client().request(request).await.unwrap();
            let status = response.status().as_u16();
            let id = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let _ = response.into_body().collect().await;
            (status, id)
        }
    };
    // The first change gets the gateway an AccessToken; the vendor then forgets it.
    assert_eq!(change(CURRENT, NEW).await.0, 200);
    upstreams.sim.revoke_all_tokens();
    let (status, refused) = change(NEW, "Other~Pass88").await;
    assert_eq!(status, 200);
    send_signal(&child, "TERM");
    // Every line, up to the end of stderr when the process has exited.
    log.extend(lines.iter());
    assert_eq!(child.wait().unwrap().code(), Some(0), "{log:#?}");
    let log: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        log.iter().any(|l| l["level"] == "WARN"
            && l["span"]["request_id"] == refused.as_str()
            && l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("vendor refused the AccessToken"))),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .all(|l| l["target"] != ACCESS_TARGET && l["message"] != "request"),
        "{log:#?}"
    );
    // Lines other than the access line are still there at `info`, the last ones logged
    // before the exit included: the log thread's batch is flushed at exit.
    assert!(log.iter().any(|l| l["message"] == "sipgw listening"));
    assert!(
        log.iter()
            .any(|l| l["message"] == "all connections drained"),
        "{log:#?}"
    );
}
