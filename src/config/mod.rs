//! Configuration in two stages (STYLE.md §5).
//!
//! Stage one ([`mod@file`]) reads the TOML file and `SIPGW__SECTION__KEY` environment overrides
//! into serde structs that reject unknown keys. Stage two ([`Config::from_file`]) checks every
//! value and turns it into a typed one (`SocketAddr`, `Duration`, a loaded secret, a compiled
//! password rule), so the rest of the gateway never sees an unchecked value. Every error names
//! the key it is about, e.g. `vendor.timeout_ms must be > 0, got 0`.

pub mod file;
mod flood;
mod redis;
mod server;
mod validate;
mod validate_auth;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use jsonwebtoken::Algorithm;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::SecretString;

use crate::audit::chain::MacKey;
use crate::audit::writer::Fsync;
use crate::auth::keys::{FetchSettings, KeySet, KeySource};
use crate::auth::{AuthSettings, Policy};
use crate::ids::AccountFolding;
use crate::limits::lockout::LockoutPolicy;
use crate::limits::quota::QuotaSpec;
use crate::password_policy::PasswordPolicy;
use crate::server::Limits;
use crate::tls::TlsFiles;
pub use file::FileConfig;
pub use flood::FloodConfig;

/// Prefix of environment overrides: `SIPGW__VENDOR__TIMEOUT_MS=3000` sets `vendor.timeout_ms`.
pub const ENV_PREFIX: &str = "SIPGW__";
/// The vendor's maximum AccessToken lifetime (VENDOR_API.md §1).
pub const MAX_TOKEN_TTL_SECS: u64 = 3600;
/// Shortest AccessToken lifetime we ask for: shorter ones only multiply token fetches.
pub const MIN_TOKEN_TTL_SECS: u64 = 30;

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or is not TOML, a key is unknown, or a value is unusable.
    #[error("{key} {message}")]
    Invalid {
        /// Dotted key, e.g. `vendor.timeout_ms` (`config` for the file as a whole).
        key: String,
        /// What is wrong, with the offending value when it is not secret.
        message: String,
    },
}

/// Names that would hold a secret if written in the file; secrets are only ever read
/// from files or the environment (README "Configuration").
const INLINE_SECRET_HINTS: [&str; 4] = ["secret", "password", "hmac_key", "token"];

impl From<Box<figment::Error>> for ConfigError {
    /// Stage one's errors (unknown key, wrong type, unreadable file) in the same shape as
    /// stage two's: the dotted key first, then what is wrong and where the value came from.
    fn from(error: Box<figment::Error>) -> Self {
        use figment::error::Kind;
        let key = if error.path.is_empty() {
            "config".to_owned()
        } else {
            error.path.join(".")
        };
        let field = error.path.last().map(String::as_str).unwrap_or_default();
        let mut message = match &error.kind {
            Kind::UnknownField(name, known) => {
                let mut message = format!(
                    "is not a known key; the keys here are: {}",
                    known.join(", ")
                );
                if INLINE_SECRET_HINTS.iter().any(|hint| name.contains(hint)) {
                    message.push_str(
                        ". Secrets are never written in the config file: the app secret comes \
                         from vendor.app_secret_file or the variable named by \
                         vendor.app_secret_env, the audit key from audit.hmac_key_file, the \
                         Redis password from rate_limit.redis_password_file",
                    );
                }
                message
            }
            Kind::InvalidType(actual, expected) => {
                let expected = match expected.as_str() {
                    "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number",
                    other => other,
                };
                let unit = if field.ends_with("_ms") || field.ends_with("_secs") {
                    " in the unit its name ends with"
                } else {
                    ""
                };
                format!("must be {expected}{unit}, found {actual}")
            }
            Kind::Message(text) if error.path.is_empty() => {
                format!("file cannot be used: {}", without_source_lines(text))
            }
            other => other.to_string(),
        };
        if let Some(metadata) = &error.metadata {
            match &metadata.source {
                Some(source) => message.push_str(&format!(" ({} {source})", metadata.name)),
                None => message.push_str(&format!(" (from {})", metadata.name)),
            }
        }
        let more = error.count().saturating_sub(1);
        if more > 0 {
            message.push_str(&format!("; and {more} more problem(s)"));
        }
        ConfigError::Invalid { key, message }
    }
}

/// A TOML syntax error without the lines of the file it quotes (`2 | app_secret = ...`):
/// the position and the reason are enough, and the quoted line could hold a secret that
/// was written, unquoted, where it does not belong.
fn without_source_lines(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| {
            let gutter = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !line.is_empty() && !gutter.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<crate::tls::LoadError> for ConfigError {
    fn from(error: crate::tls::LoadError) -> Self {
        invalid(error.file.config_key(), error.message)
    }
}

pub(crate) fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The validated configuration the gateway runs with.
#[derive(Debug)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[vendor]`.
    pub vendor: VendorConfig,
    /// `[password_policy]`, compiled.
    pub password_policy: PasswordPolicy,
    /// `[auth]`, with a JWKS file already loaded.
    pub auth: AuthConfig,
    /// `[rate_limit]`, `[lockout]` and `[idempotency]`.
    pub limits: LimitsConfig,
    /// `[audit]`, with the HMAC key loaded.
    pub audit: AuditConfig,
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

/// `[rate_limit]`, `[lockout]` and `[idempotency]`, validated.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Quota per caller (`iss` + `sub`).
    pub per_caller: QuotaSpec,
    /// Quota per agent.
    pub per_agent: QuotaSpec,
    /// The lockout shield.
    pub lockout: LockoutPolicy,
    /// How long a change waits for another change of the same agent.
    pub change_wait: Duration,
    /// How long `Idempotency-Key` outcomes are remembered.
    pub idempotency_ttl: Duration,
    /// Most outcomes remembered.
    pub idempotency_entries: usize,
    /// Most bytes the remembered outcomes may take.
    pub idempotency_bytes: usize,
    /// Most agents with a quota bucket in this process.
    pub max_agents: usize,
    /// Most callers with a quota bucket in this process.
    pub max_callers: usize,
    /// Most agents with a lockout record in this process.
    pub lockout_entries: usize,
    /// Where the limits live.
    pub backend: LimitsBackend,
    /// Longest a change can hold its agent's turn: the request deadline plus a margin, so a
    /// turn taken by a replica that crashed expires on its own.
    pub turn_lease: Duration,
    /// How a `userAccount` becomes the key of every per-agent limit.
    pub account_folding: AccountFolding,
}

/// `rate_limit.backend`.
#[derive(Debug, Clone)]
pub enum LimitsBackend {
    /// This process only (`"memory"`).
    Memory,
    /// Shared by every replica through Redis (`"redis"`).
    Redis {
        /// `rate_limit.redis_url` (checked to be `redis://` or `rediss://`, without a
        /// password) and the credentials and CA read from their files.
        endpoint: crate::limits::redis::RedisEndpoint,
        /// `rate_limit.key_prefix`, put before every key.
        key_prefix: String,
    },
}

/// Added to `server.request_timeout_ms` for the lease of an agent's turn in Redis.
const TURN_LEASE_MARGIN: Duration = Duration::from_secs(5);

/// `[auth]`, validated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// What the token check needs.
    pub settings: AuthSettings,
    /// Where keys come from.
    pub source: KeySource,
    /// How remote keys are fetched.
    pub fetch: FetchSettings,
    /// Extra trusted roots for the IdP.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// Listener address, limits and shutdown behaviour.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// API listener address.
    pub listen: SocketAddr,
    /// Admin listener address (`/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Connection, head, idle and shutdown bounds of the API listener.
    pub limits: Limits,
    /// The same for the admin listener: its own connection slots and head timeout.
    pub admin_limits: Limits,
    /// Bound on receiving a request body once the head is in.
    pub request_timeout: Duration,
    /// TLS on the API listener; `None` serves plain HTTP. The files were checked to load.
    pub tls: Option<TlsFiles>,
}

/// Body shape of `updateSipPhonePassword` (VENDOR_API.md §2, "Body shape ambiguity").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// `{"requestParam": {"accountPwd", "newPhonePwd", "userAccount"}}`: the normative table.
    Wrapped,
    /// `{"accountPwd", "newPhonePwd", "userAccount"}`: the reference's example.
    Flat,
}

/// Everything needed to talk to the vendor.
#[derive(Debug, Clone)]
pub struct VendorConfig {
    /// Base URL without a trailing slash, e.g. `https://service.example.com`.
    pub base_url: String,
    /// The app key, sent in `tokenByAkSk` and as `x-app-key`.
    pub app_key: String,
    /// The app secret; `Debug` prints `[REDACTED]`.
    pub app_secret: SecretString,
    /// Token lifetime to ask for (`X-Token-Expire`).
    pub token_ttl: Duration,
    /// Bound on one vendor call.
    pub timeout: Duration,
    /// How the password call's body is shaped.
    pub body_shape: BodyShape,
    /// Extra trusted roots read from `ca_file`, added to the Mozilla roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Config {
    /// Reads `path`, applies `SIPGW__*` overrides from the process environment, validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(path), |name| std::env::var(name).ok())
    }

    /// `sipgw check-config`: validates `path` (with the environment's overrides) exactly as
    /// `serve` would, and renders the effective configuration as TOML. Secrets are never in
    /// it: the app secret and the HMAC key are only named by where they come from, and a
    /// password in `rate_limit.redis_url` is replaced by `<redacted>`.
    pub fn check(path: &Path) -> Result<String, ConfigError> {
        let mut file: FileConfig = Self::figment(path).extract().map_err(Box::new)?;
        let mut effective = String::new();
        if let Some(url) = file.rate_limit.redis_url.as_mut() {
            *url = redact_url_password(url);
        }
        let secret_from = match &file.vendor.app_secret_file {
            Some(path) => format!("the file {path}"),
            None => format!("${}", file.vendor.app_secret_env),
        };
        effective.push_str(&format!(
            "# vendor app secret: <redacted>, read from {secret_from}\n"
        ));
        effective.push_str(
            &toml::to_string_pretty(&file).map_err(|e| invalid("config", e.to_string()))?,
        );
        // The validation itself runs on the file as loaded (the URL with its password).
        let file: FileConfig = Self::figment(path).extract().map_err(Box::new)?;
        Self::from_file(file, |name| std::env::var(name).ok())?;
        Ok(effective)
    }

    /// The file over the complete defaults, and the environment over both. The defaults at
    /// the bottom make a single key of a table enough: `SIPGW__RATE_LIMIT__PER_AGENT__BURST=5`
    /// (or `per_agent = { burst = 5 }` in the file) merges with the default `per_secs`
    /// instead of replacing the whole table with one that lacks it.
    fn figment(path: &Path) -> Figment {
        Figment::from(Serialized::defaults(FileConfig::default()))
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
    }

    /// Extracts and validates a configuration; `env` looks up the app secret's variable.
    pub fn from_figment(
        figment: Figment,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file: FileConfig = figment.extract().map_err(Box::new)?;
        Self::from_file(file, env)
    }

    /// Stage two: checks every value of `file` and builds typed values.
    pub fn from_file(
        file: FileConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let p = &file.password_policy;
        let password_policy = PasswordPolicy::new(p.min_len, p.max_len, p.min_classes, &p.specials)
            .map_err(|e| invalid(&format!("password_policy.{}", e.key), e.message))?;
        Ok(Self {
            server: server::server_config(&file.server)?,
            vendor: validate::vendor_config(&file.vendor, env)?,
            password_policy,
            auth: validate_auth::auth_config(&file.auth)?,
            limits: validate::limits_config(&file)?,
            audit: validate::audit_config(&file.audit)?,
        })
    }
}

/// `redis://user:secret@host` → `redis://user:<redacted>@host`.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
