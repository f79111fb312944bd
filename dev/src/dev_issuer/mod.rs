//! A development OpenID Connect issuer: signing keys, a JWKS and a discovery document on a
//! loopback HTTP listener, and a minter for signed JWTs (well-formed ones and deliberately
//! malformed ones, for attack tests).
//!
//! **Never use this as a real identity provider.** It authenticates nobody, mints whatever
//! it is asked to, hands out its private key as PEM on request, signs `alg: none` and
//! HMAC-with-a-public-key tokens, and serves plain HTTP. It exists for `sipgw demo`, the
//! gateway's JWT tests and benchmarks.
//!
//! # Layout
//! - this file: [`DevIssuer`], the handle tests hold (keys, switches, counters, minting);
//! - `keys`: key generation, signing, public JWKs, and the ring of keys by kind;
//! - `jws`: JWS compact serialization over arbitrary header JSON;
//! - `http`: the JWKS and discovery endpoints on [`crate::serve::run`].

mod http;
mod jws;
mod keys;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use http::{DISCOVERY_PATH, JWKS_PATH};

use jws::Signer;
use keys::{KeyRing, SigningKey};

/// Scope every token from [`DevIssuer::mint_for`] carries.
pub const BASE_SCOPE: &str = "openid profile";
/// Scope [`DevIssuer::mint_for`] adds for an administrator: the gateway's default
/// `admin_scopes` entry.
pub const ADMIN_SCOPE: &str = "sipgw.admin";
/// Lifetime of tokens from [`DevIssuer::mint_for`]: long enough for any test, short enough
/// to look like a real access token.
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// Which key family a token is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA P-256 with SHA-256 (`ES256`).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys (`RS256`).
    Rs256,
    /// Ed25519 (`EdDSA`).
    EdDsa,
}

impl KeyKind {
    /// The JWS `alg` value (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn jws_alg(self) -> &'static str {
        match self {
            KeyKind::Es256 => "ES256",
            KeyKind::Rs256 => "RS256",
            KeyKind::EdDsa => "EdDSA",
        }
    }

    /// The kind whose JWS `alg` is exactly `alg`.
    pub fn from_jws_alg(alg: &str) -> Option<Self> {
        [KeyKind::Es256, KeyKind::Rs256, KeyKind::EdDsa]
            .into_iter()
            .find(|kind| kind.jws_alg() == alg)
    }

    /// How `kid`s of this kind start ("es256-1").
    fn kid_prefix(self) -> &'static str {
        match self {
            KeyKind::Es256 => "es256",
            KeyKind::Rs256 => "rs256",
            KeyKind::EdDsa => "eddsa",
        }
    }
}

/// Why [`DevIssuer::from_es256_pem`] refused a key file.
#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    /// Not a PEM `PRIVATE KEY` (PKCS#8) block holding an EC key.
    #[error("not a PKCS#8 PEM EC private key")]
    Pem(#[source] jsonwebtoken::errors::Error),
    /// An EC key, but not a usable P-256 one.
    #[error("not a valid P-256 private key")]
    Key(#[source] aws_lc_rs::error::KeyRejected),
}

/// A development issuer. Cheap to clone: clones share keys, switches and counters, so a
/// test keeps a handle while the server task holds another.
#[derive(Clone)]
pub struct DevIssuer {
    /// The state every clone and the server share.
    inner: Arc<Inner>,
}

/// The issuer's state.
struct Inner {
    /// The `iss` of minted tokens and, unless overridden, of the discovery document.
    issuer: String,
    /// The signing keys; a mutex because tests add and withdraw keys while serving.
    keys: Mutex<KeyRing>,
    /// While set, both endpoints answer 500 (an identity provider outage).
    failing: AtomicBool,
    /// Replaces `issuer` in the discovery document, to test the gateway's mismatch check.
    discovery_issuer: Mutex<Option<String>>,
    /// Requests that reached the JWKS path.
    jwks_requests: AtomicU64,
    /// Requests that reached the discovery path.
    discovery_requests: AtomicU64,
}

/// Locks `mutex`, recovering from poisoning: the guarded values are consistent between
/// statements, and a test's failed assertion should not turn into a cascade of panics.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DevIssuer {
    /// Generates one ES256 key (kid "es256-1") and one RS256 key (kid "rs256-1", RSA 2048);
    /// `issuer` is used as given (e.g. `"https://sso.dev.internal/realms/corp"`). EdDSA keys
    /// only on request ([`Self::add_key`]).
    pub fn new(issuer: &str) -> Self {
        let issuer = Self::empty(issuer);
        issuer.add_key(KeyKind::Es256);
        issuer.add_key(KeyKind::Rs256);
        issuer
    }

    /// An issuer that holds exactly one ES256 key, read from a PKCS#8 PEM file (such as
    /// [`Self::es256_private_key_pem`] writes). The key gets kid "es256-1", so a key
    /// exported from a fresh [`Self::new`] issuer keeps its kid and matches that issuer's
    /// JWKS.
    pub fn from_es256_pem(issuer: &str, pem: &str) -> Result<Self, DevIssuerError> {
        let encoding =
            jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).map_err(DevIssuerError::Pem)?;
        // `from_ec_pem` only unwraps the PEM; the DER inside is the PKCS#8 document.
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, encoding.as_bytes())
            .map_err(DevIssuerError::Key)?;
        let dev = Self::empty(issuer);
        {
            let mut ring = dev.ring();
            let kid = ring.reserve_kid(KeyKind::Es256);
            ring.insert(SigningKey::from_es256(kid, pair));
        }
        Ok(dev)
    }

    /// An issuer without keys.
    fn empty(issuer: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer: issuer.to_owned(),
                keys: Mutex::new(KeyRing::default()),
                failing: AtomicBool::new(false),
                discovery_issuer: Mutex::new(None),
                jwks_requests: AtomicU64::new(0),
                discovery_requests: AtomicU64::new(0),
            }),
        }
    }

    /// The issuer string: the `iss` of tokens from [`Self::mint_for`].
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Spawns the HTTP server on the current tokio runtime and returns the bound address.
    /// It serves `GET` [`JWKS_PATH`] and `GET` [`DISCOVERY_PATH`] (whose `jwks_uri` names
    /// this address, so bind loopback) until the runtime shuts down; other paths get 404.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn spawn(&self, listener: TcpListener) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        tokio::spawn(http::run(self.clone(), listener, addr));
        Ok(addr)
    }

    /// Mints a token signed with the newest key of `kind` (published or withdrawn), header
    /// `{alg, kid, typ: "JWT"}`, `claims` verbatim.
    ///
    /// # Panics
    /// If the issuer holds no key of `kind` (EdDSA before [`Self::add_key`]).
    pub fn mint(&self, kind: KeyKind, claims: &Value) -> String {
        let key = self.newest(kind);
        let header = json!({"alg": kind.jws_alg(), "kid": key.kid(), "typ": "JWT"});
        jws::compact(&header, claims, Signer::Key(&key))
    }

    /// An ES256 token the gateway accepts when configured for this issuer and `audience`:
    /// `iss`, `sub`, `aud`, `iat` = `nbf` = now, `exp` = now + [`TOKEN_LIFETIME_SECS`],
    /// `preferred_username` when `agent` is given, and `scope` ([`BASE_SCOPE`], plus
    /// [`ADMIN_SCOPE`] when `admin`).
    pub fn mint_for(&self, sub: &str, audience: &str, agent: Option<&str>, admin: bool) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let scope = if admin {
            format!("{BASE_SCOPE} {ADMIN_SCOPE}")
        } else {
            BASE_SCOPE.to_owned()
        };
        let mut claims = json!({
            "iss": self.issuer(),
            "sub": sub,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECS,
            "scope": scope,
        });
        if let Some(agent) = agent {
            claims["preferred_username"] = json!(agent);
        }
        self.mint(KeyKind::Es256, &claims)
    }

    /// Full control, for attack tests: `header` is encoded verbatim (any members: `crit`,
    /// `jku`, `x5u`, `x5c`, `jwk`, ...). The signature follows `header["alg"]`:
    /// - "ES256", "RS256", "EdDSA": the newest key of that kind, whatever `kid` says;
    /// - "HS256", "HS384", "HS512": HMAC keyed with `hmac_secret`;
    /// - "none" in any letter case: no signature (the token ends with ".").
    ///
    /// # Panics
    /// If `alg` is missing or not one of those, if an HMAC `alg` comes without
    /// `hmac_secret`, or if the issuer holds no key of the named kind.
    pub fn mint_raw(&self, header: &Value, claims: &Value, hmac_secret: Option<&[u8]>) -> String {
        let Some(alg) = header.get("alg").and_then(Value::as_str) else {
            panic!("mint_raw: the header needs a string \"alg\" to pick a signer: {header}");
        };
        // RFC 7518 says "none"; "None" and "NONE" are classic filter bypasses worth testing.
        if alg.eq_ignore_ascii_case("none") {
            return jws::compact(header, claims, Signer::Unsigned);
        }
        if let Some(algorithm) = jws::hmac_algorithm(alg) {
            let secret =
                hmac_secret.unwrap_or_else(|| panic!("mint_raw: alg {alg} needs an hmac_secret"));
            return jws::compact(header, claims, Signer::Hmac(algorithm, secret));
        }
        let Some(kind) = KeyKind::from_jws_alg(alg) else {
            panic!(
                "mint_raw: cannot sign alg {alg:?}; use ES256, RS256, EdDSA, HS256/384/512 or none"
            );
        };
        let key = self.newest(kind);
        jws::compact(header, claims, Signer::Key(&key))
    }

    /// Signs the exact JSON bytes `header` and `claims` with the newest key of `kind`,
    /// for tests of what a `serde_json::Value` cannot express: repeated member names
    /// (RFC 7519 §4), odd escapes or number spellings. Nothing is checked or re-serialised;
    /// the header should name `kind`'s `alg` for the token to verify.
    ///
    /// # Panics
    /// If the issuer holds no key of `kind`.
    pub fn mint_raw_json(&self, kind: KeyKind, header: &str, claims: &str) -> String {
        let key = self.newest(kind);
        jws::compact_bytes(header.as_bytes(), claims.as_bytes(), Signer::Key(&key))
    }

    /// The newest RSA public key as PEM (SubjectPublicKeyInfo, "-----BEGIN PUBLIC KEY-----"):
    /// the HS256-keyed-with-the-public-key attack uses exactly these bytes as its secret.
    ///
    /// # Panics
    /// If the issuer holds no RSA key (one made by [`Self::from_es256_pem`]).
    pub fn rsa_public_key_pem(&self) -> String {
        let der = self
            .newest(KeyKind::Rs256)
            .rsa_spki()
            .expect("an RS256 key");
        keys::pem("PUBLIC KEY", &der)
    }

    /// Adds a new key of `kind` (the newest of its kind from now on, so `mint` uses it),
    /// publishes it, and returns its kid ("es256-2", ...). Kids are never reused.
    pub fn add_key(&self, kind: KeyKind) -> String {
        let kid = self.ring().reserve_kid(kind);
        // Generated outside the lock: RSA generation takes long enough to stall the server.
        let key = SigningKey::generate(kind, kid.clone());
        self.ring().insert(key);
        kid
    }

    /// Withdraws a key from the JWKS; unknown kids are ignored. The key still signs when it
    /// is the newest of its kind, which is how a test gets a token the gateway cannot verify.
    pub fn remove_key(&self, kid: &str) {
        self.ring().withdraw(kid);
    }

    /// Requests that reached [`JWKS_PATH`], answered or not.
    pub fn jwks_requests(&self) -> u64 {
        self.inner.jwks_requests.load(Ordering::Relaxed)
    }

    /// Requests that reached [`DISCOVERY_PATH`], answered or not.
    pub fn discovery_requests(&self) -> u64 {
        self.inner.discovery_requests.load(Ordering::Relaxed)
    }

    /// While on, both endpoints answer 500.
    pub fn set_failing(&self, on: bool) {
        self.inner.failing.store(on, Ordering::Relaxed);
    }

    /// Overrides the `issuer` member of the discovery document (`None` restores it).
    pub fn set_discovery_issuer(&self, issuer: Option<String>) {
        *lock(&self.inner.discovery_issuer) = issuer;
    }

    /// The JWKS as served: the published keys' public parts, oldest first.
    pub fn jwks_json(&self) -> Value {
        serde_json::to_value(self.ring().jwks()).expect("a JWK set serialises")
    }

    /// The newest ES256 private key as PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), for
    /// [`Self::from_es256_pem`] in another process.
    pub fn es256_private_key_pem(&self) -> String {
        let der = self
            .newest(KeyKind::Es256)
            .es256_pkcs8()
            .expect("an ES256 key");
        keys::pem("PRIVATE KEY", &der)
    }

    /// The discovery document for a server at `addr`. Only the members the gateway reads
    /// and the ones OIDC Discovery §3 requires that this issuer can honestly fill; no
    /// `authorization_endpoint`, since there is none.
    fn discovery_document(&self, addr: SocketAddr) -> Value {
        let issuer = lock(&self.inner.discovery_issuer)
            .clone()
            .unwrap_or_else(|| self.inner.issuer.clone());
        let mut algs: Vec<Value> = Vec::new();
        for key in self.ring().jwks().keys {
            let alg = json!(key.common.key_algorithm);
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        json!({
            "issuer": issuer,
            "jwks_uri": format!("http://{addr}{JWKS_PATH}"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
        })
    }

    fn count_jwks_request(&self) {
        self.inner.jwks_requests.fetch_add(1, Ordering::Relaxed);
    }

    fn count_discovery_request(&self) {
        self.inner
            .discovery_requests
            .fetch_add(1, Ordering::Relaxed);
    }

    fn is_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Relaxed)
    }

    fn ring(&self) -> MutexGuard<'_, KeyRing> {
        lock(&self.inner.keys)
    }

    /// The newest key of `kind`; panics (see the callers' docs) when there is none.
    fn newest(&self, kind: KeyKind) -> Arc<SigningKey> {
        self.ring().newest(kind).unwrap_or_else(|| {
            panic!(
                "the dev issuer holds no {} key; add one with add_key",
                kind.jws_alg()
            )
        })
    }
}

impl fmt::Debug for DevIssuer {
    // Hand-written: key ids and switches only, never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.inner.issuer)
            .field("keys (kid, published)", &self.ring().summary())
            .field("failing", &self.is_failing())
            .finish_non_exhaustive()
    }
}

/// Compile-time proof that the handle can be shared across tasks and threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DevIssuer>();
};
