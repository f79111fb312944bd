//! The `redis` backend: quotas, lockout counts, agents' turns and `Idempotency-Key`
//! records shared by every replica through one Redis, so that scaling out does not multiply
//! an agent's quota (docs/limits.md).
//!
//! Every decision is one atomic server-side script ([`scripts`]) on the server's clock.
//! Keys (all under `rate_limit.key_prefix`, all expiring):
//!
//! | key | holds | expires |
//! |---|---|---|
//! | `quota:agent:{agent}`, `quota:caller:{caller}` | the GCRA arrival time | when the bucket is full again |
//! | `lockout:{agent}` | hash: failures, last, blocked_until | after the cool-down |
//! | `turn:{agent}` | the holder's random token | after the turn lease |
//! | `idem:{hex digest}` | hash: body fingerprint, state, outcome | lease in flight, `idempotency.ttl_secs` when done |
//!
//! `{agent}` is the agent's canonical [`AgentId`] (case-folded by default), so every
//! replica and every spelling of one account meet at the same keys; `{caller}` is
//! [`crate::ids::CallerId::key`], `{len(iss)}:{iss}:{sub}`.
//!
//! When Redis cannot be reached, an operation fails fast ([`Unavailable`]) and the caller
//! falls back to its in-process state ([`super::Limits`] decides how). [`Health`] tracks the
//! transitions.

pub mod endpoint;
mod health;
pub mod idempotency;
pub mod scripts;
pub mod turn;

use std::time::Duration;

use redis::FromRedisValue;
use redis::aio::ConnectionManager;

use super::lockout::LockoutPolicy;
use super::quota::{QuotaSpec, Verdict};
use crate::ids::AgentId;
pub use endpoint::RedisEndpoint;
pub use health::Health;

/// Longest a Redis reply may take before the operation counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest a (re)connection attempt may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on a whole operation, reconnection included: a dead Redis costs milliseconds.
const OPERATION_TIMEOUT: Duration = Duration::from_millis(300);

/// Redis could not answer; the caller uses its in-process state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// The connection to the shared Redis and the key namespace.
pub struct Shared {
    /// Multiplexed, reconnecting connection (cheap to clone per operation).
    conn: ConnectionManager,
    /// `rate_limit.key_prefix`.
    prefix: String,
    /// Reachable or degraded, and the transitions between them.
    health: Health,
}

impl Shared {
    /// A lazily connecting client for `url`, without credentials (tests, benchmarks).
    pub fn new(url: &str, prefix: String) -> redis::RedisResult<Self> {
        Self::connect(&RedisEndpoint::plain(url), prefix)
    }

    /// A lazily connecting client for `endpoint` (checked by the config).
    pub fn connect(endpoint: &RedisEndpoint, prefix: String) -> redis::RedisResult<Self> {
        let client = endpoint.client()?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            prefix,
            health: Health::default(),
        })
    }

    /// One `PING` at start-up: `Err` with Redis's reason when it refuses our credentials
    /// (a configuration error, worth stopping for); an unreachable Redis is not an error
    /// here (the replica starts on its fallbacks, as it would ride out an outage).
    pub async fn check_credentials(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let ping = tokio::time::timeout(
            CONNECTION_TIMEOUT + OPERATION_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match ping {
            Ok(Err(error)) if endpoint::credentials_refused(&error) => Err(error.to_string()),
            Ok(Ok(_)) => {
                self.health.reachable();
                Ok(())
            }
            Ok(Err(error)) => {
                self.health.unreachable(&error.to_string(), false);
                Ok(())
            }
            Err(_) => {
                self.health.unreachable("timed out", false);
                Ok(())
            }
        }
    }

    /// Reachability and transitions.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// `prefix` + `rest`.
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Runs one script or command, bounded in time; failures mark Redis unreachable.
    async fn run<T: FromRedisValue>(&self, cmd: Call<'_>) -> Result<T, Unavailable> {
        if !self.health.worth_trying() {
            return Err(Unavailable);
        }
        let mut conn = self.conn.clone();
        let result = tokio::time::timeout(OPERATION_TIMEOUT, async {
            match cmd {
                Call::Script(invocation) => invocation.invoke_async(&mut conn).await,
                Call::Cmd(cmd) => cmd.query_async(&mut conn).await,
            }
        })
        .await;
        match result {
            Ok(Ok(value)) => {
                self.health.reachable();
                Ok(value)
            }
            Ok(Err(error)) => {
                let refused = endpoint::credentials_refused(&error);
                self.health.unreachable(&error.to_string(), refused);
                Err(Unavailable)
            }
            Err(_) => {
                self.health.unreachable("timed out", false);
                Err(Unavailable)
            }
        }
    }

    /// One quota decision for `id` (`agent:…` or `caller:…`).
    pub async fn quota(&self, id: &str, spec: QuotaSpec) -> Result<Verdict, Unavailable> {
        let interval = spec.interval().as_micros().max(1) as u64;
        let mut invocation = scripts::QUOTA.prepare_invoke();
        invocation
            .key(self.key(&format!("quota:{id}")))
            .arg(interval)
            .arg(spec.burst.get());
        let (allowed, remaining, retry_after_us): (u8, u32, u64) =
            self.run(Call::Script(invocation)).await?;
        Ok(if allowed == 1 {
            Verdict::Allowed { remaining }
        } else {
            Verdict::Limited {
                retry_after: Duration::from_micros(retry_after_us),
            }
        })
    }

    /// `Some(wait)` while `agent` is blocked.
    pub async fn lockout_check(&self, agent: &AgentId) -> Result<Option<Duration>, Unavailable> {
        let mut invocation = scripts::LOCKOUT_CHECK.prepare_invoke();
        invocation.key(self.key(&format!("lockout:{}", agent.as_str())));
        let wait_ms: u64 = self.run(Call::Script(invocation)).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    /// Counts a vendor rejection; whether the agent is now blocked.
    pub async fn lockout_reject(
        &self,
        agent: &AgentId,
        policy: LockoutPolicy,
    ) -> Result<bool, Unavailable> {
        let mut invocation = scripts::LOCKOUT_REJECT.prepare_invoke();
        invocation
            .key(self.key(&format!("lockout:{}", agent.as_str())))
            .arg(policy.max_consecutive_failures)
            .arg(policy.cooldown.as_millis() as u64)
            .arg(crate::limits::lockout::RECORD_TTL.as_millis() as u64);
        let blocked: u8 = self.run(Call::Script(invocation)).await?;
        Ok(blocked == 1)
    }

    /// A success: the agent's count starts over.
    pub async fn lockout_success(&self, agent: &AgentId) -> Result<(), Unavailable> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(&format!("lockout:{}", agent.as_str())));
        let _: u32 = self.run(Call::Cmd(cmd)).await?;
        Ok(())
    }
}

/// What [`Shared::run`] sends.
enum Call<'a> {
    /// A script (EVALSHA, loading it on first use).
    Script(redis::ScriptInvocation<'a>),
    /// A plain command.
    Cmd(redis::Cmd),
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
