//! Quotas, the lockout shield, one change per agent, and `Idempotency-Key`, over real
//! sockets, against both backends.
//!
//! Every scenario in `limits/scenarios.rs` is written once and runs twice: in
//! `memory_backend`, with one gateway on the in-process backend, and in `redis_backend`,
//! with two gateway replicas sharing one real `redis-server` and one vendor simulator. A
//! scenario sends through replica A or B as it likes; on the memory backend both are the
//! same gateway, so the outcome must be the same either way. What only Redis has (Redis
//! killed and restarted under the replicas, the Lua scripts, the fallbacks) is in
//! `limits/redis_only.rs`.
//!
//! Each Redis test starts its own server (see `common::redis_server`); without
//! `redis-server` installed they are skipped, unless `SIPGW_REQUIRE_REDIS=1`.

mod common;

#[path = "limits/scenarios.rs"]
mod scenarios;

#[path = "limits/redis_only.rs"]
mod redis_only;

use std::sync::Arc;

use common::Harness;
use common::redis_server::RedisServer;
use sipgw::config::FileConfig;

/// The backend a scenario runs against; it lives as long as the scenario (a Redis server is
/// killed on drop).
pub enum Backend {
    Memory,
    Redis(RedisServer),
}

impl Backend {
    /// A fresh `redis-server`, or `None` when the test is to be skipped.
    async fn redis() -> Option<Self> {
        RedisServer::start().await.map(Self::Redis)
    }

    /// Two gateways in front of one simulator, with `tweak` applied to both: the same
    /// gateway twice on the memory backend, two replicas sharing the server on Redis.
    pub async fn pair(
        &self,
        tweak: impl Fn(&mut FileConfig) + Clone,
    ) -> (Arc<Harness>, Arc<Harness>) {
        match self {
            Self::Memory => {
                let a = Arc::new(Harness::start_with(common::sim_config(), tweak).await);
                (Arc::clone(&a), a)
            }
            Self::Redis(server) => redis_only::replicas(server, tweak).await,
        }
    }
}

/// Instantiates each named scenario once per backend.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test]
                async fn $scenario() {
                    crate::scenarios::$scenario(crate::Backend::Memory).await;
                }
            )*
        }
        mod redis_backend {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let Some(backend) = crate::Backend::redis().await else {
                        return;
                    };
                    crate::scenarios::$scenario(backend).await;
                }
            )*
        }
    };
}

on_both_backends! {
    the_agent_quota_allows_a_burst_then_429_with_retry_after,
    exactly_burst_changes_pass_in_turn_or_racing,
    the_agent_quota_refills_as_time_passes,
    the_caller_quota_spans_agents_and_spares_other_callers,
    two_vendor_rejections_block_the_agent_before_the_vendor_would,
    a_success_resets_the_rejection_count,
    the_lockout_count_is_keyed_by_the_case_folded_account,
    a_timeout_after_the_vendor_may_have_checked_counts_towards_the_shield,
    concurrent_changes_for_one_agent_never_overlap_at_the_vendor,
    a_change_waiting_too_long_for_another_gets_409,
    an_idempotent_retry_replays_the_first_outcome,
    a_reused_key_with_another_body_is_refused,
    a_retry_while_the_first_is_in_flight_waits_for_it,
    a_malformed_idempotency_key_is_a_400,
}
