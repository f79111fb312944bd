use std::path::PathBuf;

use aws_lc_rs::digest;
use base64::Engine as _;

use super::facts::Facts;
use super::html::{json_for_script, text, thousands};
use super::{Options, SCRIPT, render};
use crate::audit::review::{Record, Review, Row, TrailCheck};
use crate::audit::show::Period;
use crate::audit::verify::Failure;

fn at(ts: &str) -> jiff::Timestamp {
    ts.parse().unwrap()
}

/// An outcome (or attempt, with `code` "attempt") by `sub` for `agent` at `ts`.
fn record(seq: u64, ts: &str, kind: &str, code: &str, sub: &str, agent: &str) -> Record {
    let mut raw = serde_json::json!({ "v": 2, "seq": seq, "kind": kind, "code": code });
    if matches!(code, "ok" | "vendor_rejected" | "vendor_timeout") {
        raw["vendor"] = serde_json::json!({ "status": 200 });
    }
    Record {
        v: 2,
        seq,
        ts: ts.to_owned(),
        time: Some(at(ts)),
        kind: kind.to_owned(),
        request_id: Some(format!("r-{seq}")),
        iss: Some("https://sso.example".to_owned()),
        sub: Some(sub.to_owned()),
        client_ip: Some("127.0.0.1".to_owned()),
        agent: Some(agent.to_owned()),
        code: Some(code.to_owned()),
        raw,
        instance: None,
        caller_name: None,
        forwarded_for: None,
        grant: None,
        replay_of: None,
        trace_id: None,
        http_status: None,
        vendor_status: None,
        vendor_result_code: None,
        vendor_latency_ms: None,
        latency_ms: None,
        suppressed: None,
    }
}

fn row(record: Record) -> Row {
    Row {
        trail: 0,
        file: PathBuf::from("/trail/sipgw-audit.jsonl"),
        line: record.seq,
        problem: None,
        outcome_unknown: false,
        record,
    }
}

fn review(rows: Vec<Row>) -> Review {
    let trail = TrailCheck {
        source: PathBuf::from("/trail"),
        files: vec![PathBuf::from("/trail/sipgw-audit.jsonl")],
        records: rows.len() as u64,
        first_seq: rows.first().map(|r| r.record.seq),
        last_seq: rows.last().map(|r| r.record.seq),
        first_ts: rows.first().map(|r| r.record.ts.clone()),
        last_ts: rows.last().map(|r| r.record.ts.clone()),
        instance: None,
        failures: Vec::new(),
        discontinuities: Vec::new(),
        last_checkpoint: None,
    };
    Review {
        trails: vec![trail],
        rows,
        keyed: true,
    }
}

/// A week of traffic: two changes on day 1, a vendor rejection, refusals of two codes on
/// day 3, a lockout, an orphaned attempt, a replay.
fn week() -> Review {
    let mut orphan = row(record(
        9,
        "2026-12-03T10:00:00.000Z",
        "attempt",
        "attempt",
        "carol",
        "a1003",
    ));
    orphan.outcome_unknown = true;
    let mut replay = record(
        10,
        "2026-12-03T11:00:00.000Z",
        "outcome",
        "ok",
        "alice",
        "a1001",
    );
    replay.replay_of = Some("r-2".to_owned());
    let mut named = record(
        2,
        "2026-12-01T09:00:01.000Z",
        "outcome",
        "ok",
        "alice",
        "a1001",
    );
    named.caller_name = Some("Alice Example".to_owned());
    review(vec![
        row(record(
            1,
            "2026-12-01T09:00:00.000Z",
            "attempt",
            "attempt",
            "alice",
            "a1001",
        )),
        row(named),
        row(record(
            3,
            "2026-12-01T12:00:00.000Z",
            "outcome",
            "ok",
            "bob",
            "a1002",
        )),
        row(record(
            4,
            "2026-12-02T08:00:00.000Z",
            "outcome",
            "vendor_rejected",
            "bob",
            "a1002",
        )),
        row(record(
            5,
            "2026-12-03T08:00:00.000Z",
            "outcome",
            "forbidden",
            "mallory",
            "a1001",
        )),
        row(record(
            6,
            "2026-12-03T08:01:00.000Z",
            "outcome",
            "forbidden",
            "mallory",
            "a1002",
        )),
        row(record(
            7,
            "2026-12-03T08:02:00.000Z",
            "outcome",
            "rate_limited",
            "mallory",
            "a1002",
        )),
        row(record(
            8,
            "2026-12-03T09:00:00.000Z",
            "outcome",
            "lockout_protection",
            "bob",
            "a1002",
        )),
        orphan,
        row(replay),
    ])
}

fn options() -> Options {
    Options {
        period: Period::default(),
        generated: at("2026-12-07T18:00:00Z"),
        anchors: Vec::new(),
    }
}

#[test]
fn headline_numbers_count_each_kind_of_outcome_once() {
    let review = week();
    let facts = Facts::gather(&review, Period::default());
    let h = &facts.headline;
    assert_eq!(
        (
            h.changes,
            h.vendor_rejections,
            h.refusals,
            h.lockouts,
            h.orphans,
            h.replays,
            h.failed
        ),
        (2, 1, 4, 1, 1, 1, 0)
    );
    // Three days, quiet ones included; the changes on the first only.
    assert_eq!(
        facts.changes_per_day.days,
        ["2026-12-01", "2026-12-02", "2026-12-03"]
    );
    assert_eq!(
        facts.changes_per_day.series,
        [("ok".to_owned(), vec![2, 0, 0])]
    );
    assert_eq!(
        facts.refusals_per_day.series[0],
        ("forbidden".to_owned(), vec![0, 0, 2])
    );
    assert_eq!(facts.top_by_refusals[0].caller.sub, "mallory");
    assert_eq!(facts.top_by_refusals[0].count, 3);
    assert_eq!(
        facts.top_by_changes[0].name.as_deref(),
        Some("Alice Example")
    );
    // The answered attempt is not history; the orphaned one is.
    assert_eq!(facts.agents["a1001"].len(), 3);
    assert_eq!(facts.agents["a1003"].len(), 1);
}

#[test]
fn the_period_bounds_the_rows_but_not_the_chain_status() {
    let mut review = week();
    review.trails[0].failures.push(Failure {
        file: PathBuf::from("/trail/sipgw-audit.jsonl"),
        line: 1,
        reason: "mac does not match".to_owned(),
    });
    let period = Period {
        since: Some(at("2026-12-02T00:00:00Z")),
        until: Some(at("2026-12-03T00:00:00Z")),
    };
    let facts = Facts::gather(&review, period);
    assert_eq!(facts.changes.len(), 1);
    assert_eq!(facts.headline.vendor_rejections, 1);
    assert_eq!(facts.headline.changes, 0);
    assert_eq!(facts.headline.failed, 1);
}

#[test]
fn top_callers_stop_at_ten_most_first() {
    let rows = (1..=12u64)
        .flat_map(|n| {
            (0..n).map(move |i| {
                row(record(
                    n * 100 + i,
                    "2026-12-01T09:00:00.000Z",
                    "outcome",
                    "ok",
                    &format!("user{n:02}"),
                    "a1",
                ))
            })
        })
        .collect();
    let review = review(rows);
    let facts = Facts::gather(&review, Period::default());
    let subs: Vec<&str> = facts
        .top_by_changes
        .iter()
        .map(|c| c.caller.sub.as_str())
        .collect();
    assert_eq!(subs.len(), 10);
    assert_eq!(subs[0], "user12");
    assert_eq!(subs[9], "user03");
}

#[test]
fn every_trail_value_is_escaped_and_no_script_but_ours_is_in_the_page() {
    let hostile = "<img src=x onerror=alert(1)>";
    let mut review = week();
    review.rows[1].record.sub = Some(hostile.to_owned());
    review.rows[1].record.caller_name = Some("</script><script>alert(2)</script>".to_owned());
    review.rows[4].record.agent = Some("\"><svg onload=alert(3)>".to_owned());
    review.trails[0].failures.push(Failure {
        file: PathBuf::from("/trail/<b>x.jsonl"),
        line: 4,
        reason: "bad json <i>".to_owned(),
    });
    let page = render(&review, &options());
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<svg onload"));
    assert!(!page.contains("<b>x"));
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.contains("&quot;&gt;&lt;svg onload=alert(3)&gt;"));
    // Exactly two script elements: the data and ours.
    assert_eq!(page.matches("<script").count(), 2);
    assert_eq!(page.matches("</script>").count(), 2);
    // A bidi override reads as an escape, not as reordered text.
    assert_eq!(text("a\u{202e}b"), "a\\u{202e}b");
}

#[test]
fn data_for_the_script_cannot_close_its_element() {
    let value = serde_json::json!({ "sub": "</script><!-- & >" , "sep": "\u{2028}" });
    let json = json_for_script(&value);
    assert!(!json.contains('<') && !json.contains('>') && !json.contains('&'));
    assert!(json.contains("\\u003c/script\\u003e"));
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(back, value);
}

#[test]
fn the_policy_allows_exactly_the_embedded_script_and_loads_nothing() {
    let page = render(&week(), &options());
    let start = page.rfind("<script>").unwrap() + "<script>".len();
    let end = page.rfind("</script>").unwrap();
    let script = &page[start..end];
    assert_eq!(script, SCRIPT);
    let hash = base64::engine::general_purpose::STANDARD
        .encode(digest::digest(&digest::SHA256, script.as_bytes()).as_ref());
    let csp_start = page.find("Content-Security-Policy\" content=\"").unwrap();
    let csp = &page[csp_start..page[csp_start..].find("\">").unwrap() + csp_start];
    assert!(
        csp.contains(&format!("script-src 'sha256-{hash}'")),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"));
    // Nothing external to load: no URL, no link, no font.
    for needle in ["http://", "https://", "<link", "@import", "url(", "src=\""] {
        let outside_data = page.replace("https://sso.example", "");
        assert!(!outside_data.contains(needle), "{needle}");
    }
}

#[test]
fn an_empty_trail_gives_a_page_with_nothing_to_chart() {
    let page = render(&review(Vec::new()), &options());
    assert!(page.contains("No changes in this period."));
    assert!(page.contains("No refusals in this period."));
    assert!(!page.contains("class=\"bar\""));
    assert!(page.contains("0 of 0 rows shown"));
    assert!(page.contains("Period covered: <strong>no records</strong>"));
    let nothing = Review {
        trails: Vec::new(),
        rows: Vec::new(),
        keyed: true,
    };
    let page = render(&nothing, &options());
    assert!(page.contains("No trail was given."));
}

#[test]
fn one_day_gives_one_labelled_bar() {
    let review = review(vec![
        row(record(
            1,
            "2026-12-05T09:00:00.000Z",
            "outcome",
            "ok",
            "alice",
            "a1",
        )),
        row(record(
            2,
            "2026-12-05T10:00:00.000Z",
            "outcome",
            "ok",
            "bob",
            "a2",
        )),
        row(record(
            3,
            "2026-12-05T11:00:00.000Z",
            "outcome",
            "forbidden",
            "eve",
            "a2",
        )),
    ]);
    let page = render(&review, &options());
    let chart = &page[page.find("id=\"changes-chart\"").unwrap()..];
    let chart = &chart[..chart.find("</svg>").unwrap()];
    assert_eq!(chart.matches("class=\"bar\"").count(), 1);
    assert!(chart.contains("<title>2026-12-05: 2 ok</title>"));
    assert!(chart.contains(">12-05</text>"));
    assert!(chart.contains("changes per day</text>"));
    assert!(
        chart.contains(">ok: 2</text>"),
        "the legend names the series and its total"
    );
}

#[test]
fn the_status_says_intact_failed_or_unkeyed() {
    let mut review = week();
    let page = render(&review, &options());
    assert!(
        page.contains(
            "Intact: 10 records, seq 1 to 10, 1 Dec 2026 to 3 Dec 2026, no checkpoint yet."
        )
    );
    assert!(page.contains("class=\"verdict ok\""));
    assert!(!page.contains("id=\"unkeyed\""));
    review.keyed = false;
    review.trails[0].last_checkpoint = Some(8);
    review.trails[0].failures.push(Failure {
        file: PathBuf::from("/trail/sipgw-audit.jsonl"),
        line: 7,
        reason: "mac does not match".to_owned(),
    });
    let page = render(&review, &options());
    assert!(page.contains("class=\"verdict failed\">1 record FAILED verification"));
    assert!(page.contains("<li>/trail/sipgw-audit.jsonl:7: mac does not match</li>"));
    assert!(page.contains("last checkpoint seq 8"));
    assert!(page.contains("id=\"unkeyed\""));
    assert!(page.contains("no HMAC key"));
}

#[test]
fn numbers_read_with_thousands_separators() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1204), "1,204");
    assert_eq!(thousands(1_234_567), "1,234,567");
}

#[test]
fn a_record_that_failed_verification_is_listed_but_not_counted() {
    let mut review = week();
    // A forged `ok`: shown and marked, never a change.
    review.rows[2].problem = Some("mac does not match".to_owned());
    let facts = Facts::gather(&review, Period::default());
    assert_eq!(facts.headline.changes, 1);
    assert_eq!(facts.changes.len(), 10);
    let page = render(&review, &options());
    assert!(page.contains("<tr class=\"failed\">"));
    assert!(page.contains("FAILED verification: mac does not match"));
}

#[test]
fn merged_trails_name_the_trail_of_each_row() {
    let mut review = week();
    assert!(!render(&review, &options()).contains("<th>Trail</th>"));
    let mut second = review.trails[0].clone();
    second.source = PathBuf::from("/replica-b");
    second.instance = Some("sipgw-<b>".to_owned());
    review.trails.push(second);
    review.rows[3].trail = 1;
    let page = render(&review, &options());
    assert!(page.contains("<th>Trail</th>"));
    assert_eq!(
        page.matches("<td>trail</td>").count(),
        9,
        "the others by directory name"
    );
    assert_eq!(page.matches("<td>sipgw-&lt;b&gt;</td>").count(), 1);
    assert!(page.contains("Intact: every record of 2 trails verified."));
}

#[test]
fn a_discontinuity_is_named_with_the_records_lost() {
    let mut review = week();
    review.trails[0]
        .discontinuities
        .push(crate::audit::verify::Gap {
            file: PathBuf::from("/trail/sipgw-audit.jsonl"),
            line: 5,
            detected: "missing".to_owned(),
            last_seq: 19,
            held_seq: Some(15),
        });
    let page = render(&review, &options());
    assert!(page.contains("class=\"verdict gap\">Every record verified, but 1 discontinuity"));
    assert!(page.contains(
        "Discontinuity: records lost. At /trail/sipgw-audit.jsonl:5 a new chain began after the \
         trail was found missing: records after seq 15 up to seq 19 are not in these files."
    ));
}

#[test]
fn the_header_names_the_period_covered() {
    let page = render(&week(), &options());
    assert!(page.contains(
        "Period covered: <strong>1 Dec 2026 09:00:00 UTC to 3 Dec 2026 11:00:00 UTC</strong>."
    ));
    let bounded = Options {
        period: Period {
            since: Some(at("2026-12-02T00:00:00Z")),
            until: None,
        },
        ..options()
    };
    let page = render(&week(), &bounded);
    assert!(page.contains(
        "Period covered: <strong>2 Dec 2026 00:00:00 UTC to the end (--since/--until)</strong>."
    ));
}

#[test]
fn without_anchors_the_page_says_a_cut_would_not_show() {
    let page = render(&week(), &options());
    assert!(page.contains("id=\"no-anchor\""));
    assert!(!page.contains("id=\"anchor-0\""));
}
