use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::audit::chain::GENESIS;
use crate::audit::record::seal;

/// A fresh directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sipgw-review-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Sealed lines for `records` (each without `prev` and `mac`; `seq` counted from
/// `first_seq` unless a record names its own), chained from `prev`.
fn sealed(key: &MacKey, first_seq: u64, records: &[Value]) -> Vec<String> {
    let mut prev = GENESIS.to_owned();
    let mut seq = first_seq;
    records
        .iter()
        .map(|record| {
            let mut record = record.clone();
            if record.get("seq").is_none() {
                record["seq"] = json!(seq);
            }
            seq = record["seq"].as_u64().unwrap() + 1;
            if record.get("prev").is_none() {
                record["prev"] = json!(prev);
            }
            if record["kind"] == "checkpoint" {
                // A checkpoint names the record before it.
                record["lastMac"] = json!(prev);
            }
            let unsealed = record.to_string();
            let mac = key.mac(record["prev"].as_str().unwrap(), &unsealed);
            prev.clone_from(&mac);
            seal(&unsealed, &mac)
        })
        .collect()
}

fn write(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

fn attempt(ts: &str, id: &str, agent: &str) -> Value {
    json!({"v": 2, "ts": ts, "instance": "gw-a", "kind": "attempt", "requestId": id,
        "caller": {"iss": "https://sso", "sub": "alice", "clientIp": "10.0.0.1"},
        "callerName": "Alice Example", "forwardedFor": "203.0.113.9",
        "agent": agent, "grant": "self", "code": "attempt"})
}

fn outcome(ts: &str, id: &str, agent: &str, code: &str, vendor: bool) -> Value {
    let mut record = json!({"v": 2, "ts": ts, "instance": "gw-a", "kind": "outcome",
        "requestId": id, "caller": {"iss": "https://sso", "sub": "alice", "clientIp": "10.0.0.1"},
        "agent": agent, "code": code, "httpStatus": 200, "latencyMs": 15});
    if vendor {
        record["vendor"] = json!({"status": 200, "resultCode": "0", "latencyMs": 12});
    }
    record
}

fn v1_outcome(ts: &str, id: &str) -> Value {
    json!({"v": 1, "ts": ts, "kind": "outcome", "requestId": id,
        "caller": {"iss": null, "sub": null, "clientIp": "127.0.0.1"},
        "code": "unauthenticated", "httpStatus": 401, "latencyMs": 1})
}

fn problems(review: &Review) -> Vec<Option<&str>> {
    review.rows.iter().map(|r| r.problem.as_deref()).collect()
}

#[test]
fn an_intact_trail_of_v1_and_v2_records_reads_verified_with_every_field() {
    let dir = temp_dir("intact");
    let key = MacKey::from_file_bytes(b"0123456789abcdef0123456789abcdef").unwrap();
    let lines = sealed(
        &key,
        1,
        &[
            v1_outcome("2026-12-01T05:00:00.000Z", "r-0"),
            attempt("2026-12-01T05:18:26.100Z", "r-1", "a1001"),
            outcome("2026-12-01T05:18:26.123Z", "r-1", "a1001", "ok", true),
            json!({"v": 2, "ts": "2026-12-01T05:19:00.000Z", "instance": "gw-a",
                "kind": "checkpoint", "lastSeq": 3}),
        ],
    );
    write(&dir.join("audit.jsonl"), &lines);
    let review = load(std::slice::from_ref(&dir), &key, false).unwrap();
    assert!(review.keyed);
    assert_eq!(problems(&review), [None, None, None, None]);
    let trail = &review.trails[0];
    assert!(trail.intact());
    assert_eq!(trail.source, dir);
    assert_eq!(trail.instance.as_deref(), Some("gw-a"));
    assert_eq!(
        (trail.records, trail.first_seq, trail.last_seq),
        (4, Some(1), Some(4))
    );
    assert_eq!(trail.first_ts.as_deref(), Some("2026-12-01T05:00:00.000Z"));
    assert_eq!(trail.last_checkpoint, Some(4));
    let v1 = &review.rows[0].record;
    assert_eq!(
        (v1.v, v1.sub.as_deref(), v1.instance.as_deref()),
        (1, None, None)
    );
    assert_eq!(v1.client(), Some("127.0.0.1"));
    let attempt = &review.rows[1];
    assert!(!attempt.outcome_unknown);
    assert_eq!(attempt.line, 2);
    let done = &review.rows[2].record;
    assert_eq!(done.time, Some("2026-12-01T05:18:26.123Z".parse().unwrap()));
    assert_eq!(
        (
            done.vendor_status,
            done.vendor_result_code.as_deref(),
            done.vendor_latency_ms
        ),
        (Some(200), Some("0"), Some(12))
    );
    assert_eq!(
        review.rows[1].record.caller_name.as_deref(),
        Some("Alice Example")
    );
    assert_eq!(review.rows[1].record.grant.as_deref(), Some("self"));
    assert_eq!(review.rows[1].record.client(), Some("203.0.113.9"));
    assert_eq!(done.raw["vendor"]["resultCode"], "0");
    // The same trail with the wrong key: every record fails, and the reading goes on.
    let review = load(std::slice::from_ref(&dir), &MacKey::Plain, false).unwrap();
    assert!(!review.keyed);
    assert_eq!(review.trails[0].failures.len(), 4);
    assert!(
        review
            .rows
            .iter()
            .all(|r| r.problem.as_deref().unwrap().contains("mac"))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_edited_record_fails_alone_and_a_deleted_one_fails_the_record_after_the_gap() {
    let dir = temp_dir("edited");
    let records: Vec<Value> = (0..5)
        .map(|i| v1_outcome(&format!("2026-12-01T05:00:0{i}.000Z"), &format!("r-{i}")))
        .collect();
    let mut lines = sealed(&MacKey::Plain, 1, &records);
    lines[1] = lines[1].replace("unauthenticated", "ok");
    lines.remove(3);
    write(&dir.join("audit.jsonl"), &lines);
    let review = load(std::slice::from_ref(&dir), &MacKey::Plain, false).unwrap();
    let problems = problems(&review);
    assert_eq!(problems.len(), 4);
    assert!(
        problems[1].unwrap().contains("mac does not match"),
        "{problems:?}"
    );
    assert!(
        problems[3].unwrap().contains("seq 5 follows 3"),
        "{problems:?}"
    );
    assert_eq!([problems[0], problems[2]], [None, None]);
    let failures = &review.trails[0].failures;
    assert_eq!(failures.iter().map(|f| f.line).collect::<Vec<_>>(), [2, 4]);
    assert!(!review.trails[0].intact());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_inserted_line_that_is_not_a_record_fails_alone_and_is_kept_as_text() {
    let dir = temp_dir("garbage");
    let records: Vec<Value> = (0..3)
        .map(|i| v1_outcome(&format!("2026-12-01T05:00:0{i}.000Z"), &format!("r-{i}")))
        .collect();
    let mut lines = sealed(&MacKey::Plain, 1, &records);
    lines.insert(1, "hello \u{1b}[31m".into());
    write(&dir.join("audit.jsonl"), &lines);
    let review = load(std::slice::from_ref(&dir), &MacKey::Plain, false).unwrap();
    let problems = problems(&review);
    assert_eq!(problems[0], None);
    assert!(
        problems[1].unwrap().contains("not a sealed record"),
        "{problems:?}"
    );
    assert_eq!(&problems[2..], [None, None]);
    // In place, after the record before it, though it has no time.
    assert_eq!(review.rows[1].record.raw, json!("hello \u{1b}[31m"));
    assert_eq!(review.rows[1].line, 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_trail_starting_later_fails_unless_partial_and_discontinuities_are_listed() {
    let dir = temp_dir("partial");
    let mut records: Vec<Value> = (0..2)
        .map(|i| v1_outcome(&format!("2026-12-01T05:00:0{i}.000Z"), &format!("r-{i}")))
        .collect();
    records.push(json!({"v": 1, "seq": 20, "ts": "2026-12-01T06:00:00.000Z",
        "kind": "discontinuity", "detected": "missing", "lastSeq": 19,
        "lastMac": "ab".repeat(32), "foundSeq": 6, "prev": "ab".repeat(32)}));
    records.push(v1_outcome("2026-12-01T06:00:01.000Z", "r-9"));
    write(
        &dir.join("audit.jsonl"),
        &sealed(&MacKey::Plain, 5, &records),
    );
    let strict = load(std::slice::from_ref(&dir), &MacKey::Plain, false).unwrap();
    assert!(
        strict.rows[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("starts at seq 5")
    );
    assert_eq!(strict.trails[0].failures.len(), 1);
    let partial = load(std::slice::from_ref(&dir), &MacKey::Plain, true).unwrap();
    assert!(partial.trails[0].intact());
    let gaps = &partial.trails[0].discontinuities;
    assert_eq!(
        (gaps.len(), gaps[0].held_seq, gaps[0].last_seq),
        (1, Some(6), 19)
    );
    assert_eq!(partial.trails[0].last_seq, Some(21));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn attempts_that_no_outcome_answers_are_marked() {
    let dir = temp_dir("orphans");
    let ts = |s: u32| format!("2026-12-01T05:00:{s:02}.000Z");
    let records = [
        // Answered, across letter case of the agent.
        attempt(&ts(1), "r-1", "A1001"),
        outcome(&ts(2), "r-1", "a1001", "ok", true),
        // Its id reused by a refusal decided before any attempt: still unanswered.
        attempt(&ts(3), "r-2", "a1002"),
        outcome(&ts(4), "r-2", "a1002", "rate_limited", false),
        // The same id for another agent answers nothing either.
        attempt(&ts(5), "r-3", "a1003"),
        outcome(&ts(6), "r-3", "a9999", "ok", true),
        // Answered without a vendor object by a code that follows an attempt.
        attempt(&ts(7), "r-4", "a1004"),
        outcome(&ts(8), "r-4", "a1004", "audit_unavailable", false),
        // The process stopped during the call.
        attempt(&ts(9), "r-5", "a1005"),
    ];
    write(
        &dir.join("audit.jsonl"),
        &sealed(&MacKey::Plain, 1, &records),
    );
    let review = load(std::slice::from_ref(&dir), &MacKey::Plain, false).unwrap();
    let unknown: Vec<&str> = review
        .rows
        .iter()
        .filter(|row| row.outcome_unknown)
        .map(|row| row.record.request_id.as_deref().unwrap())
        .collect();
    assert_eq!(unknown, ["r-2", "r-3", "r-5"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn two_replicas_merge_in_time_order_and_files_group_by_directory() {
    let root = temp_dir("replicas");
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let at = |s: u32, id: &str| v1_outcome(&format!("2026-12-01T05:00:{s:02}+00:00"), id);
    write(
        &a.join("audit.jsonl"),
        &sealed(&MacKey::Plain, 1, &[at(1, "a1"), at(4, "a2")]),
    );
    // Rotated files sort first by name; the second replica's times interleave.
    write(
        &b.join("audit-1.jsonl"),
        &sealed(&MacKey::Plain, 1, &[at(2, "b1")]),
    );
    let tail = sealed(&MacKey::Plain, 1, &[at(2, "b1"), at(3, "b2"), at(4, "b3")]);
    write(&b.join("audit.jsonl"), &tail[1..]);
    let review = load(&[a.clone(), b.clone()], &MacKey::Plain, false).unwrap();
    let ids: Vec<&str> = review
        .rows
        .iter()
        .map(|row| row.record.request_id.as_deref().unwrap())
        .collect();
    // At equal times the first trail comes first.
    assert_eq!(ids, ["a1", "b1", "b2", "a2", "b3"]);
    assert_eq!(review.trails.len(), 2);
    assert!(review.trails.iter().all(TrailCheck::intact));
    assert_eq!(review.trails[1].files.len(), 2);
    // Files named one by one: grouped by their directory, in the order given.
    let named = [
        b.join("audit-1.jsonl"),
        a.join("audit.jsonl"),
        b.join("audit.jsonl"),
    ];
    let review = load(&named, &MacKey::Plain, false).unwrap();
    assert_eq!(review.trails.len(), 2);
    assert_eq!(review.trails[0].source, b);
    assert_eq!(
        review.trails[0].files,
        [b.join("audit-1.jsonl"), b.join("audit.jsonl")]
    );
    assert!(review.trails[0].intact());
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn unreadable_input_is_an_error_that_names_it() {
    let dir = temp_dir("missing");
    let error = load(&[dir.join("nope.jsonl")], &MacKey::Plain, false).unwrap_err();
    assert!(error.to_string().contains("nope.jsonl"), "{error}");
    let error = load(std::slice::from_ref(&dir), &MacKey::Plain, false).unwrap_err();
    assert!(error.to_string().contains("no *.jsonl"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_over_long_line_fails_alone_without_being_held() {
    let dir = temp_dir("long");
    let records: Vec<Value> = (0..2)
        .map(|i| v1_outcome(&format!("2026-12-01T05:00:0{i}.000Z"), &format!("r-{i}")))
        .collect();
    let mut lines = sealed(&MacKey::Plain, 1, &records);
    let long = "x".repeat(3 * crate::audit::record::MAX_LINE as usize);
    lines.insert(1, long);
    write(&dir.join("audit.jsonl"), &lines);
    let review = load(std::slice::from_ref(&dir), &MacKey::Plain, false).unwrap();
    let problems = problems(&review);
    assert_eq!(problems.len(), 3);
    assert!(
        problems[1].unwrap().starts_with("longer than 65536 bytes"),
        "{problems:?}"
    );
    assert_eq!([problems[0], problems[2]], [None, None]);
    assert_eq!(review.rows[1].record.raw, Value::Null);
    assert_eq!(review.rows[2].line, 3);
    std::fs::remove_dir_all(dir).unwrap();
}
