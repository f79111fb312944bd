//! What every configuration section shares: the error that names a dotted key, and the
//! checks most keys need (a range, a duration, a CA file).
//!
//! A leaf module: each domain module validates its own section with these, and
//! [`crate::config`] composes the sections, so no domain module needs to know about the
//! whole configuration (and `config` ↔ domain imports never form a cycle).

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A value that cannot be used: the dotted key it came from and what is wrong with it.
///
/// The message never quotes a secret; it quotes the offending value when that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {message}")]
pub struct InvalidKey {
    /// Dotted key, e.g. `vendor.timeout_ms`.
    pub key: String,
    /// What is wrong, e.g. `must be > 0, got 0`.
    pub message: String,
}

impl InvalidKey {
    /// An error about `key`.
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Shorthand for [`InvalidKey::new`], used by every section's validation.
pub fn invalid(key: &str, message: impl Into<String>) -> InvalidKey {
    InvalidKey::new(key, message)
}

/// Checks `min <= value <= max`; the message names the key, the range and the value.
/// Upper bounds keep values far from what would overflow a clock or a semaphore.
pub fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, InvalidKey> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else if min == 1 && value == 0 {
        Err(invalid(key, "must be > 0, got 0"))
    } else {
        Err(invalid(key, format!("must be {min} to {max}, got {value}")))
    }
}

/// A `*_ms` key in range, as a duration.
pub fn millis(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, InvalidKey> {
    in_range(key, value, min, max).map(Duration::from_millis)
}

/// A `*_secs` key in range, as a duration.
pub fn secs(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, InvalidKey> {
    in_range(key, value, min, max).map(Duration::from_secs)
}

/// Reads the PEM certificates of a `*ca_file` key; an unreadable file, bad PEM or a file
/// without any certificate is an error now rather than a TLS failure at the first request.
pub fn load_ca_file(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, InvalidKey> {
    let shown = path.display();
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(key, format!("cannot read {shown}: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(key, format!("bad PEM in {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(key, format!("{shown} holds no certificate")));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_the_key_and_the_value() {
        assert_eq!(in_range("a.b", 5, 1, 10), Ok(5));
        assert_eq!(
            in_range("a.b", 0, 1, 10).unwrap_err().to_string(),
            "a.b must be > 0, got 0"
        );
        assert_eq!(
            in_range("a.b", 11, 1, 10).unwrap_err().to_string(),
            "a.b must be 1 to 10, got 11"
        );
        assert_eq!(millis("a.b", 0, 0, 10), Ok(Duration::ZERO));
        assert_eq!(secs("a.b", 2, 1, 10), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn a_missing_ca_file_names_its_key() {
        let error = load_ca_file("x.ca_file", Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert_eq!(error.key, "x.ca_file");
        assert!(error.message.starts_with("cannot read /nonexistent/ca.pem"));
    }
}
