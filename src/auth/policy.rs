//! Who may change which agent's password (docs/authentication.md): pure functions over claims.
//!
//! What a token grants is worked out once, when it is verified ([`Policy::grants`]), and
//! cached with it; the per-request decision ([`Policy::authorize`]) is then a comparison.

use serde_json::{Map, Value};

/// Why a caller may change an agent's password; carried on to quotas and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The token's `agent_claim` names the agent itself.
    SelfService,
    /// The token holds this admin scope (`scope` or `scp`).
    AdminScope(String),
    /// The token holds this admin role (in `roles_claim`).
    AdminRole(String),
}

impl Grant {
    /// Short stable name for logs and audit records.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::SelfService => "self_service",
            Self::AdminScope(_) => "admin_scope",
            Self::AdminRole(_) => "admin_role",
        }
    }
}

/// What a verified token allows, independent of the agent asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    /// The value of `agent_claim`, when it is a string.
    pub agent: Option<String>,
    /// The first admin scope or role the token holds.
    pub admin: Option<Grant>,
}

/// How the `agent_claim` is compared with the agent of the URL (`auth.agent_claim_match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AgentMatch {
    /// Byte for byte (the default): a caller whose claim is `alice` may not change `ALICE`.
    /// Whether the two are one account is the vendor's business; self-service grants no
    /// more than the claim says.
    #[default]
    Exact,
    /// ASCII case-insensitive, for directories whose user names differ from the vendor's
    /// accounts only in case. ASCII only: `userAccount` is ASCII, and Unicode folding would
    /// let e.g. the Kelvin sign in a claim match `k`.
    CaseInsensitive,
}

impl AgentMatch {
    /// Whether `claim` names `agent`.
    fn matches(self, claim: &str, agent: &str) -> bool {
        match self {
            Self::Exact => claim == agent,
            Self::CaseInsensitive => claim.eq_ignore_ascii_case(agent),
        }
    }
}

/// The `[auth]` policy keys, validated.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Claim naming the caller's own agent account (default `preferred_username`).
    pub agent_claim: String,
    /// How that claim is compared with the agent asked for.
    pub agent_match: AgentMatch,
    /// Whether agents may change their own password.
    pub self_service: bool,
    /// Scopes that let a caller change any agent's password.
    pub admin_scopes: Vec<String>,
    /// Roles that let a caller change any agent's password.
    pub admin_roles: Vec<String>,
    /// Path of the roles claim, split at dots (`realm_access.roles` → two steps).
    pub roles_path: Vec<String>,
}

impl Policy {
    /// Works out what `claims` grant.
    pub fn grants(&self, claims: &Map<String, Value>) -> Grants {
        let agent = claims
            .get(&self.agent_claim)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let scopes = scopes(claims);
        let admin = self
            .admin_scopes
            .iter()
            .find(|s| scopes.contains(&s.as_str()))
            .map(|s| Grant::AdminScope(s.clone()))
            .or_else(|| {
                let roles = strings_at(claims, &self.roles_path);
                self.admin_roles
                    .iter()
                    .find(|r| roles.contains(&r.as_str()))
                    .map(|r| Grant::AdminRole(r.clone()))
            });
        Grants { agent, admin }
    }

    /// Whether these grants allow changing `agent`'s password, and by which rule. Admin
    /// grants come first, so the audit trail names the strongest reason.
    pub fn authorize(&self, grants: &Grants, agent: &str) -> Option<Grant> {
        if let Some(admin) = &grants.admin {
            return Some(admin.clone());
        }
        let own = grants
            .agent
            .as_deref()
            .is_some_and(|claim| self.agent_match.matches(claim, agent));
        (self.self_service && own).then_some(Grant::SelfService)
    }
}

/// Scopes from `scope` (space-separated string, RFC 8693) and `scp` (array or string).
fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut all: Vec<&str> = claims
        .get("scope")
        .and_then(Value::as_str)
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    match claims.get("scp") {
        Some(Value::Array(items)) => all.extend(items.iter().filter_map(Value::as_str)),
        Some(Value::String(s)) => all.extend(s.split(' ').filter(|s| !s.is_empty())),
        _ => {}
    }
    all
}

/// The strings at a dotted path: an array of strings, or one string.
fn strings_at<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Vec<&'a str> {
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    let mut value = claims.get(first);
    for step in rest {
        value = value.and_then(|v| v.get(step));
    }
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy {
            agent_claim: "preferred_username".into(),
            agent_match: AgentMatch::Exact,
            self_service: true,
            admin_scopes: vec!["sipgw.admin".into()],
            admin_roles: vec!["cc-admin".into()],
            roles_path: vec!["realm_access".into(), "roles".into()],
        }
    }

    fn grants(claims: Value) -> Grants {
        policy().grants(claims.as_object().unwrap())
    }

    #[test]
    fn self_service_covers_only_the_own_agent() {
        let g = grants(json!({"preferred_username": "a1001"}));
        assert_eq!(policy().authorize(&g, "a1001"), Some(Grant::SelfService));
        assert_eq!(policy().authorize(&g, "a1002"), None);
        let off = Policy {
            self_service: false,
            ..policy()
        };
        assert_eq!(off.authorize(&g, "a1001"), None);
    }

    #[test]
    fn self_service_matches_case_only_when_configured() {
        let g = grants(json!({"preferred_username": "alice"}));
        assert_eq!(policy().authorize(&g, "ALICE"), None);
        let folding = Policy {
            agent_match: AgentMatch::CaseInsensitive,
            ..policy()
        };
        assert_eq!(folding.authorize(&g, "ALICE"), Some(Grant::SelfService));
        assert_eq!(folding.authorize(&g, "alicE"), Some(Grant::SelfService));
        assert_eq!(folding.authorize(&g, "alice2"), None);
        // U+212A KELVIN SIGN folds to `k` under Unicode rules, never here.
        let kelvin = grants(json!({"preferred_username": "\u{212a}im"}));
        assert_eq!(folding.authorize(&kelvin, "kim"), None);
    }

    #[test]
    fn admin_scope_from_scope_or_scp() {
        for claims in [
            json!({"scope": "openid sipgw.admin profile"}),
            json!({"scp": ["openid", "sipgw.admin"]}),
            json!({"scp": "sipgw.admin"}),
        ] {
            let g = grants(claims.clone());
            assert_eq!(
                policy().authorize(&g, "anyone"),
                Some(Grant::AdminScope("sipgw.admin".into())),
                "{claims}"
            );
        }
        // A scope is a whole word, not a substring.
        assert_eq!(
            policy().authorize(&grants(json!({"scope": "sipgw.administrator"})), "x"),
            None
        );
    }

    #[test]
    fn admin_role_at_a_dotted_path_as_array_or_string() {
        for claims in [
            json!({"realm_access": {"roles": ["user", "cc-admin"]}}),
            json!({"realm_access": {"roles": "cc-admin"}}),
        ] {
            let g = grants(claims);
            assert_eq!(
                policy().authorize(&g, "x"),
                Some(Grant::AdminRole("cc-admin".into()))
            );
        }
        assert_eq!(
            policy().authorize(&grants(json!({"roles": ["cc-admin"]})), "x"),
            None
        );
        let flat = Policy {
            roles_path: vec!["roles".into()],
            ..policy()
        };
        let g = flat.grants(json!({"roles": ["cc-admin"]}).as_object().unwrap());
        assert_eq!(
            flat.authorize(&g, "x"),
            Some(Grant::AdminRole("cc-admin".into()))
        );
    }

    #[test]
    fn nothing_granted_without_a_matching_claim() {
        let g = grants(json!({"sub": "x", "preferred_username": 42, "scope": ["sipgw.admin"]}));
        assert_eq!(g.agent, None);
        assert_eq!(policy().authorize(&g, "42"), None);
    }
}
