//! The vendor over HTTPS: certificate checking with the Mozilla roots plus `ca_file`.
//!
//! A TLS front with a certificate from a throw-away CA terminates TLS on `127.0.0.1:0` and
//! relays to the simulator, so the gateway talks real TLS to a real listener.

mod common;

use common::tls_front::TestPki;
use common::*;
use sipgw::config::{Config, FileConfig};
use tokio::net::TcpListener;

fn write_temp(name: &str, contents: &str) -> String {
    let dir = std::env::temp_dir().join(format!("sipgw-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

async fn start_behind_tls(ca_file: Option<String>) -> Harness {
    start_behind_tls_offering(ca_file, &[]).await.0
}

/// The simulator behind a TLS front that offers `alpn`; what each handshake negotiated.
async fn start_behind_tls_offering(
    ca_file: Option<String>,
    alpn: &[&[u8]],
) -> (Harness, tls_front::Negotiated) {
    let pki = TestPki::new();
    let sim = sipgw_dev::sim::VendorSim::new(sim_config());
    let sim_addr = sim
        .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
    let (front, negotiated) =
        tls_front::start_with_alpn(pki.leaf.clone(), pki.leaf_key.clone_key(), sim_addr, alpn)
            .await;
    let ca_file = ca_file.map(|name| write_temp(&name, &pki.ca_pem));
    let harness = Harness::start_gateway(sim, sim_addr, move |c| {
        c.vendor.base_url = Some(format!("https://localhost:{}", front.port()));
        c.vendor.allow_insecure_http = false;
        c.vendor.ca_file = ca_file;
    })
    .await;
    (harness, negotiated)
}

#[tokio::test]
async fn a_vendor_certificate_from_the_configured_ca_is_trusted() {
    let h = start_behind_tls(Some("trusted".into())).await;
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(NEW));
    assert_eq!(h.sim.update_requests()[0].headers["x-app-key"], APP_KEY);
}

#[tokio::test]
async fn a_vendor_offering_h2_is_spoken_to_in_h2_over_one_connection() {
    let (h, negotiated) = start_behind_tls_offering(Some("h2".into()), &[b"h2", b"http/1.1"]).await;
    let first = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second = h.change(AGENT, NEW, CURRENT).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(h.sim.agent_password(AGENT).as_deref(), Some(CURRENT));
    // The token fetch and both changes: every handshake chose h2, and the pool kept the
    // connection (h2 multiplexes, so one is enough).
    let negotiated = negotiated.lock().unwrap().clone();
    assert_eq!(negotiated, vec![Some(b"h2".to_vec())], "{negotiated:?}");
}

#[tokio::test]
async fn a_vendor_offering_only_http_1_1_is_spoken_to_in_http_1_1() {
    let (h, negotiated) = start_behind_tls_offering(Some("h1".into()), &[b"http/1.1"]).await;
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let negotiated = negotiated.lock().unwrap().clone();
    assert!(!negotiated.is_empty());
    assert!(
        negotiated
            .iter()
            .all(|p| p.as_deref() == Some(&b"http/1.1"[..])),
        "{negotiated:?}"
    );
}

#[tokio::test]
async fn an_unknown_ca_is_refused_and_no_secret_is_sent() {
    let h = start_behind_tls(None).await;
    let answer = h.change(AGENT, CURRENT, NEW).await;
    assert_eq!(answer.status, 503, "{}", answer.text);
    assert_eq!(answer.code(), "upstream_auth_unavailable");
    assert_eq!(
        h.sim.token_requests(),
        0,
        "the app secret never left over an untrusted link"
    );
}

#[test]
fn a_ca_file_without_certificates_is_a_config_error() {
    let path = write_temp("empty", "not a certificate\n");
    let mut file = FileConfig::default();
    file.vendor.base_url = Some("https://vendor.example".into());
    file.vendor.app_key = Some("k".into());
    file.vendor.ca_file = Some(path);
    let err = Config::from_file(file, |_| Some("s".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vendor.ca_file") && err.contains("no certificate"),
        "{err}"
    );
}
