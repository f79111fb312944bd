//! Agent accounts: current passwords, consecutive failures and the lockout.
//!
//! Plain data over an explicit `now`, so the lockout arithmetic is unit-tested without
//! sockets or sleeps. The clock is `tokio::time::Instant` so that tests driving the whole
//! simulator can pause and advance time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::rule::{self, RuleViolation};

/// When a run of wrong current passwords locks an account, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Wrong current passwords in a row that lock the account (vendor: 3); 0 disables lockout.
    pub threshold: u32,
    /// How long a lock lasts (vendor: 30 minutes).
    pub duration: Duration,
}

/// One agent account as the vendor holds it. No `Debug`: it holds a password.
struct Account {
    /// The current SIP phone password, checked against `accountPwd`.
    password: String,
    /// Wrong current passwords since the last success or lock; drives the lockout.
    consecutive_failures: u32,
    /// End of the current lock, if any; a lock in the past no longer applies.
    locked_until: Option<Instant>,
}

impl Account {
    fn is_locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

/// What one password-change attempt came to; maps one-to-one onto the vendor's 200 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The password was changed.
    Changed,
    /// No such `userAccount`.
    UnknownAccount,
    /// The account is locked; nothing was checked.
    Locked,
    /// `accountPwd` did not match.
    WrongCurrentPassword {
        /// True when this failure reached the threshold and locked the account.
        locked_now: bool,
    },
    /// The current password matched but `newPhonePwd` breaks the rule.
    RuleViolation(RuleViolation),
}

impl ChangeOutcome {
    /// The vendor's `resultCode`: "0" for success, "1" for every business failure.
    pub fn result_code(&self) -> &'static str {
        match self {
            Self::Changed => "0",
            Self::UnknownAccount
            | Self::Locked
            | Self::WrongCurrentPassword { .. }
            | Self::RuleViolation(_) => "1",
        }
    }

    /// The vendor's `resultMessage`. Never contains a password.
    pub fn result_message(&self) -> String {
        match self {
            Self::Changed => "success".to_owned(),
            Self::UnknownAccount => "account does not exist".to_owned(),
            Self::Locked => "account is locked, try again later".to_owned(),
            Self::WrongCurrentPassword { locked_now: false } => {
                "current password is incorrect".to_owned()
            }
            Self::WrongCurrentPassword { locked_now: true } => {
                "current password is incorrect; account is locked, try again later".to_owned()
            }
            Self::RuleViolation(violation) => violation.to_string(),
        }
    }
}

/// Every agent account the simulated tenant holds. No `Debug`: it holds passwords.
pub struct AccountBook {
    /// Accounts by `userAccount`.
    accounts: HashMap<String, Account>,
    /// The lockout rule every account follows.
    policy: LockoutPolicy,
}

impl AccountBook {
    /// A book holding `agents` as (account, current password) pairs; later duplicates win.
    pub fn new(agents: impl IntoIterator<Item = (String, String)>, policy: LockoutPolicy) -> Self {
        let mut book = Self {
            accounts: HashMap::new(),
            policy,
        };
        for (account, password) in agents {
            book.set(&account, &password);
        }
        book
    }

    /// Creates or replaces an account, as a tenant administrator would: the new password
    /// applies at once and any lock or failure run is cleared.
    pub fn set(&mut self, account: &str, password: &str) {
        self.accounts.insert(
            account.to_owned(),
            Account {
                password: password.to_owned(),
                consecutive_failures: 0,
                locked_until: None,
            },
        );
    }

    /// The account's current password, if the account exists.
    pub fn password(&self, account: &str) -> Option<&str> {
        self.accounts.get(account).map(|a| a.password.as_str())
    }

    /// Whether the account exists and is locked at `now`.
    pub fn is_locked(&self, account: &str, now: Instant) -> bool {
        self.accounts.get(account).is_some_and(|a| a.is_locked(now))
    }

    /// One `updateSipPhonePassword` attempt, checked in the vendor's order: account exists,
    /// not locked, current password, then the rule (so a rule violation is not a failure
    /// towards the lockout).
    pub fn change_password(
        &mut self,
        account: &str,
        current: &str,
        new: &str,
        now: Instant,
    ) -> ChangeOutcome {
        let policy = self.policy;
        let Some(entry) = self.accounts.get_mut(account) else {
            return ChangeOutcome::UnknownAccount;
        };
        if entry.is_locked(now) {
            return ChangeOutcome::Locked;
        }
        if entry.password != current {
            entry.consecutive_failures += 1;
            let locked_now = policy.threshold > 0 && entry.consecutive_failures >= policy.threshold;
            if locked_now {
                entry.locked_until = Some(now + policy.duration);
                // The count restarts so that, once the lock expires, the agent again gets
                // the full number of attempts.
                entry.consecutive_failures = 0;
            }
            return ChangeOutcome::WrongCurrentPassword { locked_now };
        }
        // The current password passed verification, which ends any run of failures "in a
        // row" (docs/vendor.md) even if the new password then breaks the rule.
        entry.consecutive_failures = 0;
        if let Err(violation) = rule::check(new) {
            return ChangeOutcome::RuleViolation(violation);
        }
        entry.password = new.to_owned();
        ChangeOutcome::Changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        threshold: 3,
        duration: Duration::from_secs(30 * 60),
    };

    fn book() -> AccountBook {
        AccountBook::new([("agent1".to_owned(), "OldPass1".to_owned())], POLICY)
    }

    #[test]
    fn success_changes_the_password() {
        let mut book = book();
        let now = Instant::now();
        let outcome = book.change_password("agent1", "OldPass1", "NewPass2", now);
        assert_eq!(outcome, ChangeOutcome::Changed);
        assert_eq!(
            (outcome.result_code(), outcome.result_message().as_str()),
            ("0", "success")
        );
        assert_eq!(book.password("agent1"), Some("NewPass2"));
        // The old password no longer works.
        assert_eq!(
            book.change_password("agent1", "OldPass1", "Other3xx", now),
            ChangeOutcome::WrongCurrentPassword { locked_now: false }
        );
    }

    #[test]
    fn unknown_account_is_a_business_failure() {
        let outcome = book().change_password("nobody", "x", "NewPass2", Instant::now());
        assert_eq!(outcome, ChangeOutcome::UnknownAccount);
        assert_eq!(outcome.result_code(), "1");
        assert!(outcome.result_message().contains("does not exist"));
    }

    #[test]
    fn third_wrong_password_in_a_row_locks_for_the_policy_duration() {
        let mut book = book();
        let now = Instant::now();
        for expected_lock in [false, false, true] {
            assert_eq!(
                book.change_password("agent1", "wrong", "NewPass2", now),
                ChangeOutcome::WrongCurrentPassword {
                    locked_now: expected_lock
                }
            );
        }
        assert!(book.is_locked("agent1", now));
        // Even the right password is refused while locked, and the password is unchanged.
        let locked = book.change_password("agent1", "OldPass1", "NewPass2", now);
        assert_eq!(locked, ChangeOutcome::Locked);
        assert!(locked.result_message().contains("locked"));
        assert_eq!(book.password("agent1"), Some("OldPass1"));
        // One second before the end the lock still holds; at the end it is gone.
        let almost = now + POLICY.duration - Duration::from_secs(1);
        assert!(book.is_locked("agent1", almost));
        let after = now + POLICY.duration;
        assert!(!book.is_locked("agent1", after));
        assert_eq!(
            book.change_password("agent1", "OldPass1", "NewPass2", after),
            ChangeOutcome::Changed
        );
    }

    #[test]
    fn failure_count_restarts_after_a_lock_expires() {
        let mut book = book();
        let now = Instant::now();
        for _ in 0..3 {
            book.change_password("agent1", "wrong", "NewPass2", now);
        }
        let after = now + POLICY.duration;
        // Two more failures after the lock are not enough to lock again.
        for _ in 0..2 {
            book.change_password("agent1", "wrong", "NewPass2", after);
        }
        assert!(!book.is_locked("agent1", after));
        assert_eq!(
            book.change_password("agent1", "wrong", "NewPass2", after),
            ChangeOutcome::WrongCurrentPassword { locked_now: true }
        );
    }

    #[test]
    fn success_resets_the_failure_run() {
        let mut book = book();
        let now = Instant::now();
        book.change_password("agent1", "wrong", "NewPass2", now);
        book.change_password("agent1", "wrong", "NewPass2", now);
        assert_eq!(
            book.change_password("agent1", "OldPass1", "NewPass2", now),
            ChangeOutcome::Changed
        );
        book.change_password("agent1", "wrong", "NewPass3", now);
        book.change_password("agent1", "wrong", "NewPass3", now);
        assert!(!book.is_locked("agent1", now));
    }

    #[test]
    fn rule_violation_is_not_a_wrong_password() {
        let mut book = book();
        let now = Instant::now();
        book.change_password("agent1", "wrong", "NewPass2", now);
        book.change_password("agent1", "wrong", "NewPass2", now);
        let outcome = book.change_password("agent1", "OldPass1", "short", now);
        assert_eq!(
            outcome,
            ChangeOutcome::RuleViolation(RuleViolation::Length { chars: 5 })
        );
        assert_eq!(outcome.result_code(), "1");
        assert!(outcome.result_message().contains("password rule"));
        assert_eq!(book.password("agent1"), Some("OldPass1"));
        // The right current password reset the run, so one more failure does not lock.
        book.change_password("agent1", "wrong", "NewPass2", now);
        assert!(!book.is_locked("agent1", now));
    }

    #[test]
    fn rule_is_checked_only_after_the_current_password() {
        let outcome = book().change_password("agent1", "wrong", "short", Instant::now());
        assert_eq!(
            outcome,
            ChangeOutcome::WrongCurrentPassword { locked_now: false }
        );
    }

    #[test]
    fn zero_threshold_disables_lockout() {
        let policy = LockoutPolicy {
            threshold: 0,
            ..POLICY
        };
        let mut book = AccountBook::new([("a".to_owned(), "OldPass1".to_owned())], policy);
        let now = Instant::now();
        for _ in 0..10 {
            book.change_password("a", "wrong", "NewPass2", now);
        }
        assert!(!book.is_locked("a", now));
    }

    #[test]
    fn set_replaces_password_and_clears_lock() {
        let mut book = book();
        let now = Instant::now();
        for _ in 0..3 {
            book.change_password("agent1", "wrong", "NewPass2", now);
        }
        book.set("agent1", "Reset123");
        assert!(!book.is_locked("agent1", now));
        assert_eq!(book.password("agent1"), Some("Reset123"));
        book.set("agent2", "Fresh123");
        assert_eq!(book.password("agent2"), Some("Fresh123"));
    }
}
