//! The compact serialization of a bearer token, up to the key lookup: the `Authorization`
//! scheme, three base64url segments, the JOSE header (no key-naming members, an allowed
//! `alg`) and unique member names in header and claims. Cheap checks, made before any
//! key is touched.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::strict::{self, Members};
use super::{AuthError, MAX_TOKEN_BYTES};

/// Header members that name or carry keys, or demand extensions we do not implement: the
/// gateway only trusts keys from its own configured key set (RFC 7515 §4.1).
pub(super) const FORBIDDEN_HEADER_MEMBERS: [&str; 5] = ["crit", "jku", "x5u", "x5c", "jwk"];

/// What a token's header says, once [`check_header`] accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    /// `alg`: one of the allowed algorithms.
    pub alg: Algorithm,
    /// `kid`, when the header names one.
    pub kid: Option<String>,
    /// `typ`, when the header holds it as a string (RFC 9068 §2.1 `at+jwt`).
    pub typ: Option<String>,
}

/// Every check of a token that comes before a key is used: three base64url segments, a
/// JSON header without key-naming members, unique member names in header and claims, an
/// allowed `alg`, a string `kid` if any. Pure: no keys, no network, no clock. The
/// authenticator runs it on every token it has not cached; the fuzz target `jwt`
/// (`fuzz/fuzz_targets/jwt.rs`) runs it on arbitrary input.
pub fn check_header(token: &str, allowed: &[Algorithm]) -> Result<TokenHeader, AuthError> {
    let header = parse_header(token)?;
    unique_claim_names(token)?;
    let alg = header_algorithm(&header, allowed)?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AuthError::Malformed),
    };
    let typ = match header.get("typ") {
        Some(Value::String(typ)) => Some(typ.clone()),
        // Anything else is no `typ` at all: refused only where one is required.
        Some(_) | None => None,
    };
    Ok(TokenHeader { alg, kid, typ })
}

/// The token of a `Bearer` header (RFC 6750 §2.1; the scheme is case-insensitive), at most
/// [`MAX_TOKEN_BYTES`]; the first step of the authenticator, also run by the fuzz target
/// `jwt`.
pub fn bearer_token(header: Option<&HeaderValue>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    // Checked before anything is decoded (the scheme adds 7 bytes).
    if header.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
        return Err(AuthError::TooLarge);
    }
    let value = header.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::NotBearer);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge);
    }
    Ok(token)
}

/// The decoded header of a compact JWS with three base64url segments.
pub(super) fn parse_header(token: &str) -> Result<Map<String, Value>, AuthError> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(AuthError::Malformed);
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty()
        || payload.is_empty()
        || !base64url(header)
        || !base64url(payload)
        || !base64url(signature)
    {
        return Err(AuthError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    check_members(&bytes)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    if FORBIDDEN_HEADER_MEMBERS
        .iter()
        .any(|m| header.contains_key(*m))
    {
        return Err(AuthError::ForbiddenHeader);
    }
    Ok(header)
}

/// Refuses a claims set (the token's second segment) that repeats a member name; runs once
/// per token, as repeats are answered from the verified-token cache.
pub(super) fn unique_claim_names(token: &str) -> Result<(), AuthError> {
    let payload = token.split('.').nth(1).ok_or(AuthError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::Malformed)?;
    check_members(&bytes)
}

/// A JSON segment whose objects all have distinct member names (RFC 7519 §4).
fn check_members(json: &[u8]) -> Result<(), AuthError> {
    match strict::members(json) {
        Members::Unique => Ok(()),
        Members::Repeated => Err(AuthError::DuplicateMember),
        Members::NotJson => Err(AuthError::Malformed),
    }
}

/// The header's `alg`, if it is one of `allowed` (`none` and HMAC never are).
pub(super) fn header_algorithm(
    header: &Map<String, Value>,
    allowed: &[Algorithm],
) -> Result<Algorithm, AuthError> {
    let name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Malformed)?;
    let alg: Algorithm = name.parse().map_err(|_| AuthError::AlgorithmNotAllowed)?;
    if allowed.contains(&alg) {
        Ok(alg)
    } else {
        Err(AuthError::AlgorithmNotAllowed)
    }
}
