//! The issuer's signing keys: generation, signing, their public JWKs, and the ring that
//! decides which key is "newest" for a kind and which keys are published.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType,
};

use super::KeyKind;

/// Length of an uncompressed P-256 point: `0x04 || x || y`, 32 bytes each (SEC 1 §2.3.3).
const P256_POINT_LEN: usize = 65;

/// The private half of one key, per family.
enum PrivateKey {
    /// ES256: ECDSA over P-256 with SHA-256, fixed-length `r || s` signatures (RFC 7518 §3.4).
    Es256(EcdsaKeyPair),
    /// RS256: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rs256(RsaKeyPair),
    /// EdDSA over Ed25519 (RFC 8037).
    EdDsa(Ed25519KeyPair),
}

/// One signing key and its name.
pub(super) struct SigningKey {
    /// The `kid` tokens name it by and the JWKS lists it under.
    kid: String,
    /// The key itself; never leaves this module except as signatures, public parts, or the
    /// ES256 PKCS#8 export the dev-token helper asks for.
    private: PrivateKey,
}

impl SigningKey {
    /// Generates a fresh key of `kind`.
    ///
    /// # Panics
    /// If aws-lc cannot generate a key, which only happens when the system RNG fails: a
    /// development tool has nothing sensible to do then.
    pub(super) fn generate(kind: KeyKind, kid: String) -> Self {
        let private = match kind {
            KeyKind::Es256 => PrivateKey::Es256(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("P-256 key generation"),
            ),
            KeyKind::Rs256 => PrivateKey::Rs256(
                RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA 2048 key generation"),
            ),
            KeyKind::EdDsa => {
                PrivateKey::EdDsa(Ed25519KeyPair::generate().expect("Ed25519 key generation"))
            }
        };
        Self { kid, private }
    }

    /// Wraps an existing ES256 key (from a PEM file).
    pub(super) fn from_es256(kid: String, pair: EcdsaKeyPair) -> Self {
        Self {
            kid,
            private: PrivateKey::Es256(pair),
        }
    }

    pub(super) fn kid(&self) -> &str {
        &self.kid
    }

    pub(super) fn kind(&self) -> KeyKind {
        match self.private {
            PrivateKey::Es256(_) => KeyKind::Es256,
            PrivateKey::Rs256(_) => KeyKind::Rs256,
            PrivateKey::EdDsa(_) => KeyKind::EdDsa,
        }
    }

    /// The JWS signature over `signing_input` (`base64url(header) "." base64url(payload)`).
    ///
    /// # Panics
    /// If aws-lc fails to sign, which it does only on internal errors.
    pub(super) fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.private {
            PrivateKey::Es256(pair) => pair
                .sign(&rng, signing_input)
                .expect("ECDSA signing")
                .as_ref()
                .to_vec(),
            PrivateKey::Rs256(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, signing_input, &mut signature)
                    .expect("RSA signing");
                signature
            }
            PrivateKey::EdDsa(pair) => pair.sign(signing_input).as_ref().to_vec(),
        }
    }

    /// The public key as a JWK (RFC 7517/7518/8037): `kty`, `kid`, `use: "sig"`, `alg` and
    /// the public parameters. Built from the public key only, so no private member can leak.
    pub(super) fn public_jwk(&self) -> Jwk {
        let (key_algorithm, algorithm) = match &self.private {
            PrivateKey::Es256(pair) => {
                let point = pair.public_key().as_ref();
                assert_eq!(point.len(), P256_POINT_LEN, "uncompressed P-256 point");
                let params = EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64url(&point[1..33]),
                    y: b64url(&point[33..]),
                };
                (
                    KeyAlgorithm::ES256,
                    AlgorithmParameters::EllipticCurve(params),
                )
            }
            PrivateKey::Rs256(pair) => {
                let public = pair.public_key();
                let params = RSAKeyParameters {
                    key_type: RSAKeyType::RSA,
                    n: b64url(public.modulus().big_endian_without_leading_zero()),
                    e: b64url(public.exponent().big_endian_without_leading_zero()),
                };
                (KeyAlgorithm::RS256, AlgorithmParameters::RSA(params))
            }
            PrivateKey::EdDsa(pair) => {
                let params = OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: b64url(pair.public_key().as_ref()),
                };
                (
                    KeyAlgorithm::EdDSA,
                    AlgorithmParameters::OctetKeyPair(params),
                )
            }
        };
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(key_algorithm),
                key_id: Some(self.kid.clone()),
                ..CommonParameters::default()
            },
            algorithm,
        }
    }

    /// The PKCS#8 v1 DER of an ES256 key, `None` for other kinds.
    pub(super) fn es256_pkcs8(&self) -> Option<Vec<u8>> {
        match &self.private {
            PrivateKey::Es256(pair) => Some(
                pair.to_pkcs8v1()
                    .expect("PKCS#8 export of a P-256 key")
                    .as_ref()
                    .to_vec(),
            ),
            PrivateKey::Rs256(_) | PrivateKey::EdDsa(_) => None,
        }
    }

    /// The SubjectPublicKeyInfo DER (RFC 5280) of an RSA key, `None` for other kinds.
    pub(super) fn rsa_spki(&self) -> Option<Vec<u8>> {
        match &self.private {
            PrivateKey::Rs256(pair) => Some(
                pair.public_key()
                    .as_der()
                    .expect("SPKI encoding of an RSA public key")
                    .as_ref()
                    .to_vec(),
            ),
            PrivateKey::Es256(_) | PrivateKey::EdDsa(_) => None,
        }
    }
}

/// All keys the issuer holds, oldest first. A key stays usable for signing after it is
/// withdrawn from the JWKS, so tests can mint tokens the gateway can no longer verify.
#[derive(Default)]
pub(super) struct KeyRing {
    /// Every key ever added, in order of addition; the last of a kind is its newest.
    /// Shared pointers, so signing happens outside the ring's lock.
    keys: Vec<Arc<SigningKey>>,
    /// Keys withdrawn from the JWKS, by `kid`.
    withdrawn: Vec<String>,
    /// The serial the next key of each kind gets (index: [`kind_index`]); never reused, so a
    /// removed `kid` cannot come back with a different key.
    next_serial: [u32; 3],
}

impl KeyRing {
    /// Reserves the next `kid` of `kind` ("es256-2", ...). Separate from [`Self::insert`] so
    /// a slow RSA generation does not hold the ring's lock.
    pub(super) fn reserve_kid(&mut self, kind: KeyKind) -> String {
        let serial = &mut self.next_serial[kind_index(kind)];
        *serial += 1;
        format!("{}-{serial}", kind.kid_prefix())
    }

    /// Adds `key` as the newest of its kind, published.
    pub(super) fn insert(&mut self, key: SigningKey) {
        self.keys.push(Arc::new(key));
    }

    /// The newest key of `kind`, published or not.
    pub(super) fn newest(&self, kind: KeyKind) -> Option<Arc<SigningKey>> {
        self.keys.iter().rev().find(|k| k.kind() == kind).cloned()
    }

    /// Withdraws `kid` from the JWKS; unknown kids are ignored.
    pub(super) fn withdraw(&mut self, kid: &str) {
        if !self.withdrawn.iter().any(|w| w == kid) {
            self.withdrawn.push(kid.to_owned());
        }
    }

    /// The published keys' public halves, oldest first.
    pub(super) fn jwks(&self) -> JwkSet {
        let keys = self
            .keys
            .iter()
            .filter(|k| !self.withdrawn.iter().any(|w| w == k.kid()))
            .map(|k| k.public_jwk())
            .collect();
        JwkSet { keys }
    }

    /// Every key's `kid` and whether it is published, for `Debug`.
    pub(super) fn summary(&self) -> Vec<(String, bool)> {
        self.keys
            .iter()
            .map(|k| {
                let published = !self.withdrawn.iter().any(|w| w == k.kid());
                (k.kid().to_owned(), published)
            })
            .collect()
    }
}

/// Position of `kind` in [`KeyRing::next_serial`].
fn kind_index(kind: KeyKind) -> usize {
    match kind {
        KeyKind::Es256 => 0,
        KeyKind::Rs256 => 1,
        KeyKind::EdDsa => 2,
    }
}

/// Unpadded base64url, the encoding of every JWS segment and JWK member (RFC 7515 §2).
pub(super) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Wraps DER in PEM armour (RFC 7468): standard base64 in 64-character lines.
pub(super) fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // Base64 output is ASCII, so splitting on byte boundaries keeps valid UTF-8.
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
