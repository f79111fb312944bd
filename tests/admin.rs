//! The admin listener: `/healthz` and `/readyz` (DESIGN.md §6).

mod common;

use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(
            http::Request::get(format!("http://{addr}{path}"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// Polls `/readyz` until it answers `want` (bounded).
async fn readyz_until(h: &Harness, want: u16) -> serde_json::Value {
    for _ in 0..200 {
        let (status, body) = get(h.admin_addr, "/readyz").await;
        if status == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "/readyz never answered {want}: last {:?}",
        get(h.admin_addr, "/readyz").await
    );
}

#[tokio::test]
async fn healthz_answers_and_readyz_turns_ready_once_keys_and_token_are_held() {
    let h = Harness::start().await;
    assert_eq!(
        get(h.admin_addr, "/healthz").await,
        (200, serde_json::json!({ "status": "ok" }))
    );
    let ready = readyz_until(&h, 200).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["degraded"], serde_json::json!([]));
    assert_eq!(get(h.admin_addr, "/other").await.0, 404);
    // The admin listener is not the API: the endpoint is not served there.
    assert_eq!(get(h.admin_addr, &Harness::endpoint(AGENT)).await.0, 404);
}

#[tokio::test]
async fn readyz_names_a_missing_vendor_token() {
    let sim = sipgw::sim::VendorSim::new(sim_config());
    sim.faults().set_token_status(Some(500));
    let sim_addr = sim
        .spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
    let h = Harness::start_gateway(sim, sim_addr, |_| {}).await;
    let not_ready = readyz_until(&h, 503).await;
    assert_eq!(not_ready["status"], "not_ready");
    assert!(
        not_ready["unmet"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("no_vendor_token")),
        "{not_ready}"
    );
    // Once the vendor recovers, the gateway becomes ready by itself.
    h.sim.faults().set_token_status(None);
    readyz_until(&h, 200).await;
}
