//! The lockout shield (docs/limits.md, `[lockout]`).
//!
//! The vendor locks an agent for 30 minutes after three wrong current passwords in a row.
//! The shield counts the vendor's rejections (`resultCode "1"`) per agent and, at
//! `max_consecutive_failures` (default 2, one below the vendor's 3), refuses further changes
//! for that agent until `cooldown` has passed, so neither a careless client nor an attacker
//! with a valid token can lock the agent out. A success resets the count.
//!
//! Pure logic over explicit instants; the gateway passes `Instant::now()`. At start-up the
//! counts are rebuilt from the audit trail ([`restore`]).
//!
//! The records held are bounded (`lockout.max_entries`). A record is never dropped to make
//! room: a forgotten count or block would let the vendor's third strike through. Instead,
//! while the shield is full, an agent without a record is not admitted ([`LockoutShield::
//! admits`]; the gateway refuses its change with 503 `lockout_state_unavailable`), and a
//! rejection is always recorded (as is every record rebuilt at start-up), so the cap may be
//! passed by the changes in flight.

mod restore;

pub use restore::{LockoutRebuild, VendorAnswer};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long an agent's rejection count is kept after its last rejection. The vendor keeps
/// its own until a success; a week bounds the memory while covering any realistic gap.
pub const RECORD_TTL: Duration = Duration::from_secs(7 * 86_400);

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
    /// When the last one happened (records are dropped [`RECORD_TTL`] after it).
    last_failure: Instant,
    /// Set when `failures` reached the maximum.
    blocked_until: Option<Instant>,
}

/// Per-agent rejection counts. Only agents with a rejection in the last [`RECORD_TTL`]
/// (or a block) are held, at most `max_agents` of them (see the module docs).
pub struct LockoutShield {
    /// The settings.
    policy: LockoutPolicy,
    /// Agents with a recent rejection.
    records: Mutex<HashMap<String, Record>>,
    /// Most records held before new agents are refused.
    max_agents: usize,
}

impl LockoutShield {
    /// An empty shield.
    pub fn new(policy: LockoutPolicy) -> Self {
        Self {
            policy,
            records: Mutex::new(HashMap::new()),
            max_agents: usize::MAX,
        }
    }

    /// The same shield, admitting new agents only while it holds fewer than `max_agents`.
    pub fn with_max_agents(mut self, max_agents: usize) -> Self {
        self.max_agents = max_agents.max(1);
        self
    }

    /// Most records held before new agents are refused.
    pub fn max_agents(&self) -> usize {
        self.max_agents
    }

    /// Whether a change for `agent` may go ahead as far as the shield's memory goes: the
    /// agent has a record, or there is room for one should the vendor reject the change.
    pub fn admits(&self, agent: &str) -> bool {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.len() < self.max_agents || records.contains_key(agent)
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
        // The vendor counts wrong passwords "in a row" until a success, however long ago:
        // so does the shield. A block that has ended lets one attempt through, and its
        // rejection blocks again at once.
        if record.blocked_until.is_some_and(|until| until <= now) {
            record.blocked_until = None;
        }
        record.failures = record.failures.saturating_add(1);
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

    /// Forgets records whose last rejection is older than [`RECORD_TTL`] (called
    /// periodically), so memory stays bounded.
    pub fn purge(&self, now: Instant) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, r| {
                now.saturating_duration_since(r.last_failure) < RECORD_TTL
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
        // After the block one attempt goes through; if the vendor rejects it too, the
        // agent is blocked again at once (the vendor's count did not reset either).
        assert!(s.record_rejection("a", t0 + Duration::from_secs(1811)));
    }

    #[test]
    fn a_full_shield_admits_only_agents_it_holds_and_forgets_none() {
        let s = shield().with_max_agents(2);
        let t0 = Instant::now();
        assert!(s.admits("a"));
        s.record_rejection("a", t0);
        s.record_rejection("a", t0);
        s.record_rejection("b", t0);
        assert!(!s.admits("c"), "full: a new agent is refused");
        assert!(s.admits("a") && s.admits("b"), "held agents go on");
        // A rejection in flight when the shield filled is still counted, over the cap.
        s.record_rejection("c", t0);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.check("a", t0),
            Err(Duration::from_secs(1800)),
            "a stays blocked"
        );
        // A success frees a place.
        s.record_success("b");
        s.record_success("c");
        assert!(s.admits("d"));
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
    fn counts_do_not_fade_with_time_but_are_purged_after_a_week() {
        let s = shield();
        let t0 = Instant::now();
        s.record_rejection("a", t0);
        assert!(
            s.record_rejection("a", t0 + Duration::from_secs(86_400)),
            "a day apart: still in a row"
        );
        s.record_rejection("b", t0);
        s.purge(t0 + RECORD_TTL + Duration::from_secs(1));
        assert_eq!(
            s.len(),
            1,
            "b's week-old record is dropped; a's block is recent"
        );
    }
}
