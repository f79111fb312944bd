//! The vendor's default password rule group, applied to `newPhonePwd`.
//!
//! docs/vendor.md: 8 to 16 characters combining at least three of four kinds (upper-case,
//! lower-case, digits, the specials `~ @ ^ * _ + . ?`). The simulator refuses any other
//! character, which is the strictest reading of "combines ... kinds".

use std::fmt;

/// Fewest characters the rule allows.
pub const MIN_LEN: usize = 8;
/// Most characters the rule allows.
pub const MAX_LEN: usize = 16;
/// How many of the four character kinds a password must combine.
pub const MIN_KINDS: usize = 3;
/// The only non-alphanumeric characters the rule allows.
pub const SPECIALS: &str = "~@^*_+.?";

/// Why a new password breaks the rule. Never holds the password itself, so it is safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleViolation {
    /// Too short or too long.
    Length {
        /// The number of characters the password had.
        chars: usize,
    },
    /// A character outside upper, lower, digit and [`SPECIALS`].
    ForbiddenCharacter,
    /// Fewer than [`MIN_KINDS`] kinds of character.
    TooFewKinds {
        /// How many kinds the password combined.
        kinds: usize,
    },
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every message names the whole rule, as the vendor's resultMessage does, so a client
        // can show it to the agent without knowing our detail codes.
        let detail = match self {
            Self::Length { chars } => format!("it has {chars} characters"),
            Self::ForbiddenCharacter => "it contains a character that is not allowed".to_owned(),
            Self::TooFewKinds { kinds } => format!("it combines only {kinds} kind(s)"),
        };
        write!(
            f,
            "new password breaks the password rule ({MIN_LEN}-{MAX_LEN} characters combining at \
             least {MIN_KINDS} of: upper-case letters, lower-case letters, digits, {SPECIALS}): \
             {detail}"
        )
    }
}

/// Checks `password` against the vendor's default rule group.
pub fn check(password: &str) -> Result<(), RuleViolation> {
    let chars = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&chars) {
        return Err(RuleViolation::Length { chars });
    }
    let (mut upper, mut lower, mut digit, mut special) = (false, false, false, false);
    for c in password.chars() {
        match c {
            'A'..='Z' => upper = true,
            'a'..='z' => lower = true,
            '0'..='9' => digit = true,
            c if SPECIALS.contains(c) => special = true,
            _ => return Err(RuleViolation::ForbiddenCharacter),
        }
    }
    let kinds = [upper, lower, digit, special]
        .into_iter()
        .filter(|k| *k)
        .count();
    if kinds < MIN_KINDS {
        return Err(RuleViolation::TooFewKinds { kinds });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_three_or_four_kinds_within_length() {
        assert_eq!(check("Abcdefg1"), Ok(()));
        assert_eq!(check("abcdefg1."), Ok(()));
        assert_eq!(check("ABCDEFG1?"), Ok(()));
        assert_eq!(check("Aa1~@^*_+.?Zz9xy"), Ok(()));
    }

    #[test]
    fn length_bounds_are_inclusive() {
        assert_eq!(check("Abcdef1"), Err(RuleViolation::Length { chars: 7 }));
        assert_eq!(check("Abcdef12"), Ok(()));
        assert_eq!(check("Abcdefgh12345678"), Ok(()));
        assert_eq!(
            check("Abcdefgh123456789"),
            Err(RuleViolation::Length { chars: 17 })
        );
        assert_eq!(check(""), Err(RuleViolation::Length { chars: 0 }));
    }

    #[test]
    fn two_kinds_are_not_enough() {
        assert_eq!(
            check("abcdefgh1"),
            Err(RuleViolation::TooFewKinds { kinds: 2 })
        );
        assert_eq!(
            check("abcdefghij"),
            Err(RuleViolation::TooFewKinds { kinds: 1 })
        );
        assert_eq!(
            check("12345678.."),
            Err(RuleViolation::TooFewKinds { kinds: 2 })
        );
    }

    #[test]
    fn characters_outside_the_rule_are_refused() {
        assert_eq!(check("Abcdef1!x"), Err(RuleViolation::ForbiddenCharacter));
        assert_eq!(check("Abcd ef1x"), Err(RuleViolation::ForbiddenCharacter));
        assert_eq!(check("Abcdéf1xy"), Err(RuleViolation::ForbiddenCharacter));
        assert_eq!(check("Abcdef1-x"), Err(RuleViolation::ForbiddenCharacter));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // Eight characters, but more than sixteen bytes: the length check must not be what
        // refuses it.
        assert_eq!(check("ééééééé1"), Err(RuleViolation::ForbiddenCharacter));
    }

    #[test]
    fn message_names_the_rule_and_never_the_password() {
        let message = check("Secret!12").unwrap_err().to_string();
        assert!(message.contains("8-16 characters"), "{message}");
        assert!(message.contains(SPECIALS), "{message}");
        assert!(!message.contains("Secret!12"), "{message}");
    }
}
