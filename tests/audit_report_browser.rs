//! `sipgw audit report` as a reviewer sees it: a known trail (real sealed records over
//! three days) goes through the built binary, and the page is opened in a real headless
//! Chromium over WebDriver (chromedriver) to check what it renders: the status line, the
//! headline numbers, the chart bars and their labels, the top callers, the table and its
//! filter box, that nothing is fetched, and that a hostile `sub` stays text. An edited
//! record makes the page say FAILED and the command exit 1.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the browser checks are skipped
//! (with a message), unless `SIPGW_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes a
//! missing browser a failure. The command's own checks (exit status, no overwriting) run
//! either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use fantoccini::Locator;
use serde_json::{Value, json};
use sipgw::audit::chain::{GENESIS, MacKey};
use sipgw::audit::record::{Envelope, Event, checkpoint_json, seal, unsealed_json};

#[path = "audit_report_browser/browser.rs"]
mod browser;

use browser::in_browser;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const KEY: &str = "report-test-hmac-key-0123456789abcdef\n";
const ISSUER: &str = "https://sso.test.internal/realms/corp";
/// The replica that wrote the trail.
const INSTANCE: &str = "sipgw-test-1";
/// A `sub` that would run script if the page inserted it as HTML.
const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\">";

/// A new, empty directory under the system's temp dir, unique to this process and name.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipgw-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The trail's events, each with the `ts` the writer is to stamp on it.
fn events() -> Vec<Value> {
    let caller = |sub: &str| json!({ "iss": ISSUER, "sub": sub, "clientIp": "127.0.0.1" });
    let vendor = |result: &str| json!({ "status": 200, "resultCode": result, "latencyMs": 12 });
    let attempt = |ts: &str, id: &str, sub: &str, agent: &str, grant: &str| {
        json!({ "ts": ts, "kind": "attempt", "requestId": id, "caller": caller(sub),
                "agent": agent, "grant": grant, "code": "attempt" })
    };
    let refusal = |ts: &str, id: &str, sub: &str, agent: &str, code: &str, status: u16| {
        json!({ "ts": ts, "kind": "outcome", "requestId": id, "caller": caller(sub),
                "agent": agent, "code": code, "httpStatus": status, "latencyMs": 2 })
    };
    vec![
        attempt("2026-12-01T09:00:00.000Z", "r-1", "alice", "a1001", "self"),
        json!({ "ts": "2026-12-01T09:00:00.100Z", "kind": "outcome", "requestId": "r-1",
                "caller": caller("alice"), "callerName": "Alice Example", "agent": "a1001",
                "grant": "self", "code": "ok", "httpStatus": 200, "vendor": vendor("0"),
                "latencyMs": 15 }),
        attempt(
            "2026-12-01T12:00:00.000Z",
            "r-2",
            "bob",
            "a1002",
            "admin_scope",
        ),
        json!({ "ts": "2026-12-01T12:00:00.100Z", "kind": "outcome", "requestId": "r-2",
                "caller": caller("bob"), "agent": "a1002", "grant": "admin_scope", "code": "ok",
                "httpStatus": 200, "vendor": vendor("0"), "latencyMs": 14 }),
        attempt(
            "2026-12-02T08:00:00.000Z",
            "r-3",
            "bob",
            "a1002",
            "admin_scope",
        ),
        json!({ "ts": "2026-12-02T08:00:00.100Z", "kind": "outcome", "requestId": "r-3",
                "caller": caller("bob"), "agent": "a1002", "grant": "admin_scope",
                "code": "vendor_rejected", "httpStatus": 422, "vendor": vendor("1"),
                "latencyMs": 13 }),
        refusal(
            "2026-12-03T08:00:00.000Z",
            "r-4",
            "mallory",
            "a1001",
            "forbidden",
            403,
        ),
        refusal(
            "2026-12-03T08:01:00.000Z",
            "r-5",
            "mallory",
            "a1002",
            "forbidden",
            403,
        ),
        refusal(
            "2026-12-03T08:02:00.000Z",
            "r-6",
            "mallory",
            "a1002",
            "rate_limited",
            429,
        ),
        refusal(
            "2026-12-03T09:00:00.000Z",
            "r-7",
            "bob",
            "a1002",
            "lockout_protection",
            429,
        ),
        attempt("2026-12-03T10:00:00.000Z", "r-8", "carol", "a1003", "self"),
        json!({ "ts": "2026-12-03T11:00:00.000Z", "kind": "outcome", "requestId": "r-9",
                "caller": caller("alice"), "agent": "a1001", "grant": "self", "code": "ok",
                "httpStatus": 200, "replayOf": "r-1", "latencyMs": 1 }),
        refusal(
            "2026-12-03T12:00:00.000Z",
            "r-10",
            HOSTILE,
            "a1004",
            "forbidden",
            403,
        ),
    ]
}

/// Writes the trail as the writer does (the library's record bytes, sealed with [`KEY`]),
/// a checkpoint last; returns its file.
fn write_trail(dir: &Path) -> PathBuf {
    let key = MacKey::from_file_bytes(KEY.as_bytes()).unwrap();
    let mut prev = GENESIS.to_owned();
    let mut lines = String::new();
    let mut seal_line = |unsealed: String, prev: &mut String| {
        let mac = key.mac(prev, &unsealed);
        lines.push_str(&seal(&unsealed, &mac));
        lines.push('\n');
        *prev = mac;
    };
    let events = events();
    let count = events.len() as u64;
    for (i, mut event) in events.into_iter().enumerate() {
        let ts = event["ts"].as_str().unwrap().to_owned();
        event.as_object_mut().unwrap().remove("ts");
        let event: Event = serde_json::from_value(event).unwrap();
        let envelope = Envelope {
            seq: i as u64 + 1,
            ts: &ts,
            instance: INSTANCE,
        };
        seal_line(unsealed_json(envelope, &event, &prev), &mut prev);
    }
    let envelope = Envelope {
        seq: count + 1,
        ts: "2026-12-03T12:00:01.000Z",
        instance: INSTANCE,
    };
    let checkpoint = checkpoint_json(envelope, &prev);
    seal_line(checkpoint, &mut prev);
    let file = dir.join("sipgw-audit.jsonl");
    std::fs::write(&file, lines).unwrap();
    file
}

/// Runs `sipgw audit report ARGS`: exit status and stderr.
fn report(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(SIPGW)
        .args(["audit", "report"])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A trail, its key file and a report of it (exit 0).
fn reported(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = fresh_dir(name);
    let trail_dir = dir.join("trail");
    std::fs::create_dir_all(&trail_dir).unwrap();
    write_trail(&trail_dir);
    let key_file = dir.join("hmac.key");
    std::fs::write(&key_file, KEY).unwrap();
    let page = dir.join("report.html");
    let (code, err) = report(&[
        trail_dir.to_str().unwrap(),
        "--key-file",
        key_file.to_str().unwrap(),
        "--output",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    (trail_dir, key_file, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_trail_and_filters_its_rows() {
    let (_, _, page) = reported("rendered");
    in_browser("rendered", &page, |b| async move {
        let verdict = b.text("#verdict").await;
        assert!(verdict.starts_with("Intact"), "{verdict}");
        let line = b.text("#trail-0 .line").await;
        assert_eq!(
            line,
            "Intact: 14 records, seq 1 to 14, 1 Dec 2026 to 3 Dec 2026, last checkpoint seq 14."
        );
        let heading = b.text("#trail-0 h3").await;
        assert!(
            heading.ends_with(&format!("trail (instance {INSTANCE})")),
            "{heading}"
        );
        assert_eq!(b.count("#unkeyed").await, 0, "a key was given");
        let number = |name: &'static str| {
            let b = b.clone();
            async move { b.text(&format!(".number[data-name={name}] .value")).await }
        };
        assert_eq!(number("changes").await, "2");
        assert_eq!(number("vendor-rejections").await, "1");
        assert_eq!(number("refusals").await, "5");
        assert_eq!(number("lockouts").await, "1");
        assert_eq!(number("orphans").await, "1");
        assert_eq!(number("replays").await, "1");
        assert_eq!(number("failed").await, "0");

        // Changes: one bar (1 Dec, two changes); refusals: three codes stacked on 3 Dec.
        assert_eq!(b.count("#changes-chart rect.bar").await, 1);
        assert_eq!(b.texts("#changes-chart text.value").await, ["2"]);
        assert_eq!(b.count("#refusals-chart rect.bar").await, 3);
        assert_eq!(b.texts("#refusals-chart text.value").await, ["5"]);
        assert_eq!(
            b.texts("#changes-chart text.day").await,
            ["12-01", "12-02", "12-03"]
        );
        let legend = b.texts("#refusals-chart .legend text").await;
        assert_eq!(
            legend,
            ["forbidden: 3", "lockout_protection: 1", "rate_limited: 1"]
        );
        // Every label is drawn inside its chart, not clipped at its edge.
        let clipped = b
            .eval(
                "return Array.from(document.querySelectorAll('svg.chart')).flatMap(svg => {\
                   const box = svg.getBoundingClientRect();\
                   return Array.from(svg.querySelectorAll('text')).filter(t => {\
                     const r = t.getBoundingClientRect();\
                     return r.left < box.left || r.right > box.right\
                       || r.top < box.top || r.bottom > box.bottom;\
                   }).map(t => t.textContent);\
                 });",
            )
            .await;
        assert_eq!(clipped, json!([]));
        let title = b
            .eval("return document.querySelector('#refusals-chart rect.bar title').textContent;")
            .await;
        assert_eq!(title, "2026-12-03: 3 forbidden");

        let top = b.texts("#top-changes tbody tr td:first-child").await;
        assert_eq!(top, ["alice", "bob"]);
        let first = b.texts("#top-changes tbody tr:first-child td").await;
        assert_eq!(first, ["alice", "Alice Example", ISSUER, "1"]);
        let top = b.texts("#top-refusals tbody tr td:first-child").await;
        assert_eq!(top, ["mallory", HOSTILE, "bob"]);
        assert_eq!(b.count("#lockouts tbody tr").await, 1);
        let agents = b.texts("#agents summary").await;
        assert_eq!(
            agents,
            [
                "a1001: 1 change, 1 refusal or failure, 1 replay",
                "a1002: 1 change, 4 refusals or failures",
                "a1003: 0 changes, 0 refusals or failures, 1 outcome unknown",
                "a1004: 0 changes, 1 refusal or failure",
            ]
        );
        let orphan = b.text("#orphans tbody tr").await;
        assert!(
            orphan.contains("a1003") && orphan.contains("r-8"),
            "{orphan}"
        );

        // Every attempt and outcome, then the filter (the script ran: the CSP let it).
        assert_eq!(b.count("#records tbody tr").await, 13);
        assert_eq!(b.visible_rows().await, 13);
        let filter = b.client.find(Locator::Css("#filter")).await.unwrap();
        assert!(
            filter.is_enabled().await.unwrap(),
            "the page's script did not run"
        );
        filter.send_keys("mallory").await.unwrap();
        assert_eq!(b.visible_rows().await, 3);
        assert_eq!(b.text("#shown").await, "3 of 13 rows shown");
        filter.send_keys(" RATE").await.unwrap();
        assert_eq!(b.visible_rows().await, 1);
        filter.clear().await.unwrap();
        filter.send_keys("vendor_rejected").await.unwrap();
        assert_eq!(b.visible_rows().await, 1);
        assert_eq!(b.text("#shown").await, "1 of 13 rows shown");

        // The hostile sub is text: no image element, no handler ran.
        assert_eq!(b.count("img").await, 0);
        assert_eq!(b.eval("return document.title;").await, "sipgw audit report");
        let body = b.eval("return document.body.innerText;").await;
        assert!(body.as_str().unwrap().contains(HOSTILE));
        // Nothing was fetched: no resource at all besides the page.
        let fetched = b
            .eval("return performance.getEntriesByType('resource').length;")
            .await;
        assert_eq!(fetched, 0);
    })
    .await;
    let _ = std::fs::remove_dir_all(page.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_record_makes_the_page_say_failed_and_the_command_exit_1() {
    let (trail_dir, key_file, _) = reported("edited");
    let file = trail_dir.join("sipgw-audit.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"rate_limited\"", "\"ok\"", 1)).unwrap();
    let page = trail_dir.parent().unwrap().join("edited.html");
    let (code, err) = report(&[
        trail_dir.to_str().unwrap(),
        "--key-file",
        key_file.to_str().unwrap(),
        "--output",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("FAILED"), "{err}");
    // Without the key the page warns prominently (and every mac fails).
    let unkeyed = trail_dir.parent().unwrap().join("unkeyed.html");
    let (code, err) = report(&[
        trail_dir.to_str().unwrap(),
        "--output",
        unkeyed.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("warning: the audit trail has no HMAC key"),
        "{err}"
    );
    in_browser("edited", &page, |b| async move {
        let verdict = b.text("#verdict").await;
        assert!(verdict.contains("FAILED verification"), "{verdict}");
        let failures = b.texts("#trail-0 .failures li").await;
        assert!(!failures.is_empty());
        assert!(failures[0].contains("sipgw-audit.jsonl:9:"), "{failures:?}");
        assert_ne!(b.text(".number[data-name=failed] .value").await, "0");
        let marked = b.count("#records tbody tr.failed").await;
        assert!(marked >= 1);
    })
    .await;
    in_browser("unkeyed", &unkeyed, |b| async move {
        let warning = b.text("#unkeyed").await;
        assert!(warning.contains("no HMAC key"), "{warning}");
    })
    .await;
    let _ = std::fs::remove_dir_all(trail_dir.parent().unwrap());
}

#[test]
fn the_command_refuses_bad_usage_and_never_overwrites_its_input() {
    let dir = fresh_dir("usage");
    let trail = write_trail(&dir);
    let before = std::fs::read(&trail).unwrap();
    let trail_arg = trail.to_str().unwrap();
    let (code, err) = report(&[trail_arg, "--output", trail_arg]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(std::fs::read(&trail).unwrap(), before);
    let (code, err) = report(&[
        trail_arg,
        "--output",
        dir.join("no/such/dir/r.html").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = report(&[
        trail_arg,
        "--since",
        "yesterday",
        "--output",
        dir.join("r.html").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--since"), "{err}");
    let (code, _) = report(&[
        dir.join("missing.jsonl").to_str().unwrap(),
        "--output",
        dir.join("r.html").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    // Written atomically: the page and nothing else beside it.
    let page = dir.join("r.html");
    let key_file = dir.join("hmac.key");
    std::fs::write(&key_file, KEY).unwrap();
    let (code, err) = report(&[
        trail_arg,
        "--key-file",
        key_file.to_str().unwrap(),
        "--since",
        "2026-12-02T00:00:00Z",
        "--output",
        page.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("(--since/--until)"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["hmac.key", "r.html", "sipgw-audit.jsonl"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--anchor`, as for `verify`: the page says whether each trail still holds the latest
/// checkpoint kept off the host, and a trail cut at its end fails (exit 1) although every
/// record left in it verifies.
#[test]
fn an_anchor_kept_off_the_host_catches_a_cut_trail_on_the_page() {
    let dir = fresh_dir("anchor");
    let trail_dir = dir.join("trail");
    std::fs::create_dir_all(&trail_dir).unwrap();
    let trail = write_trail(&trail_dir);
    let key_file = dir.join("hmac.key");
    std::fs::write(&key_file, KEY).unwrap();
    let text = std::fs::read_to_string(&trail).unwrap();
    let anchor = text.lines().last().unwrap().to_owned();
    assert!(anchor.contains(r#""kind":"checkpoint""#), "{anchor}");
    let page = dir.join("r.html");
    let run = |anchor: &str| {
        report(&[
            trail_dir.to_str().unwrap(),
            "--key-file",
            key_file.to_str().unwrap(),
            "--anchor",
            anchor,
            "--output",
            page.to_str().unwrap(),
        ])
    };
    let (code, err) = run(&anchor);
    assert_eq!(code, Some(0), "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("Anchor: the trail holds the anchor of instance"),
        "{html}"
    );
    assert!(!html.contains("id=\"no-anchor\""));

    // The last three records go: what is left verifies, but the anchor shows more was
    // written.
    let kept: Vec<&str> = text.lines().collect();
    let cut = kept[..kept.len() - 3].join("\n") + "\n";
    std::fs::write(&trail, cut).unwrap();
    let (code, err) = run(&anchor);
    assert_eq!(code, Some(1), "{err}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("no longer holds the anchor kept off the host"),
        "{html}"
    );
    assert!(html.contains("records were deleted from its end"), "{html}");

    // An anchor file that cannot be read writes nothing: exit 2.
    std::fs::remove_file(&page).unwrap();
    let (code, err) = run(dir.join("missing.log").to_str().unwrap());
    assert_eq!(code, Some(2), "{err}");
    assert!(!page.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
