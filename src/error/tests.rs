use super::*;
use http_body_util::BodyExt;

async fn body_of(response: Response<Full<Bytes>>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The text of the function `signature` in this file, to its closing brace.
fn source_of(signature: &str) -> &'static str {
    let source = include_str!("../error.rs");
    let start = source.find(signature).expect("the function is in error.rs");
    let end = start
        + source[start..]
            .find("\n    }\n")
            .expect("the function ends");
    &source[start..end]
}

#[test]
fn the_catalogue_has_every_variant_once() {
    // `code()` is exhaustive (no `_ =>`) with one arm per variant, each its own code, so
    // its arms count the variants and its literals are every code there is.
    let code_fn = source_of("pub fn code(&self)");
    let variants = code_fn.matches("=>").count();
    let in_code_fn: std::collections::BTreeSet<&str> =
        code_fn.split('"').skip(1).step_by(2).collect();
    assert_eq!(in_code_fn.len(), variants, "one code per variant");
    let samples = ApiError::samples();
    let kinds: std::collections::HashSet<_> = samples.iter().map(std::mem::discriminant).collect();
    assert_eq!(
        (samples.len(), kinds.len()),
        (variants, variants),
        "ApiError::samples() must hold one value of every variant"
    );
    let listed: std::collections::BTreeSet<&str> = catalogue().map(|(_, c)| c).collect();
    assert_eq!(listed, in_code_fn, "catalogue() names every code of code()");
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
    assert_eq!(retry_after_secs(Duration::from_secs(600)), 600);
    assert_eq!(retry_after_secs(Duration::from_millis(600_001)), 601);
    assert_eq!(retry_after_secs(Duration::ZERO), 1);
}

#[tokio::test]
async fn problem_documents_carry_every_required_member() {
    let response = ApiError::VendorTimeout.to_response("req-1");
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    assert_eq!(response.headers()[REQUEST_ID_HEADER], "req-1");
    let body = body_of(response).await;
    assert_eq!(body["type"], "urn:sipgw:problem:vendor_timeout");
    assert_eq!(body["title"], "Gateway Timeout");
    assert_eq!(body["status"], 504);
    assert_eq!(body["code"], "vendor_timeout");
    assert_eq!(body["requestId"], "req-1");
    assert!(body["detail"].as_str().unwrap().contains("may or may not"));
}

/// Stored answers (idempotent replays, on Redis too) are compared as bytes: the
/// document keeps the exact bytes a JSON tree of the same members gave.
#[test]
fn problem_bytes_are_those_of_a_sorted_json_tree() {
    let rejected = ApiError::VendorRejected {
        vendor_message: "no \"such\" agent\u{2028}".into(),
    };
    for error in [ApiError::VendorTimeout, ApiError::Forbidden, rejected] {
        let status = error.status();
        let mut tree = serde_json::json!({
            "type": format!("urn:sipgw:problem:{}", error.code()),
            "title": status.canonical_reason().unwrap(),
            "status": status.as_u16(),
            "detail": error.detail(),
            "code": error.code(),
            "requestId": "r-\"1",
        });
        if let ApiError::VendorRejected { vendor_message } = &error {
            tree["vendorMessage"] = vendor_message.as_str().into();
        }
        assert_eq!(json_bytes(&error.problem("r-\"1")), tree.to_string());
    }
}

#[tokio::test]
async fn unauthenticated_tells_the_client_to_get_a_new_token() {
    let response = ApiError::Unauthenticated(AuthError::Expired).to_response("r");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(body_of(response).await["detail"], "token expired");
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_method() {
    let response = ApiError::MethodNotAllowed.to_response("r");
    assert_eq!(response.headers()[header::ALLOW], "POST");
}

#[tokio::test]
async fn vendor_message_is_passed_on_truncated() {
    let long = "x".repeat(1000);
    let body = body_of(
        ApiError::VendorRejected {
            vendor_message: long,
        }
        .to_response("r"),
    )
    .await;
    assert_eq!(
        body["vendorMessage"].as_str().unwrap().len(),
        MAX_VENDOR_MESSAGE_CHARS
    );
    assert_eq!(body["status"], 422);
}
