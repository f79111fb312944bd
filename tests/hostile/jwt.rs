//! Forged, malformed and tampered JWTs. Each case carries a body the vendor would accept, so
//! a token that got through would show up as a vendor call; a refused one must be 401
//! `unauthenticated`, one outcome record naming no caller, and nothing at the vendor.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::Method;
use serde_json::{Value, json};
use sipgw_dev::dev_issuer::DevIssuer;
use tokio::net::TcpListener;

use super::support::{Suite, TARGET, assert_problem, valid_body};
use crate::common::*;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of an admin caller the gateway accepts; cases change one thing.
fn claims() -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER,
        "sub": "jwt-attacker",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "scope": format!("openid {ADMIN_SCOPE}"),
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

fn claims_with(name: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[name] = value;
    claims
}

fn claims_without(name: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn es256_header() -> Value {
    json!({"alg": "ES256", "kid": "es256-1", "typ": "JWT"})
}

fn header_with(name: &str, value: Value) -> Value {
    let mut header = es256_header();
    header[name] = value;
    header
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS over header and claims given as *text* (so they can hold what a JSON
/// value cannot: duplicate names, extreme nesting), signed by `idp`'s ES256 key.
pub fn sign_text(idp: &DevIssuer, header: &str, claims: &str) -> String {
    let pem = idp.es256_private_key_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature.as_ref()))
}

/// The token's segments with one replaced.
fn with_segment(token: &str, index: usize, segment: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = segment;
    parts.join(".")
}

/// What a case expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 401 `unauthenticated`, one outcome record without a caller.
    Refused,
    /// The change goes through (the behaviour is documented, not a hole): 200, the
    /// vendor called once, `attempt` + `ok`.
    Accepted,
}

/// A case: its name, the `Authorization` header values sent (none, one, or several), the
/// query string added to the path, and what must happen.
struct Case {
    name: String,
    authorization: Vec<String>,
    query: String,
    expect: Expect,
}

fn refused(name: impl Into<String>, token: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        authorization: vec![format!("Bearer {}", token.into())],
        query: String::new(),
        expect: Expect::Refused,
    }
}

fn refused_header(name: &str, values: &[&str]) -> Case {
    Case {
        name: name.into(),
        authorization: values.iter().map(|v| (*v).to_owned()).collect(),
        query: String::new(),
        expect: Expect::Refused,
    }
}

/// Runs `cases` against `suite`, each aimed at its own agent when it is expected to go
/// through (a change succeeds once per agent).
async fn run(suite: &Suite, cases: Vec<Case>) {
    let mut accepted_agents = (20..60).map(|i| format!("agent{i}"));
    for case in cases {
        let name = format!("jwt: {}", case.name);
        let agent = match case.expect {
            Expect::Refused => TARGET.to_owned(),
            Expect::Accepted => accepted_agents.next().unwrap(),
        };
        let path = format!("{}{}", Harness::endpoint(&agent), case.query);
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(
            case.authorization
                .iter()
                .map(|v| ("authorization", v.as_str())),
        );
        let mark = suite.mark();
        let answer = suite
            .send(&name, Method::POST, &path, &headers, valid_body())
            .await;
        match case.expect {
            Expect::Refused => {
                assert_problem(&answer, 401, "unauthenticated", &name);
                let added = suite.assert_outcomes(mark, &[("unauthenticated", 401)], &name);
                assert!(added[0]["caller"]["sub"].is_null(), "{name}: {}", added[0]);
                assert!(added[0]["caller"]["iss"].is_null(), "{name}: {}", added[0]);
                for value in &case.authorization {
                    let token = value.rsplit(' ').next().unwrap_or_default();
                    if token.len() > 16 {
                        assert!(
                            !suite.lines().iter().any(|l| l.contains(token)),
                            "{name}: the token reached the trail"
                        );
                    }
                }
            }
            Expect::Accepted => {
                assert_eq!(answer.status, 200, "{name}: {}", answer.text);
                assert_eq!(suite.h.sim.update_count(), mark.vendor + 1, "{name}");
                let codes: Vec<Value> = suite
                    .added(mark)
                    .iter()
                    .map(|r| r["code"].clone())
                    .collect();
                assert_eq!(codes, ["attempt", "ok"], "{name}");
            }
        }
        suite.assert_trail_intact(&name);
        suite.assert_alive(&name).await;
    }
}

/// A second issuer with its own keys (same kids, same `iss`), serving its JWKS on loopback:
/// the attacker's. It must never be fetched.
async fn attacker() -> (DevIssuer, std::net::SocketAddr) {
    let attacker = DevIssuer::new(ISSUER);
    let addr = attacker
        .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
    (attacker, addr)
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_refused_and_never_reach_the_vendor() {
    let suite = Suite::start().await;
    let idp = &suite.h.idp;
    let (evil, evil_addr) = attacker().await;
    let evil_jwks = format!("http://{evil_addr}/jwks.json");
    let evil_jwk = evil.jwks_json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "es256-1")
        .cloned()
        .unwrap();
    let now = unix_now();
    let good = idp.mint_raw(&es256_header(), &claims(), None);
    let [good_header, good_payload, good_signature]: [&str; 3] =
        good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let mut cases = Vec::new();

    // alg none in three spellings, with and without a kid.
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        cases.push(refused(
            format!("alg {alg}"),
            idp.mint_raw(&header, &claims(), None),
        ));
        let header = json!({"alg": alg, "kid": "es256-1"});
        cases.push(refused(
            format!("alg {alg} naming a real kid"),
            idp.mint_raw(&header, &claims(), None),
        ));
    }
    // HMAC keyed with the public key (the classic RS256 → HS256 confusion).
    let public_pem = idp.rsa_public_key_pem();
    for kid in ["rs256-1", "es256-1"] {
        let header = json!({"alg": "HS256", "kid": kid, "typ": "JWT"});
        cases.push(refused(
            format!("HS256 keyed with the RSA public key, kid {kid}"),
            idp.mint_raw(&header, &claims(), Some(public_pem.as_bytes())),
        ));
    }
    // Algorithm spellings and key/algorithm mismatches.
    for alg in ["es256", "ES256 ", "ES384", "RS512", "PS256", "EdDSA"] {
        let token = sign_text(
            idp,
            &json!({"alg": alg, "kid": "es256-1"}).to_string(),
            &claims().to_string(),
        );
        cases.push(refused(
            format!("alg {alg:?} over an ES256 signature"),
            token,
        ));
    }
    cases.push(refused(
        "RS256 signature under the ES256 key's kid",
        idp.mint_raw(&json!({"alg": "RS256", "kid": "es256-1"}), &claims(), None),
    ));
    // Unknown and hostile kids.
    for (label, kid) in [
        ("unknown kid", json!("es256-999")),
        ("path traversal kid", json!("../../../../etc/passwd")),
        ("kid with quotes", json!("\"'; DROP TABLE keys; --")),
        ("kid with a NUL and newline", json!("es256-1\u{0}\n")),
        ("4000-character kid", json!("k".repeat(4000))),
        ("empty kid", json!("")),
        ("numeric kid", json!(1)),
        ("kid as an object", json!({"kid": "es256-1"})),
    ] {
        cases.push(refused(
            label,
            idp.mint_raw(&header_with("kid", kid), &claims(), None),
        ));
    }
    // Headers that name or carry a key: signed by the attacker, with the real kid.
    cases.push(refused(
        "jku at the attacker's JWKS",
        evil.mint_raw(&header_with("jku", json!(evil_jwks)), &claims(), None),
    ));
    cases.push(refused(
        "x5u at the attacker",
        evil.mint_raw(
            &header_with("x5u", json!(format!("http://{evil_addr}/cert.pem"))),
            &claims(),
            None,
        ),
    ));
    cases.push(refused(
        "jwk embedding the attacker's key",
        evil.mint_raw(&header_with("jwk", evil_jwk.clone()), &claims(), None),
    ));
    cases.push(refused(
        "x5c with a self-made chain",
        evil.mint_raw(&header_with("x5c", json!(["MIIBfake"])), &claims(), None),
    ));
    cases.push(refused(
        "crit naming an unknown extension",
        idp.mint_raw(&header_with("crit", json!(["exp"])), &claims(), None),
    ));
    // A signature by another key under the real kid.
    cases.push(refused(
        "signed by the attacker's key",
        evil.mint_raw(&es256_header(), &claims(), None),
    ));
    cases.push(refused(
        "real header and claims, the attacker's signature",
        with_segment(
            &good,
            2,
            evil.mint_raw(&es256_header(), &claims(), None)
                .split('.')
                .nth(2)
                .unwrap(),
        ),
    ));
    // Claims.
    cases.push(refused(
        "wrong iss",
        idp.mint_raw(
            &es256_header(),
            &claims_with("iss", json!("https://evil.example/realms/corp")),
            None,
        ),
    ));
    cases.push(refused(
        "iss as an array holding ours",
        idp.mint_raw(
            &es256_header(),
            &claims_with("iss", json!([ISSUER, "https://evil.example"])),
            None,
        ),
    ));
    cases.push(refused(
        "wrong aud",
        idp.mint_raw(
            &es256_header(),
            &claims_with("aud", json!("another-service")),
            None,
        ),
    ));
    let mut expired = claims_with("exp", json!(now - 600));
    expired["iat"] = json!(now - 900);
    expired["nbf"] = json!(now - 900);
    cases.push(refused(
        "expired",
        idp.mint_raw(&es256_header(), &expired, None),
    ));
    cases.push(refused(
        "nbf in the future",
        idp.mint_raw(&es256_header(), &claims_with("nbf", json!(now + 600)), None),
    ));
    cases.push(refused(
        "iat in the future",
        idp.mint_raw(&es256_header(), &claims_with("iat", json!(now + 600)), None),
    ));
    cases.push(refused(
        "missing exp",
        idp.mint_raw(&es256_header(), &claims_without("exp"), None),
    ));
    cases.push(refused(
        "missing sub",
        idp.mint_raw(&es256_header(), &claims_without("sub"), None),
    ));
    cases.push(refused(
        "exp as a string",
        idp.mint_raw(
            &es256_header(),
            &claims_with("exp", json!((now + 300).to_string())),
            None,
        ),
    ));
    cases.push(refused(
        "exp of 1e300",
        sign_text(
            idp,
            &es256_header().to_string(),
            &claims()
                .to_string()
                .replacen("\"exp\":", "\"exp\":1e300,\"x-exp\":", 1),
        ),
    ));
    cases.push(refused(
        "numeric sub",
        idp.mint_raw(&es256_header(), &claims_with("sub", json!(12345)), None),
    ));
    cases.push(refused(
        "sub as an array",
        idp.mint_raw(
            &es256_header(),
            &claims_with("sub", json!(["ops-robot", "jwt-attacker"])),
            None,
        ),
    ));
    cases.push(refused(
        "sub null",
        idp.mint_raw(&es256_header(), &claims_with("sub", Value::Null), None),
    ));
    // Huge claims: nested beyond any parser's depth, and over the 8 KiB token bound.
    let nested = format!(
        "{{\"iss\":\"{ISSUER}\",\"sub\":\"deep\",\"aud\":\"{AUDIENCE}\",\"exp\":{},\"scope\":\"{ADMIN_SCOPE}\",\"x\":{}{}}}",
        now + 300,
        "[".repeat(2500),
        "]".repeat(2500)
    );
    let deep = sign_text(idp, &es256_header().to_string(), &nested);
    assert!(
        deep.len() < 8192,
        "the nested token stays under the size bound"
    );
    cases.push(refused("claims nested 2500 deep", deep));
    let big = idp.mint_raw(
        &es256_header(),
        &claims_with("pad", json!("x".repeat(9000))),
        None,
    );
    assert!(big.len() > 8192);
    cases.push(refused("a validly signed token over 8 KiB", big));
    // Shape of the compact serialization.
    cases.push(refused(
        "stripped signature",
        format!("{good_header}.{good_payload}."),
    ));
    cases.push(refused(
        "two segments",
        format!("{good_header}.{good_payload}"),
    ));
    cases.push(refused("four segments", format!("{good}.{good_signature}")));
    cases.push(refused(
        "five segments (a JWE shape)",
        format!("{good}.AAAA.BBBB"),
    ));
    cases.push(refused(
        "a + in the payload (standard base64)",
        with_segment(&good, 1, &format!("+{}", &good_payload[1..])),
    ));
    cases.push(refused(
        "a / in the signature (standard base64)",
        with_segment(&good, 2, &format!("/{}", &good_signature[1..])),
    ));
    cases.push(refused(
        "padded base64url",
        format!("{good_header}==.{good_payload}.{good_signature}"),
    ));
    cases.push(refused(
        "a space inside the token",
        format!("{good_header}.{good_payload} .{good_signature}"),
    ));
    cases.push(refused(
        "header not JSON",
        with_segment(&good, 0, &b64(b"alg=ES256")),
    ));
    cases.push(refused(
        "header a JSON array",
        with_segment(&good, 0, &b64(b"[\"ES256\"]")),
    ));
    cases.push(refused(
        "claims tampered after signing",
        with_segment(
            &good,
            1,
            &b64(claims_with("sub", json!("root")).to_string().as_bytes()),
        ),
    ));
    cases.push(refused("three dots only", ".."));
    // The Authorization header itself.
    cases.push(refused_header("empty Authorization", &[""]));
    cases.push(refused_header("Bearer with no token", &["Bearer"]));
    cases.push(refused_header("Bearer and a space", &["Bearer "]));
    cases.push(refused_header(
        "Basic credentials",
        &["Basic b3BzLXJvYm90OnNlY3JldA=="],
    ));
    let token_scheme = format!("Token {good}");
    cases.push(refused_header(
        "another scheme with a valid token",
        &[&token_scheme],
    ));
    let bare = good.clone();
    cases.push(refused_header("a valid token without a scheme", &[&bare]));
    let valid = format!("Bearer {good}");
    let forged = format!("Bearer {}", evil.mint_raw(&es256_header(), &claims(), None));
    cases.push(refused_header(
        "two Authorization headers, both valid",
        &[&valid, &valid],
    ));
    cases.push(refused_header(
        "two Authorization headers, forged first",
        &[&forged, &valid],
    ));
    cases.push(refused_header(
        "two Authorization headers, valid first",
        &[&valid, &forged],
    ));
    cases.push(refused_header(
        "lower-case bearer with a forged token",
        &[&forged.replacen("Bearer", "bearer", 1)],
    ));
    cases.push(Case {
        name: "a valid token in the query string only".into(),
        authorization: Vec::new(),
        query: format!("?access_token={good}"),
        expect: Expect::Refused,
    });
    // Documented acceptance: the scheme is case-insensitive (RFC 9110 §11.1).
    cases.push(Case {
        name: "lower-case bearer with a valid token".into(),
        authorization: vec![format!(
            "bearer {}",
            idp.mint_raw(&es256_header(), &claims(), None)
        )],
        query: String::new(),
        expect: Expect::Accepted,
    });

    let count = cases.len();
    run(&suite, cases).await;
    assert!(count >= 60, "{count} cases");
    assert_eq!(
        evil.jwks_requests(),
        0,
        "the attacker's key set was never fetched"
    );
}

/// Duplicate member names (RFC 7519 §4: a JWT with them must be refused, or the last one
/// silently wins) and a blank `sub` (a caller without a name).
// after issue-11 JWT strictness
#[tokio::test]
async fn duplicate_members_and_blank_sub_are_refused() {
    let suite = Suite::start().await;
    let idp = &suite.h.idp;
    let now = unix_now();
    let header = es256_header().to_string();
    let base = |extra: &str| {
        format!(
            "{{\"iss\":\"{ISSUER}\",\"aud\":\"{AUDIENCE}\",\"iat\":{now},\"exp\":{}{extra}}}",
            now + 300
        )
    };
    let cases = vec![
        // after issue-11 JWT strictness
        refused(
            "two preferred_username, the last naming the target",
            sign_text(
                idp,
                &header,
                &base(&format!(
                    ",\"sub\":\"dup-1\",\"preferred_username\":\"agent1\",\"preferred_username\":\"{TARGET}\""
                )),
            ),
        ),
        // after issue-11 JWT strictness
        refused(
            "two sub claims",
            sign_text(
                idp,
                &header,
                &base(&format!(
                    ",\"sub\":\"dup-2\",\"sub\":\"ops-robot\",\"scope\":\"{ADMIN_SCOPE}\""
                )),
            ),
        ),
        // after issue-11 JWT strictness
        refused(
            "two scope claims",
            sign_text(
                idp,
                &header,
                &base(&format!(
                    ",\"sub\":\"dup-3\",\"scope\":\"openid\",\"scope\":\"{ADMIN_SCOPE}\""
                )),
            ),
        ),
        // after issue-11 JWT strictness
        refused(
            "two alg members in the header",
            sign_text(
                idp,
                r#"{"alg":"none","kid":"es256-1","alg":"ES256"}"#,
                &base(&format!(",\"sub\":\"dup-4\",\"scope\":\"{ADMIN_SCOPE}\"")),
            ),
        ),
        // after issue-11 JWT strictness (an empty `sub` is refused already today)
        refused(
            "empty sub",
            sign_text(
                idp,
                &header,
                &base(&format!(",\"sub\":\"\",\"scope\":\"{ADMIN_SCOPE}\"")),
            ),
        ),
        // after issue-11 JWT strictness
        refused(
            "whitespace-only sub",
            sign_text(
                idp,
                &header,
                &base(&format!(",\"sub\":\" \\t \",\"scope\":\"{ADMIN_SCOPE}\"")),
            ),
        ),
    ];
    run(&suite, cases).await;
}
