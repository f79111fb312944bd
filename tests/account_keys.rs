//! One account, one key (issue 11, finding 3): every per-agent limit is keyed by the
//! canonical account id (`rate_limit.account_key`, case-folded by default), while the
//! vendor and the audit trail see the account as written; self-service matching of the
//! agent claim stays exact unless `auth.agent_claim_match` says otherwise. Over real
//! sockets, with the memory backend.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::Method;
use serde_json::{Value, json};
use sipgw::limits::config::QuotaSection;

const WRONG: &str = "Wrong~Pass11";
/// The vendor's account, spelled in upper case; the tests also send it as `a1002`.
const UPPER: &str = "A1002";
const LOWER: &str = "a1002";

/// The default simulator plus `A1002` and `ALICE`.
fn sim() -> sipgw_dev::sim::SimConfig {
    let mut sim = sim_config();
    sim.agents.push((UPPER.into(), CURRENT.into()));
    sim.agents.push(("ALICE".into(), CURRENT.into()));
    sim
}

/// The `userAccount` the vendor received in its `n`th update call (either body shape).
fn vendor_account(h: &Harness, n: usize) -> String {
    let body = &h.sim.update_requests()[n].body;
    let fields = body.get("requestParam").unwrap_or(body);
    fields["userAccount"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn change_with_key(h: &Harness, agent: &str, key: &str) -> Answer {
    h.send(
        Method::POST,
        &Harness::endpoint(agent),
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string(),
    )
    .await
}

#[tokio::test]
async fn two_spellings_share_one_lockout_count() {
    let h = Harness::start_with(sim(), |c| c.lockout.max_consecutive_failures = 2).await;
    for _ in 0..2 {
        let answer = h.change(UPPER, WRONG, NEW).await;
        assert_eq!(answer.code(), "vendor_rejected", "{}", answer.text);
    }
    let blocked = h.change(LOWER, CURRENT, NEW).await;
    assert_eq!(blocked.status, 429, "{}", blocked.text);
    assert_eq!(blocked.code(), "lockout_protection");
    assert_eq!(h.sim.update_count(), 2, "the vendor saw no third call");
    assert!(!h.sim.is_locked(UPPER));
}

#[tokio::test]
async fn two_spellings_share_one_quota() {
    let h = Harness::start_with(sim(), |c| {
        c.rate_limit.per_agent = QuotaSection {
            burst: 1,
            per_secs: 3600,
        };
    })
    .await;
    assert_eq!(h.change(UPPER, CURRENT, NEW).await.status, 200);
    let refused = h.change(LOWER, NEW, CURRENT).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.code(), "rate_limited");
    assert_eq!(h.sim.update_count(), 1);
}

#[tokio::test]
async fn exact_account_keys_keep_spellings_apart_when_configured() {
    let h = Harness::start_with(sim(), |c| {
        c.rate_limit.account_key = "exact".into();
        c.rate_limit.per_agent = QuotaSection {
            burst: 1,
            per_secs: 3600,
        };
    })
    .await;
    assert_eq!(h.change(UPPER, CURRENT, NEW).await.status, 200);
    // Its own bucket: it reaches the vendor, which knows no `a1002`.
    let other = h.change(LOWER, NEW, CURRENT).await;
    assert_eq!(other.code(), "vendor_rejected", "{}", other.text);
    assert_eq!(h.sim.update_count(), 2);
}

#[tokio::test]
async fn two_spellings_take_turns_as_one_agent() {
    // No waiting for a turn: a second change of the same account while the first is at
    // the vendor is refused at once.
    let h = Arc::new(Harness::start_with(sim(), |c| c.lockout.change_wait_ms = 0).await);
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(5)));
    let first = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.change(UPPER, CURRENT, NEW).await.status })
    };
    // The first holds the agent's turn once the vendor has its call.
    while h.sim.update_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = h.change(LOWER, CURRENT, NEW).await;
    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.code(), "change_in_progress");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(h.sim.update_count(), 1);
}

#[tokio::test]
async fn the_vendor_and_the_audit_trail_see_the_account_as_written() {
    let trail = fresh_dir("account-keys").join("audit.jsonl");
    let path = trail.display().to_string();
    let h = Harness::start_with(sim(), |c| c.audit.path = path).await;
    assert_eq!(h.change(UPPER, CURRENT, NEW).await.status, 200);
    assert_eq!(vendor_account(&h, 0), UPPER);
    let records: Vec<Value> = std::fs::read_to_string(&trail)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let agents: Vec<&str> = records.iter().filter_map(|r| r["agent"].as_str()).collect();
    assert!(!agents.is_empty(), "{records:?}");
    assert!(agents.iter().all(|a| *a == UPPER), "{agents:?}");
}

#[tokio::test]
async fn an_idempotent_retry_in_another_spelling_is_replayed() {
    let h = Harness::start_with(sim(), |_| {}).await;
    let first = change_with_key(&h, UPPER, "retry-case").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let retry = change_with_key(&h, LOWER, "retry-case").await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.text, first.text);
    assert_eq!(
        h.sim.update_count(),
        1,
        "the retry never reached the vendor"
    );
}

/// A self-service token whose `preferred_username` is `alice`.
fn alice(h: &Harness) -> String {
    h.idp.mint_for("alice-sub", AUDIENCE, Some("alice"), false)
}

#[tokio::test]
async fn self_service_matches_the_claim_exactly_by_default() {
    let h = Harness::start_with(sim(), |_| {}).await;
    let answer = h.change_as(&alice(&h), "ALICE", CURRENT, NEW).await;
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert_eq!(answer.code(), "forbidden");
    assert_eq!(h.sim.update_count(), 0);
}

#[tokio::test]
async fn self_service_may_ignore_case_when_configured() {
    let h = Harness::start_with(sim(), |c| {
        c.auth.agent_claim_match = "case_insensitive".into();
    })
    .await;
    let answer = h.change_as(&alice(&h), "ALICE", CURRENT, NEW).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(vendor_account(&h, 0), "ALICE");
    // Still only its own account.
    let other = h.change_as(&alice(&h), UPPER, CURRENT, NEW).await;
    assert_eq!(other.status, 403, "{}", other.text);
}
