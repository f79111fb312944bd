//! `sipgw audit show` through the binary (docs/audit.md#verify-and-read): v1 and v2 trails
//! verified as they are read, every filter, the marks (a failed record, an attempt
//! without an outcome, a replay), the three formats and what they escape, merged
//! replicas, the exit statuses, and a reader that closes the pipe early.
//!
//! The trails are written here with the real sealing functions (`sipgw::audit::record`
//! and `chain`), so that each test can hold exactly the records it is about.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;
use sipgw::audit::chain::{MacKey, UNKEYED_WARNING};
use sipgw::audit::record::seal;

#[path = "audit_show/support.rs"]
mod support;

use support::*;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
const KEY: &[u8] = b"an-hmac-key-kept-off-the-host-0123\n";

#[test]
fn v1_and_v2_records_show_verified_under_a_header_with_the_trails_status() {
    let (trail, key_file) = mixed_trail("mixed");
    let keyed = show(&[&trail], &["--key-file", key_file.to_str().unwrap()]);
    assert_eq!(keyed.code, Some(0), "{}", keyed.err);
    let header = keyed.out.lines().next().unwrap();
    for column in [
        "TIME",
        "KIND",
        "CODE",
        "STATUS",
        "AGENT",
        "CALLER",
        "GRANT",
        "CLIENT",
        "REQUEST ID",
        "MARK",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let rows = keyed.rows();
    assert_eq!(rows.len(), 4, "{}", keyed.out);
    assert!(
        rows[0].contains("bob <https://sso>") && rows[0].contains("127.0.0.1"),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].contains("alice \"Alice Example\" <https://sso>"),
        "{}",
        rows[1]
    );
    assert!(
        rows[1].contains("self") && rows[1].contains("203.0.113.9"),
        "{}",
        rows[1]
    );
    assert!(!keyed.out.contains("FAILED"), "{}", keyed.out);
    assert!(
        keyed
            .err
            .contains("intact; 4 records in 1 file(s), seq 1..4"),
        "{}",
        keyed.err
    );
    assert!(keyed.err.contains("(instance gw-a)"), "{}", keyed.err);
    assert!(!keyed.err.contains(UNKEYED_WARNING), "{}", keyed.err);
    // Without the key nothing verifies, and the reader is told why a key matters.
    let unkeyed = show(&[&trail], &[]);
    assert_eq!(unkeyed.code, Some(1));
    assert_eq!(unkeyed.rows().len(), 4);
    assert!(
        unkeyed
            .rows()
            .iter()
            .all(|row| row.contains("FAILED: mac does not match"))
    );
    assert!(unkeyed.err.contains(UNKEYED_WARNING), "{}", unkeyed.err);
}

#[test]
fn time_filters_take_offsets_dates_and_times_ago_and_refuse_anything_else() {
    let (trail, key_file) = mixed_trail("times");
    let key = key_file.to_str().unwrap();
    let since = |value: &str| {
        ids(&show(
            &[&trail],
            &["--key-file", key, "--json", "--since", value],
        ))
    };
    assert_eq!(since("2026-12-01T05:00:00Z"), ["r-2", "r-2", "r-3"]);
    assert_eq!(since("2026-12-01T06:00:00+01:00"), ["r-2", "r-2", "r-3"]);
    assert_eq!(since("2026-12-01T00:30:00-05:00"), ["r-3"]);
    assert_eq!(since("2026-12-01"), ["r-1", "r-2", "r-2", "r-3"]);
    assert_eq!(since("2026-12-02"), Vec::<String>::new());
    let window = show(
        &[&trail],
        &[
            "--key-file",
            key,
            "--json",
            "--since",
            "2026-12-01T05:00:00Z",
            "--until",
            "2026-12-01T06:00:00Z",
        ],
    );
    assert_eq!(ids(&window), ["r-2", "r-2"], "--until is exclusive");
    // Times ago: a trail written now and two days ago.
    let recent = fresh_dir("times-ago");
    let now = jiff::Timestamp::now();
    let at = |hours: i64| (now - jiff::SignedDuration::from_hours(hours)).to_string();
    write_trail(
        &recent,
        &MacKey::Plain,
        vec![
            Line::V2(v2(&at(48), "outcome", "old", "a1", "forbidden")),
            Line::V2(v2(&at(0), "outcome", "new", "a1", "forbidden")),
        ],
    );
    let ago = |value: &str| ids(&show(&[&recent], &["--json", "--since", value]));
    assert_eq!(ago("24h"), ["new"]);
    assert_eq!(ago("1d"), ["new"]);
    assert_eq!(ago("90m"), ["new"]);
    assert_eq!(ago("3d"), ["old", "new"]);
    assert_eq!(ago("1w"), ["old", "new"]);
    for bad in ["yesterday", "2026-12-01T05:00:00", "12x"] {
        let run = show(&[&recent], &["--since", bad]);
        assert_eq!(run.code, Some(2), "{bad}: {}", run.err);
        assert!(
            run.err.contains("RFC 3339") && run.err.contains("24h"),
            "{}",
            run.err
        );
        assert!(run.out.is_empty());
    }
}

#[test]
fn agent_caller_code_and_request_id_filters_select_their_rows() {
    let (trail, key_file) = mixed_trail("filters");
    let key = key_file.to_str().unwrap();
    let by = |args: &[&str]| {
        ids(&show(
            &[&trail],
            &[&["--key-file", key, "--json"], args].concat(),
        ))
    };
    assert_eq!(by(&["--agent", "a1002"]), ["r-2", "r-2"]);
    assert_eq!(by(&["--caller", "bob"]), ["r-1"]);
    assert_eq!(by(&["--caller", "Alice Example"]), ["r-2", "r-2", "r-3"]);
    assert_eq!(
        by(&["--caller", "https://sso#alice"]),
        ["r-2", "r-2", "r-3"]
    );
    assert_eq!(
        by(&["--caller", "https://elsewhere#alice"]),
        Vec::<String>::new()
    );
    assert_eq!(by(&["--code", "forbidden"]), ["r-3"]);
    assert_eq!(by(&["--request-id", "r-2", "--code", "ok"]), ["r-2"]);
}

#[test]
fn an_attempt_without_outcome_and_a_replay_are_marked() {
    let dir = fresh_dir("marks");
    let mut replay = v2("2026-12-01T05:00:03.000Z", "outcome", "r-2", "a1001", "ok");
    replay["replayOf"] = json!("r-1");
    replay.as_object_mut().unwrap().remove("vendor");
    write_trail(
        &dir,
        &MacKey::Plain,
        vec![
            Line::V2(v2(
                "2026-12-01T05:00:00.000Z",
                "attempt",
                "r-1",
                "a1001",
                "attempt",
            )),
            Line::V2(v2(
                "2026-12-01T05:00:01.000Z",
                "outcome",
                "r-1",
                "a1001",
                "ok",
            )),
            Line::V2(v2(
                "2026-12-01T05:00:02.000Z",
                "attempt",
                "r-9",
                "a1009",
                "attempt",
            )),
            Line::V2(replay),
        ],
    );
    let run = show(&[&dir], &[]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    let rows = run.rows();
    assert!(!rows[0].contains("outcome unknown"), "{}", rows[0]);
    assert!(rows[2].ends_with("outcome unknown"), "{}", rows[2]);
    assert!(rows[3].ends_with("replay of r-1"), "{}", rows[3]);
    // The first request's id finds its replays too.
    assert_eq!(
        ids(&show(&[&dir], &["--json", "--request-id", "r-1"])),
        ["r-1", "r-1", "r-2"]
    );
    let json = show(&[&dir], &["--format", "json"]).json();
    assert_eq!(json[2]["_outcomeUnknown"], true);
    assert_eq!(json[0]["_outcomeUnknown"], false);
}

#[test]
fn an_edited_record_is_marked_and_fails_the_run_while_the_others_show_verified() {
    let dir = fresh_dir("edited");
    let lines = write_trail(
        &dir,
        &MacKey::Plain,
        vec![
            v1(
                "2026-12-01T05:00:00.000Z",
                "r-1",
                "alice",
                "vendor_rejected",
            ),
            v1(
                "2026-12-01T05:00:01.000Z",
                "r-2",
                "alice",
                "vendor_rejected",
            ),
            v1(
                "2026-12-01T05:00:02.000Z",
                "r-3",
                "alice",
                "vendor_rejected",
            ),
        ],
    );
    let edited = lines[1].replace("vendor_rejected", "ok");
    let text = [lines[0].as_str(), &edited, &lines[2]].join("\n") + "\n";
    std::fs::write(dir.join("audit.jsonl"), text).unwrap();
    let run = show(&[&dir], &[]);
    assert_eq!(run.code, Some(1), "{}", run.err);
    let rows = run.rows();
    assert_eq!(rows.len(), 3);
    assert!(
        rows[1].contains("FAILED: mac does not match"),
        "{}",
        rows[1]
    );
    assert!(
        !rows[0].contains("FAILED") && !rows[2].contains("FAILED"),
        "{}",
        run.out
    );
    assert!(
        run.err.contains("FAILED: 1 of 3 records fail verification"),
        "{}",
        run.err
    );
    assert!(
        run.err.contains("audit.jsonl:2: mac does not match"),
        "{}",
        run.err
    );
    let json = show(&[&dir], &["--json"]).json();
    let verified: Vec<bool> = json
        .iter()
        .map(|r| r["_verified"].as_bool().unwrap())
        .collect();
    assert_eq!(verified, [true, false, true]);
    assert_eq!(json[1]["_line"], 2);
    assert!(json[1]["_file"].as_str().unwrap().ends_with("audit.jsonl"));
    assert!(
        json[1]["_problem"]
            .as_str()
            .unwrap()
            .contains("mac does not match")
    );
    assert_eq!(json[1]["code"], "ok", "the record as it now reads");
}

const HOSTILE: &str = "=mallory\u{1b}[31m\u{9b}2J\u{202e}x,\"y\"";

#[test]
fn a_control_character_sub_is_escaped_in_the_table_and_in_csv() {
    let dir = fresh_dir("hostile");
    write_trail(
        &dir,
        &MacKey::Plain,
        vec![v1("2026-12-01T05:00:00.000Z", "r-1", HOSTILE, "ok")],
    );
    let unsafe_char = |text: &str| {
        text.chars()
            .any(|c| c != '\n' && c != '\r' && sipgw::terminal::is_unsafe(c))
    };
    let table = show(&[&dir], &[]);
    assert_eq!(table.code, Some(0), "{}", table.err);
    assert!(!unsafe_char(&table.out), "{:?}", table.out);
    assert!(
        table
            .out
            .contains("=mallory\\u{1b}[31m\\u{9b}2J\\u{202e}x,\"y\""),
        "{}",
        table.out
    );
    let csv = show(&[&dir], &["--format", "csv"]);
    assert_eq!(csv.code, Some(0), "{}", csv.err);
    assert!(!unsafe_char(&csv.out), "{:?}", csv.out);
    let lines: Vec<&str> = csv.out.split("\r\n").collect();
    assert_eq!(
        lines.len(),
        3,
        "a header, a row, and the final line end: {:?}",
        csv.out
    );
    assert!(
        lines[0].starts_with(
            "time,kind,code,httpStatus,agent,sub,callerName,iss,grant,client,requestId"
        )
    );
    // Escaped, defused against formulas, and quoted (it holds a comma and quotes).
    assert!(
        lines[1].contains(",\"'=mallory\\u{1b}[31m\\u{9b}2J\\u{202e}x,\"\"y\"\"\","),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].starts_with("2026-12-01T05:00:00.000Z,outcome,ok,200,a1001,"),
        "{}",
        lines[1]
    );
    // JSON keeps the value itself.
    let json = show(&[&dir], &["--json"]);
    assert!(!unsafe_char(&json.out), "{:?}", json.out);
    assert_eq!(json.json()[0]["caller"]["sub"], HOSTILE);
}

#[test]
fn two_replicas_merge_in_time_order_each_with_its_status() {
    let root = fresh_dir("replicas");
    let (a, b) = (root.join("gw-a"), root.join("gw-b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let at = |instance: &str, ts: &str, id: &str| {
        let mut record = v2(ts, "outcome", id, "a1001", "forbidden");
        record["instance"] = json!(instance);
        Line::V2(record)
    };
    write_trail(
        &a,
        &MacKey::Plain,
        vec![
            at("gw-a", "2026-12-01T05:00:00.000Z", "a-1"),
            at("gw-a", "2026-12-01T05:00:03.000Z", "a-2"),
        ],
    );
    write_trail(
        &b,
        &MacKey::Plain,
        vec![
            at("gw-b", "2026-12-01T05:00:01.000Z", "b-1"),
            at("gw-b", "2026-12-01T05:00:02.000Z", "b-2"),
            at("gw-b", "2026-12-01T05:00:04.000Z", "b-3"),
        ],
    );
    let run = show(&[&a, &b], &["--json"]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert_eq!(ids(&run), ["a-1", "b-1", "b-2", "a-2", "b-3"]);
    assert!(
        run.err.contains("(instance gw-a): intact; 2 records"),
        "{}",
        run.err
    );
    assert!(
        run.err.contains("(instance gw-b): intact; 3 records"),
        "{}",
        run.err
    );
    assert_eq!(run.json()[1]["_trail"], b.to_str().unwrap());
}

#[test]
fn discontinuities_exit_3_and_unreadable_input_exits_2() {
    let dir = fresh_dir("gap");
    let last_mac = "ab".repeat(32);
    let unsealed = json!({"v": 1, "seq": 20, "ts": "2026-12-01T06:00:00.000Z",
        "kind": "discontinuity", "detected": "missing", "lastSeq": 19, "lastMac": last_mac,
        "foundSeq": null, "prev": last_mac})
    .to_string();
    let line = seal(&unsealed, &MacKey::Plain.mac(&last_mac, &unsealed));
    std::fs::write(dir.join("audit.jsonl"), line + "\n").unwrap();
    let run = show(&[&dir], &["--partial"]);
    assert_eq!(run.code, Some(3), "{}", run.err);
    assert!(run.err.contains("DISCONTINUITY"), "{}", run.err);
    assert!(
        run.err
            .contains("records after the start up to seq 19 are not in these files"),
        "{}",
        run.err
    );
    let missing = show(&[&dir.join("nope.jsonl")], &[]);
    assert_eq!(missing.code, Some(2));
    assert!(missing.err.contains("nope.jsonl"), "{}", missing.err);
    let bad_key = show(
        &[&dir],
        &["--key-file", dir.join("nope.key").to_str().unwrap()],
    );
    assert_eq!(bad_key.code, Some(2), "{}", bad_key.err);
}

#[test]
fn show_into_a_pipe_closed_after_one_line_exits_quietly() {
    let dir = fresh_dir("pipe");
    // Far more than a pipe buffer (64 KiB), so the writer meets the closed pipe.
    let lines = (0..3000)
        .map(|_| v1("2026-12-01T05:00:00.000Z", "r-n", "alice", "ok"))
        .collect();
    write_trail(&dir, &MacKey::Plain, lines);
    let mut child = Command::new(SIPGW)
        .args(["audit", "show"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("TIME "), "{first}");
    // `head -1` exits: the read end closes.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
