//! Stage two for `rate_limit.backend = "redis"`: the URL, the credentials and the CA.
//!
//! The password is only ever read from `rate_limit.redis_password_file` (a mounted Secret),
//! never taken from the URL: a URL is the kind of value that ends up in a ConfigMap, a log
//! line or `check-config`'s output. A URL that carries one is refused with a pointer to the
//! file key, and the message never quotes the URL.

use std::path::Path;

use secrecy::SecretString;

use super::{LimitsBackend, RateLimitSection};
use crate::config_key::{InvalidKey, invalid, load_ca_file};
use crate::limits::redis::RedisEndpoint;

/// `rate_limit.backend`, with `rate_limit.redis_url` checked whatever the backend.
pub(super) fn backend(r: &RateLimitSection) -> Result<LimitsBackend, InvalidKey> {
    if let Some(url) = &r.redis_url {
        check_url(url)?;
    }
    match r.backend.as_str() {
        "memory" => Ok(LimitsBackend::Memory),
        "redis" => redis_backend(r),
        other => Err(invalid(
            "rate_limit.backend",
            format!("must be \"memory\" or \"redis\", got {other:?}"),
        )),
    }
}

/// `backend = "redis"`: a `redis://` or `rediss://` URL without credentials that the client
/// accepts, the credentials and CA from their files, and a key prefix.
fn redis_backend(r: &RateLimitSection) -> Result<LimitsBackend, InvalidKey> {
    let key = "rate_limit.redis_url";
    let url = r
        .redis_url
        .as_deref()
        .ok_or_else(|| invalid(key, "is required when rate_limit.backend = \"redis\""))?;
    check_url(url)?;
    let tls = url.starts_with("rediss://");
    let ca_pem = match r.redis_ca_file.as_deref() {
        None => None,
        Some(_) if !tls => {
            return Err(invalid(
                "rate_limit.redis_ca_file",
                "is only used with a rediss:// rate_limit.redis_url",
            ));
        }
        Some(path) => {
            // Parsed now so that a bad file fails start-up, not every connection.
            load_ca_file("rate_limit.redis_ca_file", Path::new(path))?;
            Some(std::fs::read(path).map_err(|e| {
                invalid(
                    "rate_limit.redis_ca_file",
                    format!("cannot read {path}: {e}"),
                )
            })?)
        }
    };
    let password = match r.redis_password_file.as_deref() {
        None => None,
        Some(path) => Some(read_password(path)?),
    };
    let username = match r.redis_username.as_deref() {
        None => None,
        Some(_) if password.is_none() => {
            return Err(invalid(
                "rate_limit.redis_username",
                "needs rate_limit.redis_password_file (Redis logs a user in with its password)",
            ));
        }
        Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) => {
            Some(name.to_owned())
        }
        Some(_) => {
            return Err(invalid(
                "rate_limit.redis_username",
                "must be non-empty visible ASCII",
            ));
        }
    };
    let endpoint = RedisEndpoint {
        url: url.to_owned(),
        username,
        password,
        ca_pem,
    };
    endpoint
        .client()
        .map_err(|e| invalid(key, format!("is not a usable Redis URL ({:?})", e.kind())))?;
    let key_prefix = r.key_prefix.clone();
    if key_prefix.is_empty() || !key_prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "rate_limit.key_prefix",
            "must be non-empty visible ASCII",
        ));
    }
    Ok(LimitsBackend::Redis {
        endpoint,
        key_prefix,
    })
}

/// `rate_limit.redis_url`, whatever the backend: a Redis URL, never with a password in it,
/// never with `#insecure` (certificate checks off). Never quoted back: it may hold a secret.
fn check_url(url: &str) -> Result<(), InvalidKey> {
    let key = "rate_limit.redis_url";
    let Some((_, rest)) = url
        .split_once("://")
        .filter(|(scheme, _)| matches!(*scheme, "redis" | "rediss"))
    else {
        return Err(invalid(key, "must be a redis:// or rediss:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid(
            key,
            "must not carry credentials: put the password in the file named by \
             rate_limit.redis_password_file and an ACL user in rate_limit.redis_username",
        ));
    }
    if url.contains('#') {
        return Err(invalid(
            key,
            "must not have a #fragment (#insecure would turn off the certificate check; \
             trust a private CA with rate_limit.redis_ca_file instead)",
        ));
    }
    Ok(())
}

/// The password file's contents without a trailing newline; empty is an error.
fn read_password(path: &str) -> Result<SecretString, InvalidKey> {
    let key = "rate_limit.redis_password_file";
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(invalid(key, format!("{path} is empty")));
    }
    Ok(SecretString::from(password.to_owned()))
}
