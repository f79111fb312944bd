//! `[password_policy]` as the file holds it; [`PasswordPolicy::from_section`] compiles it.

use serde::{Deserialize, Serialize};

use super::PasswordPolicy;
use crate::config_key::InvalidKey;

/// `[password_policy]`: defaults are the vendor's default rule group.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicySection {
    /// Fewest characters a new password may have.
    pub min_len: usize,
    /// Most characters a new password may have.
    pub max_len: usize,
    /// How many of the four classes (upper, lower, digit, special) must appear.
    pub min_classes: u8,
    /// The characters that count as "special"; any other non-alphanumeric is refused.
    pub specials: String,
}

impl Default for PasswordPolicySection {
    fn default() -> Self {
        Self {
            min_len: 8,
            max_len: 16,
            min_classes: 3,
            specials: "~@^*_+.?".into(),
        }
    }
}

impl PasswordPolicy {
    /// The rule of a `[password_policy]` section; errors name the key
    /// (`password_policy.min_classes`).
    pub fn from_section(p: &PasswordPolicySection) -> Result<Self, InvalidKey> {
        Self::new(p.min_len, p.max_len, p.min_classes, &p.specials)
    }
}
