//! Authentication and authorization of callers (docs/authentication.md).
//!
//! - [`keys`]: the JWKS, loaded from a file or fetched (URL or OIDC discovery) and kept
//!   current.
//! - [`verify`]: the token check, in the order that refuses the cheapest cases first, with
//!   a cache of verified tokens.
//! - [`policy`]: who may change which agent's password.
//!
//! A request's `Authorization` header becomes an [`Identity`] (or an [`AuthError`], 401),
//! then, for the agent asked for, a [`Caller`] (or 403).

pub mod config;
pub mod keys;
pub mod policy;
pub mod verify;

pub use policy::{Grant, Grants, Policy};
pub use verify::{AuthSettings, Authenticator};

use crate::ids::CallerId;

/// A verified token's facts that later steps need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The caller: the token's issuer (`iss`) and subject (`sub`).
    pub caller: CallerId,
    /// What the token allows.
    pub grants: Grants,
    /// Expiry (`exp`), seconds since the Unix epoch.
    pub exp: u64,
    /// The caller's display name (`auth.display_claim`), cut to 64 characters, for the
    /// audit trail's `callerName`; worked out once per token, as the grants are.
    pub name: Option<String>,
}

/// An authenticated and authorized caller: who, and by which rule (quotas and the audit
/// trail use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub id: CallerId,
    /// Why this caller may change this agent's password.
    pub grant: Grant,
}

/// Why a request is not authenticated (401). The `Display` text becomes the problem's
/// `detail`: general words about which rule failed, never the token or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing bearer token")]
    Missing,
    /// Several `Authorization` headers: which one counts would be a guess.
    #[error("more than one Authorization header")]
    Duplicate,
    /// A scheme other than `Bearer`, or no token after it.
    #[error("the Authorization scheme must be Bearer")]
    NotBearer,
    /// Over the size limit; refused before any decoding.
    #[error("token is over 8192 bytes")]
    TooLarge,
    /// Not three base64url segments with a JSON header.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// The header carries `crit`, `jku`, `x5u`, `x5c` or `jwk`.
    #[error("token header names keys or critical extensions, which are not accepted")]
    ForbiddenHeader,
    /// `alg` is `none`, HMAC, not in `auth.algorithms`, or not the signing key's.
    #[error("token algorithm is not accepted")]
    AlgorithmNotAllowed,
    /// No key set has been loaded yet.
    #[error("signing keys are not loaded yet")]
    NoKeys,
    /// No key matches the token's `kid`, even after a re-fetch.
    #[error("token is signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` holds none of the configured audiences.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A required claim is absent.
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type (e.g. `exp` as a string), or is blank (`sub`).
    #[error("token claim {0} is malformed")]
    BadClaim(&'static str),
    /// The header or the claims repeat a member name (RFC 7519 §4).
    #[error("token header or claims repeat a member name")]
    DuplicateMember,
    /// The header's `typ` is not `auth.required_typ` (RFC 9068 §2.1).
    #[error("token type (typ) is not accepted")]
    WrongType,
    /// `exp - iat` is over `auth.max_token_lifetime_secs`.
    #[error("token lifetime is longer than accepted")]
    LifetimeTooLong,
}
