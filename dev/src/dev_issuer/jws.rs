//! JWS compact serialization (RFC 7515 §7.1) over arbitrary header and claims JSON.
//!
//! Hand-assembled rather than through `jsonwebtoken::encode`, because attack tests need
//! headers that library refuses to produce (`crit`, `jku`, `alg: none`, HMAC keyed with a
//! public key...). The header is serialised exactly as given, or taken as given bytes.

use aws_lc_rs::hmac;
use serde_json::Value;

use super::keys::{SigningKey, b64url};

/// What produces the third segment.
pub(super) enum Signer<'a> {
    /// A private key of the issuer.
    Key(&'a SigningKey),
    /// HMAC (RFC 7518 §3.2) with a caller-chosen secret.
    Hmac(hmac::Algorithm, &'a [u8]),
    /// No signature: the `alg: none` form (RFC 7518 §3.6), an empty third segment.
    Unsigned,
}

/// `base64url(header) "." base64url(claims) "." base64url(signature)`.
pub(super) fn compact(header: &Value, claims: &Value, signer: Signer<'_>) -> String {
    compact_bytes(
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        signer,
    )
}

/// [`compact`] over the exact JSON bytes of header and claims, which a `Value` cannot
/// always hold (a repeated member name, a particular spelling of a number or an escape).
pub(super) fn compact_bytes(header: &[u8], claims: &[u8], signer: Signer<'_>) -> String {
    let signing_input = format!("{}.{}", b64url(header), b64url(claims));
    let signature = match signer {
        Signer::Key(key) => key.sign(signing_input.as_bytes()),
        Signer::Hmac(algorithm, secret) => {
            let key = hmac::Key::new(algorithm, secret);
            hmac::sign(&key, signing_input.as_bytes()).as_ref().to_vec()
        }
        Signer::Unsigned => Vec::new(),
    };
    format!("{signing_input}.{}", b64url(&signature))
}

/// The HMAC algorithm a JWS `alg` names, if it names one.
pub(super) fn hmac_algorithm(alg: &str) -> Option<hmac::Algorithm> {
    match alg {
        "HS256" => Some(hmac::HMAC_SHA256),
        "HS384" => Some(hmac::HMAC_SHA384),
        "HS512" => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    fn segments(token: &str) -> Vec<Vec<u8>> {
        token
            .split('.')
            .map(|s| URL_SAFE_NO_PAD.decode(s).expect("base64url segment"))
            .collect()
    }

    #[test]
    fn unsigned_token_has_an_empty_third_segment_and_the_exact_header() {
        let header = json!({"alg": "none", "jku": "http://evil.example/jwks"});
        let token = compact(&header, &json!({"sub": "x"}), Signer::Unsigned);
        assert!(token.ends_with('.'), "{token}");
        let parts = segments(&token);
        assert_eq!(parts.len(), 3);
        let decoded: Value = serde_json::from_slice(&parts[0]).unwrap();
        assert_eq!(decoded, header);
        assert!(parts[2].is_empty());
    }

    #[test]
    fn hmac_signature_covers_header_dot_payload() {
        let secret = b"not-a-real-secret";
        let token = compact(
            &json!({"alg": "HS384"}),
            &json!({"a": 1}),
            Signer::Hmac(hmac::HMAC_SHA384, secret),
        );
        let (input, signature) = token.rsplit_once('.').unwrap();
        let key = hmac::Key::new(hmac::HMAC_SHA384, secret);
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        assert!(hmac::verify(&key, input.as_bytes(), &signature).is_ok());
    }

    #[test]
    fn raw_bytes_are_encoded_as_given() {
        let header = br#"{"alg":"none","alg":"none"}"#;
        let claims = br#"{"sub":"a","sub":"b"}"#;
        let token = compact_bytes(header, claims, Signer::Unsigned);
        let parts = segments(&token);
        assert_eq!(parts[0], header);
        assert_eq!(parts[1], claims);
    }

    #[test]
    fn only_the_three_hmac_algs_map_to_hmac() {
        assert!(hmac_algorithm("HS256").is_some());
        assert!(hmac_algorithm("HS512").is_some());
        assert!(hmac_algorithm("hs256").is_none());
        assert!(hmac_algorithm("RS256").is_none());
    }
}
