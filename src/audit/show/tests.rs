use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::audit::review::{Row, TrailCheck};

fn now() -> Timestamp {
    "2026-12-07T12:00:00Z".parse().unwrap()
}

#[test]
fn times_are_rfc3339_with_any_offset_dates_or_times_ago() {
    let at = |text: &str| parse_time(text, now()).unwrap().to_string();
    assert_eq!(at("2026-12-01T05:18:26Z"), "2026-12-01T05:18:26Z");
    assert_eq!(at("2026-12-01T06:18:26+01:00"), "2026-12-01T05:18:26Z");
    assert_eq!(at("2026-12-01T05:18:26.5-02:00"), "2026-12-01T07:18:26.5Z");
    assert_eq!(at("2026-12-01"), "2026-12-01T00:00:00Z");
    assert_eq!(at("30m"), "2026-12-07T11:30:00Z");
    assert_eq!(at("24h"), "2026-12-06T12:00:00Z");
    assert_eq!(at("7d"), "2026-11-30T12:00:00Z");
    assert_eq!(at("2w"), "2026-11-23T12:00:00Z");
    assert_eq!(at("10s"), "2026-12-07T11:59:50Z");
    for bad in [
        "yesterday",
        "",
        "h",
        "-3h",
        "3y",
        "2026-13-01",
        "2026-12-01T05:18:26",
        "99999999999999999999w",
    ] {
        let error = parse_time(bad, now()).unwrap_err();
        assert!(
            error.contains("RFC 3339") && error.contains("24h"),
            "{error}"
        );
    }
}

fn row(raw: serde_json::Value) -> Row {
    Row {
        trail: 0,
        file: PathBuf::from("/trail/audit.jsonl"),
        line: 7,
        problem: None,
        outcome_unknown: false,
        record: Record::from_value(raw),
    }
}

fn alice() -> Row {
    row(
        json!({"v": 2, "seq": 3, "ts": "2026-12-01T05:18:26.123Z", "kind": "outcome",
        "requestId": "r-2", "caller": {"iss": "https://sso", "sub": "alice", "clientIp": "10.0.0.1"},
        "callerName": "Alice Example", "forwardedFor": "203.0.113.9", "agent": "A1001",
        "grant": "self", "code": "ok", "httpStatus": 200, "replayOf": "r-1",
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736"}),
    )
}

#[test]
fn filters_match_as_documented() {
    let record = alice().record;
    let matches = |filter: Filter| filter.matches(&record);
    assert!(matches(Filter::default()));
    let caller = |c: &str| Filter {
        caller: Some(c.into()),
        ..Filter::default()
    };
    assert!(matches(caller("alice")));
    assert!(matches(caller("Alice Example")));
    assert!(matches(caller("https://sso#alice")));
    assert!(!matches(caller("https://other#alice")));
    assert!(!matches(caller("Alice")));
    let agent = |a: &str| Filter {
        agent: Some(a.into()),
        ..Filter::default()
    };
    assert!(matches(agent("a1001")) && !matches(agent("a1002")));
    let request = |r: &str| Filter {
        request_id: Some(r.into()),
        ..Filter::default()
    };
    assert!(matches(request("r-2")) && matches(request("r-1")) && !matches(request("r-3")));
    let code = |c: &str| Filter {
        code: Some(c.into()),
        ..Filter::default()
    };
    assert!(matches(code("ok")) && !matches(code("OK")));
    let at = |t: &str| Some(parse_time(t, now()).unwrap());
    let window = |since, until| Filter {
        period: Period { since, until },
        ..Filter::default()
    };
    assert!(matches(window(at("2026-12-01T05:18:26.123Z"), None)));
    assert!(matches(window(at("2026-12-01T06:18:26.123+01:00"), None)));
    assert!(!matches(window(at("2026-12-01T05:18:26.124Z"), None)));
    assert!(!matches(window(None, at("2026-12-01T05:18:26.123Z"))));
    assert!(matches(window(at("2026-12-01"), at("2026-12-02"))));
    // A record without a readable time (damage or an edit) is in every period.
    let untimed = row(json!("not a record")).record;
    assert!(window(at("2026-01-01"), None).matches(&untimed));
    assert!(
        !Filter {
            code: Some("ok".into()),
            ..window(at("2026-01-01"), None)
        }
        .matches(&untimed)
    );
}

#[test]
fn table_rows_escape_every_cell_and_carry_the_marks() {
    let mut shown = alice();
    shown.record.sub = Some("mallory\u{1b}[31m\u{202e}".into());
    shown.problem = Some("mac does not match".into());
    let [header, line] = <[String; 2]>::try_from(table([&shown])).unwrap();
    assert!(header.starts_with("TIME ") && header.ends_with("REQUEST ID  MARK"));
    assert!(!line.chars().any(crate::terminal::is_unsafe), "{line}");
    assert!(
        line.contains("mallory\\u{1b}[31m\\u{202e} \"Alice Example\" <https://sso>"),
        "{line}"
    );
    assert!(line.contains("203.0.113.9"), "{line}");
    assert!(
        line.ends_with("FAILED: mac does not match; replay of r-1"),
        "{line}"
    );
    // Columns line up with the header, however wide the cells.
    assert_eq!(line.find("ok"), header.find("CODE"));
    assert_eq!(line.find("203.0.113.9"), header.find("CLIENT"));
    let mut orphan = row(json!({"kind": "attempt", "requestId": "r-9"}));
    orphan.outcome_unknown = true;
    let lines = table([&shown, &orphan]);
    assert!(lines[2].ends_with("outcome unknown"), "{}", lines[2]);
    assert_eq!(lines[2].find("r-9"), lines[0].find("REQUEST ID"));
}

#[test]
fn csv_cells_are_quoted_escaped_and_defused() {
    assert_eq!(csv_cell("alice"), "alice");
    assert_eq!(csv_cell("a,b"), "\"a,b\"");
    assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    for lead in ["+1", "-1", "@SUM(A1)"] {
        assert_eq!(csv_cell(lead), format!("'{lead}"));
    }
    assert_eq!(csv_cell("a\u{1b}\nb"), "a\\u{1b}\\u{a}b");
    let line = csv_row(&alice());
    assert!(line.starts_with("2026-12-01T05:18:26.123Z,outcome,ok,200,A1001,alice,Alice Example,https://sso,self,203.0.113.9,r-2,r-1,4bf92f3577b34da6a3ce929d0e0e4736,,3,true,,false,/trail/audit.jsonl,7"), "{line}");
    assert_eq!(line.split(',').count(), csv_header().split(',').count());
}

#[test]
fn json_lines_are_the_record_plus_a_marked_envelope() {
    let trail = TrailCheck {
        source: PathBuf::from("/trail"),
        files: vec![],
        instance: None,
        records: 1,
        first_seq: None,
        last_seq: None,
        first_ts: None,
        last_ts: None,
        failures: vec![],
        discontinuities: vec![],
        last_checkpoint: None,
    };
    let mut shown = alice();
    shown.problem = Some("seq 3 follows 1".into());
    shown.record.raw["caller"]["sub"] = json!("a\u{9b}b");
    let review = Review {
        trails: vec![trail],
        rows: vec![],
        keyed: false,
    };
    let line = json_line(&review, &shown);
    assert!(!line.chars().any(crate::terminal::is_unsafe), "{line}");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["caller"]["sub"], "a\u{9b}b");
    assert_eq!(value["requestId"], "r-2");
    assert_eq!(value["_verified"], false);
    assert_eq!(value["_problem"], "seq 3 follows 1");
    assert_eq!(value["_outcomeUnknown"], false);
    assert_eq!(
        (value["_file"].as_str(), value["_line"].as_u64()),
        (Some("/trail/audit.jsonl"), Some(7))
    );
    assert_eq!(value["_trail"], "/trail");
    let text = json_line(&review, &row(json!("garbage")));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (value["_text"].as_str(), value["_verified"].as_bool()),
        (Some("garbage"), Some(true))
    );
}
