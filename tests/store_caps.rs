//! Every per-key store is bounded (README "Memory budget"), and what a full store does is
//! safe: a full lockout shield refuses changes for new agents (503
//! `lockout_state_unavailable`) and never forgets a count or a block; a full quota store
//! refuses new agents (429 `rate_limited`) and never hands out a fresh bucket; a full
//! idempotency store forgets its oldest finished outcome; a verified token with oversized
//! claims is not cached. Entry counts and caps are read from `/metrics`.

mod common;

use std::collections::HashMap;

use common::*;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sipgw::limits::config::QuotaSection;

const WRONG: &str = "Wrong~Pass11";

/// `sipgw_limit_store_entries` and `sipgw_limit_store_capacity` by store, from `/metrics`.
async fn store_metrics(h: &Harness) -> (HashMap<String, i64>, HashMap<String, i64>) {
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(format!("http://{}/metrics", h.admin_addr))
        .body(Full::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    let family = |name: &str| {
        text.lines()
            .filter_map(|line| line.strip_prefix(&format!("{name}{{store=\"")))
            .map(|rest| {
                let (store, value) = rest.split_once("\"} ").unwrap();
                (store.to_owned(), value.parse().unwrap())
            })
            .collect::<HashMap<String, i64>>()
    };
    (
        family("sipgw_limit_store_entries"),
        family("sipgw_limit_store_capacity"),
    )
}

async fn change_with_key(h: &Harness, agent: &str, key: &str, current: &str) -> Answer {
    let body = serde_json::json!({ "accountPwd": current, "newPhonePwd": NEW }).to_string();
    h.send(
        Method::POST,
        &Harness::endpoint(agent),
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn a_full_lockout_shield_refuses_new_agents_and_forgets_no_strike() {
    let h = Harness::start_with(sim_config(), |c| {
        c.lockout.max_consecutive_failures = 2;
        c.lockout.max_entries = 2;
    })
    .await;
    // agent1 is blocked, agent2 has one strike: the shield is full.
    for agent in ["agent1", "agent1", "agent2"] {
        let rejected = h.change(agent, WRONG, NEW).await;
        assert_eq!(rejected.code(), "vendor_rejected", "{}", rejected.text);
    }
    let refused = h.change("agent3", CURRENT, NEW).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.code(), "lockout_state_unavailable");
    assert_eq!(
        h.sim.update_count(),
        3,
        "the new agent never reached the vendor"
    );
    // Nothing was dropped to make room: agent1 stays blocked, agent2's strike still counts.
    assert_eq!(
        h.change("agent1", CURRENT, NEW).await.code(),
        "lockout_protection"
    );
    assert_eq!(
        h.change("agent2", WRONG, NEW).await.code(),
        "vendor_rejected"
    );
    assert_eq!(
        h.change("agent2", CURRENT, NEW).await.code(),
        "lockout_protection",
        "two strikes in a row: the second was counted on top of the first"
    );
    assert_eq!(h.sim.update_count(), 4);
    assert!(!h.sim.is_locked("agent1") && !h.sim.is_locked("agent2"));
    let (entries, capacity) = store_metrics(&h).await;
    assert_eq!(entries["lockout"], 2);
    assert_eq!(capacity["lockout"], 2);
}

#[tokio::test]
async fn a_full_agent_quota_store_refuses_new_agents_without_refilling_anyone() {
    let h = Harness::start_with(sim_config(), |c| {
        c.rate_limit.per_agent = QuotaSection {
            burst: 1,
            per_secs: 3600,
        };
        c.rate_limit.max_agents = 2;
    })
    .await;
    for agent in ["agent1", "agent2"] {
        assert_eq!(h.change(agent, CURRENT, NEW).await.status, 200);
    }
    let refused = h.change("agent3", CURRENT, NEW).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.code(), "rate_limited");
    assert_eq!(refused.retry_after(), 60, "until the next purge");
    // The spent buckets stay spent: no fresh quota for anyone.
    let spent = h.change("agent1", NEW, CURRENT).await;
    assert_eq!(spent.code(), "rate_limited");
    assert!(spent.retry_after() > 60, "{}", spent.retry_after());
    assert_eq!(h.sim.update_count(), 2);
    let (entries, capacity) = store_metrics(&h).await;
    assert_eq!(entries["agent_quotas"], 2);
    assert_eq!(capacity["agent_quotas"], 2);
}

#[tokio::test]
async fn a_full_idempotency_store_forgets_its_oldest_finished_outcome() {
    let h = Harness::start_with(sim_config(), |c| c.idempotency.max_entries = 2).await;
    for (agent, key) in [("agent1", "k1"), ("agent2", "k2"), ("agent3", "k3")] {
        let first = change_with_key(&h, agent, key, CURRENT).await;
        assert_eq!(first.status, 200, "{}", first.text);
    }
    // k3 (and k2) are remembered: the retry is the first answer, byte for byte.
    let first_k3 = change_with_key(&h, "agent3", "k3", CURRENT).await;
    assert_eq!(first_k3.headers["idempotent-replayed"], "true");
    assert_eq!(h.sim.update_count(), 3);
    // k1 was forgotten to make room: its retry is processed anew (and the vendor, whose
    // password changed, rejects it).
    let again = change_with_key(&h, "agent1", "k1", CURRENT).await;
    assert_eq!(again.code(), "vendor_rejected", "{}", again.text);
    assert!(!again.headers.contains_key("idempotent-replayed"));
    assert_eq!(h.sim.update_count(), 4);
    let (entries, capacity) = store_metrics(&h).await;
    assert_eq!(entries["idempotency"], 2);
    assert_eq!(capacity["idempotency"], 2);
}

#[tokio::test]
async fn a_token_with_oversized_claims_is_verified_but_not_cached() {
    let h = Harness::start().await;
    let long = h.idp.mint_for(&"s".repeat(600), AUDIENCE, None, true);
    for _ in 0..2 {
        let answer = h.change_as(&long, "agent1", CURRENT, NEW).await;
        assert_ne!(answer.status, 401, "{}", answer.text);
    }
    let (entries, capacity) = store_metrics(&h).await;
    assert_eq!(entries["verified_tokens"], 0, "not cached");
    assert_eq!(capacity["verified_tokens"], 10_000);
    assert_eq!(capacity["refused_tokens"], 4_096);
    assert_eq!(h.change("agent2", CURRENT, NEW).await.status, 200);
    let (entries, _) = store_metrics(&h).await;
    assert_eq!(entries["verified_tokens"], 1, "a usual token is cached");
    assert_eq!(entries["agent_turns"], 0, "no change in flight");
}
