//! Limits on password changes (docs/limits.md): quotas per caller and per agent, the lockout
//! shield, one change per agent at a time, and idempotent retries.
//!
//! - [`quota`]: keyed GCRA quotas (`governor`).
//! - [`lockout`]: counts vendor rejections per agent and blocks before the vendor would.
//! - [`serial`]: one change per agent at a time.
//! - [`idempotency`]: the first outcome of an `Idempotency-Key`, replayed for its retries.
//! - [`redis`]: the same, shared by every replica through Redis (`backend = "redis"`).
//!
//! Every per-agent limit is keyed by the agent's [`AgentId`] (case-folded by default,
//! `rate_limit.account_key`), never by the account as written: `A1002` and `a1002` are one
//! account to these limits, in memory and in Redis alike.
//!
//! [`Limits`] is the one API the pipeline calls, whatever the backend. With `memory`, each
//! method is the in-process check (a branch on `shared` is the only extra). With `redis`,
//! each asks Redis and, when Redis cannot be reached, falls back to the in-process state
//! (the lockout shield instead refuses: see [`Shield::Unknown`]).

pub mod config;
pub mod idempotency;
pub mod lockout;
pub mod quota;
pub mod redis;
pub mod serial;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};

use self::redis::idempotency::SharedTicket;
use self::redis::turn::SharedTurn;
use self::redis::{Shared, Unavailable};
use crate::ids::{AccountFolding, AgentId, CallerId};
use config::{LimitsBackend, LimitsConfig};
use idempotency::{Begin, IdempotencyStore, Stored, Ticket};
use lockout::{LockoutRebuild, LockoutShield};
use quota::{KeyedQuota, Verdict};
use serial::{AgentGuard, AgentLocks};

/// How often idle quota keys, old lockout records and expired idempotency entries are
/// dropped.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Every limit of one gateway process: the in-process state (the `memory` backend, and the
/// fallback of the `redis` one) and, with `redis`, the shared state.
pub struct Limits {
    /// Quota per caller, keyed by a digest of (`iss`, `sub`) ([`caller_key`]): 16 bytes
    /// whatever the token holds.
    pub per_caller: KeyedQuota<[u8; 16]>,
    /// Quota per agent.
    pub per_agent: KeyedQuota<AgentId>,
    /// Vendor rejections per agent.
    pub lockout: LockoutShield,
    /// One change per agent at a time (in this process; always taken, also with Redis).
    pub agents: AgentLocks,
    /// Remembered outcomes of `Idempotency-Key`s.
    pub idempotency: IdempotencyStore,
    /// How long a change waits for another change of the same agent (or a retry for its
    /// first request).
    pub change_wait: Duration,
    /// Lease of an agent's turn (and of an in-flight idempotency claim) in Redis.
    turn_lease: Duration,
    /// How long an idempotency outcome is remembered.
    idempotency_ttl: Duration,
    /// The shared state, with `backend = "redis"`.
    shared: Option<Arc<Shared>>,
    /// How a `userAccount` becomes its [`AgentId`].
    account_folding: AccountFolding,
    /// Until when the shield refuses every change because the counts could not be rebuilt
    /// in full at start-up (part of the audit trail unreadable).
    lockout_unknown_until: Mutex<Option<tokio::time::Instant>>,
    /// Whether the lockout counts are being rebuilt from the audit trail (start-up, before
    /// the API listener serves): `/readyz` says so.
    rebuilding: std::sync::atomic::AtomicBool,
}

/// One per-key store's size, for metrics: entries held and the most it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSize {
    /// The store (`store` label of `sipgw_limit_store_entries`).
    pub store: &'static str,
    /// Entries held now.
    pub entries: usize,
    /// The cap; `None` where the store is bounded by the requests in flight instead.
    pub capacity: Option<usize>,
}

/// What the lockout shield says about an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shield {
    /// Changes may proceed.
    Open,
    /// Blocked for this long.
    Blocked(Duration),
    /// The shared state could not be read: the change is refused (503), since letting it
    /// through could be the rejection that makes the vendor lock the agent.
    Unknown,
}

/// An agent's turn: dropping it lets the next change of that agent in.
pub struct Turn<'a> {
    /// The turn across replicas (released first); `None` with `memory`, or while Redis is
    /// unreachable.
    _shared: Option<SharedTurn>,
    /// The turn in this process.
    _local: AgentGuard<'a>,
}

/// The claim of a first request on its `Idempotency-Key`.
pub enum ChangeTicket<'a> {
    /// In this process.
    Local(Ticket<'a>),
    /// In Redis.
    Shared(SharedTicket),
}

impl ChangeTicket<'_> {
    /// Remembers `outcome` for the retries, or releases the key when `None`.
    pub async fn complete(self, outcome: Option<Stored>) {
        match self {
            Self::Local(ticket) => ticket.complete(outcome),
            Self::Shared(ticket) => ticket.complete(outcome).await,
        }
    }
}

impl Limits {
    /// Empty limits as configured. With Redis, idempotency digests are keyed with a key
    /// derived from `app_secret`, the same on every replica.
    pub fn new(config: &LimitsConfig, app_secret: &SecretString) -> ::redis::RedisResult<Self> {
        let (shared, idempotency) = match &config.backend {
            LimitsBackend::Memory => (
                None,
                IdempotencyStore::new(config.idempotency_ttl, config.idempotency_entries)
                    .with_budget(config.idempotency_bytes),
            ),
            LimitsBackend::Redis {
                endpoint,
                key_prefix,
            } => (
                Some(Arc::new(Shared::connect(endpoint, key_prefix.clone())?)),
                IdempotencyStore::with_key(
                    config.idempotency_ttl,
                    config.idempotency_entries,
                    shared_digest_key(app_secret),
                )
                .with_budget(config.idempotency_bytes),
            ),
        };
        Ok(Self {
            per_caller: KeyedQuota::new(config.per_caller).with_max_keys(config.max_callers),
            per_agent: KeyedQuota::new(config.per_agent).with_max_keys(config.max_agents),
            lockout: LockoutShield::new(config.lockout).with_max_agents(config.lockout_entries),
            agents: AgentLocks::default(),
            idempotency,
            change_wait: config.change_wait,
            turn_lease: config.turn_lease,
            idempotency_ttl: config.idempotency_ttl,
            shared,
            account_folding: config.account_folding,
            lockout_unknown_until: Mutex::new(None),
            rebuilding: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The id that keys every per-agent limit of `account` (a `userAccount`, or an audit
    /// record's `agent`), folded as `rate_limit.account_key` says.
    pub fn account_key(&self, account: &str) -> AgentId {
        AgentId::new(account, self.account_folding)
    }

    /// Whether the shared state is unreachable and the local fallbacks are in use (for
    /// `/readyz`: degraded, still serving).
    pub fn degraded(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.health().degraded())
    }

    /// Whether the shared Redis refused our credentials at the last attempt (for `/readyz`:
    /// not ready, an operator must act).
    pub fn redis_credentials_refused(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.health().credentials_refused())
    }

    /// At start-up, with Redis: `Err` with Redis's reason when it refuses our credentials.
    /// An unreachable Redis is no error (the replica starts on its fallbacks).
    pub async fn check_redis_credentials(&self) -> Result<(), String> {
        match &self.shared {
            Some(shared) => shared.check_credentials().await,
            None => Ok(()),
        }
    }

    /// The in-process stores' sizes (docs/operating.md, "Memory budget").
    pub fn store_sizes(&self) -> [StoreSize; 5] {
        let size = |store, entries, capacity| StoreSize {
            store,
            entries,
            capacity,
        };
        [
            size(
                "agent_quotas",
                self.per_agent.len(),
                Some(self.per_agent.max_keys()),
            ),
            size(
                "caller_quotas",
                self.per_caller.len(),
                Some(self.per_caller.max_keys()),
            ),
            size(
                "lockout",
                self.lockout.len(),
                Some(self.lockout.max_agents()),
            ),
            size("agent_turns", self.agents.len(), None),
            size(
                "idempotency",
                self.idempotency.len(),
                Some(self.idempotency.capacity()),
            ),
        ]
    }

    /// Transitions between reachable and degraded since start-up (for a metric).
    pub fn redis_transitions(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.health().transitions())
    }

    /// Takes one change from the caller's quota.
    pub async fn check_caller(&self, caller: &CallerId) -> Verdict {
        if let Some(shared) = &self.shared
            && let Ok(verdict) = shared
                .quota(&format!("caller:{}", caller.key()), self.per_caller.spec())
                .await
        {
            return verdict;
        }
        self.per_caller.check(&caller_key(caller))
    }

    /// Takes one change from the agent's quota.
    pub async fn check_agent(&self, agent: &AgentId) -> Verdict {
        if let Some(shared) = &self.shared
            && let Ok(verdict) = shared
                .quota(&format!("agent:{}", agent.as_str()), self.per_agent.spec())
                .await
        {
            return verdict;
        }
        self.per_agent.check(agent)
    }

    /// Takes over the lockout counts rebuilt from the audit trail at start-up; returns how
    /// many agents are blocked. When part of the trail could not be read (`complete` is
    /// false), a count may be missing, so the shield refuses every change (503
    /// `lockout_state_unavailable`, as when Redis cannot be read) for one cool-down: by
    /// then every block it could have missed has ended.
    pub fn restore_lockout(&self, rebuilt: LockoutRebuild, complete: bool) -> usize {
        let now = tokio::time::Instant::now();
        if !complete {
            *self
                .lockout_unknown_until
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(now + self.lockout.policy().cooldown);
        }
        self.lockout.restore(rebuilt, SystemTime::now(), now)
    }

    /// Marks the start-up rebuild of the lockout counts as running or done.
    pub fn set_rebuilding(&self, running: bool) {
        self.rebuilding
            .store(running, std::sync::atomic::Ordering::Release);
    }

    /// Whether the lockout counts are being rebuilt from the audit trail.
    pub fn rebuilding(&self) -> bool {
        self.rebuilding.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the shield refuses every change because its counts could not be rebuilt.
    pub fn lockout_unknown(&self) -> bool {
        self.lockout_unknown_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| until > tokio::time::Instant::now())
    }

    /// Whether the lockout shield lets a change for `agent` through.
    pub async fn lockout_check(&self, agent: &AgentId) -> Shield {
        // A full shield could not record this agent's rejection: refuse rather than let a
        // change through whose strike would not be counted.
        if !self.lockout.admits(agent.as_str()) {
            tracing::debug!(
                agent = agent.as_str(),
                "lockout shield full: change refused"
            );
            return Shield::Unknown;
        }
        if self.lockout_unknown() {
            return Shield::Unknown;
        }
        // This replica's own count is always kept too (see `record_rejection`), so a
        // rejection that Redis missed still counts here.
        let local = self
            .lockout
            .check(agent.as_str(), tokio::time::Instant::now())
            .err();
        let shared = match &self.shared {
            None => None,
            Some(shared) => match shared.lockout_check(agent).await {
                Ok(blocked) => blocked,
                Err(Unavailable) => return Shield::Unknown,
            },
        };
        local.max(shared).map_or(Shield::Open, Shield::Blocked)
    }

    /// The vendor accepted a change for `agent`: its count starts over.
    pub async fn record_success(&self, agent: &AgentId) {
        self.lockout.record_success(agent.as_str());
        if let Some(shared) = &self.shared
            && shared.lockout_success(agent).await.is_err()
        {
            tracing::warn!(
                agent = agent.as_str(),
                "lockout count could not be reset in redis"
            );
        }
    }

    /// The vendor rejected a change for `agent`; whether the agent is now blocked.
    pub async fn record_rejection(&self, agent: &AgentId) -> bool {
        let now = tokio::time::Instant::now();
        // Always counted here as well: a rejection that Redis cannot record (a blip) is
        // then not lost, and this replica blocks on its own count.
        let local = self.lockout.record_rejection(agent.as_str(), now);
        match &self.shared {
            None => local,
            Some(shared) => match shared.lockout_reject(agent, self.lockout.policy()).await {
                Ok(blocked) => blocked || local,
                Err(Unavailable) => {
                    tracing::warn!(
                        agent = agent.as_str(),
                        "vendor rejection could not be counted in redis; counted locally"
                    );
                    local
                }
            },
        }
    }

    /// Waits up to `change_wait` for `agent`'s turn (in this process, then across replicas);
    /// `None` when another change still holds it.
    pub async fn lock_agent(&self, agent: &AgentId) -> Option<Turn<'_>> {
        let deadline = tokio::time::Instant::now() + self.change_wait;
        let local = self.agents.lock(agent.as_str(), self.change_wait).await?;
        let shared = match &self.shared {
            None => None,
            Some(shared) => match shared.take_turn(agent, self.turn_lease, deadline).await {
                Ok(Some(turn)) => Some(turn),
                Ok(None) => return None,
                // Unreachable: this process's lock still keeps its own changes apart.
                Err(Unavailable) => None,
            },
        };
        Some(Turn {
            _shared: shared,
            _local: local,
        })
    }

    /// Looks up `scope` for a request with `body`, waiting up to `change_wait` for a first
    /// request still in flight.
    pub async fn idempotency_begin(
        &self,
        scope: &IdempotencyScope<'_>,
        body: &[u8],
    ) -> Begin<ChangeTicket<'_>> {
        let scope = scope.parts();
        if let Some(shared) = &self.shared {
            let key = self.idempotency.digest(&scope.map(str::as_bytes));
            let fingerprint = self.idempotency.digest(&[body]);
            let deadline = tokio::time::Instant::now() + self.change_wait;
            let begun = shared
                .idempotency_begin(
                    &key,
                    &fingerprint,
                    self.turn_lease,
                    self.idempotency_ttl,
                    deadline,
                )
                .await;
            if let Ok(begin) = begun {
                return map_ticket(begin, ChangeTicket::Shared);
            }
        }
        let begin = self.idempotency.begin(scope, body, self.change_wait).await;
        map_ticket(begin, ChangeTicket::Local)
    }

    /// Keeps memory bounded: drops what no longer holds information, every minute. Runs
    /// until its task is dropped. (Redis keys expire on their own.)
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

/// Whose retries an `Idempotency-Key` covers: one caller and one agent (docs/api.md).
pub struct IdempotencyScope<'a> {
    /// The caller.
    pub caller: &'a CallerId,
    /// The agent, by its canonical key: a retry that spells the account in another case
    /// is the same change.
    pub agent: &'a AgentId,
    /// The `Idempotency-Key` header.
    pub key: &'a str,
}

impl IdempotencyScope<'_> {
    /// The parts digested into the store's key, in a fixed order.
    fn parts(&self) -> [&str; 4] {
        [
            self.caller.iss(),
            self.caller.sub(),
            self.agent.as_str(),
            self.key,
        ]
    }
}

fn map_ticket<T, U>(begin: Begin<T>, f: impl FnOnce(T) -> U) -> Begin<U> {
    match begin {
        Begin::Proceed(ticket) => Begin::Proceed(f(ticket)),
        Begin::Replay(stored) => Begin::Replay(stored),
        Begin::Reused => Begin::Reused,
        Begin::Busy => Begin::Busy,
    }
}

/// The per-caller quota's key: SHA-256 of (`iss`, `sub`), length-prefixed, cut to 16 bytes
/// (a collision among 2^64 callers would be needed to share a quota by chance, and callers
/// cannot pick their `sub`: the IdP signs it).
pub fn caller_key(caller: &CallerId) -> [u8; 16] {
    let (iss, sub) = (caller.iss(), caller.sub());
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(&(iss.len() as u64).to_be_bytes());
    context.update(iss.as_bytes());
    context.update(sub.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&context.finish().as_ref()[..16]);
    key
}

/// HMAC-SHA256(app secret, "sipgw idempotency v1"): the idempotency digest key every
/// replica derives alike, without a further secret to distribute.
fn shared_digest_key(app_secret: &SecretString) -> hmac::Key {
    let derive = hmac::Key::new(hmac::HMAC_SHA256, app_secret.expose_secret().as_bytes());
    let tag = hmac::sign(&derive, b"sipgw idempotency v1");
    hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref())
}
