//! Cost of authenticating a request: the token check cold (signature verification) and warm
//! (a verified-token cache hit), for ES256 and RS256, and the authorization decision.
//!
//! Run with `cargo bench --bench auth`. Numbers are in docs/performance.md.

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use jsonwebtoken::Algorithm;
use serde_json::json;
use sipgw::auth::keys::{FetchSettings, KeySet, KeySource, KeyStore};
use sipgw::auth::policy::AgentMatch;
use sipgw::auth::{AuthSettings, Authenticator, Policy};
use sipgw_dev::dev_issuer::{DevIssuer, KeyKind};

const ISSUER: &str = "https://sso.bench.internal/realms/corp";

/// Polls a future that never waits (the check with a static key set) to completion, so the
/// measurement holds no executor overhead.
fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the check waited although the key set is static"),
    }
}

fn policy() -> Policy {
    Policy {
        agent_claim: "preferred_username".into(),
        agent_match: AgentMatch::Exact,
        self_service: true,
        admin_scopes: vec!["sipgw.admin".into()],
        admin_roles: vec!["cc-admin".into()],
        roles_path: vec!["realm_access".into(), "roles".into()],
    }
}

fn authenticator(idp: &DevIssuer, cache_entries: usize) -> Authenticator {
    let algorithms = vec![Algorithm::RS256, Algorithm::ES256];
    let set = KeySet::parse(idp.jwks_json().to_string().as_bytes(), &algorithms).unwrap();
    let fetch = FetchSettings {
        issuer: ISSUER.into(),
        algorithms: algorithms.clone(),
        refresh: Duration::from_secs(300),
        refetch_cooldown: Duration::from_secs(30),
        timeout: Duration::from_secs(5),
        allow_insecure_http: false,
    };
    let keys = Arc::new(KeyStore::new(KeySource::Static(Arc::new(set)), fetch, None));
    let settings = AuthSettings {
        issuer: ISSUER.into(),
        audiences: vec!["sipgw".into()],
        algorithms,
        leeway: Duration::from_secs(30),
        policy: policy(),
        cache_entries,
        refused_cache_entries: 4096,
        required_typ: None,
        max_lifetime: None,
        display_claim: Some("name".into()),
    };
    Authenticator::new(settings, keys)
}

/// A typical SSO token: a few hundred bytes of claims.
fn token(idp: &DevIssuer, kind: KeyKind, sub: &str) -> HeaderValue {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "sub": sub, "aud": ["sipgw", "account"], "exp": now + 3600,
        "iat": now, "nbf": now, "preferred_username": "a1001", "scope": "openid profile email",
        "realm_access": {"roles": ["offline_access", "uma_authorization", "agent"]},
        "name": "Alice Example", "email": "alice@example.com", "azp": "contact-centre-app",
    });
    HeaderValue::from_str(&format!("Bearer {}", idp.mint(kind, &claims))).unwrap()
}

fn bench_token_check(c: &mut Criterion) {
    let idp = DevIssuer::new(ISSUER);
    for (name, kind) in [("es256", KeyKind::Es256), ("rs256", KeyKind::Rs256)] {
        // Cold: a one-entry cache and two tokens taken in turn, so every check misses.
        let cold = authenticator(&idp, 1);
        let tokens = [token(&idp, kind, "alice"), token(&idp, kind, "bob")];
        let mut turn = 0usize;
        c.bench_function(&format!("token_check/{name}/cold"), |b| {
            b.iter(|| {
                turn ^= 1;
                let identity = run_now(cold.authenticate(Some(&tokens[turn]))).unwrap();
                black_box(identity);
            })
        });
        // Warm: the same token again, a cache hit.
        let warm = authenticator(&idp, 1000);
        let token = token(&idp, kind, "alice");
        run_now(warm.authenticate(Some(&token))).unwrap();
        c.bench_function(&format!("token_check/{name}/warm"), |b| {
            b.iter(|| black_box(run_now(warm.authenticate(Some(black_box(&token)))).unwrap()))
        });
        // A forged token (one signature character changed), sent again and again: the
        // refusal is remembered, so only the first one costs a signature check.
        let text = token.to_str().unwrap();
        let (signed, signature) = text.rsplit_once('.').unwrap();
        let mut forged_signature: Vec<char> = signature.chars().collect();
        let middle = forged_signature.len() / 2;
        forged_signature[middle] = if forged_signature[middle] == 'A' {
            'B'
        } else {
            'A'
        };
        let forged = HeaderValue::from_str(&format!(
            "{signed}.{}",
            forged_signature.iter().collect::<String>()
        ))
        .unwrap();
        assert!(run_now(warm.authenticate(Some(&forged))).is_err());
        c.bench_function(&format!("token_check/{name}/refused_again"), |b| {
            b.iter(|| black_box(run_now(warm.authenticate(Some(black_box(&forged)))).unwrap_err()))
        });
    }
}

fn bench_policy(c: &mut Criterion) {
    let policy = policy();
    let claims = json!({
        "sub": "alice", "preferred_username": "a1001", "scope": "openid profile email",
        "realm_access": {"roles": ["offline_access", "agent"]},
    });
    let claims = claims.as_object().unwrap();
    c.bench_function("policy/grants_from_claims", |b| {
        b.iter(|| black_box(policy.grants(black_box(claims))))
    });
    let grants = policy.grants(claims);
    c.bench_function("policy/authorize", |b| {
        b.iter(|| black_box(policy.authorize(black_box(&grants), black_box("a1001"))))
    });
}

criterion_group!(benches, bench_token_check, bench_policy);
criterion_main!(benches);
