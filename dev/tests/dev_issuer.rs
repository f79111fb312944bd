//! The development OIDC issuer over real loopback sockets: what it serves, and that what it
//! mints verifies (or, for the attack shapes, is built exactly as asked).

use std::net::SocketAddr;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Value, json};
use sipgw_dev::dev_issuer::{ADMIN_SCOPE, DevIssuer, DevIssuerError, KeyKind, TOKEN_LIFETIME_SECS};
use tokio::net::TcpListener;

const ISSUER: &str = "https://sso.dev.internal/realms/corp";
const AUDIENCE: &str = "sipgw";

/// What one HTTP exchange returned.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// An issuer serving on its own `127.0.0.1:0` socket.
async fn served() -> (DevIssuer, SocketAddr) {
    let issuer = DevIssuer::new(ISSUER);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = issuer.spawn(listener).unwrap();
    (issuer, addr)
}

async fn request(method: Method, url: &str) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(Method::GET, &format!("http://{addr}{path}")).await
}

/// The JWKS as served over HTTP, typed.
async fn fetch_jwks(addr: SocketAddr) -> JwkSet {
    let answer = get(addr, "/jwks.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    serde_json::from_value(answer.body).unwrap()
}

fn kids(jwks: &JwkSet) -> Vec<String> {
    jwks.keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect()
}

/// Verifies `token` the way the gateway will: key by `kid` from `jwks`, `alg` pinned,
/// issuer and audience checked. Returns the claims.
fn verify(token: &str, jwks: &JwkSet, alg: Algorithm) -> jsonwebtoken::errors::Result<Value> {
    let kid = decode_header(token)?.kid.expect("the token names its key");
    let jwk = jwks.find(&kid).expect("the kid is in the JWKS");
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation).map(|data| data.claims)
}

/// A token's three segments, base64url-decoded.
fn segments(token: &str) -> [Vec<u8>; 3] {
    let parts: Vec<Vec<u8>> = token
        .split('.')
        .map(|s| URL_SAFE_NO_PAD.decode(s).expect("base64url segment"))
        .collect();
    parts.try_into().expect("three segments")
}

fn claims_now() -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "svc-portal", "iat": now, "exp": now + 60})
}

fn jwk_by_kid<'a>(jwks: &'a JwkSet, kid: &str) -> &'a Jwk {
    jwks.find(kid)
        .unwrap_or_else(|| panic!("{kid} not in the JWKS"))
}

#[tokio::test]
async fn jwks_serves_public_parts_only_and_counts_requests() {
    let (issuer, addr) = served().await;
    let answer = get(addr, "/jwks.json").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(answer.body, issuer.jwks_json());

    let keys = answer.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let es = &keys[0];
    assert_eq!(
        (&es["kty"], &es["kid"], &es["use"], &es["alg"], &es["crv"]),
        (
            &json!("EC"),
            &json!("es256-1"),
            &json!("sig"),
            &json!("ES256"),
            &json!("P-256")
        )
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(es["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(es["y"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let rsa = &keys[1];
    assert_eq!(
        (&rsa["kty"], &rsa["kid"], &rsa["use"], &rsa["alg"]),
        (
            &json!("RSA"),
            &json!("rs256-1"),
            &json!("sig"),
            &json!("RS256")
        )
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(rsa["n"].as_str().unwrap())
            .unwrap()
            .len(),
        256
    );
    assert_eq!(rsa["e"], "AQAB");
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "{private} leaked: {key}");
        }
    }

    assert_eq!(issuer.jwks_requests(), 1);
    get(addr, "/jwks.json").await;
    assert_eq!(issuer.jwks_requests(), 2);
    assert_eq!(issuer.discovery_requests(), 0);
}

#[tokio::test]
async fn failing_switch_answers_500_on_both_paths_and_still_counts() {
    let (issuer, addr) = served().await;
    issuer.set_failing(true);
    for path in ["/jwks.json", "/.well-known/openid-configuration"] {
        let answer = get(addr, path).await;
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
        assert!(answer.body.get("keys").is_none() && answer.body.get("issuer").is_none());
    }
    assert_eq!(
        (issuer.jwks_requests(), issuer.discovery_requests()),
        (1, 1)
    );

    issuer.set_failing(false);
    assert_eq!(fetch_jwks(addr).await.keys.len(), 2);
    assert_eq!(issuer.jwks_requests(), 2);
}

#[tokio::test]
async fn discovery_names_the_issuer_and_a_working_jwks_uri_and_can_be_overridden() {
    let (issuer, addr) = served().await;
    let doc = get(addr, "/.well-known/openid-configuration").await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(doc.body["issuer"], ISSUER);
    let jwks_uri = doc.body["jwks_uri"].as_str().unwrap();
    assert_eq!(jwks_uri, format!("http://{addr}/jwks.json"));
    assert_eq!(
        doc.body["id_token_signing_alg_values_supported"],
        json!(["ES256", "RS256"])
    );
    // Following the document's link, as the gateway does, reaches the JWKS.
    let followed = request(Method::GET, jwks_uri).await;
    assert_eq!(followed.body, issuer.jwks_json());
    assert_eq!(
        (issuer.discovery_requests(), issuer.jwks_requests()),
        (1, 1)
    );

    issuer.set_discovery_issuer(Some("https://evil.example/realms/corp".into()));
    let doc = get(addr, "/.well-known/openid-configuration").await;
    assert_eq!(doc.body["issuer"], "https://evil.example/realms/corp");
    // The override changes the document only, not what tokens carry.
    assert_eq!(issuer.issuer(), ISSUER);

    issuer.set_discovery_issuer(None);
    let doc = get(addr, "/.well-known/openid-configuration").await;
    assert_eq!(doc.body["issuer"], ISSUER);
    assert_eq!(issuer.discovery_requests(), 3);
}

#[tokio::test]
async fn unknown_paths_get_404_and_other_methods_405() {
    let (issuer, addr) = served().await;
    let answer = get(addr, "/.well-known/jwks.json").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        (issuer.jwks_requests(), issuer.discovery_requests()),
        (0, 0)
    );

    let answer = request(Method::POST, &format!("http://{addr}/jwks.json")).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers[header::ALLOW], "GET");
    assert_eq!(issuer.jwks_requests(), 1);
}

#[tokio::test]
async fn minted_tokens_of_every_kind_verify_against_the_served_jwks() {
    let (issuer, addr) = served().await;
    assert_eq!(issuer.add_key(KeyKind::EdDsa), "eddsa-1");
    let jwks = fetch_jwks(addr).await;
    let claims = claims_now();
    for (kind, alg, kid) in [
        (KeyKind::Es256, Algorithm::ES256, "es256-1"),
        (KeyKind::Rs256, Algorithm::RS256, "rs256-1"),
        (KeyKind::EdDsa, Algorithm::EdDSA, "eddsa-1"),
    ] {
        let token = issuer.mint(kind, &claims);
        let head: Value = serde_json::from_slice(&segments(&token)[0]).unwrap();
        assert_eq!(
            head,
            json!({"alg": kind.jws_alg(), "kid": kid, "typ": "JWT"})
        );
        let verified = verify(&token, &jwks, alg).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(verified, claims, "claims are carried verbatim");
    }
}

#[tokio::test]
async fn a_token_does_not_verify_under_another_issuers_key() {
    let (issuer, _) = served().await;
    let stranger = DevIssuer::new(ISSUER);
    let token = issuer.mint(KeyKind::Es256, &claims_now());
    let jwks: JwkSet = serde_json::from_value(stranger.jwks_json()).unwrap();
    let error = verify(&token, &jwks, Algorithm::ES256).unwrap_err();
    assert_eq!(
        *error.kind(),
        jsonwebtoken::errors::ErrorKind::InvalidSignature
    );
}

#[tokio::test]
async fn mint_for_carries_the_gateway_claims() {
    let issuer = DevIssuer::new(ISSUER);
    let jwks: JwkSet = serde_json::from_value(issuer.jwks_json()).unwrap();

    let agent = issuer.mint_for("u-42", AUDIENCE, Some("a1001"), false);
    assert_eq!(decode_header(&agent).unwrap().alg, Algorithm::ES256);
    let claims = verify(&agent, &jwks, Algorithm::ES256).unwrap();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "u-42");
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["preferred_username"], "a1001");
    let scopes: Vec<&str> = claims["scope"].as_str().unwrap().split(' ').collect();
    assert!(!scopes.contains(&ADMIN_SCOPE), "{scopes:?}");
    let (iat, nbf, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["nbf"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!((nbf, exp - iat), (iat, TOKEN_LIFETIME_SECS));
    assert!(iat.abs_diff(jsonwebtoken::get_current_timestamp()) <= 5);

    let admin = issuer.mint_for("svc-helpdesk", AUDIENCE, None, true);
    let claims = verify(&admin, &jwks, Algorithm::ES256).unwrap();
    assert!(claims.get("preferred_username").is_none());
    let scopes: Vec<&str> = claims["scope"].as_str().unwrap().split(' ').collect();
    assert!(scopes.contains(&ADMIN_SCOPE), "{scopes:?}");
}

#[tokio::test]
async fn mint_raw_keeps_the_header_verbatim_and_signs_with_the_named_family() {
    let issuer = DevIssuer::new(ISSUER);
    issuer.add_key(KeyKind::EdDsa);
    let jwks: JwkSet = serde_json::from_value(issuer.jwks_json()).unwrap();
    let claims = claims_now();
    for (alg, kid) in [
        (Algorithm::ES256, "es256-1"),
        (Algorithm::RS256, "rs256-1"),
        (Algorithm::EdDSA, "eddsa-1"),
    ] {
        let name = serde_json::to_value(alg).unwrap();
        let header = json!({
            "alg": name, "kid": kid, "crit": ["x"], "x": true,
            "jku": "http://evil.example/jwks.json", "typ": "JWT",
        });
        let token = issuer.mint_raw(&header, &claims, None);
        let [head, payload, _] = segments(&token);
        assert_eq!(serde_json::from_slice::<Value>(&head).unwrap(), header);
        assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap(), claims);
        // Low-level check: `decode` would (rightly) refuse the unknown `crit`, so verify
        // the signature alone over "header.payload".
        let (input, signature) = token.rsplit_once('.').unwrap();
        let key = DecodingKey::from_jwk(jwk_by_kid(&jwks, kid)).unwrap();
        assert!(
            jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, alg).unwrap(),
            "{alg:?} signature"
        );
    }
}

#[tokio::test]
async fn mint_raw_signs_with_the_newest_key_whatever_the_kid_says() {
    let issuer = DevIssuer::new(ISSUER);
    // Header names the RSA key but asks for ES256: the algorithm-confusion shape.
    let token = issuer.mint_raw(
        &json!({"alg": "ES256", "kid": "rs256-1"}),
        &claims_now(),
        None,
    );
    let jwks: JwkSet = serde_json::from_value(issuer.jwks_json()).unwrap();
    let (input, signature) = token.rsplit_once('.').unwrap();
    let es_key = DecodingKey::from_jwk(jwk_by_kid(&jwks, "es256-1")).unwrap();
    assert!(
        jsonwebtoken::crypto::verify(signature, input.as_bytes(), &es_key, Algorithm::ES256)
            .unwrap()
    );
}

#[tokio::test]
async fn alg_none_yields_an_empty_signature_segment() {
    let issuer = DevIssuer::new(ISSUER);
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        let token = issuer.mint_raw(&header, &claims_now(), None);
        assert!(token.ends_with('.'), "{token}");
        let [head, payload, signature] = segments(&token);
        assert_eq!(serde_json::from_slice::<Value>(&head).unwrap(), header);
        assert_eq!(
            serde_json::from_slice::<Value>(&payload).unwrap()["sub"],
            "svc-portal"
        );
        assert!(signature.is_empty());
    }
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_pem_is_hmac_over_header_dot_payload() {
    let issuer = DevIssuer::new(ISSUER);
    let pem = issuer.rsa_public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PUBLIC KEY-----\n"), "{pem}");
    // The PEM is the served RSA key, so an attacker can copy it from the JWKS.
    let from_pem =
        Jwk::from_decoding_key(&DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), None).unwrap();
    let jwks: JwkSet = serde_json::from_value(issuer.jwks_json()).unwrap();
    match (&from_pem.algorithm, &jwk_by_kid(&jwks, "rs256-1").algorithm) {
        (AlgorithmParameters::RSA(a), AlgorithmParameters::RSA(b)) => {
            assert_eq!((&a.n, &a.e), (&b.n, &b.e));
        }
        other => panic!("not RSA: {other:?}"),
    }

    let header = json!({"alg": "HS256", "kid": "rs256-1", "typ": "JWT"});
    let token = issuer.mint_raw(&header, &claims_now(), Some(pem.as_bytes()));
    let [head, _, signature] = segments(&token);
    assert_eq!(serde_json::from_slice::<Value>(&head).unwrap(), header);
    let (input, _) = token.rsplit_once('.').unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, pem.as_bytes());
    assert!(hmac::verify(&key, input.as_bytes(), &signature).is_ok());
    let wrong = hmac::Key::new(hmac::HMAC_SHA256, b"some other secret");
    assert!(hmac::verify(&wrong, input.as_bytes(), &signature).is_err());
}

#[tokio::test]
async fn add_key_and_remove_key_change_the_served_jwks() {
    let (issuer, addr) = served().await;
    assert_eq!(issuer.add_key(KeyKind::Es256), "es256-2");
    let jwks = fetch_jwks(addr).await;
    assert_eq!(kids(&jwks), ["es256-1", "rs256-1", "es256-2"]);
    // The new key is the newest of its kind: `mint` uses it.
    let token = issuer.mint(KeyKind::Es256, &claims_now());
    assert_eq!(
        decode_header(&token).unwrap().kid.as_deref(),
        Some("es256-2")
    );
    verify(&token, &jwks, Algorithm::ES256).unwrap();

    issuer.remove_key("es256-1");
    assert_eq!(kids(&fetch_jwks(addr).await), ["rs256-1", "es256-2"]);

    // A withdrawn newest key still signs, but a verifier no longer finds it.
    issuer.remove_key("es256-2");
    let jwks = fetch_jwks(addr).await;
    assert_eq!(kids(&jwks), ["rs256-1"]);
    let orphan = issuer.mint(KeyKind::Es256, &claims_now());
    assert_eq!(
        decode_header(&orphan).unwrap().kid.as_deref(),
        Some("es256-2")
    );
    assert!(jwks.find("es256-2").is_none());

    // Kids are never reused after a removal.
    assert_eq!(issuer.add_key(KeyKind::Es256), "es256-3");
    assert_eq!(kids(&fetch_jwks(addr).await), ["rs256-1", "es256-3"]);
    issuer.remove_key("no-such-kid");
    assert_eq!(issuer.jwks_json()["keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn es256_pem_round_trips_into_an_issuer_the_original_jwks_accepts() {
    let original = DevIssuer::new(ISSUER);
    let pem = original.es256_private_key_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");

    let copy = DevIssuer::from_es256_pem(ISSUER, &pem).unwrap();
    assert_eq!(copy.issuer(), ISSUER);
    let copy_jwks = copy.jwks_json();
    assert_eq!(copy_jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(copy_jwks["keys"][0], original.jwks_json()["keys"][0]);

    let original_jwks: JwkSet = serde_json::from_value(original.jwks_json()).unwrap();
    let token = copy.mint_for("u-1", AUDIENCE, Some("a1001"), false);
    let claims = verify(&token, &original_jwks, Algorithm::ES256).unwrap();
    assert_eq!(claims["preferred_username"], "a1001");
    assert_eq!(copy.es256_private_key_pem(), pem);
}

#[test]
fn from_es256_pem_refuses_what_is_not_a_p256_private_key() {
    let error = DevIssuer::from_es256_pem(ISSUER, "not a pem").unwrap_err();
    assert!(matches!(error, DevIssuerError::Pem(_)), "{error:?}");

    let issuer = DevIssuer::new(ISSUER);
    let public = issuer.rsa_public_key_pem();
    let error = DevIssuer::from_es256_pem(ISSUER, &public).unwrap_err();
    assert!(matches!(error, DevIssuerError::Pem(_)), "{error:?}");

    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_pem();
    let error = DevIssuer::from_es256_pem(ISSUER, &p384).unwrap_err();
    assert!(matches!(error, DevIssuerError::Key(_)), "{error:?}");
}

#[test]
fn debug_output_names_keys_but_never_their_private_parts() {
    let issuer = DevIssuer::new(ISSUER);
    let shown = format!("{issuer:?}");
    assert!(
        shown.contains("es256-1") && shown.contains("rs256-1"),
        "{shown}"
    );
    // No 12-character run of the private key's PKCS#8 body may appear.
    let pem = issuer.es256_private_key_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for start in (0..body.len() - 12).step_by(6) {
        assert!(!shown.contains(&body[start..start + 12]), "{shown}");
    }
}
