//! `[audit]`: the trail's file, key, durability, rotation and flood control; the section as
//! the file holds it ([`AuditSection`]) and validated ([`AuditConfig`], with the HMAC key
//! loaded). The flood-control keys are checked in `flood`. Every error names its key.

mod flood;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::chain::MacKey;
use super::writer::Fsync;
use crate::config_key::{InvalidKey, in_range, invalid, millis};
pub use flood::FloodConfig;

/// `[audit]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// The current trail file; rotated files go beside it.
    pub path: String,
    /// File holding the HMAC key; without it records are chained with plain SHA-256.
    pub hmac_key_file: Option<String>,
    /// `"always"` (group commit, the default), `"interval"` or `"never"`.
    pub fsync: String,
    /// With `fsync = "interval"`: at most this long between a write and its fsync.
    pub fsync_interval_ms: u64,
    /// Rotate when the file would grow beyond this.
    pub max_bytes: u64,
    /// Also print each record on stdout as JSON.
    pub stdout: bool,
    /// Full refusal records per caller (`iss` + `sub`) and minute; then one summary.
    pub flood_caller_per_minute: u32,
    /// Full refusal records per client network and minute when no caller is known.
    pub flood_network_per_minute: u32,
    /// Prefix length of an IPv4 client network for flood control.
    pub flood_ipv4_prefix: u8,
    /// Prefix length of an IPv6 client network for flood control.
    pub flood_ipv6_prefix: u8,
    /// Most callers, and most networks, tracked at once; more share one overflow window.
    pub flood_max_keys: u32,
    /// Full refusal records per minute across all keys (the global budget).
    pub flood_total_per_minute: u32,
    /// Deprecated: read as `flood_network_per_minute` (with a warning).
    pub unauthenticated_per_minute: Option<u32>,
    /// Deprecated: read as `flood_caller_per_minute` (with a warning).
    pub rate_limited_per_minute: Option<u32>,
    /// Mode of the files sipgw creates (`"0600"`, or `"0640"` for a reviewers' group);
    /// directories it creates get `0700` / `0750`.
    pub file_mode: String,
    /// Start a new chain, beginning with a `discontinuity` record, although the trail
    /// directory was written before and now lacks its records (an operator's decision).
    pub allow_new_chain: bool,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            path: "audit/sipgw-audit.jsonl".into(),
            hmac_key_file: None,
            fsync: "always".into(),
            fsync_interval_ms: 1_000,
            max_bytes: 64 * 1024 * 1024,
            stdout: false,
            flood_caller_per_minute: 10,
            flood_network_per_minute: 10,
            flood_ipv4_prefix: 32,
            flood_ipv6_prefix: 64,
            flood_max_keys: 1_000,
            flood_total_per_minute: 1_000,
            unauthenticated_per_minute: None,
            rate_limited_per_minute: None,
            file_mode: "0600".into(),
            allow_new_chain: false,
        }
    }
}

/// `[audit]`, validated.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The current trail file.
    pub path: PathBuf,
    /// Seals records (HMAC key, or plain SHA-256).
    pub key: MacKey,
    /// Durability policy.
    pub fsync: Fsync,
    /// Rotation size.
    pub max_bytes: u64,
    /// Also print records on stdout.
    pub stdout: bool,
    /// Flood control of refusal records.
    pub flood: FloodConfig,
    /// Mode of created files (`0o600` or `0o640`).
    pub file_mode: u32,
    /// Whether a trail that lacks its records may continue in a new chain.
    pub allow_new_chain: bool,
}

impl AuditConfig {
    /// Checks every key of `[audit]`; the HMAC key file is read now.
    pub fn from_section(a: &AuditSection) -> Result<Self, InvalidKey> {
        if a.path.trim().is_empty() {
            return Err(invalid("audit.path", "must not be empty"));
        }
        let key = match a.hmac_key_file.as_deref() {
            None => MacKey::Plain,
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    invalid("audit.hmac_key_file", format!("cannot read {path}: {e}"))
                })?;
                MacKey::from_file_bytes(&bytes)
                    .map_err(|why| invalid("audit.hmac_key_file", format!("{path} {why}")))?
            }
        };
        let fsync = match a.fsync.as_str() {
            "always" => Fsync::Always,
            "interval" => Fsync::Interval(millis(
                "audit.fsync_interval_ms",
                a.fsync_interval_ms,
                1,
                60_000,
            )?),
            "never" => Fsync::Never,
            other => {
                return Err(invalid(
                    "audit.fsync",
                    format!("must be \"always\", \"interval\" or \"never\", got {other:?}"),
                ));
            }
        };
        Ok(Self {
            path: PathBuf::from(&a.path),
            key,
            fsync,
            max_bytes: in_range("audit.max_bytes", a.max_bytes, 4096, 1 << 40)?,
            stdout: a.stdout,
            flood: FloodConfig::from_section(a)?,
            file_mode: file_mode(&a.file_mode)?,
            allow_new_chain: a.allow_new_chain,
        })
    }
}

/// `audit.file_mode`: only owner-only, or owner plus a reviewers' group reading; never
/// anything writable by others or readable by everyone.
fn file_mode(mode: &str) -> Result<u32, InvalidKey> {
    match mode {
        "0600" => Ok(0o600),
        "0640" => Ok(0o640),
        other => Err(invalid(
            "audit.file_mode",
            format!("must be \"0600\" or \"0640\", got {other:?}"),
        )),
    }
}
