//! The token check (docs/authentication.md, issue 3): from an `Authorization` header to an
//! [`Identity`], or the [`AuthError`] that says which rule failed.
//!
//! Order: the header's scheme and the token's size first (no decoding of an oversized
//! token), then a lookup in the verified-token cache, then the header's own fields (before
//! any key is touched: unique member names in header and claims, `alg` allow-list, no
//! key-naming members, `typ` when `auth.required_typ` is set), then the key by `kid` (with
//! one re-fetch for an unknown `kid`), then jsonwebtoken's signature and claim checks with
//! every claim we rely on made mandatory, then the claims this gateway reads (a non-blank
//! `sub`, `iat` not in the future, `exp - iat` within `auth.max_token_lifetime_secs`).
//!
//! Verified tokens are cached (keyed by a SHA-256 of the token, bounded, until `exp`), as
//! Envoy's `jwt_authn` does: a caller's repeated requests then cost a hash and a lookup.
//! So are refused ones, for a minute, when the refusal came from the signature check or
//! after it and cannot turn into an acceptance while the key set stays the same (a bad
//! signature, a wrong issuer, an expired token; not a token that is not valid *yet*): a
//! client replaying a bad or stale token costs a hash, not a signature check. A forger who sends a new token each time still pays for
//! one signature check per request; that is the floor. A change of the key set invalidates
//! every cached entry, accepted or refused.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::keys::KeyStore;
use super::{AuthError, Identity, Policy};
use crate::ids::CallerId;
pub use compact::{TokenHeader, bearer_token, check_header};
pub use strict::RequiredTyp;

mod compact;
mod strict;

/// Tokens over this size are refused unread (docs/authentication.md).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The validated `[auth]` settings the check needs.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The only accepted `iss`.
    pub issuer: String,
    /// `aud` must hold one of these.
    pub audiences: Vec<String>,
    /// Accepted `alg`s (never `none` or HMAC; the config refuses them).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Who may change which agent.
    pub policy: Policy,
    /// Most entries in the verified-token cache.
    pub cache_entries: usize,
    /// Most entries in the refused-token cache.
    pub refused_cache_entries: usize,
    /// The JOSE `typ` every token must carry (`auth.required_typ`), if any.
    pub required_typ: Option<RequiredTyp>,
    /// The longest `exp - iat` accepted (`auth.max_token_lifetime_secs`), if bounded.
    pub max_lifetime: Option<Duration>,
    /// The claim that holds the caller's display name (`auth.display_claim`), if any.
    pub display_claim: Option<String>,
}

/// A cached verification.
struct Verified {
    /// What the token established.
    identity: Arc<Identity>,
    /// The key-set generation it was verified against.
    generation: u64,
}

/// A cached refusal.
struct Refused {
    /// Why the token was refused.
    error: AuthError,
    /// The key-set generation it was checked against.
    generation: u64,
    /// When it was refused: entries last [`REFUSED_TTL`], so that a clock stepped forward
    /// and back again cannot keep a valid token refused for long.
    at: std::time::Instant,
}

/// How long a refusal is remembered.
const REFUSED_TTL: Duration = Duration::from_secs(60);

/// Longest display name kept (`auth.display_claim`), in characters: the audit trail's
/// `callerName` is a label for readers, not a place for a claim's whole text.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;

/// Longest `iss` + `sub` + agent claim + display name of a verified token that is cached.
/// Bounds an entry (about 200 bytes besides these), so `auth.verified_cache_entries` bounds
/// the cache's memory; a token with longer claims is verified every time instead. (Refused
/// tokens are fixed-size entries; `auth.refused_cache_entries` bounds them. A flood of
/// distinct refused tokens only evicts other refusals, never an accepted token: the caches
/// are separate.)
pub const MAX_CACHED_CLAIM_BYTES: usize = 512;

/// Checks tokens against the key store; shared by all requests.
pub struct Authenticator {
    /// Settings.
    settings: AuthSettings,
    /// jsonwebtoken's checks, configured once per allowed algorithm (it requires every
    /// algorithm of one `Validation` to belong to the key's family).
    validations: Vec<(Algorithm, Validation)>,
    /// The key set.
    keys: Arc<KeyStore>,
    /// Verified tokens by SHA-256 of the token.
    cache: quick_cache::sync::Cache<[u8; 32], Arc<Verified>>,
    /// Refused tokens by SHA-256 of the token (refusals that cannot change, see above).
    refused: quick_cache::sync::Cache<[u8; 32], Arc<Refused>>,
}

impl Authenticator {
    /// An authenticator over `keys`.
    pub fn new(settings: AuthSettings, keys: Arc<KeyStore>) -> Self {
        let validations = settings
            .algorithms
            .iter()
            .map(|&alg| {
                let mut validation = Validation::new(alg);
                validation.set_issuer(&[&settings.issuer]);
                validation.set_audience(&settings.audiences);
                validation.leeway = settings.leeway.as_secs();
                validation.validate_exp = true;
                // jsonwebtoken leaves nbf unchecked and iss/aud/sub optional unless told.
                validation.validate_nbf = true;
                validation.validate_aud = true;
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                (alg, validation)
            })
            .collect();
        let cache = quick_cache::sync::Cache::new(settings.cache_entries.max(1));
        let refused = quick_cache::sync::Cache::new(settings.refused_cache_entries.max(1));
        Self {
            settings,
            validations,
            keys,
            cache,
            refused,
        }
    }

    /// The caches' sizes, for metrics: (verified, refused), each (entries, capacity).
    pub fn cache_sizes(&self) -> [(usize, usize); 2] {
        [
            (self.cache.len(), self.settings.cache_entries),
            (self.refused.len(), self.settings.refused_cache_entries),
        ]
    }

    /// Who may change which agent.
    pub fn policy(&self) -> &Policy {
        &self.settings.policy
    }

    /// The key store (readiness and the refresher).
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Authenticates a request by its `Authorization` header.
    pub async fn authenticate(
        &self,
        header: Option<&HeaderValue>,
    ) -> Result<Arc<Identity>, AuthError> {
        let token = bearer_token(header)?;
        let digest = digest(token);
        let now = unix_now();
        if let Some(hit) = self.cache.get(&digest) {
            if hit.generation == self.keys.generation()
                && now
                    <= hit
                        .identity
                        .exp
                        .saturating_add(self.settings.leeway.as_secs())
            {
                return Ok(Arc::clone(&hit.identity));
            }
            self.cache.remove(&digest);
        }
        let generation = self.keys.generation();
        if let Some(refused) = self.refused.get(&digest) {
            if refused.generation == generation && refused.at.elapsed() < REFUSED_TTL {
                return Err(refused.error.clone());
            }
            self.refused.remove(&digest);
        }
        let identity = match self.verify(token, now).await {
            Ok(identity) => Arc::new(identity),
            Err(error) => {
                if is_lasting(&error) {
                    // The generation from before the check: a key set that changed
                    // meanwhile makes the entry stale at once rather than wrongly lasting.
                    let refused = Refused {
                        error: error.clone(),
                        generation,
                        at: std::time::Instant::now(),
                    };
                    self.refused.insert(digest, Arc::new(refused));
                }
                return Err(error);
            }
        };
        let claim_bytes = identity.caller.iss().len()
            + identity.caller.sub().len()
            + identity.grants.agent.as_ref().map_or(0, String::len)
            + identity.name.as_ref().map_or(0, String::len);
        if claim_bytes <= MAX_CACHED_CLAIM_BYTES {
            self.cache.insert(
                digest,
                Arc::new(Verified {
                    identity: Arc::clone(&identity),
                    generation,
                }),
            );
        }
        Ok(identity)
    }

    /// The full check of a token not found in the cache.
    async fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthError> {
        let TokenHeader { alg, kid, typ } = check_header(token, &self.settings.algorithms)?;
        if let Some(required) = &self.settings.required_typ
            && !typ.as_deref().is_some_and(|typ| required.matches(typ))
        {
            return Err(AuthError::WrongType);
        }
        let kid = kid.as_deref();
        // A request that arrives before the start-up fetch finished waits for it.
        if self.keys.current().is_none() {
            self.keys.refetch().await;
        }
        let mut set = self.keys.current().ok_or(AuthError::NoKeys)?;
        let mut key = set.find(kid, alg);
        if key.is_none() && kid.is_some() && self.keys.refetch().await {
            set = self.keys.current().ok_or(AuthError::NoKeys)?;
            key = set.find(kid, alg);
        }
        let key = key.ok_or(AuthError::UnknownKey)?;
        if !key.algorithms.contains(&alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        let validation = self
            .validations
            .iter()
            .find_map(|(a, v)| (*a == alg).then_some(v))
            .ok_or(AuthError::AlgorithmNotAllowed)?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(|e| map_jwt_error(e.kind()))?
            .claims;
        self.identity(&claims, now)
    }

    /// The claims this gateway relies on, checked for type (jsonwebtoken checked values).
    fn identity(&self, claims: &Map<String, Value>, now: u64) -> Result<Identity, AuthError> {
        // jsonwebtoken accepts an array `iss` that contains ours; RFC 7519 says a string.
        let iss = match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.settings.issuer => iss.clone(),
            _ => return Err(AuthError::WrongIssuer),
        };
        // A blank `sub` names nobody: the quotas and the audit trail key callers by it.
        let sub = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.trim().is_empty() => sub.clone(),
            Some(_) => return Err(AuthError::BadClaim("sub")),
            None => return Err(AuthError::MissingClaim("sub")),
        };
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(AuthError::BadClaim("exp"))?;
        // `iat` in the future is as suspect as `nbf` in the future (docs/authentication.md: honoured).
        let iat = match claims.get("iat") {
            None => None,
            Some(iat) => match numeric_date(iat) {
                Some(iat) if iat > now.saturating_add(self.settings.leeway.as_secs()) => {
                    return Err(AuthError::NotYetValid);
                }
                Some(iat) => Some(iat),
                None => return Err(AuthError::BadClaim("iat")),
            },
        };
        // A bounded lifetime needs to know when the token was issued: without `iat` the
        // bound could not be checked, so such a token is refused rather than trusted.
        if let Some(max) = self.settings.max_lifetime {
            let iat = iat.ok_or(AuthError::MissingClaim("iat"))?;
            if exp.saturating_sub(iat) > max.as_secs() {
                return Err(AuthError::LifetimeTooLong);
            }
        }
        let name = self
            .settings
            .display_claim
            .as_ref()
            .and_then(|claim| display_name(claims.get(claim)?));
        Ok(Identity {
            caller: CallerId::new(iss, sub),
            grants: self.settings.policy.grants(claims),
            exp,
            name,
        })
    }
}

/// The display name a claim value gives: a non-blank string, cut to
/// [`MAX_DISPLAY_NAME_CHARS`] characters on a character boundary (the last one then `…`, so
/// a reader sees it was cut). Other types (an object, a number) give none.
pub fn display_name(value: &Value) -> Option<String> {
    let name = value.as_str().filter(|name| !name.trim().is_empty())?;
    match name.char_indices().nth(MAX_DISPLAY_NAME_CHARS) {
        None => Some(name.to_owned()),
        Some(_) => {
            let (cut, _) = name
                .char_indices()
                .nth(MAX_DISPLAY_NAME_CHARS - 1)
                .expect("longer than the bound");
            Some(format!("{}…", &name[..cut]))
        }
    }
}

/// Whether a refusal is worth remembering: it came from the signature check or after it
/// (what costs), and it holds for as long as the key set stays the same. A token not valid
/// *yet* becomes valid, so it is not remembered; refusals found before any key is used
/// (malformed, repeated member names, forbidden header members, an `alg` or `typ` not
/// allowed, an unknown key) are cheap to find again and would only push the costly ones
/// out of the bounded cache. A blank `sub` (a bad claim) and a lifetime over the bound can
/// never become acceptances, so they are remembered.
fn is_lasting(error: &AuthError) -> bool {
    matches!(
        error,
        AuthError::BadSignature
            | AuthError::Expired
            | AuthError::WrongIssuer
            | AuthError::WrongAudience
            | AuthError::MissingClaim(_)
            | AuthError::BadClaim(_)
            | AuthError::LifetimeTooLong
    )
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly with a fraction, which
/// is dropped (as jsonwebtoken does when it checks the same claims).
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f as u64)
    })
}

fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::AlgorithmNotAllowed,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => AuthError::MissingClaim("exp"),
            "iss" => AuthError::MissingClaim("iss"),
            "aud" => AuthError::MissingClaim("aud"),
            "sub" => AuthError::MissingClaim("sub"),
            _ => AuthError::Malformed,
        },
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "exp" => AuthError::BadClaim("exp"),
            "nbf" => AuthError::BadClaim("nbf"),
            _ => AuthError::Malformed,
        },
        // jsonwebtoken's ErrorKind is non-exhaustive: anything else (bad base64, bad JSON,
        // a key that does not fit) is a token we cannot read.
        _ => AuthError::Malformed,
    }
}

/// SHA-256 of the token: the cache key (a collision would need a SHA-256 collision).
fn digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
