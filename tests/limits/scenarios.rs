//! The limits scenarios, each written once for both backends (see `tests/limits.rs`). `a`
//! and `b` are the two replicas of [`Backend::pair`]; on the memory backend they are one
//! gateway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sipgw::limits::config::QuotaSection;

use crate::Backend;
use crate::common::*;

const WRONG: &str = "Wrong~Pass11";

fn quota(burst: u32, per_secs: u64) -> QuotaSection {
    QuotaSection { burst, per_secs }
}

pub async fn the_agent_quota_allows_a_burst_then_429_with_retry_after(backend: Backend) {
    let (a, b) = backend
        .pair(|c| c.rate_limit.per_agent = quota(2, 3600))
        .await;
    assert_eq!(a.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(b.change(AGENT, NEW, CURRENT).await.status, 200);
    let refused = a.change(AGENT, CURRENT, NEW).await;
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
        a.sim.update_count(),
        2,
        "the refused change never reached the vendor"
    );
    // Other agents have their own quota.
    assert_eq!(b.change("agent1", CURRENT, NEW).await.status, 200);
}

pub async fn exactly_burst_changes_pass_in_turn_or_racing(backend: Backend) {
    let (a, b) = backend
        .pair(|c| c.rate_limit.per_agent = quota(3, 3600))
        .await;
    // Sequential, alternating replicas: three pass, then both refuse.
    let mut current = CURRENT;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let via = if i % 2 == 0 { &a } else { &b };
        let new = if current == CURRENT { NEW } else { CURRENT };
        let answer = via.change(AGENT, current, new).await;
        if answer.status == 200 {
            current = new;
        }
        statuses.push(answer.status.as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429]);
    assert_eq!(a.sim.update_count(), 3);

    // Concurrent, both replicas racing for another agent: still exactly `burst` pass the
    // quota (one succeeds, the others carry a password no longer current).
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let via = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move { via.change("agent1", CURRENT, NEW).await.status.as_u16() })
        })
        .collect();
    let mut passed = 0;
    for call in calls {
        let status = call.await.unwrap();
        assert!([200, 422, 429].contains(&status), "{status}");
        passed += usize::from(status != 429);
    }
    assert_eq!(passed, 3, "exactly the burst passed the quota");
    assert_eq!(a.sim.update_count(), 6);
}

pub async fn the_agent_quota_refills_as_time_passes(backend: Backend) {
    let (a, b) = backend.pair(|c| c.rate_limit.per_agent = quota(1, 3)).await;
    assert_eq!(a.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(b.change(AGENT, NEW, CURRENT).await.status, 429);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(b.change(AGENT, NEW, CURRENT).await.status, 200);
}

pub async fn the_caller_quota_spans_agents_and_spares_other_callers(backend: Backend) {
    let (a, b) = backend
        .pair(|c| c.rate_limit.per_caller = quota(2, 3600))
        .await;
    assert_eq!(a.change("agent1", CURRENT, NEW).await.status, 200);
    assert_eq!(b.change("agent2", CURRENT, NEW).await.status, 200);
    let refused = a.change("agent3", CURRENT, NEW).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), "rate_limited");
    assert_eq!(refused.headers["ratelimit-policy"], "\"caller\";q=2;w=3600");
    let other_admin = a.idp.mint_for("other-robot", AUDIENCE, None, true);
    assert_eq!(
        b.change_as(&other_admin, "agent3", CURRENT, NEW)
            .await
            .status,
        200
    );
    assert_eq!(a.sim.update_count(), 3);
}

pub async fn two_vendor_rejections_block_the_agent_before_the_vendor_would(backend: Backend) {
    let (a, b) = backend
        .pair(|c| {
            c.lockout.max_consecutive_failures = 2;
            c.lockout.cooldown_secs = 1800;
        })
        .await;
    for _ in 0..2 {
        let answer = a.change(AGENT, WRONG, NEW).await;
        assert_eq!(answer.code(), "vendor_rejected", "{}", answer.text);
    }
    // Even with the right password the third attempt is held back, on either replica.
    let blocked = b.change(AGENT, CURRENT, NEW).await;
    assert_eq!(blocked.status, 429, "{}", blocked.text);
    assert_eq!(blocked.code(), "lockout_protection");
    let retry_after = blocked.retry_after();
    assert!((1790..=1800).contains(&retry_after), "{retry_after}");
    assert_eq!(
        a.sim.update_count(),
        2,
        "the third attempt never reached the vendor"
    );
    assert!(!a.sim.is_locked(AGENT), "the vendor never locked the agent");
    assert_eq!(a.sim.agent_password(AGENT).as_deref(), Some(CURRENT));
    // Other agents are not affected.
    assert_eq!(b.change("agent1", CURRENT, NEW).await.status, 200);
}

pub async fn a_success_resets_the_rejection_count(backend: Backend) {
    let (a, b) = backend
        .pair(|c| c.lockout.max_consecutive_failures = 2)
        .await;
    assert_eq!(a.change(AGENT, WRONG, NEW).await.code(), "vendor_rejected");
    assert_eq!(b.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(
        a.change(AGENT, WRONG, CURRENT).await.code(),
        "vendor_rejected"
    );
    // One rejection since the success: not blocked.
    assert_eq!(
        b.change(AGENT, NEW, CURRENT).await.status,
        200,
        "not blocked"
    );
    assert_eq!(a.sim.update_count(), 4);
}

pub async fn the_lockout_count_is_keyed_by_the_case_folded_account(backend: Backend) {
    let (a, b) = backend
        .pair(|c| c.lockout.max_consecutive_failures = 2)
        .await;
    // The vendor knows `agent5`; `AGENT5` is rejected (as an unknown account here), and
    // counts for the same account key.
    for _ in 0..2 {
        assert_eq!(
            a.change("AGENT5", WRONG, NEW).await.code(),
            "vendor_rejected"
        );
    }
    let blocked = b.change("agent5", CURRENT, NEW).await;
    assert_eq!(blocked.code(), "lockout_protection", "{}", blocked.text);
    assert_eq!(a.sim.update_count(), 2, "replica B never called the vendor");
}

pub async fn a_timeout_after_the_vendor_may_have_checked_counts_towards_the_shield(
    backend: Backend,
) {
    let (a, b) = backend
        .pair(|c| {
            c.lockout.max_consecutive_failures = 2;
            c.vendor.timeout_ms = 1_000;
        })
        .await;
    assert_eq!(a.change(AGENT, WRONG, NEW).await.code(), "vendor_rejected");
    // The vendor may well have rejected this one too: its answer just never came.
    a.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(5)));
    assert_eq!(b.change(AGENT, WRONG, NEW).await.code(), "vendor_timeout");
    a.sim.faults().set_update_delay(None);
    let blocked = a.change(AGENT, CURRENT, NEW).await;
    assert_eq!(blocked.code(), "lockout_protection", "{}", blocked.text);
    assert_eq!(a.sim.update_count(), 2);
}

pub async fn concurrent_changes_for_one_agent_never_overlap_at_the_vendor(backend: Backend) {
    let (a, b) = backend.pair(|_| {}).await;
    a.sim
        .faults()
        .set_update_delay(Some(Duration::from_millis(300)));
    let started = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let via = Arc::clone(if i == 1 { &b } else { &a });
            tokio::spawn(async move { via.change(AGENT, CURRENT, NEW).await.status.as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    statuses.sort_unstable();
    // One succeeds; the others, one after the other, carry a password no longer current.
    assert_eq!(statuses, vec![200, 422, 422]);
    assert_eq!(a.sim.update_count(), 3);
    // Three 300 ms vendor calls one after the other cannot take less than 900 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

pub async fn a_change_waiting_too_long_for_another_gets_409(backend: Backend) {
    let (a, b) = backend.pair(|c| c.lockout.change_wait_ms = 100).await;
    a.sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(2)));
    let first = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { a.change(AGENT, CURRENT, NEW).await.status })
    };
    while a.sim.update_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = b.change(AGENT, CURRENT, NEW).await;
    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.code(), "change_in_progress");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(a.sim.update_count(), 1);
}

pub async fn an_idempotent_retry_replays_the_first_outcome(backend: Backend) {
    let (a, b) = backend.pair(|_| {}).await;
    let first = a.change_with_key(AGENT, "retry-1", CURRENT, NEW).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let retry = b.change_with_key(AGENT, "retry-1", CURRENT, NEW).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.text, first.text, "the first outcome, byte for byte");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(
        a.sim.update_count(),
        1,
        "the retry never reached the vendor"
    );
    // A rejection is replayed too, with its problem type.
    let rejected = a.change_with_key("agent1", "retry-2", WRONG, NEW).await;
    let again = b.change_with_key("agent1", "retry-2", WRONG, NEW).await;
    assert_eq!(
        (rejected.status.as_u16(), again.status.as_u16()),
        (422, 422)
    );
    assert_eq!(again.text, rejected.text);
    assert_eq!(again.headers["content-type"], "application/problem+json");
    assert_eq!(a.sim.update_count(), 2);
    // Another body under the same key is refused, on either replica.
    let reused = b
        .change_with_key(AGENT, "retry-1", NEW, "Other~Pass3")
        .await;
    assert_eq!(reused.code(), "idempotency_key_reused", "{}", reused.text);
    assert_eq!(a.sim.update_count(), 2);
}

pub async fn a_reused_key_with_another_body_is_refused(backend: Backend) {
    let (a, b) = backend.pair(|_| {}).await;
    let first = a.change_with_key(AGENT, "k-1", CURRENT, NEW).await;
    assert_eq!(first.status, 200);
    let reused = b.change_with_key(AGENT, "k-1", NEW, "Other~Pass3").await;
    assert_eq!(reused.status, 422, "{}", reused.text);
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(a.sim.update_count(), 1);
    // The same key for another agent, or from another caller, is another entry.
    let other = b.change_with_key("agent1", "k-1", CURRENT, NEW).await;
    assert_eq!(other.status, 200);
    assert_eq!(a.sim.update_count(), 2);
}

pub async fn a_retry_while_the_first_is_in_flight_waits_for_it(backend: Backend) {
    let (a, b) = backend.pair(|_| {}).await;
    a.sim
        .faults()
        .set_update_delay(Some(Duration::from_millis(500)));
    let first = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { a.change_with_key(AGENT, "same", CURRENT, NEW).await })
    };
    while a.sim.update_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let retry = b.change_with_key(AGENT, "same", CURRENT, NEW).await;
    let first = first.await.unwrap();
    assert_eq!(
        (first.status.as_u16(), retry.status.as_u16()),
        (200, 200),
        "both see the first outcome: {}",
        retry.text
    );
    assert_eq!(retry.text, first.text);
    assert_eq!(a.sim.update_count(), 1);
}

pub async fn a_malformed_idempotency_key_is_a_400(backend: Backend) {
    let (a, _) = backend.pair(|_| {}).await;
    let long = "k".repeat(129);
    for key in [long.as_str(), "has space"] {
        let answer = a.change_with_key(AGENT, key, CURRENT, NEW).await;
        assert_eq!(answer.status, 400);
        assert_eq!(answer.code(), "invalid_request");
    }
    assert_eq!(a.sim.update_count(), 0);
}
