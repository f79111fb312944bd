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
    let pki = TestPki::new();
    let sim = sipgw_dev::sim::VendorSim::new(sim_config());
    let sim_addr = sim
        .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
        .unwrap();
    let front = tls_front::start(pki.leaf.clone(), pki.leaf_key.clone_key(), sim_addr).await;
    let ca_file = ca_file.map(|name| write_temp(&name, &pki.ca_pem));
    Harness::start_gateway(sim, sim_addr, move |c| {
        c.vendor.base_url = Some(format!("https://localhost:{}", front.port()));
        c.vendor.allow_insecure_http = false;
        c.vendor.ca_file = ca_file;
    })
    .await
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
