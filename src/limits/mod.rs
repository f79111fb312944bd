//! Limits on password changes (DESIGN.md §3): quotas per caller and per agent, the lockout
//! shield, one change per agent at a time, and idempotent retries.
//!
//! - [`quota`]: keyed GCRA quotas (`governor`).
//! - [`lockout`]: counts vendor rejections per agent and blocks before the vendor would.
//! - [`serial`]: one change per agent at a time.
//! - [`idempotency`]: the first outcome of an `Idempotency-Key`, replayed for its retries.

pub mod idempotency;
pub mod lockout;
pub mod quota;
pub mod serial;

use std::sync::Arc;
use std::time::Duration;

use crate::config::LimitsConfig;
use idempotency::IdempotencyStore;
use lockout::LockoutShield;
use quota::KeyedQuota;
use serial::AgentLocks;

/// How often idle quota keys, old lockout records and expired idempotency entries are
/// dropped.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Every limit of one gateway process (the `memory` backend).
pub struct Limits {
    /// Quota per caller, keyed by (`iss`, `sub`).
    pub per_caller: KeyedQuota<(String, String)>,
    /// Quota per agent.
    pub per_agent: KeyedQuota<String>,
    /// Vendor rejections per agent.
    pub lockout: LockoutShield,
    /// One change per agent at a time.
    pub agents: AgentLocks,
    /// Remembered outcomes of `Idempotency-Key`s.
    pub idempotency: IdempotencyStore,
    /// How long a change waits for another change of the same agent (or a retry for its
    /// first request).
    pub change_wait: Duration,
}

impl Limits {
    /// Empty limits as configured.
    pub fn new(config: &LimitsConfig) -> Self {
        Self {
            per_caller: KeyedQuota::new(config.per_caller),
            per_agent: KeyedQuota::new(config.per_agent),
            lockout: LockoutShield::new(config.lockout),
            agents: AgentLocks::default(),
            idempotency: IdempotencyStore::new(config.idempotency_ttl, config.idempotency_entries),
            change_wait: config.change_wait,
        }
    }

    /// Keeps memory bounded: drops what no longer holds information, every minute. Runs
    /// until its task is dropped.
    pub async fn run_janitor(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.per_caller.purge();
            self.per_agent.purge();
            self.lockout.purge(tokio::time::Instant::now());
            self.idempotency.purge();
        }
    }
}
