//! The deployment files in `deploy/` parsed and cross-checked against sipgw itself: the
//! config each ConfigMap embeds is loaded with the crate's own loader, and the probes,
//! ports, mounts, Services and NetworkPolicies must agree with it (`deploy_checks`). The
//! Dockerfile and the systemd unit are checked the same way. Every problem found is named
//! in the failure, and the tests also show that the checks catch broken manifests.

mod deploy_checks;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use deploy_checks::{
    IMAGE_CONFIG_PATH, KNOWN_KINDS, NONROOT_UID, check_manifest, is_under, kind, load_embedded,
    of_kind,
};
use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::Value;
use sipgw::config::{Config, FileConfig};
use yaml::{load_all, repo_path};

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");

/// Every `deploy/kubernetes/*.yaml`, with its documents.
fn manifests() -> Vec<(PathBuf, Vec<Value>)> {
    let dir = repo_path("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let docs = load_all(&path).unwrap_or_else(|e| panic!("{e}"));
            (path, docs)
        })
        .collect()
}

fn manifest(name: &str) -> Vec<Value> {
    load_all(&repo_path(&format!("deploy/kubernetes/{name}"))).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

/// A new empty directory; unique per call, since the tests run in parallel.
fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sipgw-deploy-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------
// Kubernetes

#[test]
fn every_manifest_document_is_a_known_kind() {
    let files = manifests();
    let names: Vec<String> = files
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["sidecar.yaml", "shared-service.yaml"] {
        assert!(
            names.contains(&expected.to_owned()),
            "deploy/kubernetes/{expected} is missing: {names:?}"
        );
    }
    for (path, docs) in &files {
        assert!(!docs.is_empty(), "{}: no YAML document", path.display());
        for (i, doc) in docs.iter().enumerate() {
            assert!(
                KNOWN_KINDS.contains(&kind(doc)),
                "{} document {}: apiVersion/kind {:?} is not one of {KNOWN_KINDS:?}",
                path.display(),
                i + 1,
                kind(doc)
            );
        }
    }
}

#[test]
fn every_manifest_agrees_with_its_embedded_config() {
    for (path, docs) in manifests() {
        let scratch = fresh_dir(&path.file_stem().unwrap().to_string_lossy());
        let problems = check_manifest(&docs, &scratch);
        assert_no_problems(&path.display().to_string(), &problems);
        // Each file deploys sipgw, with a NetworkPolicy in front of it.
        assert!(
            of_kind(&docs, "Deployment").count() >= 1,
            "{}: no Deployment",
            path.display()
        );
        assert!(
            of_kind(&docs, "NetworkPolicy").count() >= 1,
            "{}: no NetworkPolicy",
            path.display()
        );
    }
}

#[test]
fn the_sidecar_keeps_the_api_on_loopback_and_the_shared_service_exposes_it() {
    let sidecar = manifest("sidecar.yaml");
    let cm = of_kind(&sidecar, "ConfigMap")
        .next()
        .expect("sidecar.yaml has a ConfigMap");
    let (_, config) =
        load_embedded(cm["data"]["sipgw.toml"].as_str().unwrap(), &fresh_dir("lo")).unwrap();
    assert!(
        config.server.listen.ip().is_loopback(),
        "sidecar server.listen = {}",
        config.server.listen
    );
    assert_eq!(
        of_kind(&sidecar, "Service").count(),
        0,
        "a sidecar needs no Service"
    );

    let shared = manifest("shared-service.yaml");
    let cm = of_kind(&shared, "ConfigMap")
        .next()
        .expect("shared-service.yaml has a ConfigMap");
    let (_, config) = load_embedded(
        cm["data"]["sipgw.toml"].as_str().unwrap(),
        &fresh_dir("shared"),
    )
    .unwrap();
    assert!(
        config.server.listen.ip().is_unspecified(),
        "shared server.listen = {}",
        config.server.listen
    );
    assert!(
        config.server.tls.is_some(),
        "the shared service's API is not served over TLS"
    );
    assert_eq!(
        of_kind(&shared, "Service").count(),
        1,
        "the shared service has one Service"
    );
    let policy = of_kind(&shared, "NetworkPolicy").next().unwrap();
    let clients = &policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    assert_eq!(
        clients["sipgw-client"], "true",
        "API clients are the pods labelled sipgw-client=true"
    );
}

/// Replaces `from` by `to` in `file` and returns the problems the checks then find.
fn problems_after_edit(file: &str, from: &str, to: &str) -> Vec<String> {
    problems_after_edits(file, &[(from, to)])
}

/// Each edit replaces the first `from` by its `to`, in order.
fn problems_after_edits(file: &str, edits: &[(&str, &str)]) -> Vec<String> {
    let path = repo_path(&format!("deploy/kubernetes/{file}"));
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "{file} no longer contains {from:?}; update this test"
        );
        text = text.replacen(from, to, 1);
    }
    let scratch = fresh_dir("edit");
    let edited = scratch.join(file);
    std::fs::write(&edited, text).unwrap();
    let docs = load_all(&edited).unwrap_or_else(|e| panic!("{e}"));
    check_manifest(&docs, &scratch)
}

fn assert_caught(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem mentioning {needle:?}, got {problems:#?}"
    );
}

#[test]
fn a_typo_in_an_embedded_config_is_caught() {
    let problems = problems_after_edit("sidecar.yaml", "    admin_listen =", "    admin_lsiten =");
    assert_caught(&problems, "admin_lsiten");
    let problems = problems_after_edit(
        "shared-service.yaml",
        "shutdown_grace_secs = 20",
        "shutdown_grace_secs = \"20s\"",
    );
    assert_caught(&problems, "shutdown_grace_secs");
}

#[test]
fn probes_ports_and_mounts_that_disagree_with_the_config_are_caught() {
    // A readiness probe on the API port instead of the admin port.
    let problems = problems_after_edit(
        "shared-service.yaml",
        "              path: /readyz\n              port: admin",
        "              path: /readyz\n              port: api",
    );
    assert_caught(&problems, "readinessProbe port");
    // A liveness probe on a path the admin listener does not serve.
    assert_caught(
        &problems_after_edit(
            "sidecar.yaml",
            "path: /healthz\n              port: admin\n            periodSeconds: 10",
            "path: /health\n              port: admin\n            periodSeconds: 10",
        ),
        "livenessProbe path",
    );
    // The config moved away from the Secret mount.
    assert_caught(
        &problems_after_edit(
            "sidecar.yaml",
            "app_secret_file = \"/run/secrets/sipgw/app_secret\"",
            "app_secret_file = \"/etc/secrets/app_secret\"",
        ),
        "vendor.app_secret_file = /etc/secrets/app_secret is under no volumeMount",
    );
    // The admin listener moved to loopback, where kubelet cannot reach it.
    assert_caught(
        &problems_after_edit(
            "sidecar.yaml",
            "admin_listen = \"0.0.0.0:9090\"",
            "admin_listen = \"127.0.0.1:9090\"",
        ),
        "is loopback",
    );
    // The grace period below sipgw's drain.
    assert_caught(
        &problems_after_edit(
            "shared-service.yaml",
            "terminationGracePeriodSeconds: 45",
            "terminationGracePeriodSeconds: 10",
        ),
        "terminationGracePeriodSeconds 10",
    );
    // A sidecar scaled out on the memory backend.
    assert_caught(
        &problems_after_edit("sidecar.yaml", "replicas: 1", "replicas: 3"),
        "not shared",
    );
    // A root filesystem left writable.
    assert_caught(
        &problems_after_edit(
            "sidecar.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
        ),
        "readOnlyRootFilesystem",
    );
}

#[test]
fn a_shared_service_that_refuses_connections_during_rollouts_is_caught() {
    // No pause before SIGTERM: the listener closes while endpoints still route to the pod.
    let no_pause = problems_after_edit(
        "shared-service.yaml",
        "            preStop:\n              sleep:\n                seconds: 5\n",
        "            preStop: {}\n",
    );
    assert_caught(&no_pause, "no lifecycle.preStop.sleep");
    // exec needs a sleep binary the distroless image does not have.
    assert_caught(
        &problems_after_edit(
            "shared-service.yaml",
            "              sleep:\n                seconds: 5\n",
            "              exec:\n                command: [\"sleep\", \"5\"]\n",
        ),
        "lifecycle.preStop.exec",
    );
    // The grace must cover the pause plus the drain: 25 = 5 + 20 is not enough.
    assert_caught(
        &problems_after_edit(
            "shared-service.yaml",
            "terminationGracePeriodSeconds: 45",
            "terminationGracePeriodSeconds: 25",
        ),
        "terminationGracePeriodSeconds 25 is not above the preStop sleep 5 + server.shutdown_grace_secs 20",
    );
    // Without shutdown_grace_secs in the config its default (20) counts.
    let without = ("    shutdown_grace_secs = 20\n", "");
    let grace = |secs: u32| {
        let to = format!("terminationGracePeriodSeconds: {secs}");
        problems_after_edits(
            "shared-service.yaml",
            &[without, ("terminationGracePeriodSeconds: 45", &to)],
        )
    };
    assert_caught(
        &grace(25),
        "not above the preStop sleep 5 + server.shutdown_grace_secs 20",
    );
    assert_no_problems("grace 26, default drain", &grace(26));
}

#[test]
fn a_shared_redis_without_tls_or_password_is_caught() {
    let shared = "shared-service.yaml";
    let url = "redis_url = \"rediss://redis.sipgw.svc.cluster.local:6380/0\"";
    let ca = "    redis_ca_file = \"/run/secrets/sipgw/redis_ca.crt\"\n";
    // Cleartext to Redis.
    assert_caught(
        &problems_after_edits(
            shared,
            &[
                (
                    url,
                    "redis_url = \"redis://redis.sipgw.svc.cluster.local:6379/0\"",
                ),
                (ca, ""),
            ],
        ),
        "rate_limit.redis_url is not rediss://",
    );
    // No password (and so no user).
    assert_caught(
        &problems_after_edits(
            shared,
            &[
                ("    redis_username = \"sipgw\"\n", ""),
                (
                    "    redis_password_file = \"/run/secrets/sipgw/redis_password\"\n",
                    "",
                ),
            ],
        ),
        "rate_limit.redis_password_file is not set",
    );
    // The Secret volume without the password.
    assert_caught(
        &problems_after_edit(
            shared,
            "                    - key: password\n                      path: redis_password\n",
            "",
        ),
        "rate_limit.redis_password_file = /run/secrets/sipgw/redis_password: volume \"secrets\" provides no Secret item",
    );
}

#[test]
fn an_api_on_the_pod_network_without_tls_is_caught() {
    let shared = "shared-service.yaml";
    let cert = "    tls_cert_file = \"/run/secrets/sipgw-tls/tls.crt\"\n";
    let key = "    tls_key_file = \"/run/secrets/sipgw-tls/tls.key\"\n";
    // Plain HTTP on 0.0.0.0.
    assert_caught(
        &problems_after_edits(shared, &[(cert, ""), (key, "")]),
        "server.listen 0.0.0.0:8080 is not loopback but server.tls_cert_file is not set",
    );
    // The certificate where no volume puts it.
    assert_caught(
        &problems_after_edit(
            shared,
            "/run/secrets/sipgw-tls/tls.crt",
            "/etc/sipgw/tls/tls.crt",
        ),
        "server.tls_cert_file = /etc/sipgw/tls/tls.crt",
    );
    // The Secret volume without the key.
    assert_caught(
        &problems_after_edit(
            shared,
            "              - key: tls.key\n                path: tls.key\n",
            "",
        ),
        "server.tls_key_file = /run/secrets/sipgw-tls/tls.key: volume \"tls\" provides no Secret item",
    );
    // A subPath mount, which renewals never reach.
    assert_caught(
        &problems_after_edit(
            shared,
            "              mountPath: /run/secrets/sipgw-tls\n",
            "              mountPath: /run/secrets/sipgw-tls\n              subPath: tls.crt\n",
        ),
        "uses subPath",
    );
    // Certificate without key is refused by sipgw's own loader.
    assert_caught(&problems_after_edit(shared, key, ""), "server.tls_key_file");
    // On loopback (the sidecar) TLS stays optional.
    let loopback = problems_after_edits(
        shared,
        &[
            (cert, ""),
            (key, ""),
            ("listen = \"0.0.0.0:8080\"", "listen = \"127.0.0.1:8080\""),
        ],
    );
    assert!(
        !loopback.iter().any(|p| p.contains("tls_cert_file")),
        "TLS required on loopback: {loopback:#?}"
    );
}

#[test]
fn the_sidecars_readiness_trade_off_is_documented_and_both_choices_pass() {
    // Issue 6 asks for readiness on /readyz; the sidecar keeps it.
    let sidecar = manifest("sidecar.yaml");
    let deployment = of_kind(&sidecar, "Deployment").next().unwrap();
    let sipgw = deployment["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sipgw")
        .unwrap();
    assert_eq!(sipgw["readinessProbe"]["httpGet"]["path"], "/readyz");

    // The probe's comment says what it costs and what to do instead.
    let text = std::fs::read_to_string(repo_path("deploy/kubernetes/sidecar.yaml")).unwrap();
    let comment: String = text
        .lines()
        .skip_while(|l| l.trim() != "readinessProbe:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let deploying = readme_section("## Deploying");
    for needle in [
        "whole pod",
        "not Ready",
        "/healthz",
        "sipgw_token_expires_in_seconds",
    ] {
        assert!(
            comment.contains(needle),
            "sidecar.yaml's readinessProbe comment does not mention {needle:?}: {comment}"
        );
        assert!(
            deploying.contains(needle),
            "README \"Deploying\" does not mention {needle:?}"
        );
    }

    // Both documented alternatives pass the checks for a sidecar...
    let probe = "              path: /readyz\n              port: admin\n";
    assert_no_problems(
        "sidecar readiness on /healthz",
        &problems_after_edit(
            "sidecar.yaml",
            probe,
            "              path: /healthz\n              port: admin\n",
        ),
    );
    let start = text.find("          readinessProbe:\n").unwrap();
    let end = start + text[start..].find("          resources:\n").unwrap();
    assert_no_problems(
        "sidecar without a readinessProbe",
        &problems_after_edit("sidecar.yaml", &text[start..end], ""),
    );
    // ...but sipgw alone keeps /readyz, so that a replica that cannot serve leaves the
    // Service.
    assert_caught(
        &problems_after_edit(
            "shared-service.yaml",
            probe,
            "              path: /healthz\n              port: admin\n",
        ),
        "readinessProbe path \"/healthz\"",
    );
}

/// A `## ` section of the README, subsections included.
fn readme_section(heading: &str) -> String {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no {heading:?} section"));
    let rest = &readme[start + 1..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| i + heading.len());
    rest[..end].to_owned()
}

/// The YAML documents of a commented-out block: the lines from `first` up to a bare `#`,
/// with their `#   ` prefix removed.
fn commented_yaml(text: &str, first: &str) -> Vec<Value> {
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != first)
        .take_while(|l| l.trim() != "#")
        .map(|l| l.strip_prefix("#   ").unwrap_or_else(|| panic!("{l:?}")))
        .collect();
    assert!(!lines.is_empty(), "no commented block starting {first:?}");
    let file = fresh_dir("commented").join("block.yaml");
    std::fs::write(&file, lines.join("\n")).unwrap();
    load_all(&file).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_shared_services_certificate_and_client_url_agree_with_its_tls() {
    let text = std::fs::read_to_string(repo_path("deploy/kubernetes/shared-service.yaml")).unwrap();
    let docs = manifest("shared-service.yaml");
    let deployment = of_kind(&docs, "Deployment").next().unwrap();
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let tls = volumes
        .iter()
        .find(|v| v["secret"]["secretName"] == "sipgw-tls")
        .expect("a volume from the Secret sipgw-tls");
    let items: Vec<&str> = tls["secret"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(items, ["tls.crt", "tls.key"], "kubernetes.io/tls keys");

    // The cert-manager Certificate shown in the header makes that Secret, for the names
    // clients use.
    let certificate = &commented_yaml(&text, "#   apiVersion: cert-manager.io/v1")[0];
    assert_eq!(certificate["kind"], "Certificate");
    assert_eq!(certificate["metadata"]["namespace"], "sipgw");
    assert_eq!(certificate["spec"]["secretName"], "sipgw-tls");
    let service = of_kind(&docs, "Service").next().unwrap();
    let host = format!(
        "{}.{}.svc",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    let sans: Vec<&str> = certificate["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let cluster = format!("{host}.cluster.local");
    assert_eq!(sans, [host.as_str(), cluster.as_str()], "dnsNames");

    // Clients are told https, in the manifest and in the README, with the SANs and the CA.
    let url = format!("https://{cluster}:8080/");
    let plain = format!("http://{host}");
    let deploying = readme_section("## Deploying");
    for (what, doc) in [("shared-service.yaml", &text), ("README", &deploying)] {
        assert!(doc.contains(&url), "{what} does not give clients {url}");
        assert!(!doc.contains(&plain), "{what} still gives clients {plain}");
    }
    for needle in [
        format!("`{host}`"),
        format!("`{cluster}`"),
        "must trust the CA".to_owned(),
        "sipgw-tls".to_owned(),
    ] {
        assert!(
            deploying.contains(&needle),
            "README \"Deploying\" does not mention {needle}"
        );
    }
}

/// `text` with the lines marked `#MARKER ` (for each marker) uncommented.
fn uncomment(text: &str, markers: &[&str]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        match markers
            .iter()
            .find_map(|m| body.strip_prefix(&format!("#{m} ")))
        {
            Some(rest) => out.push_str(&format!("{indent}{rest}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_sidecars_tls_variants_pass_the_checks() {
    let text = std::fs::read_to_string(repo_path("deploy/kubernetes/sidecar.yaml")).unwrap();
    let volume = |docs: &[Value], name: &str| -> Value {
        let deployment = of_kind(docs, "Deployment").next().unwrap();
        deployment["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    let mut tls_docs = Vec::new();
    for markers in [&["tls"][..], &["tls", "mtls"]] {
        let edited = uncomment(&text, markers);
        for marker in markers {
            assert!(
                text.contains(&format!("#{marker} ")),
                "sidecar.yaml has no #{marker} lines"
            );
        }
        let scratch = fresh_dir("tls-variant");
        let file = scratch.join("sidecar.yaml");
        std::fs::write(&file, &edited).unwrap();
        let docs = load_all(&file).unwrap_or_else(|e| panic!("{markers:?}: {e}"));
        assert_no_problems(
            &format!("sidecar.yaml with the {markers:?} lines"),
            &check_manifest(&docs, &scratch),
        );
        let cm = of_kind(&docs, "ConfigMap").next().unwrap();
        let (_, config) = load_embedded(cm["data"]["sipgw.toml"].as_str().unwrap(), &scratch)
            .unwrap_or_else(|e| panic!("{e}"));
        let tls = config
            .server
            .tls
            .unwrap_or_else(|| panic!("{markers:?}: TLS is not on"));
        assert_eq!(
            tls.client_ca_file.is_some(),
            markers.contains(&"mtls"),
            "{markers:?}: client certificates asked for"
        );
        assert!(config.server.listen.ip().is_loopback());
        tls_docs = docs;
    }

    // The Certificates in the header make the Secrets those volumes name, for the address
    // the app calls, from one CA (which signs the client certificates sipgw accepts).
    let certificates = commented_yaml(&text, "#   apiVersion: cert-manager.io/v1");
    let [server, client] = &certificates[..] else {
        panic!("expected two commented Certificates: {certificates:#?}")
    };
    for cert in [server, client] {
        assert_eq!(cert["kind"], "Certificate");
        assert_eq!(cert["metadata"]["namespace"], "contact-centre");
    }
    assert_eq!(
        server["spec"]["secretName"],
        volume(&tls_docs, "tls")["secret"]["secretName"]
    );
    assert_eq!(
        server["spec"]["secretName"],
        volume(&tls_docs, "sipgw-ca")["secret"]["secretName"]
    );
    assert_eq!(server["spec"]["ipAddresses"][0], "127.0.0.1");
    assert_eq!(
        client["spec"]["secretName"],
        volume(&tls_docs, "sipgw-client")["secret"]["secretName"]
    );
    assert!(
        client["spec"]["usages"]
            .as_array()
            .unwrap()
            .contains(&Value::from("client auth")),
        "the client Certificate lacks usage client auth"
    );
    assert_eq!(server["spec"]["issuerRef"], client["spec"]["issuerRef"]);

    // The README says when and how.
    let inbound = readme_section("## Inbound TLS");
    for needle in [
        "optional",
        "IP SAN `127.0.0.1`",
        "https://localhost:8080",
        "`#tls`",
        "`#mtls`",
        "client auth",
        "tls_client_ca_file",
    ] {
        assert!(
            inbound.contains(needle),
            "README \"Inbound TLS\" does not mention {needle:?}"
        );
    }
}

#[test]
fn a_uid_set_for_the_whole_pod_is_caught() {
    // On the pod, runAsUser would also make the app container run as 65532.
    for file in ["sidecar.yaml", "shared-service.yaml"] {
        assert_caught(
            &problems_after_edit(
                file,
                "      securityContext:\n        runAsNonRoot: true\n",
                "      securityContext:\n        runAsNonRoot: true\n        runAsUser: 65532\n",
            ),
            "the pod securityContext sets runAsUser",
        );
    }
    // The sipgw container must set its uid itself, not inherit it.
    assert_caught(
        &problems_after_edit("sidecar.yaml", "            runAsUser: 65532\n", ""),
        "the sipgw container's securityContext.runAsUser is not 65532",
    );
    assert_caught(
        &problems_after_edit(
            "shared-service.yaml",
            "            runAsNonRoot: true\n",
            "",
        ),
        "the sipgw container's securityContext.runAsNonRoot is not true",
    );
}

#[test]
fn services_and_network_policies_that_miss_the_pods_are_caught() {
    assert_caught(
        &problems_after_edit(
            "shared-service.yaml",
            "      targetPort: api",
            "      targetPort: 8081",
        ),
        "no port targets the API port 8080",
    );
    // The policy selecting other pods than the Deployment's.
    assert_caught(
        &problems_after_edit(
            "sidecar.yaml",
            "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: agent-portal",
            "  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: agent-portl",
        ),
        "podSelector matches no sipgw Deployment",
    );
    // The sidecar's loopback API port opened in the policy.
    assert_caught(
        &problems_after_edit(
            "sidecar.yaml",
            "        - port: 8000",
            "        - port: 8080",
        ),
        "loopback only",
    );
}

// ---------------------------------------------------------------------------------------
// The Dockerfile

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile_instructions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_path("deploy/Dockerfile")).unwrap();
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (op, rest) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((op.to_ascii_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The example config, validated (its app secret named by an environment variable).
fn example_config() -> Config {
    let file: FileConfig = Figment::from(Toml::file_exact(repo_path("config/sipgw.example.toml")))
        .extract()
        .expect("config/sipgw.example.toml loads");
    Config::from_file(file, |_| Some("x".into())).expect("config/sipgw.example.toml validates")
}

#[test]
fn the_dockerfile_exposes_the_configs_ports_and_runs_as_nonroot() {
    let instructions = dockerfile_instructions();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(
        stages.len() >= 2,
        "the Dockerfile is not multi-stage: {instructions:?}"
    );
    let last = &instructions[*stages.last().unwrap()..];
    let all = |op: &str| -> Vec<&str> {
        last.iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
            .collect()
    };

    let config = example_config();
    let exposed: BTreeSet<u16> = all("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|p| {
            p.trim_end_matches("/tcp")
                .parse()
                .expect("EXPOSE takes port numbers")
        })
        .collect();
    let configured = BTreeSet::from([
        config.server.listen.port(),
        config.server.admin_listen.port(),
    ]);
    assert_eq!(
        exposed, configured,
        "EXPOSE vs the example config's listen and admin_listen ports"
    );

    let user = all("USER");
    let user = user.last().expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert_eq!(
        uid,
        NONROOT_UID.to_string(),
        "USER {user} is not the numeric nonroot user"
    );
    assert!(
        !instructions.iter().any(|(op, _)| op == "HEALTHCHECK"),
        "the Dockerfile has a HEALTHCHECK; Kubernetes probes do that"
    );
    assert_eq!(
        all("ENTRYPOINT"),
        [r#"["/usr/local/bin/sipgw"]"#],
        "ENTRYPOINT"
    );
    assert_eq!(
        all("CMD"),
        [format!(r#"["serve", "--config", "{IMAGE_CONFIG_PATH}"]"#)],
        "CMD"
    );

    // The builder's Debian release is the runtime's, so the glibc the binary was linked
    // against is the one it runs with.
    let from = |i: usize| {
        instructions[i]
            .1
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let builder = from(stages[0]);
    let runtime = from(*stages.last().unwrap());
    assert!(
        builder.starts_with("rust:1.95"),
        "builder {builder} is not Rust 1.95"
    );
    assert!(
        runtime.starts_with("gcr.io/distroless/cc-"),
        "runtime {runtime} is not distroless/cc"
    );
    assert!(
        runtime.ends_with(":nonroot"),
        "runtime {runtime} is not the nonroot variant"
    );
    let release = [("bookworm", "debian12"), ("trixie", "debian13")]
        .into_iter()
        .find(|(codename, _)| builder.ends_with(codename))
        .unwrap_or_else(|| panic!("builder {builder} names no known Debian release"));
    assert!(
        runtime.contains(&format!("cc-{}:", release.1)),
        "builder {builder} ({}) and runtime {runtime} are different Debian releases",
        release.0
    );
    let build = instructions
        .iter()
        .find(|(op, a)| op == "RUN" && a.contains("cargo build"))
        .expect("a RUN cargo build");
    for flag in [
        "--release",
        "--locked",
        "--no-default-features",
        "--bin sipgw",
    ] {
        assert!(
            build.1.contains(flag),
            "cargo build without {flag}: {}",
            build.1
        );
    }
    let ignore = std::fs::read_to_string(repo_path(".dockerignore")).expect(".dockerignore");
    for entry in ["target", ".git"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == entry),
            ".dockerignore does not hold {entry}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The systemd unit

/// `[Section]` → (key, value) in order; a key may repeat.
fn unit_entries(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        sections
            .entry(section.clone())
            .or_default()
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
    sections
}

fn unit_text() -> String {
    std::fs::read_to_string(repo_path("deploy/systemd/sipgw.service")).unwrap()
}

#[test]
fn the_systemd_unit_is_hardened() {
    let sections = unit_entries(&unit_text());
    let service = sections.get("Service").expect("a [Service] section");
    let values = |key: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let mut missing = Vec::new();
    for (key, want) in [
        ("User", "sipgw"),
        ("Group", "sipgw"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("Restart", "on-failure"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("StateDirectory", "sipgw"),
    ] {
        if !values(key).contains(&want) {
            missing.push(format!("{key}={want} (has {:?})", values(key)));
        }
    }
    assert!(missing.is_empty(), "sipgw.service lacks: {missing:#?}");
    assert_eq!(
        values("ReadWritePaths"),
        ["/var/lib/sipgw"],
        "ReadWritePaths"
    );
    assert!(
        values("ExecStart")
            .iter()
            .any(|e| e.starts_with("/usr/local/bin/sipgw serve --config ")),
        "ExecStart does not run sipgw serve --config: {:?}",
        values("ExecStart")
    );
    // TimeoutStopSec above the example config's drain, or systemd kills sipgw mid-drain.
    let stop: u64 = values("TimeoutStopSec")
        .last()
        .expect("TimeoutStopSec is set")
        .parse()
        .expect("TimeoutStopSec in plain seconds");
    let drain = example_config().server.limits.shutdown_grace.as_secs();
    assert!(
        stop > drain,
        "TimeoutStopSec {stop} is not above shutdown_grace_secs {drain}"
    );
}

/// Runs `sipgw check-config` on the example config with the unit's `SIPGW__*` variables,
/// `%d` (the credentials directory) pointing at test files named like the credentials.
fn check_config_with_unit(unit: &str, credentials: &Path) -> std::process::Output {
    let sections = unit_entries(unit);
    let service = &sections["Service"];
    for (key, value) in service {
        if key == "LoadCredential" {
            let id = value.split(':').next().unwrap();
            let contents = if id.contains("hmac") {
                "0123456789abcdef0123456789abcdef\n"
            } else {
                "unit-test-app-secret\n"
            };
            std::fs::write(credentials.join(id), contents).unwrap();
        }
    }
    let mut command = Command::new(SIPGW);
    command
        .args(["check-config", "--config"])
        .arg(repo_path("config/sipgw.example.toml"));
    // Only the unit's overrides: none from the environment running the tests.
    for (name, _) in std::env::vars() {
        if name.starts_with("SIPGW") {
            command.env_remove(name);
        }
    }
    command.env("SIPGW_APP_SECRET", "only-used-if-the-unit-sets-no-file");
    for (key, value) in service {
        if key != "Environment" {
            continue;
        }
        let (name, value) = value.split_once('=').expect("Environment=NAME=VALUE");
        assert!(
            !value.contains(char::is_whitespace),
            "one assignment per Environment= line: {value}"
        );
        command.env(
            name,
            value.replace("%d", &credentials.display().to_string()),
        );
    }
    command.output().unwrap()
}

#[test]
fn the_systemd_units_overrides_name_real_config_keys() {
    let unit = unit_text();
    let credentials = fresh_dir("credentials");
    let output = check_config_with_unit(&unit, &credentials);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sipgw check-config with the unit's environment failed: {stderr}"
    );
    // The effective config is what the unit meant: the secrets from the credentials.
    let effective: FileConfig = toml::from_str(&stdout).expect("check-config prints TOML");
    let cred = |id: &str| credentials.join(id).display().to_string();
    assert_eq!(
        effective.vendor.app_secret_file,
        Some(cred("app-secret")),
        "vendor.app_secret_file"
    );
    assert_eq!(
        effective.audit.hmac_key_file,
        Some(cred("audit-hmac-key")),
        "audit.hmac_key_file"
    );
    assert!(
        is_under(&effective.audit.path, "/var/lib/sipgw"),
        "audit.path {} is outside ReadWritePaths /var/lib/sipgw",
        effective.audit.path
    );
    // Every credential is used, and every %d path is a credential.
    let sections = unit_entries(&unit);
    let service = &sections["Service"];
    let ids: BTreeSet<&str> = service
        .iter()
        .filter(|(k, _)| k == "LoadCredential")
        .map(|(_, v)| v.split(':').next().unwrap())
        .collect();
    let used: BTreeSet<&str> = service
        .iter()
        .filter(|(k, _)| k == "Environment")
        .filter_map(|(_, v)| v.split_once("=%d/").map(|(_, id)| id))
        .collect();
    assert_eq!(
        ids, used,
        "LoadCredential ids vs %d/... paths in Environment="
    );
    assert!(
        !stdout.contains("unit-test-app-secret"),
        "check-config printed the secret"
    );

    // And the check has teeth: a misspelt key is refused, naming it.
    let typo = unit.replace("SIPGW__AUDIT__HMAC_KEY_FILE", "SIPGW__AUDIT__HMAC_KEYFILE");
    let output = check_config_with_unit(&typo, &fresh_dir("credentials-typo"));
    assert_eq!(
        output.status.code(),
        Some(2),
        "a misspelt override must fail check-config"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("hmac_keyfile"),
        "the error names the misspelt key: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
