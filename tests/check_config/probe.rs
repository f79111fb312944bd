//! `sipgw check-config --probe` against real upstreams on loopback: the development issuer,
//! the vendor simulator (plain and behind TLS), a `redis-server` with a password, ports
//! taken and free. Every line is `ok` or `FAIL`; every `FAIL` names the URL, address or
//! path and the cause; no secret appears in any output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::SIPGW;
use super::common::redis_server::{Options, RedisServer};
use super::common::tls_front::{self, TestPki};
use super::common::*;
use tokio::net::TcpListener;

/// A password for `redis-server --requirepass`.
const REDIS_PASSWORD: &str = "redis-probe-password-5d1e";

/// What one `check-config --probe` run printed.
struct Probed {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Probed {
    /// The line of check `what`, `ok` or `FAIL`.
    fn line(&self, what: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| line[5..].starts_with(&format!("{what}:")))
            .unwrap_or_else(|| panic!("no {what} line in:\n{}{}", self.stdout, self.stderr))
    }

    /// Asserts that `what` failed and its line holds each of `says`.
    fn failed(&self, what: &str, says: &[&str]) {
        let line = self.line(what);
        assert!(line.starts_with("FAIL "), "{line}");
        for part in says {
            assert!(line.contains(part), "{what}: {part:?} not in {line}");
        }
        assert_eq!(self.status, Some(1), "{}{}", self.stdout, self.stderr);
    }

    /// Asserts that `what` passed, saying each of `says`.
    fn passed(&self, what: &str, says: &[&str]) {
        let line = self.line(what);
        assert!(line.starts_with("ok   "), "{line}");
        for part in says {
            assert!(line.contains(part), "{what}: {part:?} not in {line}");
        }
    }
}

/// A loopback address nothing listens on (bound, noted, released).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// A config for the probe: `sections` (`[auth]` and `[vendor]`), free listen addresses
/// unless `listen` is given, the trail at `audit`, and `extra` sections.
fn config(sections: &str, listen: Option<SocketAddr>, audit: &Path, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"{}\"\nadmin_listen = \"{}\"\n{sections}\n[audit]\npath = \"{}\"\n{extra}",
        listen.unwrap_or_else(free_addr),
        free_addr(),
        audit.display()
    )
}

/// Runs `sipgw check-config --probe` on `text` with the app secret `secret`.
async fn probe(text: String, secret: &'static str) -> Probed {
    let dir = fresh_dir("probe-config");
    let path: PathBuf = dir.join("sipgw.toml");
    std::fs::write(&path, text).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(SIPGW)
            .args(["check-config", "--probe", "--config"])
            .arg(&path)
            .env("SIPGW_APP_SECRET", secret)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let probed = Probed {
        status: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    for secret in [APP_SECRET, secret, REDIS_PASSWORD, "audit-hmac-key-probe"] {
        assert!(
            !probed.stdout.contains(secret) && !probed.stderr.contains(secret),
            "a secret is printed:\n{}{}",
            probed.stdout,
            probed.stderr
        );
    }
    for line in probed.stdout.lines() {
        assert!(
            line.starts_with("ok   ") || line.starts_with("FAIL "),
            "not a probe line: {line}"
        );
    }
    probed
}

#[tokio::test]
async fn every_check_passes_against_live_upstreams() {
    // A trail with records, written by a gateway with an HMAC key.
    let dir = fresh_dir("probe-ok");
    let trail = dir.join("audit/sipgw-audit.jsonl");
    let key_file = dir.join("hmac.key");
    std::fs::write(&key_file, "audit-hmac-key-probe-0123456789abcdef").unwrap();
    let (p, k) = (trail.display().to_string(), key_file.display().to_string());
    let mut h = Harness::start_with(sim_config(), move |c| {
        c.audit.path = p;
        c.audit.hmac_key_file = Some(k);
    })
    .await;
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    h.shutdown().await;
    let redis = RedisServer::start_with(Options {
        args: vec!["--requirepass".into(), REDIS_PASSWORD.into()],
        ..Options::default()
    })
    .await;
    let redis_section = match &redis {
        Some(redis) => {
            let password = dir.join("redis.password");
            std::fs::write(&password, REDIS_PASSWORD).unwrap();
            format!(
                "[rate_limit]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_password_file = \"{}\"\n",
                redis.url(),
                password.display()
            )
        }
        None => String::new(),
    };
    let extra = format!(
        "hmac_key_file = \"{}\"\n{redis_section}",
        key_file.display()
    );
    let sections = upstream_sections(h.idp_addr, h.sim_addr);
    let probed = probe(config(&sections, None, &trail, &extra), APP_SECRET).await;
    assert_eq!(probed.status, Some(0), "{}{}", probed.stdout, probed.stderr);
    probed.passed(
        "jwks",
        &[
            &format!("GET http://{}/jwks.json", h.idp_addr),
            "2 usable keys: es256-1 (ES256), rs256-1 (RS256)",
        ],
    );
    probed.passed(
        "vendor token",
        &[
            &format!(
                "POST http://{}/apigovernance/api/oauth/tokenByAkSk",
                h.sim_addr
            ),
            "AccessToken issued, usable for",
        ],
    );
    probed.passed(
        "audit trail",
        &[
            "last record seq ",
            "its MAC verifies with audit.hmac_key_file",
        ],
    );
    probed.passed("server.listen", &["free"]);
    probed.passed("server.admin_listen", &["free"]);
    if let Some(redis) = &redis {
        probed.passed("redis", &[&redis.url(), "PING answered PONG"]);
    }
    // The last record altered (its seq): its MAC no longer verifies.
    let text = std::fs::read_to_string(&trail).unwrap();
    let last_start = text.trim_end().rfind('\n').map_or(0, |i| i + 1);
    let seq_at = last_start + text[last_start..].find("\"seq\":").unwrap() + "\"seq\":".len();
    let digit = text.as_bytes()[seq_at] - b'0';
    let mut altered = text.clone();
    altered.replace_range(seq_at..=seq_at, &((digit + 1) % 10).to_string());
    std::fs::write(&trail, altered).unwrap();
    let probed = probe(config(&sections, None, &trail, &extra), APP_SECRET).await;
    probed.failed(
        "audit trail",
        &[&trail.display().to_string(), "does not verify"],
    );
}

#[tokio::test]
async fn an_unreachable_or_missing_jwks_is_named_by_its_url() {
    let up = Upstreams::start().await;
    let audit = fresh_dir("probe-jwks").join("sipgw-audit.jsonl");
    let refused = free_addr();
    let sections = upstream_sections(refused, up.sim_addr);
    let probed = probe(config(&sections, None, &audit, ""), APP_SECRET).await;
    probed.failed(
        "jwks",
        &[
            &format!("GET http://{refused}/jwks.json: cannot connect: "),
            "Connection refused",
        ],
    );
    probed.passed("vendor token", &[]);
    // The issuer answers 404 for any other path.
    let sections =
        upstream_sections(up.idp_addr, up.sim_addr).replace("/jwks.json", "/no-such-jwks.json");
    let probed = probe(config(&sections, None, &audit, ""), APP_SECRET).await;
    probed.failed(
        "jwks",
        &[&format!(
            "GET http://{}/no-such-jwks.json: HTTP 404",
            up.idp_addr
        )],
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_shows_both() {
    let up = Upstreams::start().await;
    up.idp
        .set_discovery_issuer(Some("https://other.example/realms/x".into()));
    let audit = fresh_dir("probe-discovery").join("sipgw-audit.jsonl");
    let discovery = format!("http://{}/.well-known/openid-configuration", up.idp_addr);
    let sections = upstream_sections(up.idp_addr, up.sim_addr).replace(
        &format!("jwks_url = \"http://{}/jwks.json\"", up.idp_addr),
        &format!("discovery_url = \"{discovery}\""),
    );
    let probed = probe(config(&sections, None, &audit, ""), APP_SECRET).await;
    probed.failed(
        "idp discovery",
        &[&format!(
            "discovery document at {discovery}: its issuer \"https://other.example/realms/x\" \
             is not auth.issuer \"{ISSUER}\""
        )],
    );
}

#[tokio::test]
async fn a_wrong_app_secret_is_the_vendors_401_at_its_url() {
    let up = Upstreams::start().await;
    let audit = fresh_dir("probe-401").join("sipgw-audit.jsonl");
    let sections = upstream_sections(up.idp_addr, up.sim_addr);
    let probed = probe(config(&sections, None, &audit, ""), "wrong-app-secret-3b7a").await;
    probed.failed(
        "vendor token",
        &[
            &format!(
                "POST http://{}/apigovernance/api/oauth/tokenByAkSk",
                up.sim_addr
            ),
            "401",
            "vendor.app_key",
        ],
    );
    probed.passed("jwks", &[]);
}

#[tokio::test]
async fn tls_failures_say_why_the_handshake_failed() {
    let up = Upstreams::start().await;
    let audit = fresh_dir("probe-tls").join("sipgw-audit.jsonl");
    // https:// to the simulator's plain-HTTP port.
    let sections = upstream_sections(up.idp_addr, up.sim_addr).replace(
        &format!("base_url = \"http://{}\"", up.sim_addr),
        &format!("base_url = \"https://{}\"", up.sim_addr),
    );
    let probed = probe(config(&sections, None, &audit, ""), APP_SECRET).await;
    probed.failed(
        "vendor token",
        &[
            &format!("POST https://{}/apigovernance", up.sim_addr),
            "cannot connect: TLS handshake: ",
            "is it a plain-HTTP port?",
        ],
    );
    // The simulator behind TLS with a certificate from a CA nobody configured.
    let pki = TestPki::new();
    let front = tls_front::start(pki.leaf, pki.leaf_key, up.sim_addr).await;
    let sections = upstream_sections(up.idp_addr, up.sim_addr).replace(
        &format!("base_url = \"http://{}\"", up.sim_addr),
        &format!("base_url = \"https://localhost:{}\"", front.port()),
    );
    let probed = probe(config(&sections, None, &audit, ""), APP_SECRET).await;
    probed.failed(
        "vendor token",
        &[
            &format!("POST https://localhost:{}/apigovernance", front.port()),
            "TLS handshake: invalid peer certificate: UnknownIssuer",
        ],
    );
}

#[tokio::test]
async fn an_unusable_trail_a_taken_port_and_a_redis_down_each_fail_alone() {
    let up = Upstreams::start().await;
    let dir = fresh_dir("probe-host");
    // Root can write anywhere the permission bits forbid; it cannot make a directory
    // under a regular file.
    let blocker = dir.join("file");
    std::fs::write(&blocker, "x").unwrap();
    let audit = blocker.join("sipgw-audit.jsonl");
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let down = free_addr();
    let extra = format!("[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://{down}\"\n");
    let sections = upstream_sections(up.idp_addr, up.sim_addr);
    // check-config without --probe refuses the trail first (as serve would): exit 2.
    let probed = probe(
        config(&sections, Some(taken_addr), &audit, &extra),
        APP_SECRET,
    )
    .await;
    assert_eq!(probed.status, Some(2), "{}", probed.stderr);
    assert!(
        probed
            .stderr
            .contains(&format!("{} is not a directory", blocker.display())),
        "{}",
        probed.stderr
    );
    // A trail that is fine, the port still taken, Redis down: two FAIL lines.
    let audit = dir.join("trail/sipgw-audit.jsonl");
    let probed = probe(
        config(&sections, Some(taken_addr), &audit, &extra),
        APP_SECRET,
    )
    .await;
    probed.failed(
        "server.listen",
        &[&format!("{taken_addr}: cannot listen: "), "in use"],
    );
    probed.failed("redis", &[&format!("redis://{down}"), "refused"]);
    probed.passed("audit trail", &["the trail is empty"]);
    probed.passed("jwks", &[]);
    probed.passed("vendor token", &[]);
    drop(taken);
}
