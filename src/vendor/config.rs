//! `[vendor]`: where the vendor is, the app key and secret, timeouts and the body shape; the
//! section as the file holds it ([`VendorSection`]) and validated ([`VendorConfig`]). Every
//! error names its key.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config_key::{InvalidKey, invalid, load_ca_file, millis, secs};

/// The vendor's maximum AccessToken lifetime (`tokenByAkSk` refuses longer ones).
pub const MAX_TOKEN_TTL_SECS: u64 = 3600;
/// Shortest AccessToken lifetime we ask for: shorter ones only multiply token fetches.
pub const MIN_TOKEN_TTL_SECS: u64 = 30;

/// `[vendor]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VendorSection {
    /// Scheme, host and optional path prefix of the vendor's REST APIs.
    pub base_url: Option<String>,
    /// The app key (AK) issued by the vendor's operations staff.
    pub app_key: Option<String>,
    /// File holding the app secret (SK); takes precedence over `app_secret_env`.
    pub app_secret_file: Option<String>,
    /// Name of the environment variable holding the app secret.
    pub app_secret_env: String,
    /// AccessToken lifetime asked for, sent as `X-Token-Expire`.
    pub token_ttl_secs: u64,
    /// Bound on one vendor call (connect, send, receive).
    pub timeout_ms: u64,
    /// `"wrapped"` (`{"requestParam": {...}}`) or `"flat"`.
    pub body_shape: String,
    /// PEM file of extra trusted roots for the vendor's TLS certificate.
    pub ca_file: Option<String>,
    /// Permit an `http://` base URL (tests and the demo only).
    pub allow_insecure_http: bool,
}

impl Default for VendorSection {
    fn default() -> Self {
        Self {
            base_url: None,
            app_key: None,
            app_secret_file: None,
            app_secret_env: "SIPGW_APP_SECRET".into(),
            token_ttl_secs: 600,
            timeout_ms: 5_000,
            body_shape: "wrapped".into(),
            ca_file: None,
            allow_insecure_http: false,
        }
    }
}

/// Body shape of `updateSipPhonePassword`: the vendor's reference documents both.
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

impl VendorConfig {
    /// Checks every key of `[vendor]`; `env` looks up the variable named by
    /// `vendor.app_secret_env`.
    pub fn from_section(
        v: &VendorSection,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, InvalidKey> {
        let base_url = v
            .base_url
            .as_deref()
            .ok_or_else(|| invalid("vendor.base_url", "is required"))?;
        let base_url = validate_base_url(base_url, v.allow_insecure_http)?;
        let app_key = match v.app_key.as_deref() {
            Some(k) if !k.trim().is_empty() && k.bytes().all(|b| b.is_ascii_graphic()) => {
                k.to_owned()
            }
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
        Ok(Self {
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
}

/// Checks the scheme (https unless explicitly allowed) and strips a trailing slash, so that
/// joining it with the vendor's paths yields exactly one `/`.
fn validate_base_url(raw: &str, allow_insecure_http: bool) -> Result<String, InvalidKey> {
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
    v: &VendorSection,
    env: impl Fn(&str) -> Option<String>,
) -> Result<SecretString, InvalidKey> {
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
