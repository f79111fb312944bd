//! The audit trail end to end, through the gateway (docs/audit.md).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use http::Method;
use serde_json::Value;
use sipgw::audit::chain::MacKey;
use sipgw::audit::verify::verify;
use sipgw::limits::config::QuotaSection;

const WRONG: &str = "Wrong~Pass11";

fn audit_path(dir: &Path) -> PathBuf {
    dir.join("sipgw-audit.jsonl")
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (kind, code) of each record.
fn kinds_and_codes(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_mixed_run_leaves_exactly_its_records_and_no_secret() {
    let dir = fresh_dir("mixed");
    let path = audit_path(&dir);
    let key_file = dir.join("hmac.key");
    std::fs::write(&key_file, "audit-hmac-key-for-the-mixed-run-0123").unwrap();
    let (p, k) = (path.display().to_string(), key_file.display().to_string());
    let h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        c.audit.hmac_key_file = Some(k);
        c.rate_limit.per_agent = QuotaSection {
            burst: 2,
            per_secs: 3600,
        };
        c.vendor.timeout_ms = 1_500;
    })
    .await;
    let alice = h.idp.mint_for("alice", AUDIENCE, Some("agent7"), false);

    // 1. success, 2. vendor rejection, 3. 401, 4. 403, 5. 400, 6. 429, 7. vendor timeout.
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(
        h.change(AGENT, WRONG, CURRENT).await.code(),
        "vendor_rejected"
    );
    assert_eq!(
        h.change_as("not.a.token", AGENT, CURRENT, NEW).await.status,
        401
    );
    assert_eq!(
        h.change_as(&alice, "agent8", CURRENT, NEW).await.status,
        403
    );
    assert_eq!(h.change(AGENT, NEW, "weak").await.code(), "password_policy");
    assert_eq!(h.change(AGENT, NEW, CURRENT).await.code(), "rate_limited");
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(5)));
    assert_eq!(
        h.change("agent1", CURRENT, NEW).await.code(),
        "vendor_timeout"
    );

    let all = records(&path);
    let expected: Vec<(String, String)> = [
        ("attempt", "attempt"),
        ("outcome", "ok"),
        ("attempt", "attempt"),
        ("outcome", "vendor_rejected"),
        ("outcome", "unauthenticated"),
        ("outcome", "forbidden"),
        ("outcome", "password_policy"),
        ("outcome", "rate_limited"),
        ("attempt", "attempt"),
        ("outcome", "vendor_timeout"),
    ]
    .iter()
    .map(|(k, c)| (k.to_string(), c.to_string()))
    .collect();
    assert_eq!(kinds_and_codes(&all), expected);
    // Fields as docs/audit.md lists them.
    let ok = &all[1];
    assert_eq!(ok["v"], 2);
    assert_eq!(ok["instance"], sipgw::audit::config::host_name());
    assert_eq!(ok["seq"], 2);
    assert_eq!(ok["agent"], AGENT);
    assert_eq!(ok["httpStatus"], 200);
    assert_eq!(ok["caller"]["iss"], ISSUER);
    assert_eq!(ok["caller"]["sub"], "ops-robot");
    assert_eq!(ok["caller"]["clientIp"], "127.0.0.1");
    assert_eq!(ok["vendor"]["status"], 200);
    assert_eq!(ok["vendor"]["resultCode"], "0");
    assert_eq!(ok["requestId"], all[0]["requestId"]);
    assert_eq!(all[3]["vendor"]["resultCode"], "1");
    assert!(
        all[4]["caller"]["sub"].is_null(),
        "no caller before authentication"
    );
    assert_eq!(
        all[5]["caller"]["sub"], "alice",
        "a refused caller is named"
    );
    // A timeout's outcome is unknown: the vendor status is null.
    assert!(all[9]["vendor"]["status"].is_null());
    assert_eq!(all[9]["httpStatus"], 504);

    let key = MacKey::from_file_bytes(&std::fs::read(&key_file).unwrap()).unwrap();
    assert_eq!(
        verify(std::slice::from_ref(&path), &key).unwrap().records,
        10
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let access_token = h.sim.update_requests()[0].headers["authorization"]
        .to_str()
        .unwrap()[7..]
        .to_owned();
    for secret in [
        CURRENT,
        NEW,
        WRONG,
        "weak",
        APP_SECRET,
        h.admin_token.as_str(),
        alice.as_str(),
        access_token.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} is in the audit trail");
    }
}

#[tokio::test]
async fn a_trail_that_cannot_be_written_refuses_changes_before_the_vendor() {
    let h = Harness::start_with(sim_config(), |c| c.audit.path = "/dev/full".into()).await;
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 503, "{}", answer.text);
    assert_eq!(answer.code(), "audit_unavailable");
    assert_eq!(h.sim.update_count(), 0, "the vendor was never called");
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(CURRENT));
}

#[tokio::test]
async fn a_flood_of_bad_tokens_writes_a_bounded_number_of_records() {
    let dir = fresh_dir("flood");
    let path = audit_path(&dir);
    let p = path.display().to_string();
    let h = Harness::start_with(sim_config(), move |c| c.audit.path = p).await;
    for i in 0..1000 {
        let answer = h
            .change_as(&format!("bad.token.{i}"), AGENT, CURRENT, NEW)
            .await;
        assert_eq!(answer.status, 401);
    }
    let all = records(&path);
    assert!(all.len() <= 12, "{} records for 1000 bad tokens", all.len());
    assert!(all.len() >= 10, "the first ones are recorded");
    assert!(all.iter().all(|r| r["code"] == "unauthenticated"));
}

#[tokio::test]
async fn a_caller_past_its_quota_writes_a_bounded_number_of_records() {
    let dir = fresh_dir("quota-flood");
    let path = audit_path(&dir);
    let p = path.display().to_string();
    let mut h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        c.rate_limit.per_caller = QuotaSection {
            burst: 1,
            per_secs: 3600,
        };
    })
    .await;
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    for _ in 0..200 {
        assert_eq!(
            h.change("agent0", CURRENT, NEW).await.code(),
            "rate_limited"
        );
    }
    h.shutdown().await;
    let all = records(&path);
    // The change (attempt + outcome), the first 10 refusals, one summary of the rest.
    assert_eq!(all.len(), 13, "{all:?}");
    let refused = all.iter().filter(|r| r["code"] == "rate_limited").count();
    assert_eq!(refused, 10);
    let summary = all.last().unwrap();
    assert_eq!(summary["kind"], "summary", "{summary}");
    assert_eq!(summary["suppressed"], 190);
    assert_eq!(summary["codes"], serde_json::json!({ "rate_limited": 190 }));
    // The summary names the caller, so the flood is on record with its source.
    assert_eq!(summary["caller"]["sub"], "ops-robot", "{summary}");
    assert_eq!(summary["caller"]["clientIp"], "127.0.0.1");
    assert_eq!(verify(&[path], &MacKey::Plain).unwrap().records, 13);
}

#[tokio::test]
async fn per_agent_quota_refusals_are_flood_controlled_per_caller() {
    // One caller, one agent past its quota: like every refusal that changed nothing, the
    // first 10 per minute are recorded in full, then one summary names the caller.
    let dir = fresh_dir("agent-quota");
    let path = audit_path(&dir);
    let p = path.display().to_string();
    let mut h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        c.rate_limit.per_agent = QuotaSection {
            burst: 1,
            per_secs: 3600,
        };
    })
    .await;
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    for _ in 0..30 {
        assert_eq!(h.change(AGENT, NEW, CURRENT).await.code(), "rate_limited");
    }
    h.shutdown().await;
    let all = records(&path);
    let refused: Vec<&Value> = all.iter().filter(|r| r["code"] == "rate_limited").collect();
    assert_eq!(refused.len(), 10, "{all:?}");
    assert!(refused.iter().all(|r| r["agent"] == AGENT));
    let summary = all.last().unwrap();
    assert_eq!(summary["caller"]["sub"], "ops-robot", "{summary}");
    assert_eq!(summary["codes"], serde_json::json!({ "rate_limited": 20 }));
}

#[tokio::test]
async fn a_restart_continues_the_chain() {
    let dir = fresh_dir("restart");
    let path = audit_path(&dir);
    for round in 0..2 {
        let p = path.display().to_string();
        let mut h = Harness::start_with(sim_config(), move |c| c.audit.path = p).await;
        assert_eq!(
            h.change(&format!("agent{round}"), CURRENT, NEW)
                .await
                .status,
            200
        );
        h.shutdown().await;
    }
    let all = records(&path);
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(all[2]["prev"], all[1]["mac"]);
    assert_eq!(verify(&[path], &MacKey::Plain).unwrap().records, 4);
}

#[tokio::test]
async fn requests_outside_the_endpoint_are_not_audited() {
    let dir = fresh_dir("other-paths");
    let path = audit_path(&dir);
    let p = path.display().to_string();
    let h = Harness::start_with(sim_config(), move |c| c.audit.path = p).await;
    assert_eq!(h.send(Method::GET, "/metrics", &[], "").await.status, 404);
    assert_eq!(
        h.send(Method::GET, &Harness::endpoint(AGENT), &[], "")
            .await
            .status,
        405
    );
    let all = records(&path);
    assert_eq!(
        kinds_and_codes(&all),
        vec![("outcome".to_owned(), "method_not_allowed".to_owned())]
    );
}

#[tokio::test]
async fn a_flood_of_garbage_without_a_token_is_bounded_too() {
    let dir = fresh_dir("garbage");
    let path = audit_path(&dir);
    let p = path.display().to_string();
    let h = Harness::start_with(sim_config(), move |c| c.audit.path = p).await;
    for _ in 0..300 {
        let answer = h
            .send_raw(
                Method::POST,
                &Harness::endpoint(AGENT),
                &[("content-type", "application/json")],
                "{garbage",
            )
            .await;
        // The token is checked before the body (docs/api.md).
        assert_eq!(answer.status, 401);
    }
    let all = records(&path);
    assert!(
        all.len() <= 12,
        "{} records for 300 unauthenticated requests",
        all.len()
    );
}

#[tokio::test]
async fn shutdown_writes_the_summary_of_an_open_flood_window() {
    let dir = fresh_dir("shutdown-summary");
    let path = audit_path(&dir);
    let p = path.display().to_string();
    let mut h = Harness::start_with(sim_config(), move |c| c.audit.path = p).await;
    for i in 0..25 {
        assert_eq!(
            h.change_as(&format!("bad.{i}.x"), AGENT, CURRENT, NEW)
                .await
                .status,
            401
        );
    }
    h.shutdown().await;
    let all = records(&path);
    let summary = all.last().unwrap();
    assert_eq!(summary["kind"], "summary", "{summary}");
    assert_eq!(summary["suppressed"], 15);
    assert_eq!(summary["caller"]["clientIp"], "127.0.0.1");
    assert_eq!(verify(&[path], &MacKey::Plain).unwrap().records, 11);
}
