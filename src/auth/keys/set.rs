//! A parsed JWKS ([`KeySet`]): the keys able to verify an allowed algorithm, by `kid`.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Most keys taken from one JWKS; real sets hold a handful.
const MAX_KEYS: usize = 64;

/// One usable verification key.
pub struct VerifyingKey {
    /// The algorithms this key may verify: the JWK's `alg` when it names one, otherwise
    /// every allowed algorithm of the key's type.
    pub algorithms: Vec<Algorithm>,
    /// The key, parsed once.
    pub key: DecodingKey,
}

/// A parsed JWKS: keys by `kid`, plus keys without one.
#[derive(Default)]
pub struct KeySet {
    /// Keys that carry a `kid`.
    by_kid: HashMap<String, Arc<VerifyingKey>>,
    /// Keys without a `kid` (used only for tokens without one).
    anonymous: Vec<Arc<VerifyingKey>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .field("anonymous", &self.anonymous.len())
            .finish()
    }
}

/// Why a JWKS document is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// Not JSON, or no `keys` array.
    #[error("not a JWKS document (a JSON object with a \"keys\" array)")]
    NotJwks,
    /// No key of the set can verify any allowed algorithm.
    #[error("no usable signature key for the allowed algorithms")]
    NoUsableKey,
}

impl KeySet {
    /// Parses a JWKS, keeping the keys that can verify one of `allowed` (HMAC never is).
    /// Keys with `use` other than `sig`, with an `alg` that is not allowed or does not fit
    /// the key type, or that fail to parse are skipped.
    pub fn parse(document: &[u8], allowed: &[Algorithm]) -> Result<Self, KeySetError> {
        let value: Value = serde_json::from_slice(document).map_err(|_| KeySetError::NotJwks)?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(KeySetError::NotJwks)?;
        let mut set = KeySet::default();
        for raw in keys.iter().take(MAX_KEYS) {
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                tracing::debug!("skipping a JWK that does not parse");
                continue;
            };
            let Some(key) = verifying_key(&jwk, allowed) else {
                tracing::debug!(kid = ?jwk.common.key_id, "skipping a JWK unusable for the allowed algorithms");
                continue;
            };
            match jwk.common.key_id {
                Some(kid) => {
                    set.by_kid.insert(kid, Arc::new(key));
                }
                None => set.anonymous.push(Arc::new(key)),
            }
        }
        if set.by_kid.is_empty() && set.anonymous.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(set)
    }

    /// The key for a token's `kid`; without a `kid`, the only key-less key able to verify
    /// `alg` (never a guess among several).
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<VerifyingKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None => {
                let mut fitting = self
                    .anonymous
                    .iter()
                    .filter(|k| k.algorithms.contains(&alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Some(Arc::clone(only)),
                    _ => None,
                }
            }
        }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.anonymous.len()
    }

    /// Each key as `kid (ALG, ...)` (`(no kid)` for one without), sorted: what
    /// `check-config --probe` shows. Public keys only; nothing here is secret.
    pub fn describe(&self) -> Vec<String> {
        let algs = |key: &VerifyingKey| {
            let names: Vec<String> = key.algorithms.iter().map(|a| format!("{a:?}")).collect();
            names.join(", ")
        };
        let mut keys: Vec<String> = self
            .by_kid
            .iter()
            .map(|(kid, key)| format!("{kid} ({})", algs(key)))
            .chain(
                self.anonymous
                    .iter()
                    .map(|key| format!("(no kid) ({})", algs(key))),
            )
            .collect();
        keys.sort();
        keys
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The algorithms a JWK may verify among `allowed`, and its parsed key.
fn verifying_key(jwk: &Jwk, allowed: &[Algorithm]) -> Option<VerifyingKey> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let fits_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // Symmetric ("oct") keys would mean HMAC: never accepted.
        _ => return None,
    };
    let mut algorithms: Vec<Algorithm> = fits_type
        .into_iter()
        .filter(|a| allowed.contains(a))
        .collect();
    if let Some(declared) = jwk.common.key_algorithm {
        let declared = Algorithm::try_from(declared).ok()?;
        if !algorithms.contains(&declared) {
            return None;
        }
        algorithms = vec![declared];
    }
    if algorithms.is_empty() {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey { algorithms, key })
}
