//! What the log says about a certificate after a (re)load: its serial number and when it
//! expires, so an operator can see that a rotation took effect. Nothing else, and never the
//! key.
//!
//! The fields are read with `simple_asn1` (already in the tree through `jsonwebtoken`)
//! rather than a full X.509 crate: two fields do not justify one. Its decoder is strict
//! (e.g. about the characters of a `PrintableString`), so a certificate it cannot read is
//! shown as `unknown`: the summary is for the log only and never decides anything; rustls
//! has already accepted the certificate by then.

use std::fmt;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use simple_asn1::ASN1Block;

/// A certificate's serial number and end of validity, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Colon-separated hex bytes, as `openssl x509 -serial` shows them (without colons
    /// there); `None` when the certificate could not be read.
    pub serial: Option<String>,
    /// The `notAfter` time.
    pub not_after: Option<SystemTime>,
}

impl CertSummary {
    /// Reads `cert`'s serial and not-after; fields that cannot be read are `None`.
    pub fn of(cert: &CertificateDer<'_>) -> Self {
        let fields = simple_asn1::from_der(cert.as_ref())
            .ok()
            .and_then(|blocks| tbs_fields(&blocks));
        match fields {
            Some((serial, not_after)) => Self {
                serial: Some(serial),
                not_after,
            },
            None => Self::unknown(),
        }
    }

    /// A summary with nothing known.
    pub fn unknown() -> Self {
        Self {
            serial: None,
            not_after: None,
        }
    }

    /// The serial for the log, `unknown` when unread.
    pub fn serial_text(&self) -> &str {
        self.serial.as_deref().unwrap_or("unknown")
    }

    /// The not-after time as RFC 3339 for the log, `unknown` when unread.
    pub fn not_after_text(&self) -> String {
        self.not_after.map_or_else(
            || "unknown".to_owned(),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        )
    }
}

impl fmt::Display for CertSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "serial {}, not after {}",
            self.serial_text(),
            self.not_after_text()
        )
    }
}

/// `Certificate ::= SEQUENCE { tbsCertificate, ... }`, `TBSCertificate ::= SEQUENCE {
/// [0] EXPLICIT version OPTIONAL, serialNumber INTEGER, signature, issuer, validity
/// SEQUENCE { notBefore, notAfter }, ... }` (RFC 5280 §4.1).
fn tbs_fields(blocks: &[ASN1Block]) -> Option<(String, Option<SystemTime>)> {
    let [ASN1Block::Sequence(_, certificate)] = blocks else {
        return None;
    };
    let Some(ASN1Block::Sequence(_, tbs)) = certificate.first() else {
        return None;
    };
    let rest = match tbs.first() {
        Some(ASN1Block::Explicit(..)) => &tbs[1..],
        _ => &tbs[..],
    };
    let Some(ASN1Block::Integer(_, serial)) = rest.first() else {
        return None;
    };
    let serial = serial
        .to_signed_bytes_be()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let not_after = match rest.get(3) {
        Some(ASN1Block::Sequence(_, validity)) => match validity.get(1) {
            Some(ASN1Block::UTCTime(_, t) | ASN1Block::GeneralizedTime(_, t)) => {
                let secs = t.assume_utc().unix_timestamp();
                u64::try_from(secs)
                    .ok()
                    .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            }
            _ => None,
        },
        _ => None,
    };
    Some((serial, not_after))
}
