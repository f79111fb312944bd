//! JWT authentication and per-agent authorization over real sockets (docs/authentication.md, issue 3).
//!
//! Each test starts a vendor simulator, a development issuer (JWKS on `127.0.0.1:0`) and a
//! gateway, mints real signed tokens, and sends password changes. Accepted tokens must
//! change the password; refused ones must get 401 `unauthenticated` (with
//! `WWW-Authenticate: Bearer error="invalid_token"`) or 403 `forbidden`, a `detail` naming
//! the rule but never the token, and must leave the vendor untouched.
//!
//! Tokens start from [`claims`] (valid for a self-service change of [`AGENT`]); each test
//! changes the one thing it is about.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use http::Method;
use serde_json::{Value, json};
use sipgw_dev::dev_issuer::{DISCOVERY_PATH, DevIssuer, JWKS_PATH, KeyKind};
use tokio::net::TcpListener;

/// Kids of the keys [`DevIssuer::new`] generates.
const ES256_KID: &str = "es256-1";
const RS256_KID: &str = "rs256-1";

/// Claims the gateway accepts for a self-service change of [`AGENT`]. The `jti` makes every
/// token unique, so no test is answered from another's verified-token cache entry.
fn claims() -> Value {
    let mut claims = token_claims("alice");
    claims["preferred_username"] = json!(AGENT);
    claims["scope"] = json!("openid profile");
    claims
}

/// [`claims`] with one member removed.
fn claims_without(name: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

/// [`claims`] of a caller that may change any agent (admin scope) and names no agent.
fn admin_claims() -> Value {
    let mut claims = claims_without("preferred_username");
    claims["sub"] = json!("ops-robot");
    claims["scope"] = json!(format!("openid {ADMIN_SCOPE}"));
    claims
}

/// The header the issuer itself writes for its ES256 key; attack tests add to it.
fn es256_header() -> Value {
    json!({"alg": "ES256", "kid": ES256_KID, "typ": "JWT"})
}

/// The decoded JOSE header of a compact token.
fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// The token with its payload replaced (header and signature kept).
fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// A change of `agent`'s password with exactly this `Authorization` header (or none).
async fn change_with_header(h: &Harness, authorization: Option<&str>, agent: &str) -> Answer {
    let body = json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    h.send_raw(Method::POST, &Harness::endpoint(agent), &headers, body)
        .await
}

/// Proves the start-up key fetch is done without reaching the vendor: a valid self-service
/// token asking for someone else's agent is authenticated (so the keys are loaded), then
/// refused by the policy.
async fn await_keys(h: &Harness) {
    let token = h.idp.mint(KeyKind::Es256, &claims());
    let answer = h.change_as(&token, "agent59", CURRENT, NEW).await;
    assert_forbidden(&answer, &token);
}

#[track_caller]
fn assert_echoes_request_id(answer: &Answer) {
    let id = answer
        .headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on {}: {}", answer.status, answer.text))
        .to_str()
        .unwrap();
    assert!(!id.is_empty());
    assert_eq!(answer.json()["requestId"], id, "{}", answer.text);
}

/// The change went through.
#[track_caller]
fn assert_accepted(answer: &Answer) {
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["resultCode"], "0", "{}", answer.text);
    assert_echoes_request_id(answer);
}

/// A problem document with `status` and `code` that quotes no part of `token`.
#[track_caller]
fn assert_problem(answer: &Answer, token: &str, status: u16, code: &str) -> String {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    let problem = answer.json();
    assert_eq!(problem["code"], code, "{}", answer.text);
    assert_echoes_request_id(answer);
    // Neither the token nor any sizeable piece of it (a segment) is echoed anywhere.
    let echoed = format!("{:?} {}", answer.headers, answer.text);
    for piece in std::iter::once(token).chain(token.split('.')) {
        if piece.len() >= 16 {
            assert!(
                !echoed.contains(piece),
                "the answer quotes the token: {echoed}"
            );
        }
    }
    problem["detail"].as_str().unwrap_or_default().to_owned()
}

/// 401 `unauthenticated` with the RFC 6750 challenge and a `detail` containing `reason`.
#[track_caller]
fn assert_refused(answer: &Answer, token: &str, reason: &str) {
    let detail = assert_problem(answer, token, 401, "unauthenticated");
    assert_eq!(
        answer.headers["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert!(
        detail.contains(reason),
        "detail {detail:?} should contain {reason:?}"
    );
}

/// 403 `forbidden`: authenticated, but the policy says no.
#[track_caller]
fn assert_forbidden(answer: &Answer, token: &str) {
    assert_problem(answer, token, 403, "forbidden");
    assert!(answer.headers.get("www-authenticate").is_none());
}

#[track_caller]
fn assert_vendor_untouched(h: &Harness) {
    assert_eq!(
        h.sim.update_count(),
        0,
        "a refused request reached the vendor"
    );
}

/// Sends `token` for [`AGENT`], expects a 401 naming `reason`, and no vendor call.
async fn refused_for(h: &Harness, token: &str, reason: &str) {
    let answer = h.change_as(token, AGENT, CURRENT, NEW).await;
    assert_refused(&answer, token, reason);
    assert_vendor_untouched(h);
}

// --- Accepted tokens -------------------------------------------------------------------

#[tokio::test]
async fn an_rs256_token_is_accepted() {
    let h = Harness::start().await;
    let token = h.idp.mint(KeyKind::Rs256, &claims());
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW));
}

#[tokio::test]
async fn an_es256_token_is_accepted() {
    let h = Harness::start().await;
    let token = h.idp.mint(KeyKind::Es256, &claims());
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW));
}

#[tokio::test]
async fn an_aud_array_holding_one_of_the_audiences_is_accepted() {
    let h = Harness::start().await;
    let mut claims = claims();
    claims["aud"] = json!(["account", AUDIENCE]);
    let token = h.idp.mint(KeyKind::Es256, &claims);
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
    assert_eq!(h.sim.update_count(), 1);
}

// --- Refusals: the header and the token's shape -----------------------------------------

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let h = Harness::start().await;
    let token = h.idp.mint(KeyKind::Es256, &claims());
    let (bearer, admin) = (
        format!("Bearer {token}"),
        format!("Bearer {}", h.admin_token),
    );
    let body = serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
    let answer = h
        .send_raw(
            http::Method::POST,
            &Harness::endpoint(AGENT),
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
                ("authorization", &admin),
            ],
            body,
        )
        .await;
    assert_refused(&answer, &token, "more than one Authorization header");
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn a_missing_authorization_header_is_refused() {
    let h = Harness::start().await;
    let answer = change_with_header(&h, None, AGENT).await;
    assert_refused(&answer, "", "missing bearer token");
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn a_scheme_other_than_bearer_is_refused() {
    let h = Harness::start().await;
    // A token that would be accepted, under the wrong scheme or none.
    let token = h.idp.mint(KeyKind::Es256, &claims());
    for header in [
        "Basic YWxpY2U6c2VjcmV0".to_owned(),
        format!("Basic {token}"),
        format!("Token {token}"),
        token.clone(),
        "Bearer ".to_owned(),
    ] {
        let answer = change_with_header(&h, Some(&header), AGENT).await;
        assert_refused(&answer, &token, "scheme must be Bearer");
    }
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn a_10_kib_token_is_refused_unread() {
    let h = Harness::start().await;
    // Correctly signed and otherwise valid: only its size is wrong.
    let mut claims = claims();
    claims["padding"] = json!("x".repeat(10 * 1024));
    let token = h.idp.mint(KeyKind::Es256, &claims);
    assert!(token.len() > 10 * 1024);
    refused_for(&h, &token, "over 8192 bytes").await;
}

#[tokio::test]
async fn a_token_that_is_not_three_base64url_segments_is_refused() {
    let h = Harness::start().await;
    let valid = h.idp.mint(KeyKind::Es256, &claims());
    let (header, rest) = valid.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let not_json = URL_SAFE_NO_PAD.encode("not a JSON header");
    for token in [
        "notajwt".to_owned(),
        format!("{header}.{payload}"),
        format!("{valid}.{signature}"),
        format!("..{signature}"),
        format!("{header}=.{payload}.{signature}"),
        format!("{header}.{payload}+/.{signature}"),
        format!("{not_json}.{payload}.{signature}"),
    ] {
        let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
        assert_refused(&answer, &token, "not a well-formed JWT");
    }
    assert_vendor_untouched(&h);
}

// --- Refusals: algorithms and keys -----------------------------------------------------

#[tokio::test]
async fn alg_none_is_refused() {
    let h = Harness::start().await;
    // "None" and "NONE" are classic filter bypasses.
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "kid": ES256_KID, "typ": "JWT"});
        let token = h.idp.mint_raw(&header, &claims(), None);
        assert!(token.ends_with('.'), "unsigned: {token}");
        let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
        assert_refused(&answer, &token, "algorithm is not accepted");
    }
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let h = Harness::start().await;
    // The key-confusion attack: the public key, which anyone can fetch, as an HMAC secret,
    // under the RSA key's kid.
    let pem = h.idp.rsa_public_key_pem();
    let header = json!({"alg": "HS256", "kid": RS256_KID, "typ": "JWT"});
    let token = h.idp.mint_raw(&header, &claims(), Some(pem.as_bytes()));
    refused_for(&h, &token, "algorithm is not accepted").await;
}

#[tokio::test]
async fn an_algorithm_outside_the_configured_list_is_refused() {
    let h = Harness::start_with(sim_config(), |c| c.auth.algorithms = vec!["RS256".into()]).await;
    // ES256 is published and well signed, but not configured.
    let es256 = h.idp.mint(KeyKind::Es256, &claims());
    let answer = h.change_as(&es256, AGENT, CURRENT, NEW).await;
    assert_refused(&answer, &es256, "algorithm is not accepted");
    // EdDSA, published under its own kid, is not configured either.
    let kid = h.idp.add_key(KeyKind::EdDsa);
    let header = json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"});
    let eddsa = h.idp.mint_raw(&header, &claims(), None);
    let answer = h.change_as(&eddsa, AGENT, CURRENT, NEW).await;
    assert_refused(&answer, &eddsa, "algorithm is not accepted");
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn an_unknown_kid_is_refused_after_one_refetch() {
    let h = Harness::start().await;
    await_keys(&h).await;
    let before = h.idp.jwks_requests();
    // Signed by the issuer's real ES256 key, under a kid the JWKS does not hold.
    let header = json!({"alg": "ES256", "kid": "no-such-key", "typ": "JWT"});
    let token = h.idp.mint_raw(&header, &claims(), None);
    refused_for(&h, &token, "unknown key").await;
    // The kid could have been rotated in since the start-up fetch: the gateway asks again.
    assert_eq!(h.idp.jwks_requests(), before + 1, "one re-fetch");
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let h = Harness::start().await;
    let valid = h.idp.mint(KeyKind::Es256, &claims());
    // Escalation: the signed payload swapped for one with the admin scope.
    let mut escalated = claims();
    escalated["scope"] = json!(format!("openid {ADMIN_SCOPE}"));
    let tampered_payload = with_payload(&valid, &escalated);
    // One signature character changed (in the middle: the last one has unused bits).
    let mut signature: Vec<char> = valid.rsplit('.').next().unwrap().chars().collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    let (signed_part, _) = valid.rsplit_once('.').unwrap();
    let tampered_signature = format!("{signed_part}.{}", signature.iter().collect::<String>());
    // An RS256 token's payload under the other RSA token's signature.
    let rsa = h.idp.mint(KeyKind::Rs256, &claims());
    let rsa_swapped = with_payload(&rsa, &escalated);
    for token in [tampered_payload, tampered_signature, rsa_swapped] {
        let answer = h.change_as(&token, "agent0", CURRENT, NEW).await;
        assert_refused(&answer, &token, "signature is invalid");
    }
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn header_members_that_name_keys_or_extensions_are_refused() {
    let h = Harness::start().await;
    // The attacker's key server: the gateway must never ask it for anything.
    let attacker = DevIssuer::new(ISSUER);
    let attacker_addr = attacker
        .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
    let attacker_jwk = attacker.jwks_json()["keys"][0].clone();
    let members = [
        ("crit", json!(["exp"])),
        ("jku", json!(format!("http://{attacker_addr}{JWKS_PATH}"))),
        ("x5u", json!(format!("http://{attacker_addr}/cert.pem"))),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGU="])),
        ("jwk", attacker_jwk),
    ];
    for (member, value) in members {
        // Otherwise valid: signed by the trusted key under its kid.
        let mut header = es256_header();
        header[member] = value;
        let token = h.idp.mint_raw(&header, &claims(), None);
        let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
        assert_eq!(answer.status, 401, "{member}: {}", answer.text);
        assert_refused(&answer, &token, "names keys or critical extensions");
    }
    assert_eq!(attacker.jwks_requests(), 0);
    assert_eq!(attacker.discovery_requests(), 0);
    assert_vendor_untouched(&h);
}

// --- Refusals: claims ------------------------------------------------------------------

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let h = Harness::start().await;
    let token = h.idp.mint(KeyKind::Es256, &claims_without("exp"));
    refused_for(&h, &token, "lacks the exp claim").await;
}

#[tokio::test]
async fn a_token_expired_beyond_the_leeway_is_refused() {
    let h = Harness::start_with(sim_config(), |c| c.auth.leeway_secs = 5).await;
    let mut claims = claims();
    claims["iat"] = json!(unix_now() - 600);
    claims["nbf"] = json!(unix_now() - 600);
    claims["exp"] = json!(unix_now() - 60);
    let token = h.idp.mint(KeyKind::Es256, &claims);
    refused_for(&h, &token, "token expired").await;
}

#[tokio::test]
async fn exp_as_a_string_is_refused() {
    let h = Harness::start().await;
    let mut claims = claims();
    claims["exp"] = json!((unix_now() + 300).to_string());
    let token = h.idp.mint(KeyKind::Es256, &claims);
    // jsonwebtoken reports an unparsable required claim as missing.
    refused_for(&h, &token, "exp claim").await;
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let h = Harness::start().await;
    let mut claims = claims();
    claims["nbf"] = json!(unix_now() + 3600);
    let token = h.idp.mint(KeyKind::Es256, &claims);
    refused_for(&h, &token, "not valid yet").await;
}

#[tokio::test]
async fn a_token_refused_as_not_yet_valid_is_accepted_once_it_is() {
    // Refusals are remembered, but not this one: time makes the token valid.
    let h = Harness::start_with(sim_config(), |c| c.auth.leeway_secs = 0).await;
    let mut claims = claims();
    let valid_from = unix_now() + 4;
    claims["nbf"] = json!(valid_from);
    claims["iat"] = json!(valid_from);
    let token = h.idp.mint(KeyKind::Es256, &claims);
    refused_for(&h, &token, "not valid yet").await;
    while unix_now() <= valid_from {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
}

#[tokio::test]
async fn a_refused_token_stays_refused_when_sent_again() {
    // The second and third refusals come from the refusal cache; they must say the same.
    let h = Harness::start().await;
    let mut claims = claims();
    claims["iss"] = json!("https://other.example/realms/corp");
    let wrong_issuer = h.idp.mint(KeyKind::Es256, &claims);
    let expired = {
        let mut claims = self::claims();
        claims["exp"] = json!(unix_now() - 3600);
        claims["iat"] = json!(unix_now() - 7200);
        claims["nbf"] = json!(unix_now() - 7200);
        h.idp.mint(KeyKind::Es256, &claims)
    };
    for _ in 0..3 {
        refused_for(&h, &wrong_issuer, "issuer is not accepted").await;
        refused_for(&h, &expired, "expired").await;
    }
}

#[tokio::test]
async fn iat_in_the_future_is_refused() {
    let h = Harness::start().await;
    let mut claims = claims();
    claims["iat"] = json!(unix_now() + 3600);
    let token = h.idp.mint(KeyKind::Es256, &claims);
    refused_for(&h, &token, "not valid yet").await;
}

#[tokio::test]
async fn a_token_without_iss_is_refused() {
    let h = Harness::start().await;
    let token = h.idp.mint(KeyKind::Es256, &claims_without("iss"));
    refused_for(&h, &token, "lacks the iss claim").await;
}

#[tokio::test]
async fn a_wrong_iss_is_refused() {
    let h = Harness::start().await;
    // Another realm of the same IdP; and an array smuggling ours in (RFC 7519: a string).
    for iss in [
        json!("https://sso.test.internal/realms/other"),
        json!([ISSUER, "https://evil.example"]),
    ] {
        let mut claims = claims();
        claims["iss"] = iss;
        let token = h.idp.mint(KeyKind::Es256, &claims);
        let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
        assert_refused(&answer, &token, "issuer is not accepted");
    }
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn a_token_without_aud_is_refused() {
    let h = Harness::start().await;
    let token = h.idp.mint(KeyKind::Es256, &claims_without("aud"));
    refused_for(&h, &token, "lacks the aud claim").await;
}

#[tokio::test]
async fn an_aud_holding_none_of_the_audiences_is_refused() {
    let h = Harness::start().await;
    for aud in [json!("account"), json!(["account", "sipgw-other"])] {
        let mut claims = claims();
        claims["aud"] = aud;
        let token = h.idp.mint(KeyKind::Es256, &claims);
        let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
        assert_refused(&answer, &token, "audience is not accepted");
    }
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn a_token_without_sub_is_refused() {
    let h = Harness::start().await;
    let token = h.idp.mint(KeyKind::Es256, &claims_without("sub"));
    refused_for(&h, &token, "lacks the sub claim").await;
}

// --- Key sets ----------------------------------------------------------------------------

#[tokio::test]
async fn a_rotated_in_key_is_accepted_after_exactly_one_refetch() {
    let h = Harness::start().await;
    await_keys(&h).await;
    let kid = h.idp.add_key(KeyKind::Es256);
    let before = h.idp.jwks_requests();
    let token = h.idp.mint(KeyKind::Es256, &claims());
    assert_eq!(header_of(&token)["kid"], kid.as_str());
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
    assert_eq!(h.idp.jwks_requests(), before + 1, "exactly one re-fetch");
    // The new key is now known: another token signed with it needs no fetch.
    let token = h.idp.mint(KeyKind::Es256, &admin_claims());
    assert_accepted(&h.change_as(&token, "agent0", CURRENT, NEW).await);
    assert_eq!(h.idp.jwks_requests(), before + 1);
}

#[tokio::test]
async fn a_hundred_random_kids_cause_at_most_one_refetch() {
    let h = Arc::new(Harness::start().await);
    await_keys(&h).await;
    let before = h.idp.jwks_requests();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let h = Arc::clone(&h);
        requests.spawn(async move {
            let header = json!({"alg": "ES256", "kid": uuid::Uuid::new_v4().to_string()});
            let token = h.idp.mint_raw(&header, &claims(), None);
            let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
            assert_refused(&answer, &token, "unknown key");
        });
    }
    while let Some(done) = requests.join_next().await {
        done.expect("every request is refused as signed by an unknown key");
    }
    // The start-up fetch plus at most one re-fetch (cool-down: 30 s by default).
    let fetches = h.idp.jwks_requests();
    assert!(fetches <= 2, "{fetches} JWKS fetches in all");
    assert!(fetches - before <= 1, "{} re-fetches", fetches - before);
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn the_last_good_keys_stay_in_use_while_the_idp_is_down() {
    let h = Harness::start_with(sim_config(), |c| {
        c.auth.jwks_refetch_cooldown_secs = 1;
    })
    .await;
    await_keys(&h).await;
    h.idp.set_failing(true);
    tokio::time::sleep(Duration::from_millis(1100)).await; // the re-fetch cool-down
    let before = h.idp.jwks_requests();
    let header = json!({"alg": "ES256", "kid": "rotated-in-elsewhere"});
    let unknown = h.idp.mint_raw(&header, &claims(), None);
    let answer = h.change_as(&unknown, AGENT, CURRENT, NEW).await;
    assert_refused(&answer, &unknown, "unknown key");
    assert!(h.idp.jwks_requests() > before, "the re-fetch was attempted");
    // New tokens (not in the verified-token cache) with the known keys still pass.
    let token = h.idp.mint(KeyKind::Es256, &claims());
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
    let token = h.idp.mint(KeyKind::Rs256, &admin_claims());
    assert_accepted(&h.change_as(&token, "agent0", CURRENT, NEW).await);
    assert_eq!(h.sim.update_count(), 2);
}

#[tokio::test]
async fn keys_found_through_oidc_discovery_are_used() {
    let h = Harness::start_with(sim_config(), |c| {
        c.auth.discovery_url = c.auth.jwks_url.take().map(|jwks| {
            assert!(jwks.ends_with(JWKS_PATH));
            jwks.replace(JWKS_PATH, DISCOVERY_PATH)
        });
    })
    .await;
    let token = h.idp.mint(KeyKind::Es256, &claims());
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
    let token = h.idp.mint(KeyKind::Rs256, &admin_claims());
    assert_accepted(&h.change_as(&token, "agent0", CURRENT, NEW).await);
    assert!(h.idp.discovery_requests() >= 1);
    assert!(h.idp.jwks_requests() >= 1);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_not_trusted() {
    // An issuer of its own, so the mismatch is in place before the gateway's first fetch
    // (the harness's issuer only exists once the gateway is starting).
    let idp = DevIssuer::new(ISSUER);
    idp.set_discovery_issuer(Some("https://sso.evil.example/realms/corp".into()));
    let idp_addr = idp
        .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
    let h = Harness::start_with(sim_config(), |c| {
        c.auth.jwks_url = None;
        c.auth.discovery_url = Some(format!("http://{idp_addr}{DISCOVERY_PATH}"));
    })
    .await;
    for (kind, claims) in [(KeyKind::Es256, claims()), (KeyKind::Rs256, admin_claims())] {
        let token = idp.mint(kind, &claims);
        let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
        assert_refused(&answer, &token, "keys are not loaded");
    }
    assert!(idp.discovery_requests() >= 1);
    assert_eq!(idp.jwks_requests(), 0, "its jwks_uri must not be followed");
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn a_jwks_file_is_used_without_fetching() {
    // The file's keys come from an issuer that serves nothing.
    let idp = DevIssuer::new(ISSUER);
    let path = std::env::temp_dir().join(format!("sipgw-auth-{}.jwks.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, idp.jwks_json().to_string()).unwrap();
    let h = Harness::start_with(sim_config(), |c| {
        c.auth.jwks_url = None;
        c.auth.jwks_file = Some(path.to_str().unwrap().to_owned());
    })
    .await;
    std::fs::remove_file(&path).unwrap();
    let token = idp.mint(KeyKind::Es256, &claims());
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
    let token = idp.mint(KeyKind::Rs256, &admin_claims());
    assert_accepted(&h.change_as(&token, "agent0", CURRENT, NEW).await);
    assert_eq!(h.idp.jwks_requests(), 0, "the gateway fetched a key set");
    assert_eq!(h.idp.discovery_requests(), 0);
}

// --- Authorization -----------------------------------------------------------------------

#[tokio::test]
async fn self_service_may_change_its_own_agent() {
    let h = Harness::start().await;
    let token = h.idp.mint_for("alice", AUDIENCE, Some(AGENT), false);
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW));
}

#[tokio::test]
async fn self_service_may_not_change_another_agent() {
    let h = Harness::start().await;
    let token = h.idp.mint_for("alice", AUDIENCE, Some(AGENT), false);
    let answer = h.change_as(&token, "agent0", CURRENT, NEW).await;
    assert_forbidden(&answer, &token);
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn without_self_service_even_the_own_agent_is_forbidden() {
    let h = Harness::start_with(sim_config(), |c| c.auth.self_service = false).await;
    let token = h.idp.mint_for("alice", AUDIENCE, Some(AGENT), false);
    let answer = h.change_as(&token, AGENT, CURRENT, NEW).await;
    assert_forbidden(&answer, &token);
    assert_vendor_untouched(&h);
}

#[tokio::test]
async fn the_admin_scope_allows_any_agent_as_scope_or_scp() {
    let h = Harness::start().await;
    let mut scope = claims_without("preferred_username");
    scope["scope"] = json!(format!("openid {ADMIN_SCOPE} profile"));
    let mut scp = claims_without("preferred_username");
    scp.as_object_mut().unwrap().remove("scope");
    scp["scp"] = json!(["openid", ADMIN_SCOPE]);
    for (agent, claims) in [("agent0", scope), ("agent1", scp)] {
        let token = h.idp.mint(KeyKind::Es256, &claims);
        assert_accepted(&h.change_as(&token, agent, CURRENT, NEW).await);
        assert_eq!(h.sim.agent_password(agent).as_deref(), Some(NEW));
    }
}

#[tokio::test]
async fn the_admin_role_allows_any_agent() {
    let h = Harness::start().await;
    let mut claims = claims_without("preferred_username");
    claims["realm_access"] = json!({"roles": ["offline_access", ADMIN_ROLE]});
    let token = h.idp.mint(KeyKind::Rs256, &claims);
    assert_accepted(&h.change_as(&token, "agent0", CURRENT, NEW).await);
    assert_eq!(h.sim.agent_password("agent0").as_deref(), Some(NEW));
}

#[tokio::test]
async fn a_token_with_no_grant_for_the_agent_is_forbidden() {
    let h = Harness::start().await;
    let plain = claims();
    // Near misses: the role outside the configured claim path, a longer scope name, the
    // scope as an array under `scope`.
    let mut top_level_role = claims();
    top_level_role["roles"] = json!([ADMIN_ROLE]);
    let mut longer_scope = claims();
    longer_scope["scope"] = json!(format!("{ADMIN_SCOPE}istrator"));
    let mut scope_array = claims();
    scope_array["scope"] = json!([ADMIN_SCOPE]);
    for claims in [plain, top_level_role, longer_scope, scope_array] {
        let token = h.idp.mint(KeyKind::Es256, &claims);
        let answer = h.change_as(&token, "agent0", CURRENT, NEW).await;
        assert_forbidden(&answer, &token);
    }
    assert_vendor_untouched(&h);
}

// --- The verified-token cache ----------------------------------------------------------

#[tokio::test]
async fn a_key_set_change_invalidates_cached_tokens() {
    let h = Harness::start_with(sim_config(), |c| {
        c.auth.jwks_refetch_cooldown_secs = 1;
    })
    .await;
    let token = h.idp.mint(KeyKind::Es256, &admin_claims());
    assert_accepted(&h.change_as(&token, "agent0", CURRENT, NEW).await);
    assert_accepted(&h.change_as(&token, "agent1", CURRENT, NEW).await);
    // The IdP withdraws the key; an unknown kid makes the gateway re-fetch once the
    // cool-down has passed.
    h.idp.remove_key(ES256_KID);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = h.idp.jwks_requests();
    let header = json!({"alg": "RS256", "kid": "unknown-after-rotation"});
    let unknown = h.idp.mint_raw(&header, &claims(), None);
    let answer = h.change_as(&unknown, AGENT, CURRENT, NEW).await;
    assert_refused(&answer, &unknown, "unknown key");
    assert_eq!(h.idp.jwks_requests(), before + 1);
    // The cached verification went with the old key set.
    let answer = h.change_as(&token, "agent2", CURRENT, NEW).await;
    assert_refused(&answer, &token, "unknown key");
    assert_eq!(h.sim.update_count(), 2);
}
