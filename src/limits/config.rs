//! `[rate_limit]`, `[lockout]` and `[idempotency]`: the sections as the file holds them and
//! validated together ([`LimitsConfig`]); the Redis keys of `[rate_limit]` are checked in
//! `backend`. Every error names its key.

mod backend;

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lockout::LockoutPolicy;
use super::quota::QuotaSpec;
use super::redis::RedisEndpoint;
use crate::config_key::{InvalidKey, in_range, invalid, millis, secs};
use crate::ids::AccountFolding;

/// Added to `server.request_timeout_ms` for the lease of an agent's turn in Redis.
const TURN_LEASE_MARGIN: Duration = Duration::from_secs(5);

/// A quota: `{ burst = N, per_secs = S }`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSection {
    /// Changes allowed at once.
    pub burst: u32,
    /// Seconds for an empty bucket to fill again.
    pub per_secs: u64,
}

/// `[rate_limit]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSection {
    /// `"memory"` (this process) or `"redis"` (shared by replicas).
    pub backend: String,
    /// Redis URL for `backend = "redis"`: `redis://` or `rediss://` (TLS), no password.
    pub redis_url: Option<String>,
    /// The Redis ACL user to log in as (with `redis_password_file`).
    pub redis_username: Option<String>,
    /// File holding the Redis password (`requirepass`, or the ACL user's).
    pub redis_password_file: Option<String>,
    /// PEM CA bundle that signed a `rediss://` server's certificate (replaces the public
    /// roots for Redis).
    pub redis_ca_file: Option<String>,
    /// Prefix of every Redis key.
    pub key_prefix: String,
    /// Per agent (`userAccount`).
    pub per_agent: QuotaSection,
    /// Per caller (`iss` + `sub`).
    pub per_caller: QuotaSection,
    /// Most agents whose quota is tracked in this process; new agents are refused beyond.
    pub max_agents: usize,
    /// Most callers whose quota is tracked in this process; new callers are refused beyond.
    pub max_callers: usize,
    /// How `userAccount` keys every per-agent limit: `"case_folded"` or `"exact"`.
    pub account_key: String,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            backend: "memory".into(),
            redis_url: None,
            redis_username: None,
            redis_password_file: None,
            redis_ca_file: None,
            key_prefix: "sipgw:".into(),
            per_agent: QuotaSection {
                burst: 3,
                per_secs: 1800,
            },
            per_caller: QuotaSection {
                burst: 30,
                per_secs: 60,
            },
            max_agents: 100_000,
            max_callers: 10_000,
            account_key: "case_folded".into(),
        }
    }
}

/// `[lockout]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutSection {
    /// Vendor rejections in a row that block the agent (the vendor locks at 3).
    pub max_consecutive_failures: u32,
    /// How long the block lasts.
    pub cooldown_secs: u64,
    /// How long a change waits for another change of the same agent to finish.
    pub change_wait_ms: u64,
    /// Most agents with a rejection count held; changes for new agents are refused beyond.
    pub max_entries: usize,
}

impl Default for LockoutSection {
    fn default() -> Self {
        Self {
            max_consecutive_failures: 2,
            cooldown_secs: 1800,
            change_wait_ms: 5_000,
            max_entries: 100_000,
        }
    }
}

/// `[idempotency]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencySection {
    /// How long a first outcome is replayed for its retries.
    pub ttl_secs: u64,
    /// Most outcomes remembered (oldest forgotten first).
    pub max_entries: usize,
    /// Most bytes the remembered outcomes may take (oldest forgotten first).
    pub max_bytes: usize,
}

impl Default for IdempotencySection {
    fn default() -> Self {
        Self {
            ttl_secs: 86_400,
            max_entries: 100_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// `[rate_limit]`, `[lockout]` and `[idempotency]`, validated.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Quota per caller (`iss` + `sub`).
    pub per_caller: QuotaSpec,
    /// Quota per agent.
    pub per_agent: QuotaSpec,
    /// The lockout shield.
    pub lockout: LockoutPolicy,
    /// How long a change waits for another change of the same agent.
    pub change_wait: Duration,
    /// How long `Idempotency-Key` outcomes are remembered.
    pub idempotency_ttl: Duration,
    /// Most outcomes remembered.
    pub idempotency_entries: usize,
    /// Most bytes the remembered outcomes may take.
    pub idempotency_bytes: usize,
    /// Most agents with a quota bucket in this process.
    pub max_agents: usize,
    /// Most callers with a quota bucket in this process.
    pub max_callers: usize,
    /// Most agents with a lockout record in this process.
    pub lockout_entries: usize,
    /// Where the limits live.
    pub backend: LimitsBackend,
    /// Longest a change can hold its agent's turn: the request deadline plus a margin, so a
    /// turn taken by a replica that crashed expires on its own.
    pub turn_lease: Duration,
    /// How a `userAccount` becomes the key of every per-agent limit.
    pub account_folding: AccountFolding,
}

/// `rate_limit.backend`.
#[derive(Debug, Clone)]
pub enum LimitsBackend {
    /// This process only (`"memory"`).
    Memory,
    /// Shared by every replica through Redis (`"redis"`).
    Redis {
        /// `rate_limit.redis_url` (checked to be `redis://` or `rediss://`, without a
        /// password) and the credentials and CA read from their files.
        endpoint: RedisEndpoint,
        /// `rate_limit.key_prefix`, put before every key.
        key_prefix: String,
    },
}

impl LimitsConfig {
    /// Checks every key of the three sections. `request_timeout` is the validated
    /// `server.request_timeout_ms`: an agent's turn is leased for that plus a margin.
    pub fn from_sections(
        r: &RateLimitSection,
        l: &LockoutSection,
        i: &IdempotencySection,
        request_timeout: Duration,
    ) -> Result<Self, InvalidKey> {
        let backend = backend::backend(r)?;
        let account_folding = match r.account_key.as_str() {
            "case_folded" => AccountFolding::CaseFolded,
            "exact" => AccountFolding::Exact,
            other => {
                return Err(invalid(
                    "rate_limit.account_key",
                    format!("must be \"case_folded\" or \"exact\", got {other:?}"),
                ));
            }
        };
        Ok(Self {
            per_caller: quota("rate_limit.per_caller", &r.per_caller)?,
            per_agent: quota("rate_limit.per_agent", &r.per_agent)?,
            lockout: LockoutPolicy {
                max_consecutive_failures: in_range(
                    "lockout.max_consecutive_failures",
                    u64::from(l.max_consecutive_failures),
                    1,
                    100,
                )? as u32,
                cooldown: secs("lockout.cooldown_secs", l.cooldown_secs, 1, 7 * 86_400)?,
            },
            change_wait: millis("lockout.change_wait_ms", l.change_wait_ms, 0, 60_000)?,
            idempotency_ttl: secs("idempotency.ttl_secs", i.ttl_secs, 1, 7 * 86_400)?,
            idempotency_entries: in_range(
                "idempotency.max_entries",
                i.max_entries as u64,
                1,
                10_000_000,
            )? as usize,
            idempotency_bytes: in_range(
                "idempotency.max_bytes",
                i.max_bytes as u64,
                64 * 1024,
                1 << 32,
            )? as usize,
            max_agents: in_range("rate_limit.max_agents", r.max_agents as u64, 1, 10_000_000)?
                as usize,
            max_callers: in_range(
                "rate_limit.max_callers",
                r.max_callers as u64,
                1,
                10_000_000,
            )? as usize,
            lockout_entries: in_range("lockout.max_entries", l.max_entries as u64, 1, 10_000_000)?
                as usize,
            backend,
            turn_lease: request_timeout + TURN_LEASE_MARGIN,
            account_folding,
        })
    }
}

/// `rate_limit.per_caller` or `rate_limit.per_agent`.
fn quota(key: &str, q: &QuotaSection) -> Result<QuotaSpec, InvalidKey> {
    let burst_key = format!("{key}.burst");
    let burst = in_range(&burst_key, u64::from(q.burst), 1, 1_000_000)?;
    let burst = NonZeroU32::new(burst as u32).ok_or_else(|| invalid(&burst_key, "must be > 0"))?;
    let per = secs(&format!("{key}.per_secs"), q.per_secs, 1, 30 * 86_400)?;
    Ok(QuotaSpec { burst, per })
}
