//! Stage two of the configuration: every section's values checked and turned into typed
//! values; every error names its key. (`[auth]` has its own file, `validate_auth.rs`.)

use super::*;

pub(super) fn vendor_config(
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

pub(super) fn limits_config(file: &FileConfig) -> Result<LimitsConfig, ConfigError> {
    let r = &file.rate_limit;
    if let Some(url) = &r.redis_url {
        super::redis::check_url(url)?;
    }
    let backend = match r.backend.as_str() {
        "memory" => LimitsBackend::Memory,
        "redis" => super::redis::redis_backend(r)?,
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
    let account_folding = match r.account_key.as_str() {
        "case_folded" => AccountFolding::CaseFolded,
        "exact" => AccountFolding::Exact,
        other => {
            return Err(invalid(
                "rate_limit.account_key",
                format!("must be \"case_folded\" or \"exact\", got {other:?}"),
            ));
        }
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
        idempotency_bytes: in_range(
            "idempotency.max_bytes",
            i.max_bytes as u64,
            64 * 1024,
            1 << 32,
        )? as usize,
        max_agents: in_range("rate_limit.max_agents", r.max_agents as u64, 1, 10_000_000)? as usize,
        max_callers: in_range(
            "rate_limit.max_callers",
            r.max_callers as u64,
            1,
            10_000_000,
        )? as usize,
        lockout_entries: in_range("lockout.max_entries", l.max_entries as u64, 1, 10_000_000)?
            as usize,
        backend,
        turn_lease: millis(
            "server.request_timeout_ms",
            file.server.request_timeout_ms,
            1,
            600_000,
        )? + TURN_LEASE_MARGIN,
        account_folding,
    })
}

pub(super) fn audit_config(a: &file::AuditSection) -> Result<AuditConfig, ConfigError> {
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
        flood: super::flood::flood_config(a)?,
        file_mode: file_mode(&a.file_mode)?,
        allow_new_chain: a.allow_new_chain,
    })
}

/// `audit.file_mode`: only owner-only, or owner plus a reviewers' group reading; never
/// anything writable by others or readable by everyone.
fn file_mode(mode: &str) -> Result<u32, ConfigError> {
    match mode {
        "0600" => Ok(0o600),
        "0640" => Ok(0o640),
        other => Err(invalid(
            "audit.file_mode",
            format!("must be \"0600\" or \"0640\", got {other:?}"),
        )),
    }
}

/// Checks the scheme (https unless explicitly allowed) and strips a trailing slash, so that
/// joining it with the vendor's paths yields exactly one `/`.
pub(super) fn validate_base_url(
    raw: &str,
    allow_insecure_http: bool,
) -> Result<String, ConfigError> {
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
pub(super) fn load_app_secret(
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
pub(super) fn load_ca_file(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
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
pub(super) fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else if min == 1 && value == 0 {
        Err(invalid(key, "must be > 0, got 0"))
    } else {
        Err(invalid(key, format!("must be {min} to {max}, got {value}")))
    }
}

pub(super) fn millis(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    in_range(key, value, min, max).map(Duration::from_millis)
}

pub(super) fn secs(key: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    in_range(key, value, min, max).map(Duration::from_secs)
}
