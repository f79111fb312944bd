use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::compact::{
    FORBIDDEN_HEADER_MEMBERS, header_algorithm, parse_header, unique_claim_names,
};
use super::*;

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap()
}

fn b64(json: &str) -> String {
    URL_SAFE_NO_PAD.encode(json)
}

#[test]
fn bearer_scheme_and_size() {
    assert_eq!(bearer_token(None), Err(AuthError::Missing));
    assert_eq!(
        bearer_token(Some(&header("Basic abc"))),
        Err(AuthError::NotBearer)
    );
    assert_eq!(
        bearer_token(Some(&header("Bearer"))),
        Err(AuthError::NotBearer)
    );
    assert_eq!(
        bearer_token(Some(&header("Bearer  "))),
        Err(AuthError::NotBearer)
    );
    assert_eq!(bearer_token(Some(&header("bearer a.b.c"))), Ok("a.b.c"));
    let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
    assert_eq!(bearer_token(Some(&header(&big))), Err(AuthError::TooLarge));
    let limit = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
    assert_eq!(
        bearer_token(Some(&header(&limit))).map(str::len),
        Ok(MAX_TOKEN_BYTES)
    );
}

#[test]
fn only_three_base64url_segments_with_a_json_header() {
    let good_header = b64(r#"{"alg":"ES256","kid":"k"}"#);
    assert!(parse_header(&format!("{good_header}.e30.c2ln")).is_ok());
    for bad in [
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        format!("{good_header}..c2ln"),
        format!("{good_header}.e3+0.c2ln"),
        format!("{}.e30.c2ln", b64("not json")),
        format!("{}.e30.c2ln", b64("[1,2]")),
    ] {
        assert_eq!(parse_header(&bad), Err(AuthError::Malformed), "{bad}");
    }
}

#[test]
fn headers_that_name_keys_are_refused() {
    for member in FORBIDDEN_HEADER_MEMBERS {
        let token = format!(
            "{}.e30.c2ln",
            b64(&format!(r#"{{"alg":"ES256","{member}":"x"}}"#))
        );
        assert_eq!(
            parse_header(&token),
            Err(AuthError::ForbiddenHeader),
            "{member}"
        );
    }
}

#[test]
fn algorithm_allow_list() {
    let allowed = [Algorithm::RS256, Algorithm::ES256];
    let alg = |name: &str| {
        let header: Map<String, Value> =
            serde_json::from_str(&format!(r#"{{"alg":"{name}"}}"#)).unwrap();
        header_algorithm(&header, &allowed)
    };
    assert_eq!(alg("ES256"), Ok(Algorithm::ES256));
    assert_eq!(alg("none"), Err(AuthError::AlgorithmNotAllowed));
    assert_eq!(alg("HS256"), Err(AuthError::AlgorithmNotAllowed));
    assert_eq!(alg("PS256"), Err(AuthError::AlgorithmNotAllowed));
    assert_eq!(alg("nonsense"), Err(AuthError::AlgorithmNotAllowed));
    assert_eq!(
        header_algorithm(&Map::new(), &allowed),
        Err(AuthError::Malformed)
    );
}

#[test]
fn error_details_never_carry_values() {
    for error in [
        AuthError::Expired,
        AuthError::MissingClaim("sub"),
        AuthError::BadClaim("exp"),
    ] {
        let text = error.to_string();
        assert!(text.starts_with("token"), "{text}");
    }
}

#[test]
fn numeric_dates_may_carry_a_fraction() {
    assert_eq!(
        numeric_date(&serde_json::json!(1_700_000_000)),
        Some(1_700_000_000)
    );
    assert_eq!(
        numeric_date(&serde_json::json!(1_700_000_000.75)),
        Some(1_700_000_000)
    );
    assert_eq!(numeric_date(&serde_json::json!(-1)), None);
    assert_eq!(numeric_date(&serde_json::json!("1700000000")), None);
}

#[test]
fn repeated_member_names_are_refused_in_header_and_claims() {
    let header = b64(r#"{"alg":"ES256","kid":"a","kid":"b"}"#);
    assert_eq!(
        parse_header(&format!("{header}.e30.c2ln")),
        Err(AuthError::DuplicateMember)
    );
    let header = b64(r#"{"alg":"ES256"}"#);
    let claims = b64(r#"{"sub":"a","nested":{"x":1,"x":2}}"#);
    assert_eq!(
        unique_claim_names(&format!("{header}.{claims}.c2ln")),
        Err(AuthError::DuplicateMember)
    );
    let claims = b64(r#"{"sub":"a","nested":{"x":1}}"#);
    assert_eq!(
        unique_claim_names(&format!("{header}.{claims}.c2ln")),
        Ok(())
    );
    let not_json = b64("{");
    assert_eq!(
        unique_claim_names(&format!("{header}.{not_json}.c2ln")),
        Err(AuthError::Malformed)
    );
}

#[test]
fn only_refusals_that_cannot_turn_into_acceptances_are_remembered() {
    for lasting in [
        AuthError::BadClaim("sub"),
        AuthError::LifetimeTooLong,
        AuthError::MissingClaim("iat"),
    ] {
        assert!(is_lasting(&lasting), "{lasting:?}");
    }
    // Found before any key is used: cheap to find again.
    for cheap in [
        AuthError::DuplicateMember,
        AuthError::WrongType,
        AuthError::NotYetValid,
    ] {
        assert!(!is_lasting(&cheap), "{cheap:?}");
    }
}

#[test]
fn display_names_are_strings_cut_to_64_characters() {
    use serde_json::json;
    assert_eq!(
        display_name(&json!("Alice Example")).as_deref(),
        Some("Alice Example")
    );
    assert_eq!(display_name(&json!(42)), None);
    assert_eq!(display_name(&json!({"given": "Alice"})), None);
    assert_eq!(display_name(&json!("  ")), None);
    let exact = "é".repeat(64);
    assert_eq!(display_name(&json!(exact)).as_deref(), Some(exact.as_str()));
    // Cut on a character boundary (two-byte and four-byte characters), ending with `…`.
    let long = format!("{}{}", "é".repeat(60), "🦀".repeat(10));
    let cut = display_name(&json!(long)).unwrap();
    assert_eq!(cut.chars().count(), 64);
    assert_eq!(cut, format!("{}{}…", "é".repeat(60), "🦀".repeat(3)));
}
