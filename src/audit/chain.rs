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
        hex(&self.digest(prev.as_bytes(), unsealed.as_bytes()))
    }

    /// The MAC of a record: one context over `prev` then the record's bytes without `mac`
    /// (the writer's path, which seals records in its batch buffer without a `String` each).
    pub fn digest(&self, prev: &[u8], unsealed: &[u8]) -> [u8; MAC_BYTES] {
        let mut mac = [0; MAC_BYTES];
        match self {
            Self::Hmac(key) => {
                let mut context = hmac::Context::with_key(key);
                context.update(prev);
                context.update(unsealed);
                mac.copy_from_slice(context.sign().as_ref());
            }
            Self::Plain => {
                let mut context = digest::Context::new(&digest::SHA256);
                context.update(prev);
                context.update(unsealed);
                mac.copy_from_slice(context.finish().as_ref());
            }
        }
        mac
    }
}

/// Bytes of a MAC (HMAC-SHA256 or SHA-256); its hex is twice as long.
pub const MAC_BYTES: usize = 32;

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Appends `bytes` to `out` as lowercase hex, two digits per byte from a table (`core::fmt`
/// costs a formatter call per byte).
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
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
    fn hex_is_two_lowercase_digits_per_byte_as_core_fmt_writes_them() {
        let bytes: Vec<u8> = (0..=255).collect();
        let by_fmt: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&bytes), by_fmt);
        let mut out = b"mac:".to_vec();
        push_hex(&mut out, &[0x00, 0x0f, 0xf0, 0xff]);
        assert_eq!(out, b"mac:000ff0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn the_keyed_digest_is_hmac_sha256_over_prev_then_the_record() {
        // RFC 4231, test case 1: key 0x0b x 20, data "Hi There", split across the two.
        let key = MacKey::from_file_bytes(&[0x0b; 20]).unwrap();
        assert_eq!(
            hex(&key.digest(b"Hi ", b"There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(hex(&key.digest(b"Hi ", b"There")), key.mac("Hi ", "There"));
    }

    #[test]
    fn short_keys_are_refused_and_debug_is_redacted() {
        assert!(MacKey::from_file_bytes(b"short\n").is_err());
        let key = MacKey::from_file_bytes(&[7u8; 32]).unwrap();
        assert!(!format!("{key:?}").contains('7'));
    }
}
