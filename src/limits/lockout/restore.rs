//! Rebuilding the shield at start-up from past vendor answers (issue 11, finding 2).
//!
//! [`LockoutRebuild`] folds the answers, in the order they happened, by the rules of
//! [`LockoutShield::record_rejection`] and [`LockoutShield::record_success`], but on wall
//! clock times (the records' `ts`): the shield's own clock is monotonic and starts with the
//! process, so it cannot hold a time before it. [`LockoutShield::restore`] then turns what
//! is left into the shield's records, a block's end counted from the record's time.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{LockoutPolicy, LockoutShield, RECORD_TTL, Record};
use crate::ids::{AccountFolding, AgentId};

/// What a vendor call meant for the shield.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorAnswer {
    /// The change was accepted: the count starts over.
    Accepted,
    /// The vendor rejected the current password (or the change).
    Rejected,
    /// No clear answer, and the vendor may have checked the password: counted.
    Unknown,
}

/// One agent's count, on wall-clock times.
#[derive(Debug, Clone, Copy)]
struct Rebuilt {
    /// Rejections (and unknown outcomes) in a row.
    failures: u32,
    /// When the last one happened.
    last_failure: SystemTime,
    /// When the block set by the last of them ends.
    blocked_until: Option<SystemTime>,
}

/// The shield's state as the audit trail tells it, agent by agent.
pub struct LockoutRebuild {
    /// The settings (the same as the live shield's).
    policy: LockoutPolicy,
    /// How a record's agent becomes its key (`rate_limit.account_key`, as for live requests).
    folding: AccountFolding,
    /// Agents whose last answers include a rejection.
    agents: HashMap<String, Rebuilt>,
}

impl LockoutRebuild {
    /// Nothing known yet.
    pub fn new(policy: LockoutPolicy, folding: AccountFolding) -> Self {
        Self {
            policy,
            folding,
            agents: HashMap::new(),
        }
    }

    /// One answer for `agent`, as the record names it, at `at`. The one place where an
    /// agent from the trail becomes a shield key: it must be keyed as live requests are.
    pub fn apply(&mut self, agent: &str, at: SystemTime, answer: VendorAnswer) {
        let key = AgentId::new(agent, self.folding);
        let agent = key.as_str();
        match answer {
            VendorAnswer::Accepted => {
                self.agents.remove(agent);
            }
            VendorAnswer::Rejected | VendorAnswer::Unknown => {
                let record = self.agents.entry(agent.to_owned()).or_insert(Rebuilt {
                    failures: 0,
                    last_failure: at,
                    blocked_until: None,
                });
                // As `record_rejection`: a block that has ended lets one attempt through,
                // and its rejection blocks again at once.
                if record.blocked_until.is_some_and(|until| until <= at) {
                    record.blocked_until = None;
                }
                record.failures = record.failures.saturating_add(1);
                // An orphan is applied at the end of the replay with its own, earlier time:
                // it must not move the last failure, or a block's end, backwards.
                record.last_failure = record.last_failure.max(at);
                if record.failures >= self.policy.max_consecutive_failures {
                    let until = at + self.policy.cooldown;
                    record.blocked_until =
                        Some(record.blocked_until.map_or(until, |u| u.max(until)));
                }
            }
        }
    }

    /// Agents with a count.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether no agent has a count.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

impl LockoutShield {
    /// Takes over the rebuilt counts, `now_wall` and `now` being the same moment on both
    /// clocks; returns how many agents are blocked. A block's remaining time is counted
    /// from its record's time; a record from the future (a clock set back) counts as now.
    pub fn restore(&self, rebuilt: LockoutRebuild, now_wall: SystemTime, now: Instant) -> usize {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut blocked = 0;
        for (agent, state) in rebuilt.agents {
            let age = now_wall
                .duration_since(state.last_failure)
                .unwrap_or(Duration::ZERO);
            let remaining = state
                .blocked_until
                .and_then(|until| until.duration_since(now_wall).ok())
                .filter(|left| !left.is_zero());
            if age >= RECORD_TTL && remaining.is_none() {
                continue;
            }
            blocked += usize::from(remaining.is_some());
            records.insert(
                agent,
                Record {
                    failures: state.failures,
                    // Before the process started, the monotonic clock may have no value:
                    // then "now", which only keeps the record a little longer.
                    last_failure: now.checked_sub(age).unwrap_or(now),
                    blocked_until: remaining.map(|left| now + left),
                },
            );
        }
        blocked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LockoutPolicy {
        LockoutPolicy {
            max_consecutive_failures: 2,
            cooldown: Duration::from_secs(1800),
        }
    }

    #[test]
    fn a_rebuild_blocks_for_what_is_left_of_the_cooldown() {
        let wall = SystemTime::now();
        let mut rebuild = LockoutRebuild::new(policy(), AccountFolding::CaseFolded);
        let ten_minutes = Duration::from_secs(600);
        rebuild.apply("a", wall - ten_minutes * 2, VendorAnswer::Rejected);
        rebuild.apply("a", wall - ten_minutes, VendorAnswer::Unknown);
        rebuild.apply("b", wall - ten_minutes, VendorAnswer::Rejected);
        rebuild.apply("c", wall - ten_minutes * 2, VendorAnswer::Rejected);
        rebuild.apply("c", wall - ten_minutes, VendorAnswer::Accepted);
        assert_eq!(rebuild.len(), 2, "c's success reset it");
        let shield = LockoutShield::new(policy());
        let now = Instant::now();
        assert_eq!(shield.restore(rebuild, wall, now), 1);
        assert_eq!(
            shield.check("a", now),
            Err(Duration::from_secs(1200)),
            "30 minutes from the second answer, 10 of them gone"
        );
        assert_eq!(shield.check("b", now), Ok(()));
        assert!(
            shield.record_rejection("b", now),
            "b's count survived: one more rejection blocks it"
        );
        assert_eq!(shield.check("c", now), Ok(()));
    }

    #[test]
    fn spellings_of_one_account_rebuild_one_count() {
        // Live requests key the shield by the case-folded account; so must the trail.
        let mut rebuild = LockoutRebuild::new(policy(), AccountFolding::CaseFolded);
        let now = SystemTime::now();
        rebuild.apply("A1002", now, VendorAnswer::Rejected);
        rebuild.apply("a1002", now, VendorAnswer::Rejected);
        assert_eq!(rebuild.len(), 1);
        let shield = LockoutShield::new(policy());
        shield.restore(rebuild, now, Instant::now());
        assert!(
            shield.check("a1002", Instant::now()).is_err(),
            "two rejections block"
        );

        let mut exact = LockoutRebuild::new(policy(), AccountFolding::Exact);
        exact.apply("A1002", now, VendorAnswer::Rejected);
        exact.apply("a1002", now, VendorAnswer::Rejected);
        assert_eq!(
            exact.len(),
            2,
            "account_key = \"exact\" keeps spellings apart"
        );
    }

    #[test]
    fn an_earlier_answer_applied_late_moves_nothing_backwards() {
        // An orphan is applied at the end of the replay, with its attempt's older time.
        let wall = SystemTime::now();
        let minute = Duration::from_secs(60);
        let mut rebuild = LockoutRebuild::new(policy(), AccountFolding::CaseFolded);
        rebuild.apply("a", wall - minute * 20, VendorAnswer::Rejected);
        rebuild.apply("a", wall - minute * 5, VendorAnswer::Rejected);
        rebuild.apply("A", wall - minute * 20, VendorAnswer::Unknown);
        let shield = LockoutShield::new(policy());
        let now = Instant::now();
        assert_eq!(shield.restore(rebuild, wall, now), 1);
        assert_eq!(
            shield.check("a", now),
            Err(minute * 25),
            "the block set 5 minutes ago still ends 25 minutes from now"
        );
        let record = shield.records.lock().unwrap()["a"];
        assert_eq!(record.failures, 3);
        assert_eq!(record.last_failure, now - minute * 5);
    }

    #[test]
    fn the_rebuild_follows_the_live_rules() {
        let shield = LockoutShield::new(policy());
        let mut rebuild = LockoutRebuild::new(policy(), AccountFolding::CaseFolded);
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let steps = [
            (0, VendorAnswer::Rejected),
            (60, VendorAnswer::Rejected),
            (4000, VendorAnswer::Rejected),
            (4100, VendorAnswer::Accepted),
            (86_400, VendorAnswer::Rejected),
        ];
        for (secs, answer) in steps {
            let (at, wall) = (
                t0 + Duration::from_secs(secs),
                w0 + Duration::from_secs(secs),
            );
            match answer {
                VendorAnswer::Accepted => shield.record_success("a"),
                VendorAnswer::Rejected | VendorAnswer::Unknown => {
                    shield.record_rejection("a", at);
                }
            }
            rebuild.apply("a", wall, answer);
            let restored = LockoutShield::new(policy());
            let mut copy = LockoutRebuild::new(policy(), AccountFolding::CaseFolded);
            copy.agents.clone_from(&rebuild.agents);
            restored.restore(copy, wall, at);
            assert_eq!(
                restored.check("a", at),
                shield.check("a", at),
                "after {secs} s"
            );
            let later = at + Duration::from_secs(1000);
            assert_eq!(restored.check("a", later), shield.check("a", later));
        }
    }
}
