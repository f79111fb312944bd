//! Errors that say what failed: outbound failures name `METHOD URL` and the cause (DNS,
//! refused, HTTP status), over real sockets; the audit commands name a path that is not
//! there.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use sipgw::auth::keys::{FetchSettings, KeySource, KeyStore};
use sipgw::outbound;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");

/// A key store over `uri` with a plain client, as the gateway builds one.
fn store(uri: &str) -> (KeyStore, http::Uri) {
    let uri: http::Uri = uri.parse().unwrap();
    let settings = FetchSettings {
        issuer: ISSUER.into(),
        algorithms: vec![
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::Algorithm::RS256,
        ],
        refresh: Duration::from_secs(300),
        refetch_cooldown: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
        allow_insecure_http: true,
    };
    let client = outbound::client(&[], Duration::from_secs(10)).unwrap();
    let store = KeyStore::new(KeySource::JwksUrl(uri.clone()), settings, Some(client));
    (store, uri)
}

#[tokio::test]
async fn jwks_errors_name_the_url_and_the_cause() {
    // Refused: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (keys, uri) = store(&format!("http://{closed}/jwks.json"));
    let error = keys.keys_at(&uri).await.unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "GET http://{closed}/jwks.json: cannot connect: tcp connect error: "
        )) && error.contains("Connection refused"),
        "{error}"
    );
    // DNS: the .invalid top-level domain never resolves (RFC 6761).
    let (keys, uri) = store("http://sipgw-test.invalid/jwks.json");
    let error = keys.keys_at(&uri).await.unwrap_err().to_string();
    assert!(
        error.starts_with("GET http://sipgw-test.invalid/jwks.json: cannot connect: dns error"),
        "{error}"
    );
    // A status: the issuer answers 404 off its two paths.
    let up = Upstreams::start().await;
    let (keys, uri) = store(&format!("http://{}/keys?token=abc", up.idp_addr));
    let error = keys.keys_at(&uri).await.unwrap_err().to_string();
    assert_eq!(
        error,
        format!("GET http://{}/keys?…: HTTP 404", up.idp_addr)
    );
    assert!(!error.contains("token=abc"), "the query is never shown");
}

#[tokio::test]
async fn a_discovery_issuer_mismatch_shows_both_issuers() {
    let up = Upstreams::start().await;
    up.idp
        .set_discovery_issuer(Some("https://evil.example".into()));
    let discovery = format!("http://{}/.well-known/openid-configuration", up.idp_addr);
    let (keys, uri) = store(&discovery);
    let error = keys.discover(&uri).await.unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "discovery document at {discovery}: its issuer \"https://evil.example\" is not \
             auth.issuer \"{ISSUER}\""
        )
    );
}

#[test]
fn audit_commands_name_a_path_that_is_not_there() {
    let missing = fresh_dir("errors-missing").join("audit-typo");
    let report = fresh_dir("errors-report").join("report.html");
    let commands: [(&str, Vec<&str>); 4] = [
        ("show", vec![]),
        ("verify", vec![]),
        ("export", vec!["--format", "ecs"]),
        ("report", vec!["--output", report.to_str().unwrap()]),
    ];
    for (command, args) in commands {
        let output = Command::new(SIPGW)
            .args(["audit", command])
            .arg(&missing)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "sipgw audit {command}: {}: No such file or directory",
                missing.display()
            )),
            "{command}: {stderr}"
        );
    }
}
