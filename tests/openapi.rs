//! `openapi.yaml` checked against the implementation: the (status, code) pairs both ways
//! against [`sipgw::error::catalogue`], each status's headers against what the gateway
//! sends, the request body against the parser, and the route and method against a running
//! gateway.

mod common;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use sipgw::error::{ApiError, catalogue};
use yaml::{load_one, repo_path};

const ROUTE: &str = "/v1/agents/{userAccount}/sip-phone-password";

fn spec() -> Value {
    load_one(&repo_path("openapi.yaml"))
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $refs are supported: {reference}"));
            let target = spec
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} points nowhere"));
            resolve(spec, target)
        }
        None => node,
    }
}

fn operation(spec: &Value) -> &Value {
    &spec["paths"][ROUTE]["post"]
}

/// Status → the problem codes documented for it (none for a success).
fn documented_codes(spec: &Value) -> BTreeMap<u16, BTreeSet<String>> {
    let responses = operation(spec)["responses"]
        .as_object()
        .expect("the operation has responses");
    let mut out = BTreeMap::new();
    for (status, response) in responses {
        let status: u16 = status
            .parse()
            .unwrap_or_else(|_| panic!("response key {status:?} is not a status code"));
        let response = resolve(spec, response);
        let Some(schema) = response["content"]["application/problem+json"]["schema"].as_object()
        else {
            assert!(
                status < 400,
                "{status}: an error response without an application/problem+json body"
            );
            continue;
        };
        let mut codes = BTreeSet::new();
        let parts = schema["allOf"]
            .as_array()
            .expect("problem schemas are allOf");
        for part in parts {
            let part = resolve(spec, part);
            for code in part["properties"]["code"]["enum"]
                .as_array()
                .into_iter()
                .flatten()
            {
                codes.insert(code.as_str().expect("codes are strings").to_owned());
            }
        }
        assert!(
            parts
                .iter()
                .any(|p| p["$ref"] == "#/components/schemas/Problem"),
            "{status}: the schema does not build on #/components/schemas/Problem"
        );
        assert!(!codes.is_empty(), "{status}: no code enum");
        out.insert(status, codes);
    }
    out
}

/// Status → the header names documented for it, lower-case.
fn documented_headers(spec: &Value) -> BTreeMap<u16, BTreeSet<String>> {
    let responses = operation(spec)["responses"].as_object().unwrap();
    responses
        .iter()
        .map(|(status, response)| {
            let headers = resolve(spec, response)["headers"]
                .as_object()
                .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect())
                .unwrap_or_default();
            (status.parse().unwrap(), headers)
        })
        .collect()
}

#[test]
fn it_is_openapi_3_1_with_the_one_route() {
    let spec = spec();
    let version = spec["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with("3.1."),
        "openapi: {version:?} is not 3.1"
    );
    let paths: Vec<&String> = spec["paths"].as_object().unwrap().keys().collect();
    assert_eq!(paths, [ROUTE], "documented paths");
    let methods: Vec<&String> = spec["paths"][ROUTE].as_object().unwrap().keys().collect();
    assert_eq!(methods, ["post"], "documented methods of {ROUTE}");
    // The implementation's route matcher takes the documented template, with any account
    // in place of the parameter, and nothing beside it.
    let concrete = ROUTE.replace("{userAccount}", AGENT);
    assert_eq!(
        sipgw::request::match_endpoint(&concrete),
        Some(AGENT),
        "the gateway does not route the documented path {concrete}"
    );
    assert_eq!(
        sipgw::request::match_endpoint(&format!("{concrete}/")),
        None
    );
}

#[test]
fn documented_codes_equal_the_error_table_both_ways() {
    let documented: BTreeSet<(u16, String)> = documented_codes(&spec())
        .into_iter()
        .flat_map(|(status, codes)| codes.into_iter().map(move |c| (status, c)))
        .collect();
    let implemented: BTreeSet<(u16, String)> = catalogue()
        .map(|(status, code)| (status.as_u16(), code.to_owned()))
        .collect();
    let undocumented: Vec<_> = implemented.difference(&documented).collect();
    let unimplemented: Vec<_> = documented.difference(&implemented).collect();
    assert!(
        undocumented.is_empty() && unimplemented.is_empty(),
        "openapi.yaml vs sipgw::error::catalogue():\n  sent but not documented: {undocumented:?}\n  \
         documented but never sent: {unimplemented:?}"
    );
}

/// Headers every answer carries that the documents leave to HTTP itself.
const TRANSPORT_HEADERS: &[&str] = &["content-type", "content-length", "date"];
/// Only on replays of an `Idempotency-Key`, which `to_response` does not render.
const REPLAY_HEADER: &str = "idempotent-replayed";

#[test]
fn each_status_documents_exactly_the_headers_the_gateway_sends() {
    let documented = documented_headers(&spec());
    let mut sent: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    // One value of every refusal: the list the catalogue is built from (its unit test in
    // `error.rs` keeps it complete).
    for error in &ApiError::samples() {
        let response = error.to_response("req-1");
        let names = sent.entry(response.status().as_u16()).or_default();
        for name in response.headers().keys() {
            if !TRANSPORT_HEADERS.contains(&name.as_str()) {
                names.insert(name.as_str().to_owned());
            }
        }
    }
    for (status, sent) in &sent {
        let documented = documented.get(status).cloned().unwrap_or_default();
        let missing: Vec<_> = sent.difference(&documented).collect();
        let extra: Vec<_> = documented
            .difference(sent)
            .filter(|h| *h != REPLAY_HEADER)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{status}: headers sent but not documented {missing:?}, documented but not sent {extra:?}"
        );
    }
    // Replays carry the stored outcome: success, vendor_rejected, vendor_error, timeout.
    for status in [200, 422, 502, 504] {
        assert!(
            documented[&status].contains(REPLAY_HEADER),
            "{status} can be a replay but does not document Idempotent-Replayed"
        );
    }
}

#[test]
fn the_documented_request_body_is_what_the_parser_accepts() {
    let spec = spec();
    let schema = resolve(
        &spec,
        &operation(&spec)["requestBody"]["content"]["application/json"]["schema"],
    );
    assert_eq!(
        schema["additionalProperties"], false,
        "the parser refuses unknown fields"
    );
    let properties: BTreeSet<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(properties, required, "every documented field is required");
    let max = |field: &str| schema["properties"][field]["maxLength"].as_u64();
    for field in &properties {
        assert_eq!(
            max(field),
            Some(sipgw::request::MAX_PASSWORD_CHARS as u64),
            "{field}.maxLength"
        );
    }
    // A body made of exactly the documented fields parses; one more field does not, nor
    // one field fewer.
    let body: serde_json::Map<String, Value> = properties
        .iter()
        .map(|p| ((*p).to_owned(), Value::from("Sip~Phone2025")))
        .collect();
    assert!(sipgw::request::parse_body(Value::from(body.clone()).to_string().as_bytes()).is_ok());
    let mut extra = body.clone();
    extra.insert("userAccount".into(), "a1001".into());
    assert!(sipgw::request::parse_body(Value::from(extra).to_string().as_bytes()).is_err());
    for field in &properties {
        let mut fewer = body.clone();
        fewer.remove(*field);
        assert!(
            sipgw::request::parse_body(Value::from(fewer).to_string().as_bytes()).is_err(),
            "a body without {field} was accepted"
        );
    }
}

/// Header parameters the operation documents, lower-case.
fn documented_request_headers(spec: &Value) -> BTreeSet<String> {
    operation(spec)["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| resolve(spec, p))
        .filter(|p| p["in"] == "header")
        .map(|p| p["name"].as_str().unwrap().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn a_running_gateway_answers_the_documented_route_as_documented() {
    let spec = spec();
    let headers_in = documented_request_headers(&spec);
    for header in ["idempotency-key", "x-request-id"] {
        assert!(
            headers_in.contains(header),
            "{header} is not a documented request header"
        );
    }
    let success = resolve(&spec, &operation(&spec)["responses"]["200"]);
    let documented_200 = documented_headers(&spec)[&200].clone();
    let body_fields: BTreeSet<String> =
        success["content"]["application/json"]["schema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();

    let gateway = Harness::start().await;
    let path = ROUTE.replace("{userAccount}", AGENT);
    let body = serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
    let request_headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "openapi-test-1"),
        ("x-request-id", "openapi-1"),
    ];
    let first = gateway
        .send(Method::POST, &path, &request_headers, body.clone())
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let fields: BTreeSet<String> = first.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        fields, body_fields,
        "200 body fields vs the documented schema"
    );
    assert_eq!(first.json()["requestId"], "openapi-1");
    let replay = gateway
        .send(Method::POST, &path, &request_headers, body)
        .await;
    assert_eq!(
        replay.headers[REPLAY_HEADER], "true",
        "the retry is a replay"
    );
    for answer in [&first, &replay] {
        for name in answer.headers.keys() {
            assert!(
                TRANSPORT_HEADERS.contains(&name.as_str())
                    || documented_200.contains(name.as_str()),
                "200 carries header {name}, which openapi.yaml does not document"
            );
        }
    }

    // Every other method on the route is 405 naming the documented methods; any other
    // path is 404.
    let documented_methods: Vec<String> = spec["paths"][ROUTE]
        .as_object()
        .unwrap()
        .keys()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let answer = gateway.send(method.clone(), &path, &[], "").await;
        assert_eq!(answer.status, 405, "{method} {path}");
        assert_eq!(
            answer.headers["allow"].to_str().unwrap(),
            documented_methods.join(", "),
            "Allow vs the documented methods"
        );
    }
    for other in ["/v1/agents", "/v2/agents/a1001/sip-phone-password", "/"] {
        let answer = gateway.send(Method::POST, other, &[], "").await;
        assert_eq!(answer.status, 404, "POST {other}");
        assert_eq!(answer.code(), "not_found");
    }
}
