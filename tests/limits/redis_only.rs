//! What only the Redis backend has: Redis killed and restarted under two replicas, the GCRA
//! and idempotency scripts below the HTTP layer, and the fallbacks while Redis is away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sipgw::config::FileConfig;
use sipgw::limits::config::QuotaSection;

use crate::common::redis_server::RedisServer;
use crate::common::*;

/// Starts a Redis, or skips the test (see `tests/limits.rs`).
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
pub async fn replicas(
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
