//! The token check past the signature (`src/auth/verify.rs`, `policy.rs`): the claims of a
//! correctly signed token, decoded and checked by [`Authenticator::authenticate`] exactly as
//! for a request (jsonwebtoken's checks, then the claims the gateway reads, then what they
//! grant).
//!
//! Input: the JWT payload, raw bytes (duplicate members, odd numbers and all). The target
//! signs it with an ES256 key of its own, made at start-up, which the authenticator trusts
//! from a static key set: no network, no files.

#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use sipgw::auth::keys::{FetchSettings, KeySet, KeySource, KeyStore};
use sipgw::auth::policy::AgentMatch;
use sipgw::auth::{AuthSettings, Authenticator, Grant, Policy};

const ISSUER: &str = "https://sso.fuzz.internal/realms/corp";
const AUDIENCE: &str = "sipgw";
const ADMIN_SCOPE: &str = "sipgw.admin";
const ADMIN_ROLE: &str = "sipgw-admin";
const LEEWAY: Duration = Duration::from_secs(30);

/// What every input shares: the signing key, the authenticator and a runtime to drive it.
struct Setup {
    key: EcdsaKeyPair,
    /// `base64url(header) "."`, the same for every token.
    header: String,
    authenticator: Authenticator,
    runtime: tokio::runtime::Runtime,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("ES256 key");
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "fuzz-1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }]});
        let algorithms = vec![Algorithm::ES256];
        let set = KeySet::parse(jwks.to_string().as_bytes(), &algorithms).expect("key set");
        let fetch = FetchSettings {
            issuer: ISSUER.into(),
            algorithms: algorithms.clone(),
            refresh: Duration::from_secs(300),
            refetch_cooldown: Duration::from_secs(30),
            timeout: Duration::from_secs(1),
            allow_insecure_http: false,
        };
        let store = KeyStore::new(KeySource::Static(Arc::new(set)), fetch, None);
        let settings = AuthSettings {
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            algorithms,
            leeway: LEEWAY,
            policy: Policy {
                agent_claim: "preferred_username".into(),
                agent_match: AgentMatch::Exact,
                self_service: true,
                admin_scopes: vec![ADMIN_SCOPE.into()],
                admin_roles: vec![ADMIN_ROLE.into()],
                roles_path: vec!["realm_access".into(), "roles".into()],
            },
            // No cache hits: every input is checked afresh.
            cache_entries: 1,
            refused_cache_entries: 1,
            required_typ: None,
            max_lifetime: None,
            display_claim: Some("name".into()),
        };
        let header = json!({"alg": "ES256", "kid": "fuzz-1", "typ": "JWT"});
        Setup {
            key,
            header: format!("{}.", URL_SAFE_NO_PAD.encode(header.to_string())),
            authenticator: Authenticator::new(settings, Arc::new(store)),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
        }
    })
}

fuzz_target!(|payload: &[u8]| {
    let setup = setup();
    let signing_input = format!("{}{}", setup.header, URL_SAFE_NO_PAD.encode(payload));
    let signature = setup
        .key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("signing");
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    if token.len() > sipgw::auth::verify::MAX_TOKEN_BYTES {
        return; // refused unread, which the `jwt` target covers
    }
    let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("base64url is ASCII");
    let Ok(identity) = setup
        .runtime
        .block_on(setup.authenticator.authenticate(Some(&value)))
    else {
        return;
    };

    // An accepted token's claims, as any JSON reader reads them, say what the identity says.
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).expect("accepted claims are a JSON object");
    assert_eq!(claims["iss"], ISSUER, "iss");
    assert!(
        claims["aud"] == AUDIENCE
            || claims["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == AUDIENCE)),
        "aud {}",
        claims["aud"]
    );
    assert_eq!(claims["sub"].as_str(), Some(identity.caller.sub()), "sub");
    assert!(!identity.caller.sub().is_empty(), "accepted an empty sub");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let leeway = LEEWAY.as_secs();
    assert!(
        identity.exp.saturating_add(leeway) >= now,
        "accepted an expired token"
    );
    for claim in ["nbf", "iat"] {
        if let Some(at) = claims.get(claim) {
            let at = at.as_f64().expect("a present nbf/iat is a number");
            assert!(at <= (now + leeway) as f64 + 1.0, "{claim} in the future");
        }
    }
    // What it grants follows from the claims.
    let policy = setup.authenticator.policy();
    assert_eq!(
        identity.grants.agent.as_deref(),
        claims.get("preferred_username").and_then(Value::as_str),
        "agent"
    );
    match policy.authorize(&identity.grants, "a1001") {
        Some(Grant::SelfService) => assert_eq!(claims["preferred_username"], "a1001"),
        Some(Grant::AdminScope(scope)) => {
            assert_eq!(scope, ADMIN_SCOPE);
            let in_scope = claims
                .get("scope")
                .and_then(Value::as_str)
                .is_some_and(|s| s.split(' ').any(|s| s == ADMIN_SCOPE));
            let in_scp = match claims.get("scp") {
                Some(Value::String(s)) => s.split(' ').any(|s| s == ADMIN_SCOPE),
                Some(Value::Array(items)) => items.iter().any(|v| v == ADMIN_SCOPE),
                _ => false,
            };
            assert!(in_scope || in_scp, "admin scope granted without the scope");
        }
        Some(Grant::AdminRole(role)) => {
            assert_eq!(role, ADMIN_ROLE);
            let roles = &claims["realm_access"]["roles"];
            assert!(
                roles == ADMIN_ROLE
                    || roles
                        .as_array()
                        .is_some_and(|a| a.iter().any(|v| v == ADMIN_ROLE)),
                "admin role granted without the role"
            );
        }
        None => {}
    }
});
