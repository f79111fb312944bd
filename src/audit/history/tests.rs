use std::time::Duration;

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipgw-history-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ts(minutes_ago: u64) -> String {
    humantime::format_rfc3339_millis(SystemTime::now() - Duration::from_secs(60 * minutes_ago))
        .to_string()
}

fn attempt(id: &str, agent: &str) -> String {
    format!(
        r#"{{"v":1,"seq":1,"ts":"{}","kind":"attempt","requestId":"{id}","caller":{{"iss":"i","sub":"s","clientIp":"127.0.0.1"}},"agent":"{agent}","code":"attempt","prev":"0","mac":"0"}}"#,
        ts(5)
    )
}

fn outcome(id: &str, agent: &str, code: &str, vendor: Option<&str>) -> String {
    let vendor = vendor.map_or_else(String::new, |status| {
        format!(r#","vendor":{{"status":{status},"resultCode":null,"latencyMs":3}}"#)
    });
    format!(
        r#"{{"v":1,"seq":1,"ts":"{}","kind":"outcome","requestId":"{id}","caller":{{"iss":"i","sub":"s","clientIp":"127.0.0.1"}},"agent":"{agent}","code":"{code}","httpStatus":422{vendor},"latencyMs":4,"prev":"0","mac":"0"}}"#,
        ts(4)
    )
}

/// Replays `lines` written as the current file of a new trail.
fn replayed(name: &str, lines: &[String]) -> (Vec<(String, VendorAnswer)>, Scan) {
    let path = temp_dir(name).join("audit.jsonl");
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let since = SystemTime::now() - Duration::from_secs(86_400);
    let scan = replay(&path, since, |agent, _, answer| {
        seen.push((agent.to_owned(), answer));
    });
    (seen, scan)
}

fn a(agent: &str, answer: VendorAnswer) -> (String, VendorAnswer) {
    (agent.to_owned(), answer)
}

#[test]
fn answers_come_back_in_order_and_refusals_say_nothing() {
    let (seen, scan) = replayed(
        "order",
        &[
            attempt("r1", "a1"),
            outcome("r1", "a1", "vendor_rejected", Some("200")),
            attempt("r2", "a1"),
            outcome("r2", "a1", "ok", Some("200")),
            outcome("r3", "a1", "forbidden", None),
            outcome("r4", "a1", "ok", None),
            attempt("r5", "a2"),
            outcome("r5", "a2", "vendor_error", Some("500")),
            attempt("r6", "a2"),
            outcome("r6", "a2", "vendor_error", Some("400")),
            attempt("r7", "a2"),
            outcome("r7", "a2", "vendor_timeout", Some("null")),
            attempt("r8", "a2"),
            outcome("r8", "a2", "upstream_auth_unavailable", None),
        ],
    );
    assert_eq!(
        seen,
        [
            a("a1", VendorAnswer::Rejected),
            a("a1", VendorAnswer::Accepted),
            a("a2", VendorAnswer::Unknown),
            a("a2", VendorAnswer::Unknown),
        ]
    );
    assert_eq!((scan.orphans, scan.unreadable, scan.lines), (0, 0, 14));
}

#[test]
fn an_attempt_without_outcome_counts_as_unknown() {
    let (seen, scan) = replayed(
        "orphan",
        &[
            attempt("r1", "a1"),
            outcome("r1", "a1", "vendor_rejected", Some("200")),
            attempt("r2", "a1"),
        ],
    );
    assert_eq!(
        seen,
        [
            a("a1", VendorAnswer::Rejected),
            a("a1", VendorAnswer::Unknown)
        ]
    );
    assert_eq!(scan.orphans, 1);
}

#[test]
fn an_orphan_before_a_later_change_of_its_agent_counts_at_its_place() {
    // r1's process died during its call; after the restart r2 succeeded: the count is 0.
    let (seen, scan) = replayed(
        "orphan-then-ok",
        &[
            attempt("r1", "a1"),
            attempt("r2", "a1"),
            outcome("r2", "a1", "ok", Some("200")),
        ],
    );
    assert_eq!(
        seen,
        [
            a("a1", VendorAnswer::Unknown),
            a("a1", VendorAnswer::Accepted)
        ]
    );
    assert_eq!(scan.orphans, 1);
}

#[test]
fn an_outcome_written_late_is_not_counted_twice() {
    // The next change of the agent began (its turn is released before the outcome record
    // is written) and ended first; r1's own outcome, written last, was already counted.
    let (seen, _) = replayed(
        "late",
        &[
            attempt("r1", "a1"),
            attempt("r2", "a1"),
            outcome("r2", "a1", "vendor_rejected", Some("200")),
            outcome("r1", "a1", "ok", Some("200")),
            attempt("r3", "a2"),
            attempt("r4", "a1"),
            outcome("r3", "a2", "vendor_rejected", Some("200")),
            outcome("r4", "a1", "vendor_rejected", Some("200")),
        ],
    );
    assert_eq!(
        seen,
        [
            a("a1", VendorAnswer::Unknown),
            a("a1", VendorAnswer::Rejected),
            a("a2", VendorAnswer::Rejected),
            a("a1", VendorAnswer::Rejected),
        ],
        "the late success does not wipe the rejection after it"
    );
}

#[test]
fn unreadable_lines_are_counted_and_the_rest_still_read() {
    let (seen, scan) = replayed(
        "garbage",
        &[
            "not json".to_owned(),
            "x".repeat(70_000),
            attempt("r1", "a1"),
            outcome("r1", "a1", "vendor_rejected", Some("200")),
        ],
    );
    assert_eq!(seen, [a("a1", VendorAnswer::Rejected)]);
    assert_eq!(scan.unreadable, 2);
}

#[test]
fn rotated_files_before_the_horizon_are_not_read() {
    let dir = temp_dir("horizon");
    let path = dir.join("audit.jsonl");
    let old = dir.join("audit-00000000000000000002-2020-01-01T00-00-00.000Z.jsonl");
    let recent = dir.join(format!(
        "audit-00000000000000000004-{}.jsonl",
        ts(1).replace(':', "-")
    ));
    let pair = |id: &str| {
        format!(
            "{}\n{}\n",
            attempt(id, "a1"),
            outcome(id, "a1", "vendor_rejected", Some("200"))
        )
    };
    std::fs::write(&old, pair("r1")).unwrap();
    std::fs::write(&recent, pair("r2")).unwrap();
    std::fs::write(&path, pair("r3")).unwrap();
    assert_eq!(
        rotated_at(&old),
        humantime::parse_rfc3339("2020-01-01T00:00:00.000Z").ok()
    );
    let mut seen = 0;
    let since = SystemTime::now() - Duration::from_secs(3600);
    let scan = replay(&path, since, |_, _, _| seen += 1);
    assert_eq!((scan.files, seen), (2, 2));
}
