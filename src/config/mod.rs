//! Configuration in two stages (STYLE.md §5).
//!
//! Stage one ([`file`]) reads the TOML file and `SIPGW__SECTION__KEY` environment overrides
//! into serde structs that reject unknown keys. Stage two ([`Config::from_file`]) checks every
//! value and turns it into a typed one (`SocketAddr`, `Duration`, a loaded secret, a compiled
//! password rule), so the rest of the gateway never sees an unchecked value. Every error names
//! the key it is about, e.g. `vendor.timeout_ms must be > 0, got 0`.

pub mod file;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use jsonwebtoken::Algorithm;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::SecretString;

use crate::audit::chain::MacKey;
use crate::audit::writer::Fsync;
use crate::auth::keys::{FetchSettings, KeySet, KeySource};
use crate::auth::{AuthSettings, Policy};
use crate::limits::lockout::LockoutPolicy;
use crate::limits::quota::QuotaSpec;
use crate::password_policy::PasswordPolicy;
use crate::server::Limits;
pub use file::FileConfig;

/// Prefix of environment overrides: `SIPGW__VENDOR__TIMEOUT_MS=3000` sets `vendor.timeout_ms`.
pub const ENV_PREFIX: &str = "SIPGW__";
/// The vendor's maximum AccessToken lifetime (VENDOR_API.md §1).
pub const MAX_TOKEN_TTL_SECS: u64 = 3600;
/// Shortest AccessToken lifetime we ask for: shorter ones only multiply token fetches.
pub const MIN_TOKEN_TTL_SECS: u64 = 30;

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, is not TOML, has an unknown key or a value of the wrong type.
    #[error("{0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value is present but unusable.
    #[error("{key} {message}")]
    Invalid {
        /// Dotted key, e.g. `vendor.timeout_ms`.
        key: String,
        /// What is wrong, with the offending value when it is not secret.
        message: String,
    },
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
    /// Records per client IP and minute for unauthenticated requests.
    pub unauthenticated_per_minute: u32,
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
    /// Where the limits live.
    pub backend: LimitsBackend,
    /// Longest a change can hold its agent's turn: the request deadline plus a margin, so a
    /// turn taken by a replica that crashed expires on its own.
    pub turn_lease: Duration,
}

/// `rate_limit.backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsBackend {
    /// This process only (`"memory"`).
    Memory,
    /// Shared by every replica through Redis (`"redis"`).
    Redis {
        /// `rate_limit.redis_url`, checked to be a `redis://` URL.
        url: String,
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
    /// Connection, head, idle and shutdown bounds of the listener.
    pub limits: Limits,
    /// Bound on receiving a request body once the head is in.
    pub request_timeout: Duration,
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
        let figment = Figment::new()
            .merge(Toml::file_exact(path))
            .merge(Env::prefixed(ENV_PREFIX).split("__"));
        Self::from_figment(figment, |name| std::env::var(name).ok())
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
            server: server_config(&file.server)?,
            vendor: vendor_config(&file.vendor, env)?,
            password_policy,
            auth: auth_config(&file.auth)?,
            limits: limits_config(&file)?,
            audit: audit_config(&file.audit)?,
        })
    }
}

fn server_config(s: &file::ServerSection) -> Result<ServerConfig, ConfigError> {
    let listen = s.listen.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!("must be IP:PORT, got {:?}", s.listen),
        )
    })?;
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
    let max_header_bytes = in_range(
        "server.max_header_bytes",
        s.max_header_bytes as u64,
        8192,
        1024 * 1024,
    )?;
    Ok(ServerConfig {
        listen,
        limits: Limits {
            max_connections: in_range(
                "server.max_connections",
                s.max_connections as u64,
                1,
                100_000,
            )? as usize,
            max_header_bytes: max_header_bytes as usize,
            header_read_timeout: millis(
                "server.header_read_timeout_ms",
                s.header_read_timeout_ms,
                1,
                300_000,
            )?,
            idle_timeout: secs("server.idle_timeout_secs", s.idle_timeout_secs, 1, 3600)?,
            shutdown_grace: secs("server.shutdown_grace_secs", s.shutdown_grace_secs, 0, 3600)?,
        },
        request_timeout: millis(
            "server.request_timeout_ms",
            s.request_timeout_ms,
            1,
            600_000,
        )?,
    })
}

fn vendor_config(
    v: &file::VendorSection,
    env: impl Fn(&str) -> Option<String>,
) -> Result<VendorConfig, ConfigError> {
    let base_url = v
        .base_url
        .as_deref()
        .ok_or_else(|| invalid("vendor.base_url", "is required"))?;
    let base_url = validate_base_url(base_url, v.allow_insecure_http)?;
    let app_key = match v.app_key.as_deref() {
        Some(k) if !k.trim().is_empty() && k.bytes().all(|b| b.is_ascii_graphic()) => k.to_owned(),
        Some(_) => return Err(invalid("vendor.app_key", "must be non-empty visible ASCII")),
        None => return Err(invalid("vendor.app_key", "is required")),
    };
    let body_shape = match v.body_shape.as_str() {
        "wrapped" => BodyShape::Wrapped,
        "flat" => BodyShape::Flat,
        other => {
            return Err(invalid(
                "vendor.body_shape",
                format!("must be \"wrapped\" or \"flat\", got {other:?}"),
            ));
        }
    };
    let extra_roots = match v.ca_file.as_deref() {
        Some(path) => load_ca_file("vendor.ca_file", Path::new(path))?,
        None => Vec::new(),
    };
    Ok(VendorConfig {
        base_url,
        app_key,
        app_secret: load_app_secret(v, env)?,
        token_ttl: secs(
            "vendor.token_ttl_secs",
            v.token_ttl_secs,
            MIN_TOKEN_TTL_SECS,
            MAX_TOKEN_TTL_SECS,
        )?,
        timeout: millis("vendor.timeout_ms", v.timeout_ms, 1, 120_000)?,
        body_shape,
        extra_roots,
    })
}

fn limits_config(file: &FileConfig) -> Result<LimitsConfig, ConfigError> {
    let r = &file.rate_limit;
    let backend = match r.backend.as_str() {
        "memory" => LimitsBackend::Memory,
        "redis" => redis_backend(r)?,
        other => {
            return Err(invalid(
                "rate_limit.backend",
                format!("must be \"memory\" or \"redis\", got {other:?}"),
            ));
        }
    };
    let quota = |key: &str, q: &file::QuotaSection| -> Result<QuotaSpec, ConfigError> {
        let burst = in_range(&format!("{key}.burst"), u64::from(q.burst), 1, 1_000_000)?;
        let per = secs(&format!("{key}.per_secs"), q.per_secs, 1, 30 * 86_400)?;
        Ok(QuotaSpec {
            burst: NonZeroU32::new(burst as u32).expect("checked above"),
            per,
        })
    };
    let l = &file.lockout;
    let i = &file.idempotency;
    Ok(LimitsConfig {
        per_caller: quota("rate_limit.per_caller", &r.per_caller)?,
        per_agent: quota("rate_limit.per_agent", &r.per_agent)?,
        lockout: LockoutPolicy {
            max_consecutive_failures: in_range(
                "lockout.max_consecutive_failures",
                u64::from(l.max_consecutive_failures),
                1,
                100,
            )? as u32,
            cooldown: secs("lockout.cooldown_secs", l.cooldown_secs, 1, 7 * 86_400)?,
        },
        change_wait: millis("lockout.change_wait_ms", l.change_wait_ms, 0, 60_000)?,
        idempotency_ttl: secs("idempotency.ttl_secs", i.ttl_secs, 1, 7 * 86_400)?,
        idempotency_entries: in_range(
            "idempotency.max_entries",
            i.max_entries as u64,
            1,
            10_000_000,
        )? as usize,
        backend,
        turn_lease: millis(
            "server.request_timeout_ms",
            file.server.request_timeout_ms,
            1,
            600_000,
        )? + TURN_LEASE_MARGIN,
    })
}

/// `backend = "redis"`: a `redis://` URL the client accepts, and a key prefix.
fn redis_backend(r: &file::RateLimitSection) -> Result<LimitsBackend, ConfigError> {
    let key = "rate_limit.redis_url";
    let url = r
        .redis_url
        .as_deref()
        .ok_or_else(|| invalid(key, "is required when rate_limit.backend = \"redis\""))?;
    // The URL may carry a password: never quote it back.
    if url.starts_with("rediss://") {
        return Err(invalid(
            key,
            "TLS to Redis (rediss://) is not built in; use redis:// on a private network or a TLS sidecar",
        ));
    }
    if !url.starts_with("redis://") {
        return Err(invalid(key, "must be a redis:// URL"));
    }
    redis::Client::open(url)
        .map_err(|e| invalid(key, format!("is not a usable Redis URL ({:?})", e.kind())))?;
    let key_prefix = r.key_prefix.clone();
    if key_prefix.is_empty() || !key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "rate_limit.key_prefix",
            "must be non-empty visible ASCII",
        ));
    }
    Ok(LimitsBackend::Redis {
        url: url.to_owned(),
        key_prefix,
    })
}

fn audit_config(a: &file::AuditSection) -> Result<AuditConfig, ConfigError> {
    if a.path.trim().is_empty() {
        return Err(invalid("audit.path", "must not be empty"));
    }
    let key = match a.hmac_key_file.as_deref() {
        None => MacKey::Plain,
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| invalid("audit.hmac_key_file", format!("cannot read {path}: {e}")))?;
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
    Ok(AuditConfig {
        path: PathBuf::from(&a.path),
        key,
        fsync,
        max_bytes: in_range("audit.max_bytes", a.max_bytes, 4096, 1 << 40)?,
        stdout: a.stdout,
        unauthenticated_per_minute: in_range(
            "audit.unauthenticated_per_minute",
            u64::from(a.unauthenticated_per_minute),
            0,
            100_000,
        )? as u32,
    })
}

fn auth_config(a: &file::AuthSection) -> Result<AuthConfig, ConfigError> {
    let issuer = match a.issuer.as_deref() {
        Some(i) if !i.trim().is_empty() => i.to_owned(),
        Some(_) => return Err(invalid("auth.issuer", "must not be empty")),
        None => return Err(invalid("auth.issuer", "is required")),
    };
    if a.audiences.is_empty() || a.audiences.iter().any(|aud| aud.trim().is_empty()) {
        return Err(invalid(
            "auth.audiences",
            "must list at least one non-empty audience",
        ));
    }
    let algorithms = auth_algorithms(&a.algorithms)?;
    let extra_roots = match a.ca_file.as_deref() {
        Some(path) => load_ca_file("auth.ca_file", Path::new(path))?,
        None => Vec::new(),
    };
    let url = |key: &str, raw: &str| -> Result<http::Uri, ConfigError> {
        let uri: http::Uri = raw
            .parse()
            .map_err(|_| invalid(key, format!("is not a URL: {raw:?}")))?;
        match uri.scheme_str() {
            Some("https") => Ok(uri),
            Some("http") if a.allow_insecure_http => Ok(uri),
            _ => Err(invalid(
                key,
                "must be https:// (set auth.allow_insecure_http = true only for tests and demos)",
            )),
        }
    };
    let source = match (&a.jwks_file, &a.jwks_url, &a.discovery_url) {
        (Some(path), None, None) => {
            let key = "auth.jwks_file";
            let document = std::fs::read(path)
                .map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
            let set = KeySet::parse(&document, &algorithms)
                .map_err(|e| invalid(key, format!("{path}: {e}")))?;
            KeySource::Static(Arc::new(set))
        }
        (None, Some(jwks), None) => KeySource::JwksUrl(url("auth.jwks_url", jwks)?),
        (None, None, Some(discovery)) => {
            KeySource::Discovery(url("auth.discovery_url", discovery)?)
        }
        _ => {
            return Err(invalid(
                "auth.jwks_file",
                "exactly one of auth.jwks_file, auth.jwks_url and auth.discovery_url must be set",
            ));
        }
    };
    if a.agent_claim.is_empty() {
        return Err(invalid("auth.agent_claim", "must not be empty"));
    }
    let roles_path: Vec<String> = a.roles_claim.split('.').map(str::to_owned).collect();
    if roles_path.iter().any(String::is_empty) {
        return Err(invalid(
            "auth.roles_claim",
            format!("is not a claim path: {:?}", a.roles_claim),
        ));
    }
    let leeway = secs("auth.leeway_secs", a.leeway_secs, 0, 300)?;
    let settings = AuthSettings {
        issuer: issuer.clone(),
        audiences: a.audiences.clone(),
        algorithms: algorithms.clone(),
        leeway,
        policy: Policy {
            agent_claim: a.agent_claim.clone(),
            self_service: a.self_service,
            admin_scopes: a.admin_scopes.clone(),
            admin_roles: a.admin_roles.clone(),
            roles_path,
        },
        cache_entries: in_range(
            "auth.verified_cache_entries",
            a.verified_cache_entries as u64,
            1,
            1_000_000,
        )? as usize,
    };
    let fetch = FetchSettings {
        issuer,
        algorithms,
        refresh: secs("auth.jwks_refresh_secs", a.jwks_refresh_secs, 10, 86_400)?,
        refetch_cooldown: secs(
            "auth.jwks_refetch_cooldown_secs",
            a.jwks_refetch_cooldown_secs,
            1,
            3600,
        )?,
        timeout: millis("auth.jwks_timeout_ms", a.jwks_timeout_ms, 1, 60_000)?,
        allow_insecure_http: a.allow_insecure_http,
    };
    Ok(AuthConfig {
        settings,
        source,
        fetch,
        extra_roots,
    })
}

/// Parses `auth.algorithms`; `none` and HMAC are refused outright: the gateway holds only
/// public keys, and verifying HMAC with one is the classic key-confusion attack.
fn auth_algorithms(names: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
    let key = "auth.algorithms";
    if names.is_empty() {
        return Err(invalid(key, "must list at least one algorithm"));
    }
    names
        .iter()
        .map(|name| match name.parse::<Algorithm>() {
            Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => {
                Err(invalid(key, format!("{name} (HMAC) is never accepted")))
            }
            Ok(alg) => Ok(alg),
            Err(_) => Err(invalid(
                key,
                format!("{name:?} is not one of RS256/384/512, PS256/384/512, ES256/384, EdDSA"),
            )),
        })
        .collect()
}

/// Checks the scheme (https unless explicitly allowed) and strips a trailing slash, so that
/// joining it with the vendor's paths yields exactly one `/`.
fn validate_base_url(raw: &str, allow_insecure_http: bool) -> Result<String, ConfigError> {
    let key = "vendor.base_url";
    let uri: http::Uri = raw
        .parse()
        .map_err(|_| invalid(key, format!("is not a URL: {raw:?}")))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_insecure_http => {}
        Some("http") => {
            return Err(invalid(
                key,
                "must be https:// (set vendor.allow_insecure_http = true only for tests and demos)",
            ));
        }
        _ => {
            return Err(invalid(
                key,
                format!("must be an https:// URL, got {raw:?}"),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid(key, format!("has no host: {raw:?}")));
    }
    if uri.query().is_some() {
        return Err(invalid(key, "must not have a query string"));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// The app secret comes only from a file or an environment variable, never from the TOML
/// file itself, so the config can live in a ConfigMap while the secret lives in a Secret.
fn load_app_secret(
    v: &file::VendorSection,
    env: impl Fn(&str) -> Option<String>,
) -> Result<SecretString, ConfigError> {
    let secret = if let Some(path) = &v.app_secret_file {
        let key = "vendor.app_secret_file";
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
        // Secret files are usually written with a trailing newline; it is never part of the secret.
        let secret = text.trim_end_matches(['\r', '\n']).to_owned();
        if secret.is_empty() {
            return Err(invalid(key, format!("{path} is empty")));
        }
        secret
    } else {
        let key = "vendor.app_secret_env";
        match env(&v.app_secret_env) {
            Some(s) if !s.is_empty() => s,
            _ => {
                return Err(invalid(
                    key,
                    format!(
                        "names ${}, which is unset or empty (or set vendor.app_secret_file)",
                        v.app_secret_env
                    ),
                ));
            }
        }
    };
    Ok(SecretString::from(secret))
}

/// Reads the PEM certificates of `vendor.ca_file`; an unreadable file, bad PEM or a file
/// without any certificate is an error now rather than a TLS failure at the first request.
fn load_ca_file(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
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

/// Checks `min <= value <= max`; the message names the key, the range and the value.
/// Upper bounds keep values far from what would overflow a clock or a semaphore.
fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else if min == 1 && value == 0 {
        Err(invalid(key, "must be > 0, got 0"))
    } else {
        Err(invalid(key, format!("must be {min} to {max}, got {value}")))
    }
}

fn millis(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    in_range(key, value, min, max).map(Duration::from_millis)
}

fn secs(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    in_range(key, value, min, max).map(Duration::from_secs)
}

#[cfg(test)]
mod tests;
