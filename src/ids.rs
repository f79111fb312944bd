//! Who and what a request is about, each in one type, and which quota refused it.
//!
//! - [`CallerId`]: the caller, as its verified token names it (issuer and subject). Quotas,
//!   flood control, idempotency scopes and the audit trail all key callers by it.
//! - [`AgentId`]: the agent account's canonical id ([`AccountFolding`]), the one key of
//!   every per-agent limit. The account *as written* in the URL stays text: the vendor and
//!   the audit trail get it verbatim, and only comparisons use the canonical id.
//! - [`Scope`] and [`QuotaSpec`]: whose quota refused a change, and what that quota allows
//!   (the problem document and the metrics both name them).
//!
//! A leaf: it imports no other module of this crate, so that the error table, the request's
//! shape and the limits can all use these types without importing each other.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// A caller: the issuer (`iss`) and subject (`sub`) of its verified token. Neither is a
/// secret (both are logged and audited), so `Debug` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallerId {
    /// The issuer (`iss`).
    iss: String,
    /// The subject (`sub`).
    sub: String,
}

impl CallerId {
    /// The caller that `iss` calls `sub`.
    pub fn new(iss: impl Into<String>, sub: impl Into<String>) -> Self {
        Self {
            iss: iss.into(),
            sub: sub.into(),
        }
    }

    /// The issuer (`iss`).
    pub fn iss(&self) -> &str {
        &self.iss
    }

    /// The subject (`sub`).
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// `{len(iss)}:{iss}:{sub}`: one text per caller, unambiguous although both parts may
    /// hold `:` (the caller's Redis key names).
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.iss.len(), self.iss, self.sub)
    }
}

/// How a `userAccount` becomes its [`AgentId`] (`rate_limit.account_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountFolding {
    /// ASCII lower case (the default): `A1002` and `a1002` share one quota, one lockout
    /// count, one turn and one idempotency scope. The vendor may match accounts without
    /// regard to case; merging buckets can only make the limits stricter, never looser.
    #[default]
    CaseFolded,
    /// The account exactly as written in the URL.
    Exact,
}

/// The canonical id of an agent account: the one key of every per-agent limit (quota,
/// lockout count, turn, idempotency scope; in memory and in Redis). The request is still
/// forwarded, and audited, with the account as written; only the limits use this.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentId(
    /// The account, ASCII lower-cased unless the folding is `Exact`.
    String,
);

impl AgentId {
    /// The id of `account` (a `userAccount` as the request parsed it, or an `agent` of an
    /// audit record). `userAccount` is ASCII (`[A-Za-z0-9._@-]`), so ASCII lower case is a
    /// complete case fold: no Unicode folding rule can merge two accounts that this does
    /// not.
    pub fn new(account: &str, folding: AccountFolding) -> Self {
        match folding {
            AccountFolding::CaseFolded => Self(account.to_ascii_lowercase()),
            AccountFolding::Exact => Self(account.to_owned()),
        }
    }

    /// The id as text (map keys, Redis key names, idempotency digests).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose quota refused a change (`sipgw_rate_limited_total{scope}`, the problem's
/// `detail` and its `RateLimit-Policy` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The caller's quota ([`CallerId`]).
    Caller,
    /// The agent's quota ([`AgentId`]).
    Agent,
}

impl Scope {
    /// Both scopes.
    pub const ALL: [Self; 2] = [Self::Caller, Self::Agent];

    /// The scope's name: `caller` or `agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Agent => "agent",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Scope {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// A quota as configured: `{ burst = N, per_secs = S }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSpec {
    /// Changes allowed at once.
    pub burst: NonZeroU32,
    /// Time for an empty bucket to fill again.
    pub per: Duration,
}

impl QuotaSpec {
    /// Time to earn back one change.
    pub fn interval(&self) -> Duration {
        self.per / self.burst.get()
    }

    /// The `RateLimit-Policy` item (draft-ietf-httpapi-ratelimit-headers): quota and window.
    pub fn policy_header(&self, scope: Scope) -> String {
        format!("\"{scope}\";q={};w={}", self.burst, self.per.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_key_is_unambiguous() {
        let caller = CallerId::new("https://sso:8443", "svc:a");
        assert_eq!(caller.key(), "16:https://sso:8443:svc:a");
        assert_ne!(
            CallerId::new("a:b", "c").key(),
            CallerId::new("a", "b:c").key()
        );
    }

    #[test]
    fn agent_ids_fold_ascii_case_unless_exact() {
        let folded = |a: &str| AgentId::new(a, AccountFolding::CaseFolded);
        assert_eq!(folded("A1002"), folded("a1002"));
        assert_eq!(folded("Agent.One@Corp-X").as_str(), "agent.one@corp-x");
        assert_ne!(folded("a1002"), folded("a1003"));
        let exact = |a: &str| AgentId::new(a, AccountFolding::Exact);
        assert_ne!(exact("A1002"), exact("a1002"));
        assert_eq!(exact("A1002").as_str(), "A1002");
        assert_eq!(AccountFolding::default(), AccountFolding::CaseFolded);
    }

    #[test]
    fn scopes_keep_their_names() {
        assert_eq!(Scope::Caller.as_str(), "caller");
        assert_eq!(Scope::Agent.to_string(), "agent");
    }

    #[test]
    fn policy_header_names_quota_and_window() {
        let spec = QuotaSpec {
            burst: NonZeroU32::new(3).unwrap(),
            per: Duration::from_secs(1800),
        };
        assert_eq!(spec.policy_header(Scope::Agent), "\"agent\";q=3;w=1800");
    }
}
