//! Every malformed request gets its problem code, and none of them reaches the vendor.

mod common;

use common::*;
use http::Method;

const JSON: (&str, &str) = ("content-type", "application/json");

fn body(current: &str, new: &str) -> String {
    serde_json::json!({ "accountPwd": current, "newPhonePwd": new }).to_string()
}

/// Checks the problem document and that nothing secret came back.
fn assert_problem(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    let json = answer.json();
    assert_eq!(json["code"], code, "{}", answer.text);
    assert_eq!(json["status"], status);
    assert_eq!(json["type"], format!("urn:sipgw:problem:{code}"));
    assert!(json["title"].is_string() && json["detail"].is_string());
    let id = answer.headers["x-request-id"].to_str().unwrap();
    assert_eq!(json["requestId"], id);
    for secret in [CURRENT, NEW, "Secret~Value9", "12345678", APP_SECRET] {
        assert!(
            !answer.text.contains(secret),
            "{secret} leaked in {}",
            answer.text
        );
    }
}

/// method, path, headers, body, expected status, expected code
type Case = (
    Method,
    String,
    Vec<(&'static str, &'static str)>,
    String,
    u16,
    &'static str,
);

#[tokio::test]
async fn every_bad_input_gets_its_code_and_never_reaches_the_vendor() {
    let h = Harness::start().await;
    let ep = Harness::endpoint(AGENT);
    let big = format!(
        r#"{{"accountPwd":"{}","newPhonePwd":"x"}}"#,
        "a".repeat(5000)
    );
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            ep.clone(),
            vec![],
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            Method::PUT,
            ep.clone(),
            vec![JSON],
            body(CURRENT, NEW),
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/v1/agents/a1001".into(),
            vec![JSON],
            body(CURRENT, NEW),
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/".into(),
            vec![JSON],
            body(CURRENT, NEW),
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/v1/agents/a/b/sip-phone-password".into(),
            vec![JSON],
            body(CURRENT, NEW),
            404,
            "not_found",
        ),
        (
            Method::POST,
            Harness::endpoint(&"a".repeat(65)),
            vec![JSON],
            body(CURRENT, NEW),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            Harness::endpoint("a%20b"),
            vec![JSON],
            body(CURRENT, NEW),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            Harness::endpoint("a;b"),
            vec![JSON],
            body(CURRENT, NEW),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![],
            body(CURRENT, NEW),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![("content-type", "text/plain")],
            body(CURRENT, NEW),
            415,
            "unsupported_media_type",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            big,
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            "{not json".into(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            String::new(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            r#"{"accountPwd":"Secret~Value9"}"#.into(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            r#"{"accountPwd":"Secret~Value9","newPhonePwd":"Sip~Phone2025","userAccount":"x"}"#
                .into(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            r#"{"accountPwd":12345678,"newPhonePwd":"Sip~Phone2025"}"#.into(),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            body("", NEW),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            body(CURRENT, ""),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            format!(r#"["{CURRENT}","{NEW}"]"#),
            400,
            "invalid_request",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            body(CURRENT, "password"),
            400,
            "password_policy",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            body(CURRENT, "Short~1"),
            400,
            "password_policy",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            body(CURRENT, "Secret~Value9-too-long"),
            400,
            "password_policy",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            body(CURRENT, "Secret Value9"),
            400,
            "password_policy",
        ),
        (
            Method::POST,
            ep.clone(),
            vec![JSON],
            body(CURRENT, CURRENT),
            400,
            "password_policy",
        ),
    ];
    for (method, path, headers, payload, status, code) in cases {
        let answer = h.send(method.clone(), &path, &headers, payload).await;
        assert_problem(&answer, status, code);
        if status == 405 {
            assert_eq!(answer.headers["allow"], "POST");
        }
    }
    assert_eq!(h.sim.update_count(), 0, "no bad request reached the vendor");
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(CURRENT));
}

#[tokio::test]
async fn the_policy_detail_names_the_rule() {
    let h = Harness::start().await;
    let answer = h.change(AGENT, CURRENT, "alllowercase1").await;
    assert_problem(&answer, 400, "password_policy");
    let detail = answer.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("at least 3"), "{detail}");
}

#[tokio::test]
async fn an_oversized_chunked_body_is_refused_while_reading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    // With a token that may make the change: the body is read only after authorization.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        Harness::endpoint(AGENT),
        h.admin_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = "a".repeat(1024);
    for _ in 0..5 {
        let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if stream.write_all(framed.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"));
    assert_eq!(h.sim.update_count(), 0);
}
