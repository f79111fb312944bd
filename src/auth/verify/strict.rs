//! Checks of a token's JSON that jsonwebtoken does not make (issue 11, finding 6):
//!
//! - **Unique member names.** RFC 7519 §4 and RFC 7515 §4: a JOSE header or claims set
//!   with duplicate member names must be refused (or only the last one used, which is what
//!   serde_json's maps do silently). Two `preferred_username`s, or two `kid`s, could be read
//!   one way here and another way by a different parser in the chain, so sipgw refuses them.
//!   The check walks the decoded segment once with a serde visitor over serde_json's own
//!   tokenizer (no second JSON parser), tracking the names of each object at every depth;
//!   serde_json's recursion limit bounds the depth.
//! - **The `typ` header** ([`RequiredTyp`], `auth.required_typ`): RFC 9068 §2.1 has access
//!   tokens say `at+jwt`, so that an ID token or another JWT from the same issuer cannot
//!   stand in for one.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

/// What the member-name walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Members {
    /// Every object's member names are distinct.
    Unique,
    /// Some object repeats a member name.
    Repeated,
    /// Not one JSON document (or nested beyond serde_json's recursion limit).
    NotJson,
}

/// Walks `json` and reports whether any object in it, at any depth, repeats a member name.
/// Names are compared after unescaping, so `"a"` and `"\u0061"` are the same name.
pub(super) fn members(json: &[u8]) -> Members {
    let repeated = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let walked = UniqueMembers {
        repeated: &repeated,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    match walked {
        Ok(()) => Members::Unique,
        Err(_) if repeated.get() => Members::Repeated,
        Err(_) => Members::NotJson,
    }
}

/// The visitor: accepts any JSON value, and fails as soon as an object repeats a name
/// (setting `repeated`, so the failure can be told apart from a syntax error).
#[derive(Clone, Copy)]
struct UniqueMembers<'a> {
    /// Set when a repeated name was found.
    repeated: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for UniqueMembers<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueMembers<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut names = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !names.insert(name) {
                self.repeated.set(true);
                return Err(A::Error::custom("a member name is repeated"));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// `auth.required_typ`, normalised: a media type without its `application/` prefix, in
/// lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredTyp(
    /// The media type, lower case, without `application/`.
    String,
);

impl RequiredTyp {
    /// The configured value, or `None` when it is not a media type name (RFC 6838 §4.2:
    /// letters, digits and `!#$&-^_.+`, with at most the one `/` of `application/`).
    pub fn new(configured: &str) -> Option<Self> {
        let name = normalise(configured.trim());
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
        valid.then_some(Self(name))
    }

    /// Whether a header's `typ` names this media type. RFC 7515 §4.1.9: a `typ` without a
    /// `/` means `application/` + it; media type names compare case-insensitively
    /// (RFC 6838 §4.2). So `at+jwt`, `AT+JWT` and `application/at+jwt` all match `at+jwt`.
    pub fn matches(&self, typ: &str) -> bool {
        normalise(typ) == self.0
    }
}

/// Lower case, without an `application/` prefix.
fn normalise(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_are_found_at_any_depth() {
        assert_eq!(
            members(br#"{"a":1,"b":{"a":2},"c":[{"a":3}]}"#),
            Members::Unique
        );
        for repeated in [
            r#"{"sub":"x","preferred_username":"a","preferred_username":"b"}"#,
            r#"{"realm_access":{"roles":["x"],"roles":["cc-admin"]}}"#,
            r#"{"list":[1,{"k":1,"k":2}]}"#,
            // The same name once escaped: equal after unescaping.
            r#"{"alg":"ES256","\u0061lg":"none"}"#,
        ] {
            assert_eq!(
                members(repeated.as_bytes()),
                Members::Repeated,
                "{repeated}"
            );
        }
    }

    #[test]
    fn anything_but_one_json_document_is_not_json() {
        for bad in ["", "{", r#"{"a":1} {"b":2}"#, "{'a':1}", "[1,]"] {
            assert_eq!(members(bad.as_bytes()), Members::NotJson, "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(members(deep.as_bytes()), Members::NotJson);
    }

    #[test]
    fn typ_compares_as_a_media_type() {
        let required = RequiredTyp::new("at+jwt").unwrap();
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+JWT",
        ] {
            assert!(required.matches(typ), "{typ}");
        }
        for typ in ["JWT", "at+jwt; q=1", "text/at+jwt", "", "application/jwt"] {
            assert!(!required.matches(typ), "{typ}");
        }
        assert_eq!(
            RequiredTyp::new("application/AT+JWT"),
            Some(required.clone())
        );
        for bad in ["", " ", "text/plain", "at jwt", "a/b/c"] {
            assert_eq!(RequiredTyp::new(bad), None, "{bad:?}");
        }
    }
}
