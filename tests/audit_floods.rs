//! Floods of refusals against the audit trail (issue 11, finding 1): whatever the flood,
//! the trail grows by a bounded, documented amount per minute, and the records of changes
//! that reached the vendor are never suppressed.
//!
//! The bound (docs/audit.md, "Flood control"): per minute at most `flood_total_per_minute` full
//! refusal records, plus one summary per caller or network window that closed, at most
//! `2 × (flood_max_keys + 1)`. The tests below state it for their configuration, allow one
//! more set of windows for the summaries written at shutdown, and count the minutes the
//! flood actually took, so a slow machine cannot make them fail.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::Method;
use serde_json::{Value, json};
use sipgw::audit::chain::MacKey;
use sipgw::audit::verify::verify;
use sipgw::limits::config::QuotaSection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn trail(name: &str) -> PathBuf {
    fresh_dir(name).join("sipgw-audit.jsonl")
}

/// Minute windows a flood of `elapsed` can open for one key: a window lasts at least a
/// minute from its first record, so the `k`-th opens at least `k - 1` minutes after the
/// first. One when the flood took less than a minute.
fn flood_windows(elapsed: Duration) -> usize {
    usize::try_from(elapsed.as_secs() / 60).unwrap() + 1
}

/// Minute windows a run of `elapsed` can touch: the ones it started in and ran into, and
/// one more for the summaries written at shutdown.
fn windows_touched(elapsed: Duration) -> usize {
    flood_windows(elapsed) + 1
}

/// `sipgw_audit_suppressed_total{reason}` as the admin listener serves it.
async fn suppressed_metric(admin: SocketAddr, reason: &str) -> u64 {
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let name = format!("sipgw_audit_suppressed_total{{reason=\"{reason}\"}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"));
    line[name.len()..].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_flooding_an_agent_it_may_not_change_is_soon_refused_cheaply_and_summarized() {
    // Before issue 11: 2,000 requests, 2,000 `forbidden` records and never a 429 (the
    // caller quota came after authorization, and such refusals were always recorded).
    const CALLER_PER_MINUTE: usize = 10;
    const QUOTA: usize = 30;
    let path = trail("forbidden-flood");
    let p = path.display().to_string();
    let mut h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        c.audit.flood_caller_per_minute = CALLER_PER_MINUTE as u32;
        // A refill every 48 minutes: no request of this test gets a second chance.
        c.rate_limit.per_caller = QuotaSection {
            burst: QUOTA as u32,
            per_secs: 86_400,
        };
    })
    .await;
    let mallory = h.idp.mint_for("mallory", AUDIENCE, Some("agent7"), false);
    let started = Instant::now();
    let h_shared = Arc::new(h);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (h, token) = (Arc::clone(&h_shared), mallory.clone());
        tasks.spawn(async move {
            let mut codes = BTreeMap::<String, usize>::new();
            for _ in 0..125 {
                let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
                *codes.entry(answer.code()).or_default() += 1;
            }
            codes
        });
    }
    let mut codes = BTreeMap::<String, usize>::new();
    while let Some(done) = tasks.join_next().await {
        for (code, n) in done.unwrap() {
            *codes.entry(code).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    // Every request spent the caller's quota before authorization: 30 were refused by the
    // policy, the rest cheaply by the quota.
    assert_eq!(
        codes,
        BTreeMap::from([
            ("forbidden".to_owned(), QUOTA),
            ("rate_limited".to_owned(), 2000 - QUOTA)
        ])
    );
    let suppressed = suppressed_metric(h_shared.admin_addr, "caller").await;
    assert_eq!(suppressed_metric(h_shared.admin_addr, "budget").await, 0);
    h = Arc::try_unwrap(h_shared).ok().expect("all tasks are done");
    h.shutdown().await;

    let all = records(&path);
    let bound = windows_touched(elapsed) * (CALLER_PER_MINUTE + 1);
    assert!(all.len() <= bound, "{} records > {bound}", all.len());
    eprintln!(
        "forbidden flood: 2000 requests in {elapsed:?}, {} records (bound {bound})",
        all.len()
    );
    // Per window the flood ran in (one unless it took a minute or more): the first ones in
    // full, naming the caller; then one summary naming it, with the count and the codes of
    // what it suppressed. The first window's full records are of the first requests, all
    // refused by the policy.
    let windows = flood_windows(elapsed);
    let full: Vec<&Value> = all.iter().filter(|r| r["kind"] == "outcome").collect();
    assert!(
        (CALLER_PER_MINUTE..=CALLER_PER_MINUTE * windows).contains(&full.len()),
        "{} full records in {windows} window(s)",
        full.len()
    );
    assert!(full.iter().all(|r| r["caller"]["sub"] == "mallory"));
    let forbidden = full.iter().filter(|r| r["code"] == "forbidden").count();
    assert!(
        forbidden >= CALLER_PER_MINUTE,
        "{forbidden} forbidden in full"
    );
    let summaries: Vec<&Value> = all.iter().filter(|r| r["kind"] == "summary").collect();
    assert!(
        (1..=windows).contains(&summaries.len()),
        "{} summaries in {windows} window(s)",
        summaries.len()
    );
    assert_eq!(full.len() + summaries.len(), all.len());
    let mut recorded_codes = BTreeMap::<String, usize>::new();
    for record in &full {
        *recorded_codes
            .entry(record["code"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for summary in &summaries {
        assert_eq!(summary["code"], "suppressed");
        assert_eq!(summary["caller"]["iss"], ISSUER);
        assert_eq!(summary["caller"]["sub"], "mallory");
        assert_eq!(summary["caller"]["clientIp"], "127.0.0.1");
        assert!(summary["since"].as_str().unwrap() <= summary["ts"].as_str().unwrap());
        let mut in_summary = 0;
        for (code, n) in summary["codes"].as_object().unwrap() {
            let n = n.as_u64().unwrap();
            in_summary += n;
            *recorded_codes.entry(code.clone()).or_default() += usize::try_from(n).unwrap();
        }
        assert_eq!(summary["suppressed"], in_summary, "{summary}");
    }
    // Every request is accounted for, exactly: written in full or counted in a summary, the
    // metric agreeing, and the codes of both adding up to the answers.
    let counted: u64 = summaries
        .iter()
        .map(|s| s["suppressed"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, (2000 - full.len()) as u64);
    assert_eq!(suppressed, counted);
    assert_eq!(recorded_codes, codes);
    if windows == 1 {
        // One window (the usual case): its summary, written at shutdown, ends the trail
        // with the exact figures.
        assert_eq!(all.last().unwrap()["kind"], "summary");
        assert_eq!(suppressed, (2000 - CALLER_PER_MINUTE) as u64);
        assert_eq!(
            summaries[0]["codes"],
            json!({ "forbidden": QUOTA - CALLER_PER_MINUTE, "rate_limited": 2000 - QUOTA })
        );
    }
    assert_eq!(
        verify(&[path], &MacKey::Plain).unwrap().records as usize,
        all.len()
    );
    assert_eq!(h.sim.update_count(), 0);
}

/// One unauthenticated or malformed request from `source`, on a connection of its own.
async fn refused_from(gateway: SocketAddr, source: Ipv4Addr, n: u32) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let mut stream = socket.connect(gateway).await.unwrap();
    let endpoint = Harness::endpoint(AGENT);
    let body = r#"{"accountPwd":"x"}"#;
    let (path, extra) = match n % 4 {
        0 => (endpoint, String::new()),
        1 => (endpoint, "authorization: Bearer not.a.token\r\n".to_owned()),
        2 => (Harness::endpoint("bad%20agent"), String::new()),
        _ => (endpoint, "authorization: Basic eDp5\r\n".to_owned()),
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).chars().take(12).collect()
}

/// `count` requests from as many loopback addresses (127.1.0.0 upwards: all of 127/8 is
/// loopback on Linux), 64 at a time; the status lines they got, counted.
async fn flood_from_many_addresses(gateway: SocketAddr, count: u32) -> BTreeMap<String, usize> {
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let slot = Arc::clone(&slots).acquire_owned().await.unwrap();
        let [_, b, c, d] = (0x0101_0000 + n).to_be_bytes();
        let source = Ipv4Addr::new(127, b, c, d);
        tasks.spawn(async move {
            let _slot = slot;
            refused_from(gateway, source, n).await
        });
    }
    let mut statuses = BTreeMap::new();
    while let Some(status) = tasks.join_next().await {
        *statuses.entry(status.unwrap()).or_default() += 1;
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_addresses_grow_the_trail_by_a_bounded_amount() {
    // Before issue 11: 10,000 records (one per address; the throttle was per address).
    const TOTAL_PER_MINUTE: usize = 1_000;
    const MAX_KEYS: usize = 1_000;
    let path = trail("many-addresses");
    let p = path.display().to_string();
    let mut h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        c.audit.flood_total_per_minute = TOTAL_PER_MINUTE as u32;
        c.audit.flood_max_keys = MAX_KEYS as u32;
    })
    .await;
    let started = Instant::now();
    let statuses = flood_from_many_addresses(h.addr, 10_000).await;
    let elapsed = started.elapsed();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("HTTP/1.1 400".to_owned(), 2_500),
            ("HTTP/1.1 401".to_owned(), 7_500)
        ])
    );
    h.shutdown().await;
    let all = records(&path);
    let bound = windows_touched(elapsed) * (TOTAL_PER_MINUTE + 2 * (MAX_KEYS + 1));
    eprintln!(
        "10,000 addresses in {elapsed:?}: {} records (bound {bound})",
        all.len()
    );
    assert!(all.len() <= bound, "{} records > {bound}", all.len());
    // Every request is accounted for: written in full, or counted in a summary.
    let full = all.iter().filter(|r| r["kind"] == "outcome").count() as u64;
    let counted: u64 = all
        .iter()
        .filter(|r| r["kind"] == "summary")
        .map(|r| r["suppressed"].as_u64().unwrap())
        .sum();
    assert_eq!(full + counted, 10_000);
    assert_eq!(
        verify(&[path], &MacKey::Plain).unwrap().records as usize,
        all.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_one_network_share_a_window_named_in_the_summary() {
    let path = trail("one-network");
    let p = path.display().to_string();
    let mut h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        c.audit.flood_ipv4_prefix = 8;
        c.audit.flood_network_per_minute = 5;
    })
    .await;
    flood_from_many_addresses(h.addr, 400).await;
    h.shutdown().await;
    let all = records(&path);
    assert_eq!(all.len(), 6, "5 in full and one summary: {all:?}");
    let summary = &all[5];
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["network"], "127.0.0.0/8");
    assert_eq!(
        summary["caller"]["clientIp"], "127.0.0.0/8",
        "several addresses"
    );
    assert!(summary["caller"]["sub"].is_null());
    assert_eq!(summary["suppressed"], 395);
    let codes = summary["codes"].as_object().unwrap();
    assert_eq!(
        codes.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        395
    );
    assert!(codes.contains_key("unauthenticated") && codes.contains_key("invalid_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_reach_the_vendor_keep_both_records_while_their_caller_floods() {
    let path = trail("changes-amid-flood");
    let p = path.display().to_string();
    let mut h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        c.audit.flood_caller_per_minute = 2;
        // Even a spent global budget does not touch them.
        c.audit.flood_total_per_minute = 3;
    })
    .await;
    let h_shared = Arc::new(h);
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let h = Arc::clone(&h_shared);
        flood.spawn(async move {
            for _ in 0..50 {
                let answer = h
                    .send(
                        Method::POST,
                        &Harness::endpoint(AGENT),
                        &[("content-type", "application/json")],
                        "{not json",
                    )
                    .await;
                assert_eq!(answer.code(), "invalid_request");
            }
        });
    }
    for n in 0..10 {
        let answer = h_shared.change(&format!("agent{n}"), CURRENT, NEW).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    while let Some(done) = flood.join_next().await {
        done.unwrap();
    }
    h = Arc::try_unwrap(h_shared).ok().expect("all tasks are done");
    h.shutdown().await;
    let all = records(&path);
    let of = |kind: &str, code: &str| {
        all.iter()
            .filter(|r| r["kind"] == kind && r["code"] == code)
            .count()
    };
    assert_eq!(of("attempt", "attempt"), 10);
    assert_eq!(of("outcome", "ok"), 10);
    assert!(of("outcome", "invalid_request") <= 2, "{all:?}");
    let counted: u64 = all
        .iter()
        .filter(|r| r["kind"] == "summary")
        .map(|r| r["suppressed"].as_u64().unwrap())
        .sum();
    assert_eq!(of("outcome", "invalid_request") as u64 + counted, 200);
}

#[test]
fn the_deprecated_flood_keys_still_work_with_a_warning() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sipgw.example.toml");
    let check = |env: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sipgw"))
            .args(["check-config", "--config", example])
            .env("SIPGW_APP_SECRET", "x")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let output = check(&[("SIPGW__AUDIT__UNAUTHENTICATED_PER_MINUTE", "3")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("deprecated") && stderr.contains("audit.unauthenticated_per_minute"),
        "{stderr}"
    );
    // Both names with different values: which one was meant is unclear, so neither wins.
    let output = check(&[
        ("SIPGW__AUDIT__RATE_LIMITED_PER_MINUTE", "3"),
        ("SIPGW__AUDIT__FLOOD_CALLER_PER_MINUTE", "4"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("audit.rate_limited_per_minute"), "{stderr}");
}

#[test]
fn verify_and_show_read_old_and_new_summaries() {
    use sipgw::audit::chain::GENESIS;
    use sipgw::audit::record::{
        CallerInfo, Envelope, Event, FloodSummary, Kind, seal, unsealed_json,
    };
    use sipgw::audit::review::load;
    use sipgw::audit::show::Filter;
    let summary = |http_status, flood| Event {
        kind: Kind::Summary,
        request_id: None,
        caller: CallerInfo {
            iss: Some(ISSUER.into()),
            sub: Some("mallory".into()),
            client_ip: "127.0.0.1".into(),
        },
        agent: None,
        code: "suppressed".into(),
        http_status,
        vendor: None,
        latency_ms: None,
        caller_name: None,
        forwarded_for: None,
        grant: None,
        replay_of: None,
        trace_id: None,
        suppressed: Some(7),
        flood,
    };
    // As written before issue 11 (a caller's quota refusals), and as written now.
    let flood = FloodSummary {
        network: None,
        since: "2026-12-01T05:00:00.000Z".into(),
        codes: BTreeMap::from([("forbidden".to_owned(), 7)]),
    };
    let events = [summary(Some(429), None), summary(None, Some(flood))];
    let mut prev = GENESIS.to_owned();
    let mut text = String::new();
    for (seq, event) in (1..).zip(&events) {
        let envelope = Envelope {
            seq,
            ts: "2026-12-01T05:01:00.000Z",
            instance: "gw-1",
        };
        let unsealed = unsealed_json(envelope, event, &prev);
        let mac = MacKey::Plain.mac(&prev, &unsealed);
        text.push_str(&seal(&unsealed, &mac));
        text.push('\n');
        prev = mac;
    }
    let path = trail("old-and-new-summaries");
    std::fs::write(&path, text).unwrap();
    assert_eq!(
        verify(std::slice::from_ref(&path), &MacKey::Plain)
            .unwrap()
            .records,
        2
    );
    let filter = Filter {
        code: Some("suppressed".into()),
        ..Filter::default()
    };
    let review = load(&[path], &MacKey::Plain, false).unwrap();
    let shown: Vec<_> = review
        .rows
        .iter()
        .filter(|row| row.problem.is_none() && filter.matches(&row.record))
        .collect();
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0].record.http_status, Some(429));
    assert_eq!(shown[1].record.suppressed, Some(7));
    assert_eq!(shown[1].record.raw["codes"], json!({ "forbidden": 7 }));
}
