//! `[audit]`: the trail's file, key, durability, rotation and flood control; the section as
//! the file holds it ([`AuditSection`]) and validated ([`AuditConfig`], with the HMAC key
//! loaded). The flood-control keys are checked in `flood`. Every error names its key.

mod flood;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::chain::MacKey;
use super::writer::Fsync;
use crate::config_key::{InvalidKey, in_range, invalid, millis, secs};
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
    /// The replica's name in every record (`instance`); the host name when unset.
    pub instance: Option<String>,
    /// A `checkpoint` record after this many records (0: none by count).
    pub checkpoint_every: u64,
    /// A `checkpoint` record this long after a record not yet followed by one (0: none
    /// by time).
    pub checkpoint_interval_secs: u64,
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
            instance: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval_secs: DEFAULT_CHECKPOINT_INTERVAL_SECS,
        }
    }
}

/// Default of `audit.checkpoint_every`.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1_000;
/// Default of `audit.checkpoint_interval_secs`.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;
/// Longest `audit.instance`.
const MAX_INSTANCE: usize = 64;

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
    /// The replica's name, stamped on every record.
    pub instance: String,
    /// Records between checkpoints (`None`: no checkpoint by count).
    pub checkpoint_every: Option<u64>,
    /// Longest time a record waits for a checkpoint (`None`: no checkpoint by time).
    pub checkpoint_interval: Option<std::time::Duration>,
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
            instance: match &a.instance {
                Some(name) => instance(name)?,
                None => host_name(),
            },
            checkpoint_every: match a.checkpoint_every {
                0 => None,
                n => Some(in_range("audit.checkpoint_every", n, 1, 1_000_000_000)?),
            },
            checkpoint_interval: match a.checkpoint_interval_secs {
                0 => None,
                n => Some(secs("audit.checkpoint_interval_secs", n, 1, 86_400)?),
            },
        })
    }
}

/// `audit.instance`: 1 to 64 of `A-Z a-z 0-9 . _ -` (a host name fits; nothing a reader
/// would have to escape).
fn instance(name: &str) -> Result<String, InvalidKey> {
    if (1..=MAX_INSTANCE).contains(&name.len()) && name.bytes().all(instance_byte) {
        Ok(name.to_owned())
    } else {
        Err(invalid(
            "audit.instance",
            format!(
                "must be 1 to {MAX_INSTANCE} characters of A-Z, a-z, 0-9, '.', '_' and '-', got {:?}",
                crate::terminal::escape(name)
            ),
        ))
    }
}

fn instance_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// The default `audit.instance`: the host name (`/proc/sys/kernel/hostname`, else
/// `$HOSTNAME`), its other characters replaced by `-` and cut to 64; `unknown` without one.
pub fn host_name() -> String {
    let found = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok());
    let name: String = found
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .bytes()
        .take(MAX_INSTANCE)
        .map(|b| if instance_byte(b) { char::from(b) } else { '-' })
        .collect();
    if name.is_empty() {
        "unknown".to_owned()
    } else {
        name
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
