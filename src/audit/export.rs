//! `sipgw audit export PATH... --format ecs`: the trail as Elastic Common Schema (ECS 8.x)
//! JSON lines, one document per record, for a batch load into a SIEM (docs/audit.md,
//! "Shipping to a SIEM").
//!
//! The trail is read and checked by [`super::review::load`]; [`ecs`] maps one checked
//! record to one document, as a plain function. A record that failed verification is
//! still exported, with `sipgw.verified = false` and the reason in `sipgw.problem`, so that
//! the SIEM holds what the files hold; the exit status says that it happened, as
//! `audit show`'s does ([`super::show::exit_status`]).
//!
//! ECS has no field for some of what a record says (the token issuer, the grant, the
//! chain); those go under `sipgw.*`, named as in the trail.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::chain::UNKEYED_WARNING;
use super::review::Row;
use super::show::{EXIT_UNREADABLE, TrailArgs, exit_status};
use crate::terminal::{self, write_failed};

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.17.0";
/// `event.action` of the attempt and the outcome of a password change.
pub const ACTION_CHANGE: &str = "sip-phone-password-change";

/// The formats `audit export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Elastic Common Schema JSON lines.
    Ecs,
}

/// `sipgw audit export ...`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The trails, their key, the period.
    #[command(flatten)]
    pub trails: TrailArgs,
    /// The output format.
    #[arg(long, value_enum)]
    pub format: Format,
}

/// Runs `audit export`; its result is the exit status.
pub fn run(args: &ExportArgs) -> ExitCode {
    const CONTEXT: &str = "sipgw audit export";
    let review = match args.trails.load() {
        Ok(review) => review,
        Err(error) => {
            eprintln!("{CONTEXT}: {}", terminal::escape(&error));
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    if !review.keyed {
        eprintln!("{CONTEXT}: warning: {UNKEYED_WARNING}");
    }
    let status = ExitCode::from(exit_status(&review));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = review
        .rows
        .iter()
        .filter(|row| args.trails.period.holds(&row.record))
        .try_for_each(|row| {
            let line = ecs(row).to_string();
            writeln!(out, "{}", terminal::escape_json(&line))
        })
        .and_then(|()| out.flush());
    match written {
        Ok(()) => status,
        Err(error) => write_failed(CONTEXT, &error, status),
    }
}

/// One record as an ECS document.
pub fn ecs(row: &Row) -> Value {
    let record = &row.record;
    let change = matches!(record.kind.as_str(), "attempt" | "outcome");
    let action = match record.kind.as_str() {
        "attempt" | "outcome" => ACTION_CHANGE,
        "checkpoint" => "audit-checkpoint",
        "discontinuity" => "audit-discontinuity",
        "summary" => "audit-flood-summary",
        _ => "audit-record",
    };

    let mut event = Map::new();
    event.insert("kind".into(), json!("event"));
    event.insert("category".into(), json!(["iam"]));
    event.insert(
        "type".into(),
        json!([if change { "change" } else { "info" }]),
    );
    event.insert("action".into(), json!(action));
    event.insert("module".into(), json!("sipgw"));
    event.insert("dataset".into(), json!("sipgw.audit"));
    if let Some(outcome) = outcome(row) {
        event.insert("outcome".into(), json!(outcome));
    }
    put(&mut event, "id", &record.request_id);
    event.insert("sequence".into(), json!(record.seq));
    if let Some(ms) = record.latency_ms {
        event.insert("duration".into(), json!(ms.saturating_mul(1_000_000)));
    }
    put(&mut event, "reason", &record.code);
    // A line that is not a record at all is kept as its text: all there is to see.
    if let Value::String(text) = &record.raw {
        event.insert("original".into(), json!(text));
    }

    let mut doc = Map::new();
    doc.insert("@timestamp".into(), json!(record.ts));
    doc.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    doc.insert("event".into(), Value::Object(event));

    let mut user = Map::new();
    put(&mut user, "id", &record.sub);
    put(&mut user, "name", &record.caller_name);
    if let Some(agent) = &record.agent {
        user.insert("target".into(), json!({ "name": agent }));
    }
    if !user.is_empty() {
        doc.insert("user".into(), Value::Object(user));
    }
    // ECS `ip` fields take an address only: a flood summary's network (a CIDR) or an
    // edited value stays under `sipgw.caller` alone.
    if let Some(ip) = record.client().filter(|ip| ip.parse::<IpAddr>().is_ok()) {
        doc.insert("source".into(), json!({ "ip": ip }));
    }
    if let Some(ip) = record
        .client_ip
        .as_deref()
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
    {
        doc.insert("client".into(), json!({ "ip": ip }));
    }
    if let Some(status) = record.http_status {
        doc.insert(
            "http".into(),
            json!({ "response": { "status_code": status } }),
        );
    }
    if let Some(instance) = &record.instance {
        doc.insert("host".into(), json!({ "name": instance }));
    }
    if let Some(grant) = &record.grant {
        doc.insert("labels".into(), json!({ "grant": grant }));
    }
    // ECS's own field: a SIEM links the record to the request's spans by it.
    if let Some(trace_id) = &record.trace_id {
        doc.insert("trace".into(), json!({ "id": trace_id }));
    }
    doc.insert("sipgw".into(), sipgw_fields(row));
    Value::Object(doc)
}

/// `event.outcome`: `success` for a change done, `unknown` for an attempt (answered or
/// not) and for a vendor call that got no answer (the change may have happened),
/// `failure` for any other outcome; none for records that are not about a change.
fn outcome(row: &Row) -> Option<&'static str> {
    let record = &row.record;
    match record.kind.as_str() {
        "attempt" => Some("unknown"),
        "outcome" if record.code.as_deref() == Some("ok") => Some("success"),
        "outcome" => {
            let unanswered = !record.raw["vendor"].is_null() && record.vendor_status.is_none();
            let timed_out = record.code.as_deref() == Some("vendor_timeout");
            Some(if unanswered || timed_out {
                "unknown"
            } else {
                "failure"
            })
        }
        _ => None,
    }
}

/// What ECS cannot carry, named as in the trail.
fn sipgw_fields(row: &Row) -> Value {
    let record = &row.record;
    let raw = &record.raw;
    let mut out = Map::new();
    out.insert("v".into(), json!(record.v));
    out.insert("seq".into(), json!(record.seq));
    out.insert("kind".into(), json!(record.kind));
    put(&mut out, "code", &record.code);
    put(&mut out, "grant", &record.grant);
    put(&mut out, "replayOf", &record.replay_of);
    let mut caller = Map::new();
    put(&mut caller, "iss", &record.iss);
    put(&mut caller, "sub", &record.sub);
    put(&mut caller, "clientIp", &record.client_ip);
    put(&mut caller, "forwardedFor", &record.forwarded_for);
    if !caller.is_empty() {
        out.insert("caller".into(), Value::Object(caller));
    }
    for name in ["vendor", "suppressed", "network", "since", "codes"] {
        if !raw[name].is_null() {
            out.insert(name.into(), raw[name].clone());
        }
    }
    // A checkpoint's anchor and a discontinuity's account of what was lost.
    for name in ["lastSeq", "lastMac", "detected", "foundSeq"] {
        if !raw[name].is_null() {
            out.insert(name.into(), raw[name].clone());
        }
    }
    out.insert("verified".into(), json!(row.problem.is_none()));
    if let Some(problem) = &row.problem {
        out.insert("problem".into(), json!(problem));
    }
    out.insert("outcomeUnknown".into(), json!(row.outcome_unknown));
    if !raw["mac"].is_null() {
        out.insert("mac".into(), raw["mac"].clone());
    }
    out.insert(
        "file".into(),
        json!({ "path": row.file.display().to_string(), "line": row.line }),
    );
    Value::Object(out)
}

fn put(map: &mut Map<String, Value>, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        map.insert(name.into(), json!(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::review::Record;
    use crate::audit::show::Period;

    /// A row for `raw`, read as the loader reads it.
    fn row(raw: Value) -> Row {
        let record = Record::from_value(raw);
        Row {
            trail: 0,
            file: std::path::PathBuf::from("/trail/sipgw-audit.jsonl"),
            line: 3,
            problem: None,
            outcome_unknown: false,
            record,
        }
    }

    fn outcome_record() -> Value {
        json!({"v":2,"seq":12,"ts":"2026-12-01T05:18:26.123Z","instance":"sipgw-7d9f-abc12",
            "kind":"outcome","requestId":"r-1","traceId":"4bf92f3577b34da6a3ce929d0e0e4736",
            "caller":{"iss":"https://sso","sub":"alice","clientIp":"127.0.0.1"},
            "callerName":"Alice Example","forwardedFor":"203.0.113.9",
            "agent":"a1001","grant":"self","code":"ok","httpStatus":200,"replayOf":"r-0",
            "vendor":{"status":200,"resultCode":"0","latencyMs":12},"latencyMs":15,
            "prev":"a".repeat(64),"mac":"b".repeat(64)})
    }

    #[test]
    fn an_outcome_maps_to_the_ecs_fields() {
        let doc = ecs(&row(outcome_record()));
        assert_eq!(doc["@timestamp"], "2026-12-01T05:18:26.123Z");
        assert_eq!(doc["ecs"]["version"], ECS_VERSION);
        let event = &doc["event"];
        assert_eq!(event["kind"], "event");
        assert_eq!(event["category"], json!(["iam"]));
        assert_eq!(event["type"], json!(["change"]));
        assert_eq!(event["action"], ACTION_CHANGE);
        assert_eq!(event["outcome"], "success");
        assert_eq!(event["id"], "r-1");
        assert_eq!(event["sequence"], 12);
        assert_eq!(event["duration"], 15_000_000);
        assert_eq!(event["reason"], "ok");
        assert_eq!(doc["user"]["id"], "alice");
        assert_eq!(doc["user"]["name"], "Alice Example");
        assert_eq!(doc["user"]["target"]["name"], "a1001");
        assert_eq!(
            doc["source"]["ip"], "203.0.113.9",
            "the end user, not the proxy"
        );
        assert_eq!(doc["client"]["ip"], "127.0.0.1");
        assert_eq!(doc["http"]["response"]["status_code"], 200);
        assert_eq!(doc["host"]["name"], "sipgw-7d9f-abc12");
        assert_eq!(doc["labels"]["grant"], "self");
        assert_eq!(doc["trace"]["id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        let sipgw = &doc["sipgw"];
        assert_eq!(sipgw["seq"], 12);
        assert_eq!(sipgw["kind"], "outcome");
        assert_eq!(sipgw["code"], "ok");
        assert_eq!(sipgw["grant"], "self");
        assert_eq!(sipgw["replayOf"], "r-0");
        assert_eq!(sipgw["caller"]["iss"], "https://sso");
        assert_eq!(sipgw["vendor"]["resultCode"], "0");
        assert_eq!(sipgw["verified"], true);
        assert_eq!(sipgw["outcomeUnknown"], false);
        assert_eq!(sipgw["mac"], "b".repeat(64));
        assert!(sipgw.get("problem").is_none());
        assert_eq!(sipgw["file"]["line"], 3);
    }

    #[test]
    fn outcomes_are_success_failure_or_unknown() {
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut raw = outcome_record();
            edit(&mut raw);
            ecs(&row(raw))["event"]["outcome"].clone()
        };
        assert_eq!(with(&|_| {}), "success");
        assert_eq!(
            with(&|r| {
                r["code"] = json!("vendor_rejected");
                r["vendor"]["resultCode"] = json!("1");
            }),
            "failure"
        );
        assert_eq!(
            with(&|r| {
                r["code"] = json!("forbidden");
                r.as_object_mut().unwrap().remove("vendor");
            }),
            "failure"
        );
        // No answer from the vendor: the change may have happened.
        assert_eq!(
            with(&|r| {
                r["code"] = json!("vendor_error");
                r["vendor"]["status"] = Value::Null;
            }),
            "unknown"
        );
        assert_eq!(with(&|r| r["code"] = json!("vendor_timeout")), "unknown");
        // An attempt, answered or orphaned.
        let mut attempt = row(json!({"v":2,"seq":11,"ts":"2026-12-01T05:18:26.100Z",
            "kind":"attempt","requestId":"r-1","code":"attempt",
            "caller":{"iss":"https://sso","sub":"alice","clientIp":"127.0.0.1"},"agent":"a1001"}));
        assert_eq!(ecs(&attempt)["event"]["outcome"], "unknown");
        assert_eq!(ecs(&attempt)["event"]["type"], json!(["change"]));
        attempt.outcome_unknown = true;
        assert_eq!(ecs(&attempt)["sipgw"]["outcomeUnknown"], true);
        assert!(
            ecs(&attempt).get("trace").is_none(),
            "no traceId, no trace.id"
        );
        assert_eq!(ecs(&attempt)["event"]["outcome"], "unknown");
    }

    #[test]
    fn a_checkpoint_is_info_and_carries_its_anchor() {
        let doc = ecs(&row(json!({"v":2,"seq":40,"ts":"2026-12-01T05:19:00.000Z",
            "instance":"sipgw-a","kind":"checkpoint","lastSeq":39,"lastMac":"c".repeat(64),
            "prev":"c".repeat(64),"mac":"d".repeat(64)})));
        assert_eq!(doc["event"]["type"], json!(["info"]));
        assert_eq!(doc["event"]["action"], "audit-checkpoint");
        assert!(doc["event"].get("outcome").is_none());
        assert!(doc["event"].get("id").is_none());
        assert_eq!(doc["sipgw"]["lastSeq"], 39);
        assert_eq!(doc["sipgw"]["lastMac"], "c".repeat(64));
        assert_eq!(doc["sipgw"]["mac"], "d".repeat(64));
        assert!(doc.get("user").is_none() && doc.get("source").is_none());
    }

    #[test]
    fn a_flood_summary_keeps_its_network_out_of_the_ip_fields() {
        let doc = ecs(&row(json!({"v":1,"seq":9,"ts":"2026-12-01T05:19:00.000Z",
            "kind":"summary","caller":{"iss":null,"sub":null,"clientIp":"2001:db8:1:2::/64"},
            "code":"suppressed","suppressed":12,"network":"2001:db8:1:2::/64",
            "since":"2026-12-01T05:18:00.000Z","codes":{"unauthenticated":12}})));
        assert_eq!(doc["event"]["action"], "audit-flood-summary");
        assert!(doc.get("source").is_none() && doc.get("client").is_none());
        assert_eq!(doc["sipgw"]["caller"]["clientIp"], "2001:db8:1:2::/64");
        assert_eq!(doc["sipgw"]["suppressed"], 12);
        assert_eq!(doc["sipgw"]["codes"]["unauthenticated"], 12);
        assert_eq!(doc["sipgw"]["v"], 1);
    }

    #[test]
    fn a_failed_record_is_marked_and_hostile_text_stays_escaped() {
        let mut raw = outcome_record();
        raw["caller"]["sub"] = json!("eve\u{1b}[2J\u{202e}\u{85}");
        let mut failed = row(raw);
        failed.problem = Some("mac does not match".into());
        let doc = ecs(&failed);
        assert_eq!(doc["sipgw"]["verified"], false);
        assert_eq!(doc["sipgw"]["problem"], "mac does not match");
        assert_eq!(
            doc["user"]["id"], "eve\u{1b}[2J\u{202e}\u{85}",
            "the value is kept"
        );
        let line = doc.to_string();
        let line = terminal::escape_json(&line);
        assert!(line.chars().all(|c| !terminal::is_unsafe(c)), "{line}");
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["user"]["id"], doc["user"]["id"]);
    }

    #[test]
    fn a_line_that_is_not_a_record_is_exported_as_its_text() {
        let mut row = row(Value::String("{\"seq\":3,\"ts\":\"2026-12-01T0".into()));
        row.problem = Some("truncated mid-line (no line end)".into());
        let doc = ecs(&row);
        assert_eq!(doc["event"]["original"], "{\"seq\":3,\"ts\":\"2026-12-01T0");
        assert_eq!(doc["event"]["action"], "audit-record");
        assert_eq!(doc["sipgw"]["verified"], false);
        assert!(doc["event"].get("outcome").is_none());
    }

    #[test]
    fn the_period_keeps_records_from_since_until_before_until() {
        let at = |ts: &str| row(json!({"seq":1,"ts":ts,"kind":"attempt"})).record;
        let t = |s: &str| Some(s.parse::<jiff::Timestamp>().unwrap());
        let period = Period {
            since: t("2026-12-01T05:00:00Z"),
            until: t("2026-12-01T06:00:00Z"),
        };
        assert!(period.holds(&at("2026-12-01T05:00:00.000Z")));
        assert!(!period.holds(&at("2026-12-01T04:59:59.999Z")));
        assert!(!period.holds(&at("2026-12-01T06:00:00.000Z")));
        assert!(period.holds(&at("not a time")), "kept for the reviewer");
        assert!(Period::default().holds(&at("2020-01-01T00:00:00Z")));
    }
}
