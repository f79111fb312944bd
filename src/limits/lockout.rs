//! The lockout shield (DESIGN.md §3, `[lockout]`).
//!
//! The vendor locks an agent for 30 minutes after three wrong current passwords in a row.
//! The shield counts the vendor's rejections (`resultCode "1"`) per agent and, at
//! `max_consecutive_failures` (default 2, one below the vendor's 3), refuses further changes
//! for that agent until `cooldown` has passed, so neither a careless client nor an attacker
//! with a valid token can lock the agent out. A success resets the count.
//!
//! Pure logic over explicit instants; the gateway passes `Instant::now()`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The `[lockout]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Rejections in a row that block the agent.
    pub max_consecutive_failures: u32,
    /// How long a block lasts, and how long a count is remembered.
    pub cooldown: Duration,
}

/// One agent's record.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// Vendor rejections in a row.
    failures: u32,
    /// When the last one happened; a count older than the cool-down is forgotten.
    last_failure: Instant,
    /// Set when `failures` reached the maximum.
    blocked_until: Option<Instant>,
}

/// Per-agent rejection counts. Only agents with a recent rejection are held, so memory is
/// bounded by the agents that failed within the cool-down.
pub struct LockoutShield {
    /// The settings.
    policy: LockoutPolicy,
    /// Agents with a recent rejection.
    records: Mutex<HashMap<String, Record>>,
}

impl LockoutShield {
    /// An empty shield.
    pub fn new(policy: LockoutPolicy) -> Self {
        Self {
            policy,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn policy(&self) -> LockoutPolicy {
        self.policy
    }

    /// `Err(wait)` while `agent` is blocked.
    pub fn check(&self, agent: &str, now: Instant) -> Result<(), Duration> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        match records.get(agent).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// The vendor rejected a change for `agent`; returns whether the agent is now blocked.
    pub fn record_rejection(&self, agent: &str, now: Instant) -> bool {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let record = records.entry(agent.to_owned()).or_insert(Record {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        // A count from before the cool-down (or a block that has ended) starts over.
        if now.saturating_duration_since(record.last_failure) >= self.policy.cooldown
            || record.blocked_until.is_some_and(|until| until <= now)
        {
            record.failures = 0;
            record.blocked_until = None;
        }
        record.failures += 1;
        record.last_failure = now;
        if record.failures >= self.policy.max_consecutive_failures {
            record.blocked_until = Some(now + self.policy.cooldown);
            return true;
        }
        false
    }

    /// The vendor accepted a change for `agent`: the count starts over.
    pub fn record_success(&self, agent: &str) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(agent);
    }

    /// Forgets records older than the cool-down (called periodically).
    pub fn purge(&self, now: Instant) {
        let cooldown = self.policy.cooldown;
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, r| {
                now.saturating_duration_since(r.last_failure) < cooldown
                    || r.blocked_until.is_some_and(|u| u > now)
            });
    }

    /// Agents currently held.
    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no agent is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shield() -> LockoutShield {
        LockoutShield::new(LockoutPolicy {
            max_consecutive_failures: 2,
            cooldown: Duration::from_secs(1800),
        })
    }

    #[test]
    fn two_rejections_block_until_the_cooldown_ends() {
        let s = shield();
        let t0 = Instant::now();
        assert_eq!(s.check("a", t0), Ok(()));
        assert!(!s.record_rejection("a", t0));
        assert_eq!(s.check("a", t0), Ok(()));
        assert!(s.record_rejection("a", t0 + Duration::from_secs(10)));
        assert_eq!(
            s.check("a", t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(1800))
        );
        assert_eq!(
            s.check("a", t0 + Duration::from_secs(1800)),
            Err(Duration::from_secs(10))
        );
        assert_eq!(s.check("a", t0 + Duration::from_secs(1810)), Ok(()));
        assert_eq!(s.check("b", t0), Ok(()), "other agents are not affected");
        // After the block, one rejection does not block again at once.
        assert!(!s.record_rejection("a", t0 + Duration::from_secs(1811)));
    }

    #[test]
    fn a_success_resets_the_count() {
        let s = shield();
        let t0 = Instant::now();
        s.record_rejection("a", t0);
        s.record_success("a");
        assert!(!s.record_rejection("a", t0));
        assert_eq!(s.check("a", t0), Ok(()));
    }

    #[test]
    fn old_counts_are_forgotten_and_purged() {
        let s = shield();
        let t0 = Instant::now();
        s.record_rejection("a", t0);
        assert!(
            !s.record_rejection("a", t0 + Duration::from_secs(1800)),
            "the first is too old"
        );
        s.record_rejection("b", t0);
        s.purge(t0 + Duration::from_secs(1801));
        assert_eq!(s.len(), 1, "only a's recent rejection is kept");
    }
}
