//! The token check up to the signature (`src/auth/verify.rs`): the `Authorization`
//! header's scheme and size ([`bearer_token`]), then the JWS header ([`check_header`]):
//! three base64url segments, a JSON header without key-naming members, an allowed `alg`,
//! a string `kid`.
//!
//! Input: the `Authorization` header value (values HTTP cannot carry are skipped).

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use sipgw::auth::verify::{MAX_TOKEN_BYTES, bearer_token, check_header};

/// Every algorithm `auth.algorithms` may list (the config refuses `none` and HMAC).
const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let Ok(token) = bearer_token(Some(&value)) else {
        return;
    };
    assert!(
        !token.is_empty() && token.len() <= MAX_TOKEN_BYTES,
        "accepted a token of {} bytes",
        token.len()
    );
    assert_eq!(
        token,
        token.trim(),
        "the token keeps surrounding whitespace"
    );

    // Only what the gateway's own configuration allows, here ES256 alone, must pass.
    let only_es256 = check_header(token, &[Algorithm::ES256]);
    let Ok(header) = check_header(token, &ALLOWED) else {
        assert!(only_es256.is_err(), "a narrower allow-list accepted more");
        return;
    };
    assert!(ALLOWED.contains(&header.alg));
    assert_eq!(only_es256.is_ok(), header.alg == Algorithm::ES256);

    // Compact JWS (RFC 7515 §7.1): three base64url segments, the first a JSON object whose
    // "alg" is the one reported, with no member that names or carries a key.
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "accepted {} segments", segments.len());
    let raw = URL_SAFE_NO_PAD
        .decode(segments[0])
        .expect("an accepted header is base64url");
    let object: Map<String, Value> =
        serde_json::from_slice(&raw).expect("an accepted header is a JSON object");
    let alg: Algorithm = object["alg"]
        .as_str()
        .expect("alg is a string")
        .parse()
        .expect("alg names an algorithm");
    assert_eq!(alg, header.alg);
    for member in ["crit", "jku", "x5u", "x5c", "jwk"] {
        assert!(
            !object.contains_key(member),
            "accepted a header with {member}"
        );
    }
    assert_eq!(
        object.get("kid").and_then(Value::as_str),
        header.kid.as_deref(),
        "kid"
    );
});
