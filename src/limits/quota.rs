//! Keyed GCRA quotas (docs/limits.md) over `governor`: "up to `burst` at once, refilling one
//! every `per / burst`", so an empty bucket is full again after `per`.
//!
//! The keys held are bounded (`rate_limit.max_agents`, `rate_limit.max_callers`): when the
//! store is full, a key it does not hold is refused ([`FULL_RETRY_AFTER`]) rather than
//! given a fresh bucket, and no bucket is ever evicted to make room (a fresh bucket for an
//! evicted key would be a full quota again). Keys leave only when their bucket is full again
//! ([`KeyedQuota::purge`]).

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter};

/// What a quota allows; defined beside the ids, since the error table renders it too.
pub use crate::ids::QuotaSpec;

/// `Retry-After` for a key refused because the store is full: about when the janitor next
/// drops the keys whose buckets are full again (`PURGE_INTERVAL` in `limits`).
pub const FULL_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A quota decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; this many more would be allowed right now.
    Allowed {
        /// Changes left in the bucket after this one.
        remaining: u32,
    },
    /// Refused; the next change is allowed after this long.
    Limited {
        /// Time until one change is allowed again.
        retry_after: Duration,
    },
}

/// governor's concurrent map of GCRA cells behind an `Arc`, so that the quota can ask it
/// how many keys it holds and whether it holds one while the limiter owns it.
struct SharedCells<K: Hash + Eq + Clone>(Arc<DashMapStateStore<K>>);

impl<K: Hash + Eq + Clone> StateStore for SharedCells<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for SharedCells<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One keyed quota. Generic over the clock so tests can drive time by hand.
pub struct KeyedQuota<K: Hash + Eq + Clone, C: Clock = QuantaClock> {
    /// What it allows.
    spec: QuotaSpec,
    /// The limiter: one GCRA cell (8 bytes) per key in a concurrent map.
    limiter: RateLimiter<K, SharedCells<K>, C, StateInformationMiddleware>,
    /// The limiter's map, to count and look up keys.
    cells: Arc<DashMapStateStore<K>>,
    /// Most keys held.
    max_keys: usize,
    /// The limiter's clock, to turn "not before" into a duration.
    clock: C,
}

impl<K: Hash + Eq + Clone> KeyedQuota<K, QuantaClock> {
    /// A quota on the real clock.
    pub fn new(spec: QuotaSpec) -> Self {
        Self::with_clock(spec, QuantaClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> KeyedQuota<K, C> {
    /// A quota on `clock`.
    pub fn with_clock(spec: QuotaSpec, clock: C) -> Self {
        let quota = Quota::with_period(spec.interval())
            .expect("quota intervals are validated to be non-zero")
            .allow_burst(spec.burst);
        let cells = Arc::new(DashMapStateStore::default());
        let limiter: RateLimiter<K, _, C, StateInformationMiddleware> =
            RateLimiter::new(quota, SharedCells(Arc::clone(&cells)), clock.clone());
        Self {
            spec,
            limiter,
            cells,
            max_keys: usize::MAX,
            clock,
        }
    }

    /// The same quota, holding at most `max_keys` keys (see the module docs).
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// Most keys held.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The configured quota.
    pub fn spec(&self) -> QuotaSpec {
        self.spec
    }

    /// Takes one change from `key`'s bucket, or says when one will be available. A key the
    /// full store does not hold is refused (concurrent checks of new keys may overshoot the
    /// cap by their number, at most the requests in flight).
    pub fn check(&self, key: &K) -> Verdict {
        if self.cells.len() >= self.max_keys && !self.cells.contains_key(key) {
            return Verdict::Limited {
                retry_after: FULL_RETRY_AFTER,
            };
        }
        match self.limiter.check_key(key) {
            Ok(snapshot) => Verdict::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => Verdict::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// Forgets keys whose buckets have been full again for an interval (they hold no
    /// information), so memory stays bounded by the keys active within about `per` plus one
    /// interval.
    pub fn purge(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::num::NonZeroU32;

    fn spec(burst: u32, per_secs: u64) -> QuotaSpec {
        QuotaSpec {
            burst: NonZeroU32::new(burst).unwrap(),
            per: Duration::from_secs(per_secs),
        }
    }

    #[test]
    fn a_burst_then_refusal_then_refill() {
        let clock = FakeRelativeClock::default();
        let quota = KeyedQuota::with_clock(spec(3, 1800), clock.clone());
        let agent = "a1001".to_owned();
        assert_eq!(quota.check(&agent), Verdict::Allowed { remaining: 2 });
        assert_eq!(quota.check(&agent), Verdict::Allowed { remaining: 1 });
        assert_eq!(quota.check(&agent), Verdict::Allowed { remaining: 0 });
        // One change is earned back every 1800 / 3 = 600 s.
        assert_eq!(
            quota.check(&agent),
            Verdict::Limited {
                retry_after: Duration::from_secs(600)
            }
        );
        clock.advance(Duration::from_secs(599));
        assert_eq!(
            quota.check(&agent),
            Verdict::Limited {
                retry_after: Duration::from_secs(1)
            }
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(quota.check(&agent), Verdict::Allowed { remaining: 0 });
        // After a full window the bucket is full again.
        clock.advance(Duration::from_secs(1800));
        assert_eq!(quota.check(&agent), Verdict::Allowed { remaining: 2 });
    }

    #[test]
    fn keys_are_independent_and_idle_ones_are_purged() {
        let clock = FakeRelativeClock::default();
        let quota = KeyedQuota::with_clock(spec(1, 60), clock.clone());
        for i in 0..100 {
            assert!(matches!(quota.check(&i), Verdict::Allowed { .. }));
        }
        assert!(matches!(quota.check(&7), Verdict::Limited { .. }));
        assert_eq!(quota.len(), 100);
        // governor drops a key once its bucket has been full for one more interval.
        clock.advance(Duration::from_secs(61));
        quota.purge();
        assert_eq!(quota.len(), 100);
        clock.advance(Duration::from_secs(60));
        quota.purge();
        assert_eq!(quota.len(), 0);
    }

    #[test]
    fn a_full_store_refuses_new_keys_and_never_evicts_a_bucket() {
        let clock = FakeRelativeClock::default();
        let quota = KeyedQuota::with_clock(spec(1, 600), clock.clone()).with_max_keys(2);
        assert!(matches!(quota.check(&1), Verdict::Allowed { .. }));
        assert!(matches!(quota.check(&2), Verdict::Allowed { .. }));
        // Full: a third key is refused, and the spent buckets stay spent.
        assert_eq!(
            quota.check(&3),
            Verdict::Limited {
                retry_after: FULL_RETRY_AFTER
            }
        );
        assert_eq!(quota.len(), 2);
        assert_eq!(
            quota.check(&1),
            Verdict::Limited {
                retry_after: Duration::from_secs(600)
            }
        );
        // Once the buckets are full again and purged, there is room.
        clock.advance(Duration::from_secs(1201));
        quota.purge();
        assert_eq!(quota.len(), 0);
        assert!(matches!(quota.check(&3), Verdict::Allowed { .. }));
    }
}
