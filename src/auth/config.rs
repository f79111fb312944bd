//! `[auth]`: the issuer, audiences and algorithms, where keys come from, the policy, and the
//! optional strictness keys; the section as the file holds it ([`AuthSection`]) and
//! validated ([`AuthConfig`], with a JWKS file already loaded). Every error names its key.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::keys::{FetchSettings, KeySet, KeySource};
use super::policy::AgentMatch;
use super::verify::RequiredTyp;
use super::{AuthSettings, Policy};
use crate::config_key::{InvalidKey, in_range, invalid, load_ca_file, millis, secs};

/// Upper bound of `auth.max_token_lifetime_secs`: a year, far above any access token.
const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 86_400;

/// `[auth]`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The only accepted `iss`; required.
    pub issuer: Option<String>,
    /// `aud` must contain one of these; required, non-empty.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms; `none` and HMAC are refused.
    pub algorithms: Vec<String>,
    /// A JWKS file (exactly one of `jwks_file`, `jwks_url`, `discovery_url`).
    pub jwks_file: Option<String>,
    /// A JWKS URL.
    pub jwks_url: Option<String>,
    /// An OIDC discovery URL (`.../.well-known/openid-configuration`).
    pub discovery_url: Option<String>,
    /// How often a remote key set is re-fetched.
    pub jwks_refresh_secs: u64,
    /// Least time between re-fetches caused by unknown `kid`s.
    pub jwks_refetch_cooldown_secs: u64,
    /// Bound on one key-set fetch.
    pub jwks_timeout_ms: u64,
    /// PEM file of extra trusted roots for the IdP's TLS certificate.
    pub ca_file: Option<String>,
    /// Permit `http://` key-set URLs (tests and the demo only).
    pub allow_insecure_http: bool,
    /// Clock skew allowed for `exp`, `nbf`, `iat`.
    pub leeway_secs: u64,
    /// Claim that names the caller's own agent account.
    pub agent_claim: String,
    /// How that claim is compared with the `userAccount` of the URL: `"exact"` or
    /// `"case_insensitive"` (ASCII).
    pub agent_claim_match: String,
    /// Whether callers may change their own agent's password.
    pub self_service: bool,
    /// Scopes (`scope`/`scp`) that allow changing any agent's password.
    pub admin_scopes: Vec<String>,
    /// Roles (in `roles_claim`) that allow changing any agent's password.
    pub admin_roles: Vec<String>,
    /// Claim holding roles; dots walk into objects (`realm_access.roles`).
    pub roles_claim: String,
    /// Claim whose string value the audit trail records as the caller's `callerName`
    /// (cut to 64 characters); empty records none.
    pub display_claim: String,
    /// Most verified tokens kept in the cache.
    pub verified_cache_entries: usize,
    /// Most refused tokens kept in the refusal cache.
    pub refused_cache_entries: usize,
    /// When set, the JOSE header's `typ` must name this media type (RFC 9068 §2.1:
    /// `at+jwt`); compared case-insensitively, with or without `application/`.
    pub required_typ: Option<String>,
    /// When set, `exp - iat` may not exceed this; tokens without `iat` are then refused.
    pub max_token_lifetime_secs: Option<u64>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            algorithms: vec!["RS256".into(), "ES256".into()],
            jwks_file: None,
            jwks_url: None,
            discovery_url: None,
            jwks_refresh_secs: 300,
            jwks_refetch_cooldown_secs: 30,
            jwks_timeout_ms: 5_000,
            ca_file: None,
            allow_insecure_http: false,
            leeway_secs: 30,
            agent_claim: "preferred_username".into(),
            agent_claim_match: "exact".into(),
            self_service: true,
            admin_scopes: Vec::new(),
            admin_roles: Vec::new(),
            roles_claim: "roles".into(),
            display_claim: "name".into(),
            verified_cache_entries: 10_000,
            refused_cache_entries: 4_096,
            required_typ: None,
            max_token_lifetime_secs: None,
        }
    }
}

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

impl AuthConfig {
    /// Checks every key of `[auth]`; a `jwks_file` is read and parsed now.
    pub fn from_section(a: &AuthSection) -> Result<Self, InvalidKey> {
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
        let source = key_source(a, &algorithms)?;
        let settings = settings(a, issuer.clone(), algorithms.clone())?;
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
        Ok(Self {
            settings,
            source,
            fetch,
            extra_roots,
        })
    }
}

/// Exactly one of `auth.jwks_file` (read and parsed now), `auth.jwks_url` and
/// `auth.discovery_url`; URLs must be https unless `auth.allow_insecure_http`.
fn key_source(a: &AuthSection, algorithms: &[Algorithm]) -> Result<KeySource, InvalidKey> {
    let url = |key: &str, raw: &str| -> Result<http::Uri, InvalidKey> {
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
    match (&a.jwks_file, &a.jwks_url, &a.discovery_url) {
        (Some(path), None, None) => {
            let key = "auth.jwks_file";
            let document = std::fs::read(path)
                .map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
            let set = KeySet::parse(&document, algorithms)
                .map_err(|e| invalid(key, format!("{path}: {e}")))?;
            Ok(KeySource::Static(Arc::new(set)))
        }
        (None, Some(jwks), None) => Ok(KeySource::JwksUrl(url("auth.jwks_url", jwks)?)),
        (None, None, Some(discovery)) => {
            Ok(KeySource::Discovery(url("auth.discovery_url", discovery)?))
        }
        _ => Err(key_source_count(a)),
    }
}

/// The error for no key source or several: which ones are set, by their keys.
fn key_source_count(a: &AuthSection) -> InvalidKey {
    let set: Vec<&str> = [
        ("auth.jwks_url", a.jwks_url.is_some()),
        ("auth.jwks_file", a.jwks_file.is_some()),
        ("auth.discovery_url", a.discovery_url.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, is_set)| is_set.then_some(key))
    .collect();
    if set.is_empty() {
        invalid(
            "auth",
            "has no key source: set one of auth.jwks_url, auth.jwks_file or auth.discovery_url",
        )
    } else {
        invalid(
            "auth",
            format!(
                "has more than one key source: {}; set exactly one",
                set.join(", ")
            ),
        )
    }
}

/// What the token check needs: the policy, the strictness keys, leeway and cache sizes.
fn settings(
    a: &AuthSection,
    issuer: String,
    algorithms: Vec<Algorithm>,
) -> Result<AuthSettings, InvalidKey> {
    let policy = policy(a)?;
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
    Ok(AuthSettings {
        issuer,
        audiences: a.audiences.clone(),
        algorithms,
        leeway,
        policy,
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
        display_claim: (!a.display_claim.is_empty()).then(|| a.display_claim.clone()),
    })
}

/// Who may change which agent's password: the agent claim, its match, the admin grants.
fn policy(a: &AuthSection) -> Result<Policy, InvalidKey> {
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
    Ok(Policy {
        agent_claim: a.agent_claim.clone(),
        agent_match,
        self_service: a.self_service,
        admin_scopes: a.admin_scopes.clone(),
        admin_roles: a.admin_roles.clone(),
        roles_path,
    })
}

/// Parses `auth.algorithms`; `none` and HMAC are refused outright: the gateway holds only
/// public keys, and verifying HMAC with one is the classic key-confusion attack.
fn auth_algorithms(names: &[String]) -> Result<Vec<Algorithm>, InvalidKey> {
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
