//! Stage one of the configuration: serde structs that mirror the TOML file one to one.
//!
//! Every section rejects unknown keys (a typo must not silently fall back to a default) and
//! every key has a default, so a minimal file only names what differs. Values are checked and
//! turned into typed values in [`super::Config::from_file`] (by each section's own
//! validation); nothing here is trusted yet.

use serde::{Deserialize, Serialize};

use crate::audit::config::AuditSection;
use crate::auth::config::AuthSection;
use crate::limits::config::{IdempotencySection, LockoutSection, RateLimitSection};
use crate::password_policy::config::PasswordPolicySection;
use crate::server::config::ServerSection;
use crate::telemetry::TelemetrySection;
use crate::vendor::config::VendorSection;

/// The whole file, section by section; each section's struct lives in its domain module.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[server]`: where and how the gateway listens.
    pub server: ServerSection,
    /// `[vendor]`: the vendor's base URL, credentials and timeouts.
    pub vendor: VendorSection,
    /// `[auth]`: how callers' JWTs are checked and who may change which agent.
    pub auth: AuthSection,
    /// `[password_policy]`: our copy of the vendor's password rule group.
    pub password_policy: PasswordPolicySection,
    /// `[rate_limit]`: quotas per caller and per agent.
    pub rate_limit: RateLimitSection,
    /// `[lockout]`: the shield against the vendor's lockout.
    pub lockout: LockoutSection,
    /// `[idempotency]`: how long and how many `Idempotency-Key` outcomes are remembered.
    pub idempotency: IdempotencySection,
    /// `[audit]`: the tamper-evident audit trail.
    pub audit: AuditSection,
    /// `[telemetry]`: where traces are exported (off by default).
    pub telemetry: TelemetrySection,
}
