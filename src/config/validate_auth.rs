//! Stage two for `[auth]`: the issuer, audiences and algorithms, where keys come from, the
//! policy, and the optional strictness keys; every error names its key.

use super::validate::{in_range, load_ca_file, millis, secs};
use super::*;
use crate::auth::policy::AgentMatch;
use crate::auth::verify::RequiredTyp;

/// Upper bound of `auth.max_token_lifetime_secs`: a year, far above any access token.
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 86_400;

pub(super) fn auth_config(a: &file::AuthSection) -> Result<AuthConfig, ConfigError> {
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
    let agent_match = match a.agent_claim_match.as_str() {
        "exact" => AgentMatch::Exact,
        "case_insensitive" => AgentMatch::CaseInsensitive,
        other => {
            return Err(invalid(
                "auth.agent_claim_match",
                format!("must be \"exact\" or \"case_insensitive\", got {other:?}"),
            ));
        }
    };
    let required_typ = match a.required_typ.as_deref() {
        None => None,
        Some(typ) => Some(RequiredTyp::new(typ).ok_or_else(|| {
            invalid(
                "auth.required_typ",
                format!("must be a media type such as \"at+jwt\", got {typ:?}"),
            )
        })?),
    };
    let max_lifetime = match a.max_token_lifetime_secs {
        None => None,
        Some(s) => Some(secs(
            "auth.max_token_lifetime_secs",
            s,
            1,
            MAX_TOKEN_LIFETIME_SECS,
        )?),
    };
    let leeway = secs("auth.leeway_secs", a.leeway_secs, 0, 300)?;
    let settings = AuthSettings {
        issuer: issuer.clone(),
        audiences: a.audiences.clone(),
        algorithms: algorithms.clone(),
        leeway,
        policy: Policy {
            agent_claim: a.agent_claim.clone(),
            agent_match,
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
        refused_cache_entries: in_range(
            "auth.refused_cache_entries",
            a.refused_cache_entries as u64,
            1,
            1_000_000,
        )? as usize,
        required_typ,
        max_lifetime,
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
pub(super) fn auth_algorithms(names: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
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
