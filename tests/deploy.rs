//! The deployment files in `deploy/` against sipgw itself, cut to what can break a
//! deployment: each Kubernetes overlay, rendered by `kubectl kustomize` as `kubectl apply
//! -k` would, embeds a config that loads with sipgw's own loader; ports, probes, mounts,
//! users, the PodMonitor and the PodDisruptionBudget agree between config, manifests,
//! Dockerfile and systemd unit (`deploy/checks.rs`); no secret appears inline; the unit's
//! `SIPGW__*` overrides go through the real binary. Each kept check is shown to catch a
//! broken manifest.

#[path = "deploy/checks.rs"]
mod checks;
mod common;
#[path = "deploy/image_and_unit.rs"]
mod image_and_unit;
#[path = "deploy/kustomize.rs"]
mod kustomize;
mod yaml;

use std::path::Path;

use checks::{check_manifest, load_embedded, of_kind, sipgw_container, sipgw_env};
use common::fresh_dir;
use figment::Figment;
use figment::providers::{Format, Toml};
use kustomize::{Edit, SHARED, SIDECAR, copy_tree, render, source, tree_problems};
use serde_json::Value;
use sipgw::config::{Config, FileConfig};
use yaml::repo_path;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");

/// A page of the deployment docs (`docs/deploying.md`, `docs/tls.md`): the one place that
/// knows where they live.
fn deploy_docs(page: &str) -> String {
    let path = repo_path(&format!("docs/{page}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The problems the checks find in `overlay` rendered after `edits`.
fn problems_after(overlay: &str, edits: &[Edit]) -> Vec<String> {
    let rendered = render(overlay, &[], edits);
    check_manifest(&rendered.docs, &rendered.scratch)
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}

/// The config the sipgw container of `docs` runs with: the ConfigMap's file under the
/// container's `SIPGW__*` variables.
fn embedded(docs: &[Value], scratch: &Path) -> Config {
    let map = of_kind(docs, "ConfigMap").next().expect("a ConfigMap");
    let toml = map["data"]["sipgw.toml"].as_str().expect("data sipgw.toml");
    let deployment = of_kind(docs, "Deployment").next().expect("a Deployment");
    let (container, _) = sipgw_container(&deployment["spec"]["template"]["spec"]).unwrap();
    load_embedded(toml, &sipgw_env(container), scratch)
        .unwrap_or_else(|e| panic!("{e}"))
        .1
}

// ---------------------------------------------------------------------------------------
// Kubernetes

const BASE: &str = "base/deployment.yaml";
const MONITOR: &str = "base/podmonitor.yaml";
const SIDECAR_TOML: &str = "overlays/sidecar/sipgw.toml";
const SIDECAR_APP: &str = "overlays/sidecar/app.yaml";
const NATIVE: &str = "overlays/sidecar/native-sidecar.yaml";
const SIDECAR_POLICY: &str = "overlays/sidecar/networkpolicy.yaml";
const SIDECAR_TLS: &str = "overlays/sidecar/tls.yaml";
const SHARED_TOML: &str = "overlays/shared-service/sipgw.toml";
const SHARED_PATCH: &str = "overlays/shared-service/deployment.yaml";
const SHARED_SERVICE: &str = "overlays/shared-service/service.yaml";
const SHARED_BUDGET: &str = "overlays/shared-service/poddisruptionbudget.yaml";
const SHARED_ACCOUNT: &str = "overlays/shared-service/serviceaccount.yaml";
const SHARED_KUSTOMIZATION: &str = "overlays/shared-service/kustomization.yaml";

#[test]
fn each_overlay_agrees_with_the_config_it_embeds() {
    for overlay in [SIDECAR, SHARED] {
        let rendered = render(overlay, &[], &[]);
        let docs = &rendered.docs;
        assert_no_problems(overlay, &check_manifest(docs, &rendered.scratch));
        for kind in ["ConfigMap", "Deployment", "NetworkPolicy", "PodMonitor"] {
            assert_eq!(of_kind(docs, kind).count(), 1, "{overlay}: one {kind}");
        }
        let namespaces: Vec<&Value> = docs.iter().map(|d| &d["metadata"]["namespace"]).collect();
        assert!(
            namespaces
                .iter()
                .all(|n| *n == namespaces[0] && n.is_string()),
            "{overlay}: not all in one namespace: {namespaces:?}"
        );
    }
    // The sidecar keeps the API on loopback; the shared service exposes it, over TLS, to
    // the pods labelled sipgw-client=true, with a PodDisruptionBudget for its replicas.
    let sidecar = render(SIDECAR, &[], &[]);
    let config = embedded(&sidecar.docs, &sidecar.scratch);
    assert!(config.server.listen.ip().is_loopback());
    for kind in ["Service", "PodDisruptionBudget"] {
        assert_eq!(of_kind(&sidecar.docs, kind).count(), 0, "sidecar: a {kind}");
    }
    let shared = render(SHARED, &[], &[]);
    let config = embedded(&shared.docs, &shared.scratch);
    assert!(config.server.listen.ip().is_unspecified());
    assert!(
        config.server.tls.is_some(),
        "the shared API is not served over TLS"
    );
    for kind in ["Service", "PodDisruptionBudget", "ServiceAccount"] {
        assert_eq!(of_kind(&shared.docs, kind).count(), 1, "shared: one {kind}");
    }
    let policy = of_kind(&shared.docs, "NetworkPolicy").next().unwrap();
    let clients = &policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
    assert_eq!(clients["sipgw-client"], "true");
}

#[test]
fn the_sidecars_tls_variants_agree_too() {
    // Fluent Bit too: the patches combine.
    for markers in [
        &["tls"][..],
        &["tls", "mtls"],
        &["tls", "mtls", "fluentbit"],
    ] {
        let rendered = render(SIDECAR, markers, &[]);
        let problems = check_manifest(&rendered.docs, &rendered.scratch);
        assert_no_problems(&format!("{markers:?}"), &problems);
        let config = embedded(&rendered.docs, &rendered.scratch);
        let tls = config
            .server
            .tls
            .unwrap_or_else(|| panic!("{markers:?}: no TLS"));
        let mtls = markers.contains(&"mtls");
        assert_eq!(tls.client_ca_file.is_some(), mtls, "{markers:?}");
        assert!(config.server.listen.ip().is_loopback());
        // The app is told to call https.
        let deployment = of_kind(&rendered.docs, "Deployment").next().unwrap();
        let app = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(app["env"][0]["value"], "https://127.0.0.1:8080", "{app}");
    }
    // The TLS keys come from the container's environment, and the checks read it: a
    // misspelt variable is an unknown key, a moved mount leaves the certificate unmounted.
    let typo = (
        SIDECAR_TLS,
        "SIPGW__SERVER__TLS_CERT_FILE",
        "SIPGW__SERVER__TLS_CERT_FILES",
    );
    let moved = (
        SIDECAR_TLS,
        "mountPath: /run/secrets/sipgw-tls",
        "mountPath: /run/secrets/tls",
    );
    for (edit, needle) in [
        (typo, "tls_cert_files"),
        (
            moved,
            "server.tls_cert_file = /run/secrets/sipgw-tls/tls.crt is under no volumeMount",
        ),
    ] {
        let rendered = render(SIDECAR, &["tls"], &[edit]);
        let problems = check_manifest(&rendered.docs, &rendered.scratch);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{edit:?}: expected {needle:?} in {problems:#?}"
        );
    }
}

const READYZ: &str = "              path: /readyz\n              port: admin\n";
const HEALTHZ: &str = "              path: /healthz\n              port: admin\n";
const TLS_CERT: &str = "tls_cert_file = \"/run/secrets/sipgw-tls/tls.crt\"\n";
const TLS_KEY: &str = "tls_key_file = \"/run/secrets/sipgw-tls/tls.key\"\n";
const NO_DRAIN: Edit = (SHARED_TOML, "shutdown_grace_secs = 20\n", "");
const GRACE: &str = "terminationGracePeriodSeconds: 45";

/// Overlays broken one way each: (overlay, edits, a problem the checks must name).
#[rustfmt::skip]
const BROKEN: &[(&str, &[Edit], &str)] = &[
    // The embedded config, through sipgw's loader.
    (SIDECAR, &[(SIDECAR_TOML, "admin_listen =", "admin_lsiten =")], "admin_lsiten"),
    (SHARED, &[(SHARED_TOML, "shutdown_grace_secs = 20", "shutdown_grace_secs = \"20s\"")], "shutdown_grace_secs"),
    // Ports and probes.
    (SIDECAR, &[(SIDECAR_TOML, "admin_listen = \"0.0.0.0:9090\"", "admin_listen = \"127.0.0.1:9090\"")], "is loopback"),
    (SHARED, &[(BASE, READYZ, "              path: /readyz\n              port: api\n")], "readinessProbe port"),
    (SHARED, &[(BASE, READYZ, HEALTHZ)], "readinessProbe path \"/healthz\""),
    (SIDECAR, &[(BASE, "path: /healthz\n              port: admin\n            periodSeconds: 10", "path: /health\n              port: admin\n            periodSeconds: 10")], "livenessProbe path"),
    (SHARED, &[(SHARED_SERVICE, "      targetPort: api", "      targetPort: 8081")], "no port targets the API port 8080"),
    (SIDECAR, &[(SIDECAR_POLICY, "      app.kubernetes.io/name: agent-portal\n  policyTypes", "      app.kubernetes.io/name: agent-portl\n  policyTypes")], "podSelector matches no sipgw pod"),
    (SIDECAR, &[(SIDECAR_POLICY, "        - port: 8000", "        - port: 8080")], "loopback only"),
    // Mounts.
    (SIDECAR, &[(SIDECAR_TOML, "\"/run/secrets/sipgw/app_secret\"", "\"/etc/secrets/app_secret\"")], "vendor.app_secret_file = /etc/secrets/app_secret is under no volumeMount"),
    (SHARED, &[(SHARED_TOML, "/run/secrets/sipgw-tls/tls.crt", "/etc/sipgw/tls/tls.crt")], "server.tls_cert_file = /etc/sipgw/tls/tls.crt"),
    (SHARED, &[(SHARED_PATCH, "              - key: tls.key\n                path: tls.key\n", "")], "server.tls_key_file = /run/secrets/sipgw-tls/tls.key: volume \"tls\" provides no Secret item"),
    (SHARED, &[(SHARED_PATCH, "              - key: password\n                path: password\n", "")], "rate_limit.redis_password_file = /run/secrets/sipgw-redis/password: volume \"redis\" provides no Secret item"),
    (SHARED, &[(SHARED_PATCH, "mountPath: /run/secrets/sipgw-tls\n", "mountPath: /run/secrets/sipgw-tls\n              subPath: tls.crt\n")], "uses subPath"),
    (SHARED, &[(SHARED_TOML, TLS_KEY, "")], "server.tls_key_file"),
    // Users and the API token.
    (SIDECAR, &[(BASE, "        runAsNonRoot: true\n", "        runAsNonRoot: true\n        runAsUser: 65532\n")], "the pod securityContext sets runAsUser"),
    (SHARED, &[(BASE, "        runAsNonRoot: true\n", "        runAsNonRoot: true\n        runAsUser: 65532\n")], "the pod securityContext sets runAsUser"),
    (SIDECAR, &[(BASE, "            runAsUser: 65532\n", "")], "the sipgw container's securityContext.runAsUser is not 65532"),
    (SHARED, &[(BASE, "            runAsNonRoot: true\n", "")], "the sipgw container's securityContext.runAsNonRoot is not true"),
    (SIDECAR, &[(BASE, "automountServiceAccountToken: false", "automountServiceAccountToken: true")], "the pod's automountServiceAccountToken is not false"),
    (SHARED, &[(SHARED_ACCOUNT, "automountServiceAccountToken: false", "automountServiceAccountToken: true")], "ServiceAccount sipgw: automountServiceAccountToken is not false"),
    (SHARED, &[(SHARED_PATCH, "serviceAccountName: sipgw", "serviceAccountName: default")], "serviceAccountName default is no ServiceAccount"),
    // Shutdown and replicas; without shutdown_grace_secs in the config its default (20) counts.
    (SHARED, &[(BASE, GRACE, "terminationGracePeriodSeconds: 10")], "terminationGracePeriodSeconds 10"),
    (SHARED, &[(BASE, GRACE, "terminationGracePeriodSeconds: 25")], "terminationGracePeriodSeconds 25 is not above the preStop sleep 5 + server.shutdown_grace_secs 20"),
    (SHARED, &[NO_DRAIN, (BASE, GRACE, "terminationGracePeriodSeconds: 25")], "not above the preStop sleep 5 + server.shutdown_grace_secs 20"),
    (SHARED, &[(SHARED_PATCH, "            preStop:\n              sleep:\n                seconds: 5\n", "            preStop: {}\n")], "no lifecycle.preStop.sleep"),
    (SIDECAR, &[(SIDECAR_APP, "replicas: 1", "replicas: 3")], "not shared"),
    (SIDECAR, &[(NATIVE, "- op: add\n  path: /spec/template/spec/initContainers/0/restartPolicy\n  value: Always\n", "")], "sipgw is an init container without restartPolicy: Always"),
    // The PodMonitor and the PodDisruptionBudget.
    (SIDECAR, &[(MONITOR, "    - port: admin", "    - port: metrics")], "port \"metrics\" is not the name of the admin port 9090"),
    (SHARED, &[(MONITOR, "      app.kubernetes.io/component: sipgw", "      app.kubernetes.io/component: gateway")], "no PodMonitor scrapes them"),
    (SHARED, &[(MONITOR, "      path: /metrics", "      path: /stats")], "path \"/stats\" is not /metrics"),
    (SHARED, &[(SHARED_BUDGET, "      app.kubernetes.io/name: sipgw", "      app.kubernetes.io/name: sipgw-old")], "PodDisruptionBudget \"sipgw\": its selector matches no sipgw pod"),
    (SHARED, &[(SHARED_BUDGET, "maxUnavailable: 1", "maxUnavailable: 2")], "every replica may be evicted at once"),
    (SHARED, &[(SHARED_BUDGET, "maxUnavailable: 1", "minAvailable: 2")], "no pod may be evicted, drains hang"),
    (SHARED, &[(SHARED_KUSTOMIZATION, "  - poddisruptionbudget.yaml\n", "")], "2 replicas and no PodDisruptionBudget"),
    // Cleartext where passwords, tokens and the lockout state cross the pod network.
    (SHARED, &[(SHARED_TOML, TLS_CERT, ""), (SHARED_TOML, TLS_KEY, "")], "server.listen 0.0.0.0:8080 is not loopback but server.tls_cert_file is not set"),
    (SHARED, &[(SHARED_TOML, "\"rediss://redis.sipgw.svc.cluster.local:6380/0\"", "\"redis://redis.sipgw.svc.cluster.local:6379/0\""), (SHARED_TOML, "redis_ca_file = \"/run/secrets/sipgw-redis/ca.crt\"\n", "")], "rate_limit.redis_url is not rediss://"),
    (SHARED, &[(SHARED_TOML, "redis_username = \"sipgw\"\n", ""), (SHARED_TOML, "redis_password_file = \"/run/secrets/sipgw-redis/password\"\n", "")], "rate_limit.redis_password_file is not set"),
];

#[test]
fn broken_manifests_are_caught() {
    for (overlay, edits, needle) in BROKEN {
        let problems = problems_after(overlay, edits);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{overlay} with {edits:?}: expected a problem mentioning {needle:?}, got {problems:#?}"
        );
    }
}

#[test]
fn the_documented_alternatives_pass() {
    // A sidecar's readiness is the whole pod's: /healthz or no readiness probe will do.
    assert_no_problems(
        "sidecar on /healthz",
        &problems_after(SIDECAR, &[(BASE, READYZ, HEALTHZ)]),
    );
    let text = source(BASE);
    let start = text.find("          readinessProbe:\n").unwrap();
    let end = start + text[start..].find("          resources:\n").unwrap();
    let without = problems_after(SIDECAR, &[(BASE, &text[start..end], "")]);
    assert_no_problems("sidecar without a readinessProbe", &without);
    // 26 > 5 + the default drain 20.
    let grace = [NO_DRAIN, (BASE, GRACE, "terminationGracePeriodSeconds: 26")];
    assert_no_problems("grace 26, default drain", &problems_after(SHARED, &grace));
    // On loopback TLS stays optional.
    let loopback = [
        (SHARED_TOML, TLS_CERT, ""),
        (SHARED_TOML, TLS_KEY, ""),
        (
            SHARED_TOML,
            "listen = \"0.0.0.0:8080\"",
            "listen = \"127.0.0.1:8080\"",
        ),
    ];
    let problems = problems_after(SHARED, &loopback);
    assert!(
        !problems.iter().any(|p| p.contains("tls_cert_file")),
        "{problems:#?}"
    );
    // minAvailable: 1 of 2 is as good as maxUnavailable: 1.
    let min = [(SHARED_BUDGET, "maxUnavailable: 1", "minAvailable: 1")];
    assert_no_problems("minAvailable 1", &problems_after(SHARED, &min));
}

/// Without kubectl: every file under deploy/kubernetes is valid YAML (or a config that
/// sipgw loads), is named by a kustomization, and every file a kustomization names exists.
#[test]
fn the_kustomize_tree_holds_together_without_kubectl() {
    assert_no_problems(
        "deploy/kubernetes",
        &tree_problems(&repo_path("deploy/kubernetes")),
    );
    // A stale file, a missing one and a bad config, each caught.
    let copy = fresh_dir("tree").join("kubernetes");
    copy_tree(&repo_path("deploy/kubernetes"), &copy);
    std::fs::write(copy.join("overlays/sidecar/old.yaml"), "kind: ConfigMap\n").unwrap();
    std::fs::remove_file(copy.join(SHARED_BUDGET)).unwrap();
    let toml = std::fs::read_to_string(copy.join(SIDECAR_TOML)).unwrap();
    std::fs::write(
        copy.join(SIDECAR_TOML),
        toml.replace("app_key =", "app_kee ="),
    )
    .unwrap();
    let problems = tree_problems(&copy);
    for needle in [
        "overlays/sidecar/old.yaml is named by no kustomization",
        "overlays/shared-service/kustomization.yaml names poddisruptionbudget.yaml, which does not exist",
        "overlays/sidecar/sipgw.toml: ",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "expected {needle:?} in {problems:#?}"
        );
    }
}

#[test]
fn an_old_kubectl_is_refused_with_a_reason() {
    let old = r#"{"clientVersion": {"gitVersion": "v1.20.2"}}"#;
    let error = kustomize::check_kustomize_version(old).unwrap_err();
    assert!(
        error.contains("v1.20.2") && error.contains("no kustomize version"),
        "{error}"
    );
    let v4 = r#"{"clientVersion": {"gitVersion": "v1.26.0"}, "kustomizeVersion": "v4.5.7"}"#;
    let error = kustomize::check_kustomize_version(v4).unwrap_err();
    assert!(error.contains("v4.5.7"), "{error}");
    let v5 = r#"{"clientVersion": {"gitVersion": "v1.32.4"}, "kustomizeVersion": "v5.5.0"}"#;
    assert_eq!(kustomize::check_kustomize_version(v5), Ok(()));
}

#[track_caller]
fn assert_mentions(what: &str, text: &str, needles: &[&str]) {
    let missing: Vec<_> = needles.iter().filter(|n| !text.contains(*n)).collect();
    assert!(missing.is_empty(), "{what} does not mention {missing:?}");
}

#[test]
fn the_deploy_docs_say_what_the_manifests_do() {
    // The sidecar's readiness trade-off, in the probe's comment and in the docs.
    let text = source(BASE);
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
    // How both shapes are applied, and the objects around the pods.
    let apply = [
        "kubectl apply -k deploy/kubernetes/overlays/sidecar",
        "kubectl apply -k deploy/kubernetes/overlays/shared-service",
        "PodMonitor",
        "PodDisruptionBudget",
        "automountServiceAccountToken: false",
    ];
    assert_mentions("docs/deploying.md", &deploying, &apply);
    // The shared service's clients: https, the names the certificate holds, the CA.
    let docs = render(SHARED, &[], &[]).docs;
    // The label a Prometheus' podMonitorSelector must match, as the docs name it.
    let monitor = of_kind(&docs, "PodMonitor").next().unwrap();
    let release = monitor["metadata"]["labels"]["release"].as_str().unwrap();
    assert_mentions(
        "docs/deploying.md",
        &deploying,
        &[&format!("release: {release}")],
    );
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

/// The shell lines in docs/deploying.md that wrap the alert rule file into a
/// PrometheusRule, run on a rule file with the awkward parts (a block scalar with an empty
/// line, templates, quotes): the object's `spec` is the file, unchanged.
#[test]
fn the_documented_prometheus_rule_wrap_keeps_the_rules() {
    let deploying = deploy_docs("deploying.md");
    let section = deploying
        .split("\n## Prometheus Operator: PodMonitor and alert rules\n")
        .nth(1)
        .expect("the Prometheus Operator section");
    let block = section.split("```sh\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    let (wrap, apply) = block
        .split_once(" | kubectl")
        .expect("the wrap is piped into kubectl");
    assert!(apply.contains("apply -f -"), "{apply}");
    const RULES: &str = "deploy/prometheus/sipgw-alerts.yaml";
    assert!(wrap.contains(RULES), "{wrap}");
    let scratch = fresh_dir("prometheus-rule");
    let rules = r#"groups:
  - name: sipgw
    rules:
      - alert: SipgwExample
        expr: sum(rate(sipgw_requests_total{code="5xx"}[5m])) > 0
        for: 5m
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.instance }}: it's failing"
          runbook: |
            First line.

            After an empty line: "quoted", 'single'.
"#;
    std::fs::create_dir_all(scratch.join("deploy/prometheus")).unwrap();
    std::fs::write(scratch.join(RULES), rules).unwrap();
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", wrap])
        .current_dir(&scratch)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    std::fs::write(scratch.join("rule.yaml"), &output.stdout).unwrap();
    let object = yaml::load_one(&scratch.join("rule.yaml"));
    assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(object["kind"], "PrometheusRule");
    assert_eq!(
        object["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(object["spec"], yaml::load_one(&scratch.join(RULES)));
}
