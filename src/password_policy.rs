//! The vendor's password rule, checked before the vendor is called.
//!
//! The vendor answers a rule violation with `resultCode "1"`, which our lockout shield would
//! have to count and the caller would learn about only after a round trip. Checking the same
//! rule here (configurable, since deployments can change the vendor's rule group) refuses the
//! change with 400 `password_policy` and keeps the vendor out of it. Only ASCII characters can
//! satisfy the rule: the four classes are ASCII, and anything else is refused outright.

pub mod config;

use std::fmt;

use crate::config_key::InvalidKey;

/// Upper bound for `max_len`: the vendor's rule groups never allow more, and it bounds work.
pub const MAX_PASSWORD_LEN: usize = 128;

/// A validated password rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Fewest characters allowed.
    min_len: usize,
    /// Most characters allowed.
    max_len: usize,
    /// How many of the four classes must appear (1..=4).
    min_classes: u8,
    /// Characters of the "special" class.
    specials: Vec<u8>,
}

/// Which part of the rule a password breaks. The `Display` text names the rule, never the
/// value, because it becomes the `detail` of a 400 `password_policy` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyViolation {
    /// Fewer than `min_len` characters.
    TooShort { min: usize },
    /// More than `max_len` characters.
    TooLong { max: usize },
    /// Fewer than `min_classes` of upper/lower/digit/special.
    TooFewClasses { min: u8, specials: String },
    /// A character outside the four classes (space, other punctuation, non-ASCII, control).
    ForbiddenCharacter { specials: String },
    /// The new password equals the current one.
    SameAsCurrent,
}

impl fmt::Display for PolicyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { min } => write!(f, "newPhonePwd must be at least {min} characters"),
            Self::TooLong { max } => write!(f, "newPhonePwd must be at most {max} characters"),
            Self::TooFewClasses { min, specials } => write!(
                f,
                "newPhonePwd must combine at least {min} of: upper-case letters, lower-case \
                 letters, digits, special characters ({specials})"
            ),
            Self::ForbiddenCharacter { specials } => write!(
                f,
                "newPhonePwd may only contain letters, digits and the special characters {specials}"
            ),
            Self::SameAsCurrent => write!(f, "newPhonePwd must differ from accountPwd"),
        }
    }
}

impl PasswordPolicy {
    /// Validates a rule; the vendor's default is `new(8, 16, 3, "~@^*_+.?")`.
    pub fn new(
        min_len: usize,
        max_len: usize,
        min_classes: u8,
        specials: &str,
    ) -> Result<Self, InvalidKey> {
        let err = |key: &str, message: String| {
            Err(InvalidKey::new(&format!("password_policy.{key}"), message))
        };
        if min_len == 0 {
            return err("min_len", "must be at least 1, got 0".into());
        }
        if max_len < min_len || max_len > MAX_PASSWORD_LEN {
            return err(
                "max_len",
                format!(
                    "must be between min_len ({min_len}) and {MAX_PASSWORD_LEN}, got {max_len}"
                ),
            );
        }
        if !(1..=4).contains(&min_classes) {
            return err("min_classes", format!("must be 1 to 4, got {min_classes}"));
        }
        if specials.is_empty() || !specials.bytes().all(|b| b.is_ascii_punctuation()) {
            return err(
                "specials",
                "must be a non-empty string of ASCII punctuation".into(),
            );
        }
        Ok(Self {
            min_len,
            max_len,
            min_classes,
            specials: specials.as_bytes().to_vec(),
        })
    }

    /// Longest password this rule accepts; request validation uses it as the length bound.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Checks `new` against the rule and against the current password.
    pub fn check(&self, new: &str, current: &str) -> Result<(), PolicyViolation> {
        let specials = || String::from_utf8_lossy(&self.specials).into_owned();
        let len = new.chars().count();
        if len < self.min_len {
            return Err(PolicyViolation::TooShort { min: self.min_len });
        }
        if len > self.max_len {
            return Err(PolicyViolation::TooLong { max: self.max_len });
        }
        let (mut upper, mut lower, mut digit, mut special) = (false, false, false, false);
        for c in new.chars() {
            match c {
                'A'..='Z' => upper = true,
                'a'..='z' => lower = true,
                '0'..='9' => digit = true,
                c if c.is_ascii() && self.specials.contains(&(c as u8)) => special = true,
                _ => {
                    return Err(PolicyViolation::ForbiddenCharacter {
                        specials: specials(),
                    });
                }
            }
        }
        let classes = [upper, lower, digit, special]
            .iter()
            .filter(|&&b| b)
            .count();
        if classes < usize::from(self.min_classes) {
            return Err(PolicyViolation::TooFewClasses {
                min: self.min_classes,
                specials: specials(),
            });
        }
        if new == current {
            return Err(PolicyViolation::SameAsCurrent);
        }
        Ok(())
    }
}

impl Default for PasswordPolicy {
    /// The vendor's default rule group (docs/vendor.md).
    fn default() -> Self {
        Self::new(8, 16, 3, "~@^*_+.?").expect("the vendor default rule is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(new: &str) -> Result<(), PolicyViolation> {
        PasswordPolicy::default().check(new, "Old-irrelevant1")
    }

    #[test]
    fn vendor_default_accepts_three_classes_within_length() {
        assert_eq!(check("Abcdefg1"), Ok(()));
        assert_eq!(check("abcdefg1~"), Ok(()));
        assert_eq!(check("ABCDEFG1?"), Ok(()));
        assert_eq!(check("Aa1~Aa1~Aa1~Aa1~"), Ok(())); // exactly 16
    }

    #[test]
    fn length_bounds_are_inclusive() {
        assert_eq!(check("Abcde1"), Err(PolicyViolation::TooShort { min: 8 }));
        assert_eq!(check("Abcdef1"), Err(PolicyViolation::TooShort { min: 8 }));
        assert_eq!(
            check("Aa1~Aa1~Aa1~Aa1~x"),
            Err(PolicyViolation::TooLong { max: 16 })
        );
    }

    #[test]
    fn two_classes_are_not_enough() {
        assert!(matches!(
            check("abcdefgh1"),
            Err(PolicyViolation::TooFewClasses { min: 3, .. })
        ));
        assert!(matches!(
            check("ABCDEFGH"),
            Err(PolicyViolation::TooFewClasses { .. })
        ));
    }

    #[test]
    fn characters_outside_the_classes_are_refused() {
        for bad in [
            "Abcdefg1!",
            "Abcdef g1",
            "Abcdefg1#",
            "Abcdéfg1",
            "Abcdefg1\n",
        ] {
            assert!(
                matches!(check(bad), Err(PolicyViolation::ForbiddenCharacter { .. })),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn new_equal_to_current_is_refused() {
        let p = PasswordPolicy::default();
        assert_eq!(
            p.check("Abcdefg1", "Abcdefg1"),
            Err(PolicyViolation::SameAsCurrent)
        );
    }

    #[test]
    fn violation_text_names_the_rule_not_the_value() {
        let text = check("Abcdefg1!").unwrap_err().to_string();
        assert!(text.contains("~@^*_+.?"));
        assert!(!text.contains("Abcdefg1!"));
    }

    #[test]
    fn custom_rules_are_validated_and_applied() {
        let p = PasswordPolicy::new(4, 6, 1, "!").unwrap();
        assert_eq!(p.check("abcd", "x"), Ok(()));
        assert_eq!(
            p.check("abcdefg", "x"),
            Err(PolicyViolation::TooLong { max: 6 })
        );
        assert_eq!(
            PasswordPolicy::new(0, 6, 1, "!").unwrap_err().key,
            "password_policy.min_len"
        );
        assert_eq!(
            PasswordPolicy::new(8, 7, 1, "!").unwrap_err().key,
            "password_policy.max_len"
        );
        assert_eq!(
            PasswordPolicy::new(8, 200, 1, "!").unwrap_err().key,
            "password_policy.max_len"
        );
        assert_eq!(
            PasswordPolicy::new(8, 16, 5, "!").unwrap_err().key,
            "password_policy.min_classes"
        );
        assert_eq!(
            PasswordPolicy::new(8, 16, 3, "a").unwrap_err().key,
            "password_policy.specials"
        );
        assert_eq!(
            PasswordPolicy::new(8, 16, 3, "").unwrap_err().key,
            "password_policy.specials"
        );
    }
}
