//! The deployment files in `deploy/` against sipgw itself, cut to what can break a
//! deployment: each embedded config loads with sipgw's own loader; ports, probes, mounts and
//! users agree between config, manifests, Dockerfile and systemd unit (`deploy/checks.rs`);
//! no secret appears inline; the unit's `SIPGW__*` overrides go through the real binary.
//! Each kept check is shown to catch a broken manifest.

#[path = "deploy/checks.rs"]
mod checks;
mod common;
#[path = "deploy/image_and_unit.rs"]
mod image_and_unit;
mod yaml;

use std::path::Path;

use checks::{check_manifest, load_embedded, of_kind};
use common::fresh_dir;
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::Value;
use sipgw::config::{Config, FileConfig};
use yaml::{load_all, repo_path};

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
const SIDECAR: &str = "sidecar.yaml";
const SHARED: &str = "shared-service.yaml";

/// A page of the deployment docs (`docs/deploying.md`, `docs/tls.md`): the one place that
/// knows where they live.
fn deploy_docs(page: &str) -> String {
    let path = repo_path(&format!("docs/{page}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifest_text(name: &str) -> String {
    std::fs::read_to_string(repo_path(&format!("deploy/kubernetes/{name}"))).unwrap()
}

/// The documents of `text` (a manifest, maybe edited), written to a scratch file.
fn parse(name: &str, text: &str, scratch: &Path) -> Vec<Value> {
    let file = scratch.join(name);
    std::fs::write(&file, text).unwrap();
    load_all(&file).unwrap_or_else(|e| panic!("{e}"))
}

/// The problems the checks find in manifest `name` after each edit replaced the first
/// `from` by its `to`, in order.
fn problems_after(name: &str, edits: &[(&str, &str)]) -> Vec<String> {
    let mut text = manifest_text(name);
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "{name} no longer holds {from:?}; update this test"
        );
        text = text.replacen(from, to, 1);
    }
    let scratch = fresh_dir("edit");
    check_manifest(&parse(name, &text, &scratch), &scratch)
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

/// The embedded config of the first ConfigMap in `docs`, loaded.
fn embedded(docs: &[Value], scratch: &Path) -> Config {
    let map = of_kind(docs, "ConfigMap").next().expect("a ConfigMap");
    let toml = map["data"]["sipgw.toml"].as_str().expect("data sipgw.toml");
    load_embedded(toml, scratch)
        .unwrap_or_else(|e| panic!("{e}"))
        .1
}

/// `text` with the lines marked `#MARKER ` (for each marker) uncommented.
fn uncomment(text: &str, markers: &[&str]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let uncommented = markers
            .iter()
            .find_map(|m| body.strip_prefix(&format!("#{m} ")));
        out.push_str(&uncommented.map_or(line.to_owned(), |rest| format!("{indent}{rest}")));
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Kubernetes

#[test]
fn each_manifest_agrees_with_the_config_it_embeds() {
    for name in [SIDECAR, SHARED] {
        let scratch = fresh_dir("manifest");
        let docs = parse(name, &manifest_text(name), &scratch);
        assert_no_problems(name, &check_manifest(&docs, &scratch));
        for kind in ["Deployment", "NetworkPolicy"] {
            assert_eq!(of_kind(&docs, kind).count(), 1, "{name}: one {kind}");
        }
    }
    // The sidecar keeps the API on loopback; the shared service exposes it, over TLS, to
    // the pods labelled sipgw-client=true.
    let scratch = fresh_dir("roles");
    let sidecar = parse(SIDECAR, &manifest_text(SIDECAR), &scratch);
    let config = embedded(&sidecar, &scratch);
    assert!(config.server.listen.ip().is_loopback());
    let services = of_kind(&sidecar, "Service").count();
    assert_eq!(services, 0, "a sidecar needs no Service");
    let shared = parse(SHARED, &manifest_text(SHARED), &scratch);
    let config = embedded(&shared, &scratch);
    assert!(config.server.listen.ip().is_unspecified());
    assert!(
        config.server.tls.is_some(),
        "the shared API is not served over TLS"
    );
    assert_eq!(of_kind(&shared, "Service").count(), 1);
    let policy = of_kind(&shared, "NetworkPolicy").next().unwrap();
    let clients = &policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    assert_eq!(clients["sipgw-client"], "true");
}

#[test]
fn the_sidecars_tls_variants_agree_too() {
    let text = manifest_text(SIDECAR);
    for markers in [&["tls"][..], &["tls", "mtls"]] {
        for marker in markers {
            assert!(text.contains(&format!("#{marker} ")), "no #{marker} lines");
        }
        let scratch = fresh_dir("tls-variant");
        let docs = parse(SIDECAR, &uncomment(&text, markers), &scratch);
        assert_no_problems(&format!("{markers:?}"), &check_manifest(&docs, &scratch));
        let config = embedded(&docs, &scratch);
        let tls = config
            .server
            .tls
            .unwrap_or_else(|| panic!("{markers:?}: no TLS"));
        let mtls = markers.contains(&"mtls");
        assert_eq!(tls.client_ca_file.is_some(), mtls, "{markers:?}");
        assert!(config.server.listen.ip().is_loopback());
    }
}

const READYZ: &str = "              path: /readyz\n              port: admin\n";
const HEALTHZ: &str = "              path: /healthz\n              port: admin\n";
const TLS_CERT: &str = "    tls_cert_file = \"/run/secrets/sipgw-tls/tls.crt\"\n";
const TLS_KEY: &str = "    tls_key_file = \"/run/secrets/sipgw-tls/tls.key\"\n";
const NO_DRAIN: (&str, &str) = ("    shutdown_grace_secs = 20\n", "");

/// Edits, each replacing the first `from` by its `to`, in order.
type Edits = &'static [(&'static str, &'static str)];

/// Manifests broken one way each: (file, edits, a problem the checks must name).
#[rustfmt::skip]
const BROKEN: &[(&str, Edits, &str)] = &[
    // The embedded config, through sipgw's loader.
    (SIDECAR, &[("    admin_listen =", "    admin_lsiten =")], "admin_lsiten"),
    (SHARED, &[("shutdown_grace_secs = 20", "shutdown_grace_secs = \"20s\"")], "shutdown_grace_secs"),
    // Ports and probes.
    (SIDECAR, &[("admin_listen = \"0.0.0.0:9090\"", "admin_listen = \"127.0.0.1:9090\"")], "is loopback"),
    (SHARED, &[(READYZ, "              path: /readyz\n              port: api\n")], "readinessProbe port"),
    (SHARED, &[(READYZ, HEALTHZ)], "readinessProbe path \"/healthz\""),
    (SIDECAR, &[("path: /healthz\n              port: admin\n            periodSeconds: 10", "path: /health\n              port: admin\n            periodSeconds: 10")], "livenessProbe path"),
    (SHARED, &[("      targetPort: api", "      targetPort: 8081")], "no port targets the API port 8080"),
    (SIDECAR, &[("      app.kubernetes.io/name: agent-portal\n  policyTypes", "      app.kubernetes.io/name: agent-portl\n  policyTypes")], "podSelector matches no sipgw pod"),
    (SIDECAR, &[("        - port: 8000", "        - port: 8080")], "loopback only"),
    // Mounts.
    (SIDECAR, &[("\"/run/secrets/sipgw/app_secret\"", "\"/etc/secrets/app_secret\"")], "vendor.app_secret_file = /etc/secrets/app_secret is under no volumeMount"),
    (SHARED, &[("/run/secrets/sipgw-tls/tls.crt", "/etc/sipgw/tls/tls.crt")], "server.tls_cert_file = /etc/sipgw/tls/tls.crt"),
    (SHARED, &[("              - key: tls.key\n                path: tls.key\n", "")], "server.tls_key_file = /run/secrets/sipgw-tls/tls.key: volume \"tls\" provides no Secret item"),
    (SHARED, &[("                    - key: password\n                      path: redis_password\n", "")], "rate_limit.redis_password_file = /run/secrets/sipgw/redis_password: volume \"secrets\" provides no Secret item"),
    (SHARED, &[("mountPath: /run/secrets/sipgw-tls\n", "mountPath: /run/secrets/sipgw-tls\n              subPath: tls.crt\n")], "uses subPath"),
    (SHARED, &[(TLS_KEY, "")], "server.tls_key_file"),
    // Users.
    (SIDECAR, &[("        runAsNonRoot: true\n", "        runAsNonRoot: true\n        runAsUser: 65532\n")], "the pod securityContext sets runAsUser"),
    (SHARED, &[("        runAsNonRoot: true\n", "        runAsNonRoot: true\n        runAsUser: 65532\n")], "the pod securityContext sets runAsUser"),
    (SIDECAR, &[("            runAsUser: 65532\n", "")], "the sipgw container's securityContext.runAsUser is not 65532"),
    (SHARED, &[("            runAsNonRoot: true\n", "")], "the sipgw container's securityContext.runAsNonRoot is not true"),
    // Shutdown and replicas; without shutdown_grace_secs in the config its default (20) counts.
    (SHARED, &[("terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 10")], "terminationGracePeriodSeconds 10"),
    (SHARED, &[("terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 25")], "terminationGracePeriodSeconds 25 is not above the preStop sleep 5 + server.shutdown_grace_secs 20"),
    (SHARED, &[NO_DRAIN, ("terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 25")], "not above the preStop sleep 5 + server.shutdown_grace_secs 20"),
    (SHARED, &[("            preStop:\n              sleep:\n                seconds: 5\n", "            preStop: {}\n")], "no lifecycle.preStop.sleep"),
    (SIDECAR, &[("replicas: 1", "replicas: 3")], "not shared"),
    // Cleartext where passwords, tokens and the lockout state cross the pod network.
    (SHARED, &[(TLS_CERT, ""), (TLS_KEY, "")], "server.listen 0.0.0.0:8080 is not loopback but server.tls_cert_file is not set"),
    (SHARED, &[("\"rediss://redis.sipgw.svc.cluster.local:6380/0\"", "\"redis://redis.sipgw.svc.cluster.local:6379/0\""), ("    redis_ca_file = \"/run/secrets/sipgw/redis_ca.crt\"\n", "")], "rate_limit.redis_url is not rediss://"),
    (SHARED, &[("    redis_username = \"sipgw\"\n", ""), ("    redis_password_file = \"/run/secrets/sipgw/redis_password\"\n", "")], "rate_limit.redis_password_file is not set"),
];

#[test]
fn broken_manifests_are_caught() {
    for (name, edits, needle) in BROKEN {
        let problems = problems_after(name, edits);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{name} with {edits:?}: expected a problem mentioning {needle:?}, got {problems:#?}"
        );
    }
}

#[test]
fn the_documented_alternatives_pass() {
    // A sidecar's readiness is the whole pod's: /healthz or no readiness probe will do.
    assert_no_problems(
        "sidecar on /healthz",
        &problems_after(SIDECAR, &[(READYZ, HEALTHZ)]),
    );
    let text = manifest_text(SIDECAR);
    let start = text.find("          readinessProbe:\n").unwrap();
    let end = start + text[start..].find("          resources:\n").unwrap();
    let without = problems_after(SIDECAR, &[(&text[start..end], "")]);
    assert_no_problems("sidecar without a readinessProbe", &without);
    // 26 > 5 + the default drain 20.
    let grace = [
        NO_DRAIN,
        (
            "terminationGracePeriodSeconds: 45",
            "terminationGracePeriodSeconds: 26",
        ),
    ];
    assert_no_problems("grace 26, default drain", &problems_after(SHARED, &grace));
    // On loopback TLS stays optional.
    let loopback = [
        (TLS_CERT, ""),
        (TLS_KEY, ""),
        ("listen = \"0.0.0.0:8080\"", "listen = \"127.0.0.1:8080\""),
    ];
    let problems = problems_after(SHARED, &loopback);
    assert!(
        !problems.iter().any(|p| p.contains("tls_cert_file")),
        "{problems:#?}"
    );
}

#[track_caller]
fn assert_mentions(what: &str, text: &str, needles: &[&str]) {
    let missing: Vec<_> = needles.iter().filter(|n| !text.contains(*n)).collect();
    assert!(missing.is_empty(), "{what} does not mention {missing:?}");
}

#[test]
fn the_deploy_docs_say_what_the_manifests_do() {
    // The sidecar's readiness trade-off, in the probe's comment and in the docs.
    let text = manifest_text(SIDECAR);
    let comment = text
        .lines()
        .skip_while(|l| l.trim() != "readinessProbe:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let deploying = deploy_docs("deploying.md");
    let trade_off = [
        "whole pod",
        "not Ready",
        "/healthz",
        "sipgw_token_expires_in_seconds",
    ];
    assert_mentions("the readinessProbe comment", &comment, &trade_off);
    assert_mentions("docs/deploying.md", &deploying, &trade_off);
    // The shared service's clients: https, the names the certificate holds, the CA.
    let docs = parse(SHARED, &manifest_text(SHARED), &fresh_dir("docs"));
    let service = &of_kind(&docs, "Service").next().unwrap()["metadata"];
    let (name, namespace) = (service["name"].as_str(), service["namespace"].as_str());
    let host = format!("{}.{}.svc", name.unwrap(), namespace.unwrap());
    let cluster = format!("{host}.cluster.local");
    assert!(!deploying.contains(&format!("http://{host}")));
    let clients = [
        format!("https://{cluster}:8080/"),
        format!("`{host}`"),
        format!("`{cluster}`"),
    ];
    let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
    assert_mentions("docs/deploying.md", &deploying, &clients);
    assert_mentions(
        "\"Deploying\"",
        &deploying,
        &["must trust the CA", "sipgw-tls"],
    );
    let inbound = [
        "optional",
        "IP SAN `127.0.0.1`",
        "https://localhost:8080",
        "`#tls`",
        "`#mtls`",
        "client auth",
        "tls_client_ca_file",
    ];
    assert_mentions("docs/tls.md", &deploy_docs("tls.md"), &inbound);
}
