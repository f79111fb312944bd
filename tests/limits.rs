//! Quotas, the lockout shield, one change per agent, and `Idempotency-Key` (DESIGN.md §1,
//! §3), with the memory backend, over real sockets.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::Method;
use sipgw::limits::config::QuotaSection;

const WRONG: &str = "Wrong~Pass11";

fn json_body(current: &str, new: &str) -> String {
    serde_json::json!({ "accountPwd": current, "newPhonePwd": new }).to_string()
}

/// A change as the admin caller with an `Idempotency-Key`.
async fn change_with_key(h: &Harness, agent: &str, key: &str, current: &str, new: &str) -> Answer {
    h.send(
        Method::POST,
        &Harness::endpoint(agent),
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        json_body(current, new),
    )
    .await
}

#[tokio::test]
async fn the_agent_quota_allows_a_burst_then_429_with_retry_after() {
    let h = Harness::start_with(sim_config(), |c| {
        c.rate_limit.per_agent = QuotaSection {
            burst: 2,
            per_secs: 3600,
        };
    })
    .await;
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(h.change(AGENT, NEW, CURRENT).await.status, 200);
    let refused = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.code(), "rate_limited");
    // One change comes back every 3600 / 2 s.
    let retry_after = refused.retry_after();
    assert!((1795..=1800).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.headers["ratelimit-policy"], "\"agent\";q=2;w=3600");
    assert_eq!(
        refused.headers["ratelimit"],
        format!("\"agent\";r=0;t={retry_after}")
    );
    assert_eq!(
        h.sim.update_count(),
        2,
        "the refused change never reached the vendor"
    );
    // Other agents have their own quota.
    assert_eq!(h.change("agent1", CURRENT, NEW).await.status, 200);
}

#[tokio::test]
async fn the_agent_quota_refills_as_time_passes() {
    let h = Harness::start_with(sim_config(), |c| {
        c.rate_limit.per_agent = QuotaSection {
            burst: 1,
            per_secs: 3,
        };
    })
    .await;
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(h.change(AGENT, NEW, CURRENT).await.status, 429);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(h.change(AGENT, NEW, CURRENT).await.status, 200);
}

#[tokio::test]
async fn the_caller_quota_spans_agents_and_spares_other_callers() {
    let h = Harness::start_with(sim_config(), |c| {
        c.rate_limit.per_caller = QuotaSection {
            burst: 2,
            per_secs: 3600,
        };
    })
    .await;
    assert_eq!(h.change("agent1", CURRENT, NEW).await.status, 200);
    assert_eq!(h.change("agent2", CURRENT, NEW).await.status, 200);
    let refused = h.change("agent3", CURRENT, NEW).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), "rate_limited");
    assert_eq!(refused.headers["ratelimit-policy"], "\"caller\";q=2;w=3600");
    let other_admin = h.idp.mint_for("other-robot", AUDIENCE, None, true);
    assert_eq!(
        h.change_as(&other_admin, "agent3", CURRENT, NEW)
            .await
            .status,
        200
    );
    assert_eq!(h.sim.update_count(), 3);
}

#[tokio::test]
async fn two_vendor_rejections_block_the_agent_before_the_vendor_would() {
    let h = Harness::start_with(sim_config(), |c| {
        c.lockout.max_consecutive_failures = 2;
        c.lockout.cooldown_secs = 1800;
    })
    .await;
    for _ in 0..2 {
        let answer = h.change(AGENT, WRONG, NEW).await;
        assert_eq!(answer.code(), "vendor_rejected", "{}", answer.text);
    }
    // Even with the right password the third attempt is held back.
    let blocked = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(blocked.status, 429, "{}", blocked.text);
    assert_eq!(blocked.code(), "lockout_protection");
    let retry_after = blocked.retry_after();
    assert!((1790..=1800).contains(&retry_after), "{retry_after}");
    assert_eq!(
        h.sim.update_count(),
        2,
        "the third attempt never reached the vendor"
    );
    assert!(!h.sim.is_locked(AGENT), "the vendor never locked the agent");
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(CURRENT));
    // Other agents are not affected.
    assert_eq!(h.change("agent1", CURRENT, NEW).await.status, 200);
}

#[tokio::test]
async fn a_success_resets_the_rejection_count() {
    let h = Harness::start_with(sim_config(), |c| c.lockout.max_consecutive_failures = 2).await;
    assert_eq!(h.change(AGENT, WRONG, NEW).await.code(), "vendor_rejected");
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(
        h.change(AGENT, WRONG, CURRENT).await.code(),
        "vendor_rejected"
    );
    // One rejection since the success: not blocked.
    assert_eq!(h.change(AGENT, NEW, CURRENT).await.status, 200);
    assert_eq!(h.sim.update_count(), 4);
}

#[tokio::test]
async fn concurrent_changes_for_one_agent_never_overlap_at_the_vendor() {
    let h = Arc::new(Harness::start().await);
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_millis(300)));
    let started = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.change(AGENT, CURRENT, NEW).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap().as_u16());
    }
    statuses.sort_unstable();
    // One succeeds; the others, one after the other, carry a password no longer current.
    assert_eq!(statuses, vec![200, 422, 422]);
    assert_eq!(h.sim.update_count(), 3);
    // Three 300 ms vendor calls one after the other cannot take less than 900 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_change_waiting_too_long_for_another_gets_409() {
    let h = Arc::new(Harness::start_with(sim_config(), |c| c.lockout.change_wait_ms = 100).await);
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(2)));
    let first = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.change(AGENT, CURRENT, NEW).await.status })
    };
    while h.sim.update_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.code(), "change_in_progress");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(h.sim.update_count(), 1);
}

#[tokio::test]
async fn an_idempotent_retry_replays_the_first_outcome() {
    let h = Harness::start().await;
    let first = change_with_key(&h, AGENT, "retry-1", CURRENT, NEW).await;
    assert_eq!(first.status, 200);
    let retry = change_with_key(&h, AGENT, "retry-1", CURRENT, NEW).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.text, first.text, "the first outcome, byte for byte");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(
        h.sim.update_count(),
        1,
        "the retry never reached the vendor"
    );
    // A rejection is replayed too.
    let rejected = change_with_key(&h, "agent1", "retry-2", WRONG, NEW).await;
    let again = change_with_key(&h, "agent1", "retry-2", WRONG, NEW).await;
    assert_eq!(
        (rejected.status, again.status),
        (
            http::StatusCode::UNPROCESSABLE_ENTITY,
            http::StatusCode::UNPROCESSABLE_ENTITY
        )
    );
    assert_eq!(again.text, rejected.text);
    assert_eq!(h.sim.update_count(), 2);
}

#[tokio::test]
async fn a_reused_key_with_another_body_is_refused() {
    let h = Harness::start().await;
    assert_eq!(
        change_with_key(&h, AGENT, "k-1", CURRENT, NEW).await.status,
        200
    );
    let reused = change_with_key(&h, AGENT, "k-1", NEW, "Other~Pass3").await;
    assert_eq!(reused.status, 422, "{}", reused.text);
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(h.sim.update_count(), 1);
    // The same key for another agent, or from another caller, is another entry.
    assert_eq!(
        change_with_key(&h, "agent1", "k-1", CURRENT, NEW)
            .await
            .status,
        200
    );
    assert_eq!(h.sim.update_count(), 2);
}

#[tokio::test]
async fn a_retry_while_the_first_is_in_flight_waits_for_it() {
    let h = Arc::new(Harness::start().await);
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_millis(500)));
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { change_with_key(&h, AGENT, "same", CURRENT, NEW).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| a.status == 200),
        "both see the first outcome"
    );
    assert_eq!(answers[0].text, answers[1].text);
    assert_eq!(h.sim.update_count(), 1);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_a_400() {
    let h = Harness::start().await;
    let long = "k".repeat(129);
    for key in [long.as_str(), "has space"] {
        let answer = change_with_key(&h, AGENT, key, CURRENT, NEW).await;
        assert_eq!(answer.status, 400);
        assert_eq!(answer.code(), "invalid_request");
    }
    assert_eq!(h.sim.update_count(), 0);
}

#[tokio::test]
async fn a_timeout_after_the_vendor_may_have_checked_counts_towards_the_shield() {
    let h = Harness::start_with(sim_config(), |c| {
        c.lockout.max_consecutive_failures = 2;
        c.vendor.timeout_ms = 1_000;
    })
    .await;
    assert_eq!(h.change(AGENT, WRONG, NEW).await.code(), "vendor_rejected");
    // The vendor may well have rejected this one too: its answer just never came.
    h.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(5)));
    assert_eq!(h.change(AGENT, WRONG, NEW).await.code(), "vendor_timeout");
    h.sim.faults().set_update_delay(None);
    let blocked = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(blocked.code(), "lockout_protection", "{}", blocked.text);
    assert_eq!(h.sim.update_count(), 2);
}
