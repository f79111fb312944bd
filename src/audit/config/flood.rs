//! `[audit]` flood-control keys, validated (docs/audit.md).

use super::AuditSection;
use crate::config_key::{InvalidKey, in_range, invalid};

/// How refusal records are flood-controlled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodConfig {
    /// Full records per caller and minute.
    pub caller_per_minute: u32,
    /// Full records per client network and minute (no caller known).
    pub network_per_minute: u32,
    /// IPv4 network prefix length.
    pub ipv4_prefix: u8,
    /// IPv6 network prefix length.
    pub ipv6_prefix: u8,
    /// Most callers, and most networks, tracked at once.
    pub max_keys: usize,
    /// Full refusal records per minute across all keys.
    pub total_per_minute: u32,
}

/// Most records per key or in all per minute that a key may ask for: beyond it, flood
/// control would not bound anything worth bounding.
const MAX_PER_MINUTE: u64 = 1_000_000;

impl FloodConfig {
    /// Checks the `audit.flood_*` keys, honouring the deprecated names they replaced.
    pub fn from_section(a: &AuditSection) -> Result<Self, InvalidKey> {
        let caller = renamed(
            "audit.rate_limited_per_minute",
            a.rate_limited_per_minute,
            "audit.flood_caller_per_minute",
            a.flood_caller_per_minute,
            AuditSection::default().flood_caller_per_minute,
        )?;
        let network = renamed(
            "audit.unauthenticated_per_minute",
            a.unauthenticated_per_minute,
            "audit.flood_network_per_minute",
            a.flood_network_per_minute,
            AuditSection::default().flood_network_per_minute,
        )?;
        let per_minute = |key: &str, value: u32| {
            in_range(key, u64::from(value), 0, MAX_PER_MINUTE).map(|_| value)
        };
        Ok(FloodConfig {
            caller_per_minute: per_minute("audit.flood_caller_per_minute", caller)?,
            network_per_minute: per_minute("audit.flood_network_per_minute", network)?,
            // Wider networks than a /8 or a /16 would lump unrelated clients together.
            ipv4_prefix: in_range("audit.flood_ipv4_prefix", a.flood_ipv4_prefix.into(), 8, 32)?
                as u8,
            ipv6_prefix: in_range(
                "audit.flood_ipv6_prefix",
                a.flood_ipv6_prefix.into(),
                16,
                128,
            )? as u8,
            max_keys: in_range(
                "audit.flood_max_keys",
                a.flood_max_keys.into(),
                1,
                1_000_000,
            )? as usize,
            total_per_minute: per_minute("audit.flood_total_per_minute", a.flood_total_per_minute)?,
        })
    }
}

/// The value of a key that replaced a deprecated one: the old key, when set, is still
/// honoured (with a warning), unless the new key is also set to something else.
fn renamed(
    old_key: &str,
    old: Option<u32>,
    new_key: &str,
    new: u32,
    new_default: u32,
) -> Result<u32, InvalidKey> {
    let Some(old) = old else {
        return Ok(new);
    };
    if new != new_default && new != old {
        return Err(invalid(
            old_key,
            format!("is deprecated and conflicts with {new_key}; set only {new_key}"),
        ));
    }
    tracing::warn!(
        key = old_key,
        replacement = new_key,
        "deprecated configuration key; its value is used for the replacement"
    );
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let flood = FloodConfig::from_section(&AuditSection::default()).unwrap();
        assert_eq!(
            flood,
            FloodConfig {
                caller_per_minute: 10,
                network_per_minute: 10,
                ipv4_prefix: 32,
                ipv6_prefix: 64,
                max_keys: 1_000,
                total_per_minute: 1_000,
            }
        );
    }

    #[test]
    fn deprecated_keys_are_mapped_to_their_replacements() {
        let section = AuditSection {
            unauthenticated_per_minute: Some(3),
            rate_limited_per_minute: Some(4),
            ..AuditSection::default()
        };
        let flood = FloodConfig::from_section(&section).unwrap();
        assert_eq!((flood.network_per_minute, flood.caller_per_minute), (3, 4));
        // The same value under both names is fine; different ones are not.
        let both_same = AuditSection {
            unauthenticated_per_minute: Some(3),
            flood_network_per_minute: 3,
            ..AuditSection::default()
        };
        assert_eq!(
            FloodConfig::from_section(&both_same)
                .unwrap()
                .network_per_minute,
            3
        );
        let conflict = AuditSection {
            rate_limited_per_minute: Some(4),
            flood_caller_per_minute: 5,
            ..AuditSection::default()
        };
        let error = FloodConfig::from_section(&conflict)
            .unwrap_err()
            .to_string();
        assert!(error.contains("audit.rate_limited_per_minute"), "{error}");
        assert!(error.contains("audit.flood_caller_per_minute"), "{error}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases: [(&str, AuditSection); 4] = [
            (
                "audit.flood_ipv4_prefix",
                AuditSection {
                    flood_ipv4_prefix: 33,
                    ..AuditSection::default()
                },
            ),
            (
                "audit.flood_ipv6_prefix",
                AuditSection {
                    flood_ipv6_prefix: 8,
                    ..AuditSection::default()
                },
            ),
            (
                "audit.flood_max_keys",
                AuditSection {
                    flood_max_keys: 0,
                    ..AuditSection::default()
                },
            ),
            (
                "audit.flood_total_per_minute",
                AuditSection {
                    flood_total_per_minute: 2_000_000,
                    ..AuditSection::default()
                },
            ),
        ];
        for (key, section) in cases {
            let error = FloodConfig::from_section(&section).unwrap_err().to_string();
            assert!(error.starts_with(key), "{key}: {error}");
        }
    }
}
