//! The live audit trail removed, cut short or replaced under a running gateway (issue 11,
//! finding 5): the next change is refused before the vendor, `/readyz` and `/metrics` say
//! why, and the gateway stays that way.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// GET `path` on the admin listener: status and body.
async fn admin_get(h: &Harness, path: &str) -> (u16, String) {
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(
            http::Request::get(format!("http://{}{path}", h.admin_addr))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The value of one sample of `/metrics`.
async fn sample(h: &Harness, series: &str) -> Option<f64> {
    let (_, text) = admin_get(h, "/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A gateway whose trail path is returned too, after one successful change.
async fn running_with_a_trail() -> (Harness, PathBuf) {
    let dir = fresh_dir("tamper");
    let path = dir.join("sipgw-audit.jsonl");
    let trail = path.display().to_string();
    let h = Harness::start_with(sim_config(), |file| file.audit.path = trail).await;
    let first = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(h.sim.update_count(), 1);
    (h, path)
}

/// After `damage` to the live file, a change is 503 `audit_unavailable` without a vendor
/// call, `/readyz` names the tampering, and the metric counts it once.
async fn refuses_after(kind: &str, damage: impl FnOnce(&Path)) {
    let (mut h, path) = running_with_a_trail().await;
    let series = format!("sipgw_audit_trail_tampered_total{{kind=\"{kind}\"}}");
    assert_eq!(sample(&h, &series).await, Some(0.0), "present at 0 before");
    let (status, _) = admin_get(&h, "/readyz").await;
    assert_eq!(status, 200);

    damage(&path);
    for _ in 0..2 {
        let refused = h.change(AGENT, NEW, "Next~Phone2026").await;
        assert_eq!(refused.status, 503, "{kind}: {}", refused.text);
        assert_eq!(refused.code(), "audit_unavailable");
    }
    assert_eq!(
        h.sim.update_count(),
        1,
        "{kind}: the vendor saw nothing more"
    );
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW));

    let (status, body) = admin_get(&h, "/readyz").await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["unmet"], serde_json::json!(["audit_trail_tampered"]));
    assert_eq!(body["audit_trail"], kind);
    assert_eq!(sample(&h, &series).await, Some(1.0), "counted once");
    h.shutdown().await;
}

#[tokio::test]
async fn removing_the_live_file_stops_changes() {
    refuses_after("unlinked", |path| std::fs::remove_file(path).unwrap()).await;
}

#[tokio::test]
async fn cutting_the_live_file_short_stops_changes() {
    refuses_after("truncated", |path| {
        let len = std::fs::metadata(path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len - 40)
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn replacing_the_live_file_stops_changes() {
    refuses_after("replaced", |path| {
        let copy = path.with_extension("copy");
        std::fs::copy(path, &copy).unwrap();
        std::fs::rename(&copy, path).unwrap();
    })
    .await;
}
