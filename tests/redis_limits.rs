//! The Redis backend (`rate_limit.backend = "redis"`) against a real `redis-server`: two
//! gateway replicas sharing one Redis and one vendor simulator, Redis killed and restarted
//! under them, and the GCRA script's arithmetic.
//!
//! Each test starts its own server (see `common::redis_server`); without `redis-server`
//! installed they are skipped, unless `SIPGW_REQUIRE_REDIS=1`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use http::Method;
use sipgw::config::FileConfig;
use sipgw::limits::config::QuotaSection;

const WRONG: &str = "Wrong~Pass11";

/// Starts a Redis, or skips the test (see the module docs).
macro_rules! redis_or_skip {
    () => {
        match RedisServer::start().await {
            Some(server) => server,
            None => return,
        }
    };
}

/// Points a gateway's limits at `url`.
fn shared(url: &str) -> impl Fn(&mut FileConfig) + Clone + use<> {
    let url = url.to_owned();
    move |c| {
        c.rate_limit.backend = "redis".into();
        c.rate_limit.redis_url = Some(url.clone());
    }
}

/// Two replicas (A, B) in front of one simulator, sharing `redis`; `tweak` applies to both.
async fn replicas(
    redis: &RedisServer,
    tweak: impl Fn(&mut FileConfig) + Clone,
) -> (Arc<Harness>, Arc<Harness>) {
    let use_redis = shared(&redis.url());
    let (t, u) = (tweak.clone(), use_redis.clone());
    let a = Harness::start_with(sim_config(), move |c| {
        u(c);
        t(c);
    })
    .await;
    let b = a
        .replica(move |c| {
            use_redis(c);
            tweak(c);
        })
        .await;
    (Arc::new(a), Arc::new(b))
}

fn json_body(current: &str, new: &str) -> String {
    serde_json::json!({ "accountPwd": current, "newPhonePwd": new }).to_string()
}

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
async fn two_replicas_admit_exactly_burst_changes_for_an_agent_between_them() {
    let redis = redis_or_skip!();
    let (a, b) = replicas(&redis, |c| {
        c.rate_limit.per_agent = QuotaSection {
            burst: 3,
            per_secs: 3600,
        };
    })
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

#[tokio::test]
async fn the_lockout_count_is_shared_between_replicas() {
    let redis = redis_or_skip!();
    let (a, b) = replicas(&redis, |c| {
        c.lockout.max_consecutive_failures = 2;
        c.lockout.cooldown_secs = 1800;
    })
    .await;
    for _ in 0..2 {
        let answer = a.change(AGENT, WRONG, NEW).await;
        assert_eq!(answer.code(), "vendor_rejected", "{}", answer.text);
    }
    let blocked = b.change(AGENT, CURRENT, NEW).await;
    assert_eq!(blocked.status, 429, "{}", blocked.text);
    assert_eq!(blocked.code(), "lockout_protection");
    let retry_after = blocked.retry_after();
    assert!((1790..=1800).contains(&retry_after), "{retry_after}");
    assert_eq!(
        a.sim.update_count(),
        2,
        "the third never reached the vendor"
    );
    assert!(!a.sim.is_locked(AGENT), "the vendor never locked the agent");
    // Other agents are not affected.
    assert_eq!(b.change("agent1", CURRENT, NEW).await.status, 200);
}

#[tokio::test]
async fn a_success_resets_the_shared_lockout_count() {
    let redis = redis_or_skip!();
    let (a, b) = replicas(&redis, |c| c.lockout.max_consecutive_failures = 2).await;
    assert_eq!(a.change(AGENT, WRONG, NEW).await.code(), "vendor_rejected");
    assert_eq!(b.change(AGENT, CURRENT, NEW).await.status, 200);
    assert_eq!(
        a.change(AGENT, WRONG, CURRENT).await.code(),
        "vendor_rejected"
    );
    assert_eq!(
        b.change(AGENT, NEW, CURRENT).await.status,
        200,
        "not blocked"
    );
}

#[tokio::test]
async fn the_shared_lockout_count_is_keyed_by_the_case_folded_account() {
    let redis = redis_or_skip!();
    let (a, b) = replicas(&redis, |c| c.lockout.max_consecutive_failures = 2).await;
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

#[tokio::test]
async fn concurrent_changes_via_two_replicas_never_overlap_at_the_vendor() {
    let redis = redis_or_skip!();
    let (a, b) = replicas(&redis, |_| {}).await;
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
    assert_eq!(statuses, vec![200, 422, 422]);
    assert_eq!(a.sim.update_count(), 3);
    // Three 300 ms vendor calls one after the other cannot take less than 900 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_idempotent_retry_via_another_replica_is_replayed() {
    let redis = redis_or_skip!();
    let (a, b) = replicas(&redis, |_| {}).await;
    let first = change_with_key(&a, AGENT, "retry-1", CURRENT, NEW).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let retry = change_with_key(&b, AGENT, "retry-1", CURRENT, NEW).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.text, first.text, "the first outcome, byte for byte");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(
        a.sim.update_count(),
        1,
        "the retry never reached the vendor"
    );
    // A rejection is replayed with its problem type.
    let rejected = change_with_key(&a, "agent1", "retry-2", WRONG, NEW).await;
    let again = change_with_key(&b, "agent1", "retry-2", WRONG, NEW).await;
    assert_eq!(
        (rejected.status.as_u16(), again.status.as_u16()),
        (422, 422)
    );
    assert_eq!(again.text, rejected.text);
    assert_eq!(again.headers["content-type"], "application/problem+json");
    // Another body under the same key is refused, on either replica.
    let reused = change_with_key(&b, AGENT, "retry-1", NEW, "Other~Pass3").await;
    assert_eq!(reused.code(), "idempotency_key_reused", "{}", reused.text);
    assert_eq!(a.sim.update_count(), 2);
}

#[tokio::test]
async fn a_retry_via_another_replica_waits_for_the_first_in_flight() {
    let redis = redis_or_skip!();
    let (a, b) = replicas(&redis, |_| {}).await;
    a.sim
        .faults()
        .set_update_delay(Some(Duration::from_millis(500)));
    let first = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { change_with_key(&a, AGENT, "same", CURRENT, NEW).await })
    };
    while a.sim.update_count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let retry = change_with_key(&b, AGENT, "same", CURRENT, NEW).await;
    let first = first.await.unwrap();
    assert_eq!(
        (first.status.as_u16(), retry.status.as_u16()),
        (200, 200),
        "{}",
        retry.text
    );
    assert_eq!(retry.text, first.text);
    assert_eq!(a.sim.update_count(), 1);
}

#[tokio::test]
async fn with_redis_down_quotas_fall_back_and_the_lockout_shield_refuses() {
    let mut redis = redis_or_skip!();
    let (a, _b) = replicas(&redis, |c| {
        c.rate_limit.per_caller = QuotaSection {
            burst: 2,
            per_secs: 3600,
        };
    })
    .await;
    assert_eq!(a.change(AGENT, CURRENT, NEW).await.status, 200);
    redis.kill();
    // The caller quota (checked before the shield) now comes from this replica's own
    // limiter, which only counts what it decided itself: two more pass it, then it binds.
    let started = Instant::now();
    for agent in [AGENT, "agent2"] {
        let refused = a.change(agent, NEW, CURRENT).await;
        assert_eq!(refused.status, 503, "{}", refused.text);
        assert_eq!(refused.code(), "lockout_state_unavailable");
        assert_eq!(refused.headers["retry-after"], "5");
    }
    let limited = a.change("agent1", CURRENT, NEW).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert_eq!(limited.code(), "rate_limited");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a dead Redis costs little: {:?}",
        started.elapsed()
    );
    assert_eq!(a.sim.update_count(), 1, "no vendor call without the shield");
    assert!(!a.sim.is_locked(AGENT));
}

#[tokio::test]
async fn when_redis_comes_back_the_replicas_share_again() {
    let mut redis = redis_or_skip!();
    let (a, b) = replicas(&redis, |c| {
        c.rate_limit.per_agent = QuotaSection {
            burst: 1,
            per_secs: 3600,
        };
    })
    .await;
    redis.kill();
    let down = a.change(AGENT, CURRENT, NEW).await;
    assert_eq!(down.code(), "lockout_state_unavailable", "{}", down.text);
    redis.restart().await;
    // Poll until A reaches Redis again (it retries a failed Redis every half second).
    let deadline = Instant::now() + Duration::from_secs(15);
    let via_a = loop {
        let answer = a.change(AGENT, CURRENT, NEW).await;
        if answer.code() != "lockout_state_unavailable" || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(via_a.status, 200, "{}", via_a.text);
    // B sees the quota A spent (B may need its own reconnection first).
    let deadline = Instant::now() + Duration::from_secs(15);
    let via_b = loop {
        let answer = b.change(AGENT, NEW, CURRENT).await;
        if answer.code() != "lockout_state_unavailable" || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(via_b.status, 429, "{}", via_b.text);
    assert_eq!(via_b.code(), "rate_limited");
    assert_eq!(a.sim.update_count(), 1);
}

mod scripts {
    //! The Lua scripts and the fallbacks, below the HTTP layer.

    use super::*;
    use std::num::NonZeroU32;

    use secrecy::SecretString;
    use sipgw::ids::{AccountFolding, CallerId};
    use sipgw::limits::config::{LimitsBackend, LimitsConfig};
    use sipgw::limits::idempotency::{Begin, Outcome, Stored};
    use sipgw::limits::lockout::LockoutPolicy;
    use sipgw::limits::quota::{QuotaSpec, Verdict};
    use sipgw::limits::redis::Shared;
    use sipgw::limits::{IdempotencyScope, Limits, Shield};

    fn spec(burst: u32, per_secs: u64) -> QuotaSpec {
        QuotaSpec {
            burst: NonZeroU32::new(burst).unwrap(),
            per: Duration::from_secs(per_secs),
        }
    }

    #[tokio::test]
    async fn the_gcra_script_allows_a_burst_then_refills_one_per_interval() {
        let redis = redis_or_skip!();
        let shared = Shared::new(&redis.url(), "t:".into()).unwrap();
        // Burst 3 per 3 s: one change earned back every second.
        let quota = spec(3, 3);
        for remaining in [2, 1, 0] {
            assert_eq!(
                shared.quota("agent:x", quota).await,
                Ok(Verdict::Allowed { remaining })
            );
        }
        let Ok(Verdict::Limited { retry_after }) = shared.quota("agent:x", quota).await else {
            panic!("the fourth is refused");
        };
        assert!(
            retry_after > Duration::from_millis(800) && retry_after <= Duration::from_secs(1),
            "{retry_after:?}"
        );
        // The key expires when the bucket would be full again (about 3 s from now).
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg("t:quota:agent:x")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((2000..=3000).contains(&ttl), "{ttl}");
        tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
        assert_eq!(
            shared.quota("agent:x", quota).await,
            Ok(Verdict::Allowed { remaining: 0 }),
            "one came back"
        );
        assert!(matches!(
            shared.quota("agent:x", quota).await,
            Ok(Verdict::Limited { .. })
        ));
        assert_eq!(
            shared.quota("agent:y", quota).await,
            Ok(Verdict::Allowed { remaining: 2 }),
            "keys are independent"
        );
    }

    #[tokio::test]
    async fn racing_clients_never_both_take_the_last_token() {
        let redis = redis_or_skip!();
        let quota = spec(5, 3600);
        let clients: Vec<Arc<Shared>> = (0..2)
            .map(|_| Arc::new(Shared::new(&redis.url(), "t:".into()).unwrap()))
            .collect();
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let shared = Arc::clone(&clients[i % 2]);
                tokio::spawn(async move { shared.quota("agent:race", quota).await })
            })
            .collect();
        let mut allowed = 0;
        for call in calls {
            allowed += usize::from(matches!(call.await.unwrap(), Ok(Verdict::Allowed { .. })));
        }
        assert_eq!(allowed, 5);
    }

    fn limits_config(url: &str) -> LimitsConfig {
        LimitsConfig {
            per_caller: spec(100, 60),
            per_agent: spec(1, 3600),
            lockout: LockoutPolicy {
                max_consecutive_failures: 2,
                cooldown: Duration::from_secs(1800),
            },
            change_wait: Duration::from_millis(200),
            idempotency_ttl: Duration::from_secs(86_400),
            idempotency_entries: 100,
            idempotency_bytes: 1 << 20,
            max_agents: 1000,
            max_callers: 1000,
            lockout_entries: 1000,
            backend: LimitsBackend::Redis {
                endpoint: sipgw::limits::redis::RedisEndpoint::plain(url),
                key_prefix: "t:".into(),
            },
            turn_lease: Duration::from_secs(15),
            account_folding: AccountFolding::CaseFolded,
        }
    }

    #[tokio::test]
    async fn while_redis_is_down_every_limit_falls_back_to_this_process() {
        let mut redis = redis_or_skip!();
        let secret = SecretString::from(APP_SECRET);
        let limits = Limits::new(&limits_config(&redis.url()), &secret).unwrap();
        let agent = limits.account_key("a1001");
        assert_eq!(limits.lockout_check(&agent).await, Shield::Open);
        assert!(!limits.degraded());
        redis.kill();
        let started = Instant::now();
        assert_eq!(limits.lockout_check(&agent).await, Shield::Unknown);
        assert!(limits.degraded());
        assert_eq!(limits.redis_transitions(), 1);
        // Quotas: this process's limiter.
        assert!(matches!(
            limits.check_agent(&agent).await,
            Verdict::Allowed { .. }
        ));
        assert!(matches!(
            limits.check_agent(&agent).await,
            Verdict::Limited { .. }
        ));
        // Turns: this process's locks still keep its own changes apart.
        let turn = limits.lock_agent(&agent).await.expect("the local turn");
        assert!(limits.lock_agent(&agent).await.is_none());
        drop(turn);
        // Idempotency: this process's store.
        let caller = CallerId::new("iss", "sub");
        let scope = IdempotencyScope {
            caller: &caller,
            agent: &agent,
            key: "k",
        };
        let Begin::Proceed(ticket) = limits.idempotency_begin(&scope, b"body").await else {
            panic!("the first proceeds");
        };
        let stored = Stored::new(Outcome::Accepted, "req-1", "success");
        ticket.complete(Some(stored.clone())).await;
        match limits.idempotency_begin(&scope, b"body").await {
            Begin::Replay(outcome) => assert_eq!(*outcome, stored),
            _ => panic!("replayed from the local store"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            limits.redis_transitions(),
            1,
            "one transition, however many calls"
        );

        redis.restart().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while limits.lockout_check(&agent).await == Shield::Unknown && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!limits.degraded());
        assert_eq!(limits.redis_transitions(), 2);
    }

    #[tokio::test]
    async fn replicas_derive_the_same_idempotency_digests() {
        let redis = redis_or_skip!();
        let secret = SecretString::from(APP_SECRET);
        let a = Limits::new(&limits_config(&redis.url()), &secret).unwrap();
        let b = Limits::new(&limits_config(&redis.url()), &secret).unwrap();
        let agent = a.account_key("a1001");
        let caller = CallerId::new("iss", "sub");
        let scope = IdempotencyScope {
            caller: &caller,
            agent: &agent,
            key: "k",
        };
        assert_eq!(a.idempotency.digest(&[b"x"]), b.idempotency.digest(&[b"x"]));
        let Begin::Proceed(ticket) = a.idempotency_begin(&scope, b"body").await else {
            panic!("the first proceeds");
        };
        // Dropped without an outcome: the claim is released and the key processed anew.
        drop(ticket);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match b.idempotency_begin(&scope, b"body").await {
                Begin::Proceed(_) => break,
                Begin::Busy if Instant::now() < deadline => continue,
                _ => panic!("the released key is processed anew"),
            }
        }
    }
}
