//! A password change end to end: what the caller gets and what the vendor receives.

mod common;

use common::*;
use http::Method;

#[tokio::test]
async fn a_change_reaches_the_vendor_built_from_scratch() {
    let h = Harness::start().await;
    let body = serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
    let caller_auth = format!("Bearer {}", h.admin_token);
    let answer = h
        .send_raw(
            Method::POST,
            &Harness::endpoint(AGENT),
            &[
                ("content-type", "application/json"),
                ("x-request-id", "trace-42"),
                ("authorization", &caller_auth),
                ("cookie", "session=caller-cookie"),
                ("x-custom", "caller-header"),
            ],
            body,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.headers["x-request-id"], "trace-42");
    assert_eq!(answer.headers["cache-control"], "no-store");
    let json = answer.json();
    assert_eq!(json["resultCode"], "0");
    assert_eq!(json["resultMessage"], "success");
    assert_eq!(json["requestId"], "trace-42");
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW));

    let received = h.sim.update_requests();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    let auth = sent.headers["authorization"].to_str().unwrap();
    assert!(
        auth.starts_with("Bearer ") && auth.len() > "Bearer ".len(),
        "{auth}"
    );
    assert_ne!(
        auth, "Bearer caller-sso-jwt",
        "the caller's JWT must never reach the vendor"
    );
    assert_eq!(sent.headers["x-app-key"], APP_KEY);
    assert_eq!(sent.headers["x-request-id"], "trace-42");
    assert!(sent.headers.get("cookie").is_none());
    assert!(sent.headers.get("x-custom").is_none());
    assert_eq!(
        sent.body,
        serde_json::json!({ "requestParam": { "accountPwd": CURRENT, "newPhonePwd": NEW, "userAccount": AGENT } })
    );
    assert_eq!(h.sim.tokens_issued(), 1);
}

#[tokio::test]
async fn the_flat_body_shape_is_sent_when_configured() {
    let h = Harness::start_with(sim_config(), |c| c.vendor.body_shape = "flat".into()).await;
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    let sent = &h.sim.update_requests()[0];
    assert_eq!(
        sent.body,
        serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW, "userAccount": AGENT })
    );
}

#[tokio::test]
async fn a_request_id_is_generated_when_absent() {
    let h = Harness::start().await;
    let answer = h.change(AGENT, CURRENT, NEW).await;
    let id = answer.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    assert_eq!(answer.json()["requestId"], id);
    assert_eq!(h.sim.update_requests()[0].headers["x-request-id"], id);
}

#[tokio::test]
async fn a_vendor_rejection_is_422_with_the_vendor_message() {
    let h = Harness::start().await;
    let answer = h.change(AGENT, "Wrong~Pass1", NEW).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    let json = answer.json();
    assert_eq!(json["code"], "vendor_rejected");
    assert!(!json["vendorMessage"].as_str().unwrap().is_empty());
    assert!(!answer.text.contains("Wrong~Pass1") && !answer.text.contains(NEW));
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(CURRENT));
    assert_eq!(h.sim.update_count(), 1);
}

#[tokio::test]
async fn fifty_concurrent_requests_on_a_cold_cache_fetch_one_token() {
    let h = std::sync::Arc::new(Harness::start().await);
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let h = std::sync::Arc::clone(&h);
            tokio::spawn(async move { h.change(&format!("agent{i}"), CURRENT, NEW).await.status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(h.sim.token_requests(), 1);
    assert_eq!(h.sim.update_count(), 50);
}

#[tokio::test]
async fn works_over_h2c_too() {
    let h = Harness::start().await;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let body = serde_json::json!({ "accountPwd": CURRENT, "newPhonePwd": NEW }).to_string();
    let request = http::Request::post(h.url(&Harness::endpoint(AGENT)))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", h.admin_token))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW));
}
