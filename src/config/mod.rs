//! Configuration in two stages.
//!
//! Stage one ([`mod@file`]) reads the TOML file and `SIPGW__SECTION__KEY` environment overrides
//! into serde structs that reject unknown keys. Stage two ([`Config::from_file`]) checks every
//! value and turns it into a typed one (`SocketAddr`, `Duration`, a loaded secret, a compiled
//! password rule), so the rest of the gateway never sees an unchecked value. Every error names
//! the key it is about, e.g. `vendor.timeout_ms must be > 0, got 0`.
//!
//! Each domain module owns its section: the serde struct and its validation live beside the
//! code that uses them (`server::config`, `tls::config`, `vendor::config`,
//! `password_policy::config`, `auth::config`, `limits::config`, `audit::config`), and report
//! a [`crate::config_key::InvalidKey`]. This module only composes them: the file's layout,
//! the layering of file, defaults and environment, `check-config`, and [`ConfigError`].

pub mod file;

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::audit::config::AuditConfig;
use crate::auth::config::AuthConfig;
use crate::config_key::InvalidKey;
use crate::limits::config::LimitsConfig;
use crate::password_policy::PasswordPolicy;
use crate::server::config::ServerConfig;
use crate::telemetry::TelemetryConfig;
use crate::vendor::config::VendorConfig;
pub use file::FileConfig;

/// Prefix of environment overrides: `SIPGW__VENDOR__TIMEOUT_MS=3000` sets `vendor.timeout_ms`.
pub const ENV_PREFIX: &str = "SIPGW__";

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
/// from files or the environment (docs/configuration.md).
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

impl From<InvalidKey> for ConfigError {
    /// A section's own validation error, as the whole configuration's.
    fn from(error: InvalidKey) -> Self {
        ConfigError::Invalid {
            key: error.key,
            message: error.message,
        }
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
    /// `[telemetry]`: the OTLP collector traces go to, if any.
    pub telemetry: TelemetryConfig,
}

/// What `sipgw check-config` prints.
#[derive(Debug)]
pub struct Checked {
    /// The effective configuration, as TOML, without secrets.
    pub effective: String,
    /// [`Config::warnings`], for stderr.
    pub warnings: Vec<&'static str>,
    /// The validated configuration, for the start-up checks that follow
    /// (`app::preflight`, `app::probe`).
    pub config: Config,
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
    pub fn check(path: &Path) -> Result<Checked, ConfigError> {
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
        let config = Self::from_file(file, |name| std::env::var(name).ok())?;
        Ok(Checked {
            effective,
            warnings: config.warnings(),
            config,
        })
    }

    /// What is allowed but weakens a guarantee, for `serve` to log at start and
    /// `check-config` to print: a trail without an HMAC key.
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if !self.audit.key.is_keyed() {
            warnings.push(crate::audit::chain::UNKEYED_WARNING);
        }
        warnings
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
        // Each section checks its own keys, in this order (the first error is reported).
        let password_policy = PasswordPolicy::from_section(&file.password_policy)?;
        let server = ServerConfig::from_section(&file.server)?;
        let vendor = VendorConfig::from_section(&file.vendor, env)?;
        let auth = AuthConfig::from_section(&file.auth)?;
        let limits = LimitsConfig::from_sections(
            &file.rate_limit,
            &file.lockout,
            &file.idempotency,
            server.request_timeout,
        )?;
        Ok(Self {
            server,
            vendor,
            password_policy,
            auth,
            limits,
            audit: AuditConfig::from_section(&file.audit)?,
            telemetry: TelemetryConfig::from_section(&file.telemetry)?,
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
