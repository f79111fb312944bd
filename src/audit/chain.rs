//! The hash chain: `mac = HMAC-SHA256(key, prev || record without mac)`, `prev` = the
//! previous record's `mac` (64 zeros for the first record ever), docs/audit.md.
//!
//! Without a key the MAC is a plain SHA-256: that still detects accidental damage and
//! careless edits, but anyone who can write the file can recompute the whole chain. With a
//! key that lives off the host (see docs/audit.md), an attacker on the host cannot.

use aws_lc_rs::{digest, hmac};

/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Shortest accepted HMAC key.
pub const MIN_KEY_BYTES: usize = 16;

/// What `serve` logs, `check-config` and `audit verify` print (and every reviewer's tool
/// says) when the trail has no HMAC key: the chain then holds against accidents only.
pub const UNKEYED_WARNING: &str = "the audit trail has no HMAC key (audit.hmac_key_file): \
anyone who can write its files can rewrite and re-chain them, so it is tamper-evident \
against accidents only, not against an attacker; see docs/audit.md#keep-the-key-off-the-host";

/// How records are sealed.
#[derive(Clone)]
pub enum MacKey {
    /// HMAC-SHA256 with a secret key.
    Hmac(Box<hmac::Key>),
    /// Plain SHA-256 (no key configured).
    Plain,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hmac(_) => "MacKey::Hmac([REDACTED])",
            Self::Plain => "MacKey::Plain",
        })
    }
}

impl MacKey {
    /// An HMAC key from the bytes of `hmac_key_file` (a trailing newline is not part of it).
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Self, String> {
        let key = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let key = key.strip_suffix(b"\r").unwrap_or(key);
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "holds {} bytes; at least {MIN_KEY_BYTES} are needed",
                key.len()
            ));
        }
        Ok(Self::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, key))))
    }

    /// Whether records are sealed with a secret key (not plain SHA-256).
    pub fn is_keyed(&self) -> bool {
        matches!(self, Self::Hmac(_))
    }

    /// The HMAC key in the file at `path` (`--key-file`, `audit.hmac_key_file`), or why
    /// it cannot be had.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        Self::from_file_bytes(&bytes)
    }

    /// The MAC of a record, as lowercase hex.
    pub fn mac(&self, prev: &str, unsealed: &str) -> String {
        match self {
            Self::Hmac(key) => {
                let mut context = hmac::Context::with_key(key);
                context.update(prev.as_bytes());
                context.update(unsealed.as_bytes());
                hex(context.sign().as_ref())
            }
            Self::Plain => {
                let mut context = digest::Context::new(&digest::SHA256);
                context.update(prev.as_bytes());
                context.update(unsealed.as_bytes());
                hex(context.finish().as_ref())
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_plain_macs_differ_and_depend_on_prev() {
        let key = MacKey::from_file_bytes(b"0123456789abcdef0123456789abcdef\n").unwrap();
        let a = key.mac(GENESIS, "{\"seq\":1}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, MacKey::Plain.mac(GENESIS, "{\"seq\":1}"));
        assert_ne!(a, key.mac(&a, "{\"seq\":1}"));
        // SHA-256("") as a sanity check of the plain variant's hex.
        assert_eq!(
            MacKey::Plain.mac("", ""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn short_keys_are_refused_and_debug_is_redacted() {
        assert!(MacKey::from_file_bytes(b"short\n").is_err());
        let key = MacKey::from_file_bytes(&[7u8; 32]).unwrap();
        assert!(!format!("{key:?}").contains('7'));
    }
}
