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
        r#"{{"v":1,"seq":1,"ts":"{}","kind":"attempt","requestId":"{id}","caller":{{"iss":"i","sub":"s","clientIp":"127.0.0.1"}},"agent":"{agent}","code":"attempt"}}"#,
        ts(5)
    )
}

fn outcome(id: &str, agent: &str, code: &str, vendor: Option<&str>) -> String {
    let vendor = vendor.map_or_else(String::new, |status| {
        format!(r#","vendor":{{"status":{status},"resultCode":null,"latencyMs":3}}"#)
    });
    format!(
        r#"{{"v":1,"seq":1,"ts":"{}","kind":"outcome","requestId":"{id}","caller":{{"iss":"i","sub":"s","clientIp":"127.0.0.1"}},"agent":"{agent}","code":"{code}","httpStatus":422{vendor},"latencyMs":4}}"#,
        ts(4)
    )
}

/// The trail's key in these tests.
fn key() -> MacKey {
    MacKey::from_file_bytes(b"history-test-key-0123456789").unwrap()
}

/// Seals `lines` (records without `prev` and `mac`) with `key` as a chain after `prev`;
/// lines that are not records (`{...}`) are kept as they are. Returns the lines and the
/// last `mac`.
fn sealed(lines: &[String], key: &MacKey, prev: &str) -> (Vec<String>, String) {
    let mut prev = prev.to_owned();
    let lines = lines
        .iter()
        .map(|line| {
            if !line.starts_with('{') || line.contains(r#""mac":"#) {
                return line.clone();
            }
            let unsealed = format!(r#"{},"prev":"{prev}"}}"#, &line[..line.len() - 1]);
            let mac = key.mac(&prev, &unsealed);
            prev.clone_from(&mac);
            super::super::record::seal(&unsealed, &mac)
        })
        .collect();
    (lines, prev)
}

fn text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Replays `lines` written (sealed, chained) as the current file of a new trail.
fn replayed(name: &str, lines: &[String]) -> (Vec<(String, VendorAnswer)>, Scan) {
    replayed_sealed(name, &sealed(lines, &key(), super::super::chain::GENESIS).0)
}

/// Replays `lines` written as they are as the current file of a new trail.
fn replayed_sealed(name: &str, lines: &[String]) -> (Vec<(String, VendorAnswer)>, Scan) {
    let path = temp_dir(name).join("audit.jsonl");
    std::fs::write(&path, text(lines)).unwrap();
    let mut seen = Vec::new();
    let since = SystemTime::now() - Duration::from_secs(86_400);
    let scan = replay(
        &path,
        since,
        &key(),
        AccountFolding::CaseFolded,
        |agent, _, answer| {
            seen.push((agent.to_owned(), answer));
        },
    );
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
        [
            attempt(id, "a1"),
            outcome(id, "a1", "vendor_rejected", Some("200")),
        ]
    };
    let (lines, _) = sealed(&pair("r1"), &key(), super::super::chain::GENESIS);
    std::fs::write(&old, text(&lines)).unwrap();
    let (lines, last) = sealed(&pair("r2"), &key(), "1".repeat(64).as_str());
    std::fs::write(&recent, text(&lines)).unwrap();
    let (lines, _) = sealed(&pair("r3"), &key(), &last);
    std::fs::write(&path, text(&lines)).unwrap();
    assert_eq!(
        rotated_at(&old),
        humantime::parse_rfc3339("2020-01-01T00:00:00.000Z").ok()
    );
    let mut seen = 0;
    let since = SystemTime::now() - Duration::from_secs(3600);
    let scan = replay(
        &path,
        since,
        &key(),
        AccountFolding::CaseFolded,
        |_, _, _| seen += 1,
    );
    assert_eq!((scan.files, seen, scan.unreadable), (2, 2, 0));
}

#[test]
fn one_request_id_for_two_agents_resolves_each_own_attempt() {
    // Request ids are the callers' (`X-Request-Id`): two agents' changes may share one.
    let (seen, scan) = replayed(
        "shared-id",
        &[
            attempt("R", "x"),
            attempt("R", "y"),
            outcome("R", "x", "vendor_rejected", Some("200")),
            outcome("R", "y", "vendor_rejected", Some("200")),
        ],
    );
    assert_eq!(
        seen,
        [
            a("x", VendorAnswer::Rejected),
            a("y", VendorAnswer::Rejected)
        ]
    );
    assert_eq!(scan.orphans, 0);
}

#[test]
fn a_refusal_reusing_an_orphans_id_does_not_resolve_it() {
    // R's process died during its call; a retry with the same id was refused before any
    // attempt (another change of x still held the turn), then a retry went through.
    let (seen, scan) = replayed(
        "reused-id",
        &[
            attempt("R", "x"),
            outcome("R", "x", "change_in_progress", None),
            outcome("R", "x", "rate_limited", None),
            attempt("R", "x"),
            outcome("R", "x", "vendor_rejected", Some("200")),
        ],
    );
    assert_eq!(
        seen,
        [
            a("x", VendorAnswer::Unknown),
            a("x", VendorAnswer::Rejected)
        ]
    );
    assert_eq!((scan.orphans, scan.unreadable), (1, 0));
}

#[test]
fn an_orphan_is_matched_by_the_agents_key_not_its_spelling() {
    // r1's process died; r2, the same account spelled otherwise, then succeeded: the
    // orphan counts before the success, not after it (which would leave a count).
    let (seen, scan) = replayed(
        "orphan-spelling",
        &[
            attempt("r1", "A1"),
            attempt("r2", "a1"),
            outcome("r2", "a1", "ok", Some("200")),
        ],
    );
    assert_eq!(
        seen,
        [
            a("A1", VendorAnswer::Unknown),
            a("a1", VendorAnswer::Accepted)
        ]
    );
    assert_eq!(scan.orphans, 1);
}

#[test]
fn lines_that_fail_their_mac_or_prev_are_unreadable_and_not_applied() {
    let lines = [
        attempt("r1", "a1"),
        outcome("r1", "a1", "ok", Some("200")),
        attempt("r2", "a1"),
        outcome("r2", "a1", "vendor_rejected", Some("200")),
    ];
    let (mut trail, last) = sealed(&lines, &key(), super::super::chain::GENESIS);
    // Appended without the key: a reset of a1's count, chained with plain SHA-256.
    let (forged, _) = sealed(
        &[outcome("r9", "a1", "ok", Some("200"))],
        &MacKey::Plain,
        &last,
    );
    trail.extend(forged);
    // A true line copied to the end: its mac is right, its prev is not.
    trail.push(trail[1].clone());
    // The true records go on from the last line that passed.
    let (more, _) = sealed(
        &[
            attempt("r3", "a2"),
            outcome("r3", "a2", "vendor_rejected", Some("200")),
        ],
        &key(),
        &last,
    );
    trail.extend(more);
    let (seen, scan) = replayed_sealed("forged", &trail);
    assert_eq!(
        seen,
        [
            a("a1", VendorAnswer::Accepted),
            a("a1", VendorAnswer::Rejected),
            a("a2", VendorAnswer::Rejected),
        ]
    );
    assert_eq!((scan.unreadable, scan.lines), (2, 8));
}

#[test]
fn a_discontinuity_restarts_the_chain_but_is_reported() {
    let (mut trail, _) = sealed(
        &[
            attempt("r1", "a1"),
            outcome("r1", "a1", "vendor_rejected", Some("200")),
        ],
        &key(),
        super::super::chain::GENESIS,
    );
    let known = "2".repeat(64);
    let envelope = super::super::record::Envelope {
        seq: 9,
        ts: &ts(3),
        instance: "gw-1",
    };
    let gap = super::super::record::discontinuity_json(envelope, "missing", &known, None);
    let mac = key().mac(&known, &gap);
    trail.push(super::super::record::seal(&gap, &mac));
    let (more, _) = sealed(
        &[
            attempt("r2", "a1"),
            outcome("r2", "a1", "vendor_rejected", Some("200")),
        ],
        &key(),
        &mac,
    );
    trail.extend(more);
    let (seen, scan) = replayed_sealed("discontinuity", &trail);
    assert_eq!(
        seen,
        [
            a("a1", VendorAnswer::Rejected),
            a("a1", VendorAnswer::Rejected)
        ]
    );
    assert_eq!(
        scan.unreadable, 1,
        "records were lost: the caller fails closed"
    );
}

#[test]
fn a_non_ascii_stamp_is_not_a_rotation_time() {
    for name in [
        "audit-1-2026-11-27T\u{e9}\u{e9}0-00.000Z.jsonl",
        "audit-1-2026-11-27T20\u{e9}00-00.00Z.jsonl",
        "sipgw-audit-1-\u{1f600}\u{1f600}\u{1f600}\u{1f600}\u{1f600}\u{1f600}.jsonl",
    ] {
        assert_eq!(rotated_at(Path::new(name)), None, "{name}");
    }
}

#[test]
fn an_outcome_after_the_agents_next_attempt_counts_as_itself() {
    // r1's turn was released before its outcome record was written; r2 began in between.
    let (seen, scan) = replayed(
        "late-first",
        &[
            attempt("r1", "a1"),
            attempt("r2", "A1"),
            outcome("r1", "a1", "ok", Some("200")),
            outcome("r2", "A1", "vendor_rejected", Some("200")),
        ],
    );
    assert_eq!(
        seen,
        [
            a("a1", VendorAnswer::Accepted),
            a("A1", VendorAnswer::Rejected)
        ]
    );
    assert_eq!(scan.orphans, 0);
}

#[test]
fn checkpoints_say_nothing_but_the_chain_goes_on_across_them() {
    use super::super::record::{Envelope, checkpoint_json, seal};
    let checkpoint = |seq: u64, prev: &str| {
        let envelope = Envelope {
            seq,
            ts: &ts(4),
            instance: "gw-1",
        };
        let unsealed = checkpoint_json(envelope, prev);
        let mac = key().mac(prev, &unsealed);
        (seal(&unsealed, &mac), mac)
    };
    let (mut trail, mac) = sealed(&[attempt("r1", "a1")], &key(), super::super::chain::GENESIS);
    let (line, mac) = checkpoint(2, &mac);
    trail.push(line);
    let (more, mac) = sealed(
        &[outcome("r1", "a1", "vendor_rejected", Some("200"))],
        &key(),
        &mac,
    );
    trail.extend(more);
    trail.push(checkpoint(4, &mac).0);
    let (seen, scan) = replayed_sealed("checkpoints", &trail);
    assert_eq!(seen, [a("a1", VendorAnswer::Rejected)]);
    assert_eq!((scan.lines, scan.unreadable, scan.orphans), (4, 0, 0));
    // An altered checkpoint is not skipped quietly: it fails its mac like any line, and
    // the lines after it no longer link (the caller fails closed).
    let mut altered = trail.clone();
    altered[1] = altered[1].replace("\"lastSeq\":1", "\"lastSeq\":7");
    let (_, scan) = replayed_sealed("checkpoints-altered", &altered);
    assert_eq!(scan.unreadable, 3);
}
