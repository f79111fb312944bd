//! Whether Redis is reachable, with one log line per transition (never one per request) and
//! a count of transitions for metrics.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// While degraded, Redis is tried again at most this often; in between, operations fall
/// back at once instead of each paying for a failed attempt.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Reachability of the shared Redis.
#[derive(Default)]
pub struct Health {
    /// Set while Redis is unreachable and the local fallbacks are in use.
    degraded: AtomicBool,
    /// Changes between reachable and degraded since start-up (for a metric).
    transitions: AtomicU64,
    /// While degraded: milliseconds since `epoch()` before which Redis is not tried again.
    retry_at_ms: AtomicU64,
    /// Set while the last failure was Redis refusing our credentials (an operator must
    /// act; `/readyz` says so).
    credentials_refused: AtomicBool,
}

/// Origin of `retry_at_ms`.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Health {
    /// Whether the local fallbacks are in use.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Transitions between reachable and degraded so far.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// Whether Redis refused our credentials at the last attempt.
    pub fn credentials_refused(&self) -> bool {
        self.credentials_refused.load(Ordering::Relaxed)
    }

    /// Whether an operation should try Redis now.
    pub(super) fn worth_trying(&self) -> bool {
        !self.degraded() || now_ms() >= self.retry_at_ms.load(Ordering::Relaxed)
    }

    /// An operation succeeded.
    pub(super) fn reachable(&self) {
        self.credentials_refused.store(false, Ordering::Relaxed);
        if self.degraded.swap(false, Ordering::Relaxed) {
            self.transitions.fetch_add(1, Ordering::Relaxed);
            tracing::info!("redis reachable again: limits are shared across replicas again");
        }
    }

    /// An operation failed with `why`; `refused` when Redis refused our credentials.
    pub(super) fn unreachable(&self, why: &str, refused: bool) {
        self.retry_at_ms
            .store(now_ms() + RETRY_EVERY.as_millis() as u64, Ordering::Relaxed);
        let was_refused = self.credentials_refused.swap(refused, Ordering::Relaxed);
        if refused && !was_refused {
            tracing::error!(
                error = why,
                "redis refused sipgw's credentials (rate_limit.redis_username, \
                 rate_limit.redis_password_file): password changes are refused until they match"
            );
        }
        if !self.degraded.swap(true, Ordering::Relaxed) {
            self.transitions.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error = why,
                "redis unreachable: quotas, turns and idempotency fall back to this replica; \
                 changes for agents whose lockout state cannot be read are refused"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_counted_once_each_way() {
        let health = Health::default();
        assert!(!health.degraded() && health.worth_trying());
        health.unreachable("refused", false);
        health.unreachable("refused", false);
        assert!(health.degraded());
        assert!(!health.credentials_refused());
        assert!(!health.worth_trying(), "not retried at once");
        assert_eq!(health.transitions(), 1);
        health.reachable();
        health.reachable();
        assert!(!health.degraded());
        assert_eq!(health.transitions(), 2);
        health.unreachable("WRONGPASS", true);
        assert!(health.credentials_refused());
        health.reachable();
        assert!(!health.credentials_refused());
    }
}
