//! JWT strictness (issue 11, finding 6) over real sockets, with tokens signed by the
//! development issuer: repeated member names (RFC 7519 §4), a blank `sub`,
//! `auth.required_typ` (RFC 9068 §2.1) and `auth.max_token_lifetime_secs`. Every refusal
//! is a 401 `unauthenticated` that leaves the vendor untouched; a token that is refused
//! stays refused when sent again (whether from the refusal cache or by a fresh check).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{Value, json};
use sipgw_dev::dev_issuer::KeyKind;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for a self-service change of [`AGENT`], unique per call (`jti`).
fn claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "preferred_username": AGENT,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// The header the issuer writes for its ES256 key, with `typ` as given.
fn header(typ: Option<&str>) -> Value {
    let mut header = json!({"alg": "ES256", "kid": "es256-1"});
    if let Some(typ) = typ {
        header["typ"] = json!(typ);
    }
    header
}

/// `json` (an object) with `member` appended once more, as raw JSON text.
fn with_extra_member(json: &Value, member: &str) -> String {
    let text = json.to_string();
    format!("{},{member}}}", &text[..text.len() - 1])
}

/// Sends `token` for [`AGENT`] twice: both times a 401 whose detail holds `reason`, and the
/// vendor is never called.
async fn refused_twice(h: &Harness, token: &str, reason: &str) {
    for _ in 0..2 {
        let answer = h.change_as(token, AGENT, CURRENT, NEW).await;
        assert_eq!(answer.status, 401, "{}", answer.text);
        assert_eq!(answer.code(), "unauthenticated");
        assert_eq!(
            answer.headers["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        let detail = answer.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(reason), "{detail:?} should say {reason:?}");
    }
    assert_eq!(
        h.sim.update_count(),
        0,
        "a refused token reached the vendor"
    );
}

#[track_caller]
fn assert_accepted(answer: &Answer) {
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn a_repeated_claim_is_refused_even_when_the_last_one_would_be_allowed() {
    let h = Harness::start().await;
    // Read with "last one wins", this names AGENT and would be a self-service change.
    let mut first = claims();
    first["preferred_username"] = json!("agent7");
    let raw_claims = with_extra_member(&first, &format!(r#""preferred_username":"{AGENT}""#));
    let token = h.idp.mint_raw_json(
        KeyKind::Es256,
        &header(Some("JWT")).to_string(),
        &raw_claims,
    );
    refused_twice(&h, &token, "repeat a member name").await;
}

#[tokio::test]
async fn a_repeated_member_inside_a_nested_claim_is_refused() {
    let h = Harness::start().await;
    let raw_claims = with_extra_member(
        &claims(),
        r#""realm_access":{"roles":["user"],"roles":["cc-admin"]}"#,
    );
    let token = h
        .idp
        .mint_raw_json(KeyKind::Es256, &header(None).to_string(), &raw_claims);
    refused_twice(&h, &token, "repeat a member name").await;
}

#[tokio::test]
async fn a_repeated_header_member_is_refused() {
    let h = Harness::start().await;
    let raw_header = with_extra_member(&header(None), r#""kid":"es256-1""#);
    let token = h
        .idp
        .mint_raw_json(KeyKind::Es256, &raw_header, &claims().to_string());
    refused_twice(&h, &token, "repeat a member name").await;
}

#[tokio::test]
async fn a_blank_sub_is_refused() {
    let h = Harness::start().await;
    for blank in [" ", "\t\n", "\u{a0}"] {
        let mut claims = claims();
        claims["sub"] = json!(blank);
        let token = h.idp.mint(KeyKind::Es256, &claims);
        refused_twice(&h, &token, "sub").await;
    }
}

#[tokio::test]
async fn a_required_typ_refuses_other_and_missing_types() {
    let h = Harness::start_with(sim_config(), |c| {
        c.auth.required_typ = Some("at+jwt".into())
    })
    .await;
    for typ in [Some("JWT"), None, Some("at+jwt; x=1")] {
        let token = h.idp.mint_raw(&header(typ), &claims(), None);
        refused_twice(&h, &token, "typ").await;
    }
    // RFC 9068 §2.1 and RFC 7515 §4.1.9: case-insensitive, `application/` optional.
    let mut password = CURRENT;
    for (typ, new) in [("at+jwt", NEW), ("application/AT+JWT", CURRENT)] {
        let token = h.idp.mint_raw(&header(Some(typ)), &claims(), None);
        assert_accepted(&h.change_as(&token, AGENT, password, new).await);
        password = new;
    }
}

#[tokio::test]
async fn a_lifetime_over_the_bound_is_refused() {
    let h = Harness::start_with(sim_config(), |c| c.auth.max_token_lifetime_secs = Some(600)).await;
    let mut long = claims();
    long["exp"] = json!(unix_now() + 3600);
    let token = h.idp.mint(KeyKind::Es256, &long);
    refused_twice(&h, &token, "lifetime").await;
    // Issued a while ago, with a total lifetime over the bound, although it has little
    // left to live: the bound is on exp - iat.
    let mut old = claims();
    old["iat"] = json!(unix_now() - 1000);
    old["nbf"] = json!(unix_now() - 1000);
    let token = h.idp.mint(KeyKind::Es256, &old);
    refused_twice(&h, &token, "lifetime").await;
    // Without `iat` the bound cannot be checked: refused.
    let mut no_iat = claims();
    no_iat.as_object_mut().unwrap().remove("iat");
    let token = h.idp.mint(KeyKind::Es256, &no_iat);
    refused_twice(&h, &token, "iat").await;
    // Within it (300 s): accepted.
    let token = h.idp.mint(KeyKind::Es256, &claims());
    assert_accepted(&h.change_as(&token, AGENT, CURRENT, NEW).await);
}
