//! The deployment files in `deploy/` parsed and cross-checked against sipgw itself: the
//! config each ConfigMap embeds is loaded with the crate's own loader, and the probes,
//! ports, mounts, Services and NetworkPolicies must agree with it. The Dockerfile and the
//! systemd unit are checked the same way. Every problem found is named in the failure.
//!
//! The checks are functions returning a list of problems, so the tests can also show that
//! they catch a broken manifest (a typo'd key, a probe on the wrong port).

mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::Value;
use sipgw::config::{Config, FileConfig};
use yaml::{load_all, repo_path};

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
/// The user the image runs as (distroless "nonroot").
const NONROOT_UID: i64 = 65532;
/// Where sipgw's image looks for its config when no arguments are given (Dockerfile CMD).
const IMAGE_CONFIG_PATH: &str = "/etc/sipgw/sipgw.toml";
/// The kinds the manifests may hold.
const KNOWN_KINDS: &[(&str, &str)] = &[
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
];

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
// Kubernetes: the checks

fn kind(doc: &Value) -> (&str, &str) {
    (
        doc["apiVersion"].as_str().unwrap_or(""),
        doc["kind"].as_str().unwrap_or(""),
    )
}

fn name(doc: &Value) -> String {
    format!(
        "{} {}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn of_kind<'a>(docs: &'a [Value], wanted: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| kind(d).1 == wanted)
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("<not a string>").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// `selector` (matchLabels or a Service's plain map) matches `pod_labels`.
fn selects(selector: &BTreeMap<String, String>, pod_labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
}

/// `child` is `parent` or lies below it (whole path components).
fn is_under(child: &str, parent: &str) -> bool {
    Path::new(child).starts_with(parent)
}

/// The sipgw container of a pod spec: a container or a native sidecar named `sipgw`.
fn sipgw_container(pod: &Value) -> Option<(&Value, bool)> {
    let find = |list: &str| pod[list].as_array()?.iter().find(|c| c["name"] == "sipgw");
    find("containers")
        .map(|c| (c, false))
        .or_else(|| find("initContainers").map(|c| (c, true)))
}

/// Container ports by name, and all declared numbers.
fn ports(container: &Value) -> (BTreeMap<String, i64>, BTreeSet<i64>) {
    let mut named = BTreeMap::new();
    let mut numbers = BTreeSet::new();
    for port in container["ports"].as_array().into_iter().flatten() {
        let Some(number) = port["containerPort"].as_i64() else {
            continue;
        };
        numbers.insert(number);
        if let Some(name) = port["name"].as_str() {
            named.insert(name.to_owned(), number);
        }
    }
    (named, numbers)
}

/// A port given by number or by name.
fn resolve_port(port: &Value, named: &BTreeMap<String, i64>) -> Option<i64> {
    port.as_i64()
        .or_else(|| port.as_str().and_then(|n| named.get(n).copied()))
}

/// The volume mount of `container` that holds `path` (the deepest one), and its volume.
fn mount_for<'a>(
    pod: &'a Value,
    container: &'a Value,
    path: &str,
) -> Option<(&'a Value, &'a Value)> {
    let mount = container["volumeMounts"]
        .as_array()?
        .iter()
        .filter(|m| m["mountPath"].as_str().is_some_and(|mp| is_under(path, mp)))
        .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])?;
    Some((mount, volume))
}

/// The file names a Secret-backed volume provides (`secret` or `projected` of secrets).
fn secret_files(volume: &Value) -> BTreeSet<String> {
    let mut sources = Vec::new();
    if !volume["secret"].is_null() {
        sources.push(&volume["secret"]);
    }
    for source in volume["projected"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if !source["secret"].is_null() {
            sources.push(&source["secret"]);
        }
    }
    sources
        .iter()
        .flat_map(|s| s["items"].as_array().into_iter().flatten())
        .filter_map(|item| item["path"].as_str().map(str::to_owned))
        .collect()
}

/// What a Deployment's sipgw runs with, once its config has been loaded.
struct Sipgw<'a> {
    deployment: &'a Value,
    pod_labels: BTreeMap<String, String>,
    named_ports: BTreeMap<String, i64>,
    config: Config,
}

/// Loads the config a ConfigMap embeds through the crate's loader, as `serve` would: stage
/// one (unknown keys, types) on the text as it is, stage two (values, secret files) with
/// the secret files replaced by test files, since the real ones exist only in the pod.
fn load_embedded(toml: &str, scratch: &Path) -> Result<(FileConfig, Config), String> {
    let file: FileConfig = Figment::from(Toml::string(toml))
        .extract()
        .map_err(|e| e.to_string())?;
    let mut test_file: FileConfig = Figment::from(Toml::string(toml))
        .extract()
        .map_err(|e| e.to_string())?;
    if test_file.vendor.app_secret_file.is_some() {
        let path = scratch.join("app_secret");
        std::fs::write(&path, "test-app-secret\n").unwrap();
        test_file.vendor.app_secret_file = Some(path.display().to_string());
    }
    if test_file.audit.hmac_key_file.is_some() {
        let path = scratch.join("audit_hmac_key");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        test_file.audit.hmac_key_file = Some(path.display().to_string());
    }
    let config = Config::from_file(test_file, |_| None).map_err(|e| e.to_string())?;
    Ok((file, config))
}

/// Every problem of one manifest file (all its documents together).
fn check_manifest(docs: &[Value], scratch: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if !KNOWN_KINDS.contains(&kind(doc)) {
            problems.push(format!(
                "document {}: unknown apiVersion/kind {:?}",
                i + 1,
                kind(doc)
            ));
        }
        if doc["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("document {}: metadata.name is missing", i + 1));
        }
    }
    let mut sipgws = Vec::new();
    for deployment in of_kind(docs, "Deployment") {
        match check_deployment(docs, deployment, scratch, &mut problems) {
            Some(s) => sipgws.push(s),
            None => continue,
        }
    }
    for service in of_kind(docs, "Service") {
        check_service(service, &sipgws, &mut problems);
    }
    for policy in of_kind(docs, "NetworkPolicy") {
        check_network_policy(policy, &sipgws, &mut problems);
    }
    problems
}

fn check_deployment<'a>(
    docs: &'a [Value],
    deployment: &'a Value,
    scratch: &Path,
    problems: &mut Vec<String>,
) -> Option<Sipgw<'a>> {
    let at = name(deployment);
    let mut problem = |what: String| problems.push(format!("{at}: {what}"));
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let pod_labels = labels(&template["metadata"]["labels"]);
    if !selects(
        &labels(&deployment["spec"]["selector"]["matchLabels"]),
        &pod_labels,
    ) {
        problem("spec.selector.matchLabels does not match the pod template's labels".into());
    }
    let Some((container, sidecar)) = sipgw_container(pod) else {
        problem("no container named sipgw".into());
        return None;
    };
    // An init container without restartPolicy Always must exit before the app starts;
    // `sipgw serve` never does, so the pod would never start.
    if sidecar && container["restartPolicy"] != "Always" {
        problem("sipgw is an init container without restartPolicy: Always".into());
    }

    // The config: the path in the arguments, inside a ConfigMap mounted there.
    let args: Vec<&str> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let config_path = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1).copied())
        .unwrap_or(IMAGE_CONFIG_PATH);
    let Some((mount, volume)) = mount_for(pod, container, config_path) else {
        problem(format!(
            "the config {config_path} is under no volumeMount of sipgw"
        ));
        return None;
    };
    let Some(map_name) = volume["configMap"]["name"].as_str() else {
        problem(format!(
            "the config {config_path} is not on a configMap volume"
        ));
        return None;
    };
    let key = Path::new(config_path)
        .strip_prefix(mount["mountPath"].as_str().unwrap_or("/"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let Some(config_map) = of_kind(docs, "ConfigMap").find(|c| c["metadata"]["name"] == map_name)
    else {
        problem(format!("ConfigMap {map_name} is not in this file"));
        return None;
    };
    let Some(toml) = config_map["data"][&key].as_str() else {
        problem(format!(
            "ConfigMap {map_name} has no key {key:?} for {config_path}"
        ));
        return None;
    };
    let (file, config) = match load_embedded(toml, scratch) {
        Ok(loaded) => loaded,
        Err(error) => {
            problem(format!(
                "ConfigMap {map_name} {key} is not a valid sipgw config: {error}"
            ));
            return None;
        }
    };

    // Secrets: files under a read-only Secret volume that provides them.
    let secrets = [
        (
            "vendor.app_secret_file",
            file.vendor.app_secret_file.as_deref(),
        ),
        ("audit.hmac_key_file", file.audit.hmac_key_file.as_deref()),
    ];
    for (key, path) in secrets {
        let Some(path) = path else {
            problem(format!(
                "{key} is not set: the manifests mount secrets as files"
            ));
            continue;
        };
        match mount_for(pod, container, path) {
            None => problem(format!("{key} = {path} is under no volumeMount of sipgw")),
            Some((mount, volume)) => {
                let file_name = Path::new(path)
                    .strip_prefix(mount["mountPath"].as_str().unwrap_or("/"))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                if !secret_files(volume).contains(&file_name) {
                    problem(format!(
                        "{key} = {path}: volume {} provides no Secret item {file_name:?}",
                        volume["name"]
                    ));
                }
                if mount["readOnly"] != true {
                    problem(format!(
                        "{key}: the Secret mount {} is not readOnly",
                        mount["mountPath"]
                    ));
                }
                // 0440 at most: the files are for sipgw's user and group only.
                let mode = volume["projected"]["defaultMode"]
                    .as_i64()
                    .or_else(|| volume["secret"]["defaultMode"].as_i64());
                if mode.is_none_or(|m| m & 0o7 != 0) {
                    problem(format!(
                        "{key}: Secret volume defaultMode {mode:?} lets others read it"
                    ));
                }
            }
        }
    }
    // The audit trail: a writable volume (never the read-only root).
    let audit_dir = Path::new(&file.audit.path)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if !file.audit.path.starts_with('/') {
        problem(format!("audit.path {:?} is relative", file.audit.path));
    }
    match mount_for(pod, container, &audit_dir) {
        None => problem(format!(
            "the audit directory {audit_dir} is under no volumeMount of sipgw"
        )),
        Some((mount, volume)) => {
            if mount["readOnly"] == true {
                problem(format!(
                    "the audit mount {} is readOnly",
                    mount["mountPath"]
                ));
            }
            if volume["emptyDir"].is_null() && volume["persistentVolumeClaim"].is_null() {
                problem(format!(
                    "the audit volume {} is neither emptyDir nor a PVC",
                    volume["name"]
                ));
            }
        }
    }

    // Ports: the admin port declared by name; the API port declared exactly when it is
    // reachable from outside the pod; no other container on either (they share the pod's
    // network namespace).
    let listen: SocketAddr = config.server.listen;
    let admin: SocketAddr = config.server.admin_listen;
    let (named_ports, numbers) = ports(container);
    if admin.ip().is_loopback() {
        problem(format!(
            "server.admin_listen {admin} is loopback: kubelet probes cannot reach it"
        ));
    }
    if named_ports.get("admin") != Some(&i64::from(admin.port())) {
        problem(format!(
            "no container port named admin = {} (server.admin_listen)",
            admin.port()
        ));
    }
    let api = i64::from(listen.port());
    if listen.ip().is_loopback() {
        if numbers.contains(&api) {
            problem(format!(
                "port {api} is declared but server.listen {listen} is loopback-only"
            ));
        }
    } else if named_ports.get("api") != Some(&api) {
        problem(format!(
            "no container port named api = {api} (server.listen)"
        ));
    }
    for number in &numbers {
        if *number != api && *number != i64::from(admin.port()) {
            problem(format!(
                "sipgw declares port {number}, which it does not listen on"
            ));
        }
    }
    for list in ["containers", "initContainers"] {
        for other in pod[list].as_array().into_iter().flatten() {
            if other["name"] == "sipgw" {
                continue;
            }
            let (_, theirs) = ports(other);
            for clash in theirs.intersection(&BTreeSet::from([api, i64::from(admin.port())])) {
                problem(format!(
                    "container {} also uses sipgw's port {clash}",
                    other["name"]
                ));
            }
        }
    }

    // Probes: the admin listener's real paths, on its port.
    for (probe, paths) in [
        ("livenessProbe", &["/healthz"][..]),
        ("readinessProbe", &["/readyz"][..]),
        ("startupProbe", &["/healthz", "/readyz"][..]),
    ] {
        let get = &container[probe]["httpGet"];
        if get.is_null() {
            if probe != "startupProbe" {
                problem(format!("{probe} is not an httpGet probe"));
            }
            continue;
        }
        let path = get["path"].as_str().unwrap_or("");
        if !paths.contains(&path) {
            problem(format!("{probe} path {path:?} is not one of {paths:?}"));
        }
        if resolve_port(&get["port"], &named_ports) != Some(i64::from(admin.port())) {
            problem(format!(
                "{probe} port {} is not the admin port {} (server.admin_listen)",
                get["port"],
                admin.port()
            ));
        }
    }
    let scrape_port = &template["metadata"]["annotations"]["prometheus.io/port"];
    if let Some(port) = scrape_port.as_str()
        && port != admin.port().to_string()
    {
        problem(format!(
            "prometheus.io/port {port} is not the admin port {}",
            admin.port()
        ));
    }

    // Security: read-only root, non-root 65532, nothing to escalate to.
    let sc = &container["securityContext"];
    let pod_sc = &pod["securityContext"];
    let either = |key: &str| {
        if sc[key].is_null() {
            pod_sc[key].clone()
        } else {
            sc[key].clone()
        }
    };
    if sc["readOnlyRootFilesystem"] != true {
        problem("securityContext.readOnlyRootFilesystem is not true".into());
    }
    if either("runAsNonRoot") != true {
        problem("securityContext.runAsNonRoot is not true".into());
    }
    if either("runAsUser").as_i64() != Some(NONROOT_UID) {
        problem(format!("securityContext.runAsUser is not {NONROOT_UID}"));
    }
    if sc["allowPrivilegeEscalation"] != false {
        problem("securityContext.allowPrivilegeEscalation is not false".into());
    }
    if !sc["capabilities"]["drop"]
        .as_array()
        .is_some_and(|d| d.iter().any(|c| c == "ALL"))
    {
        problem("securityContext.capabilities.drop does not hold ALL".into());
    }
    if either("seccompProfile")["type"] != "RuntimeDefault" {
        problem("seccompProfile.type is not RuntimeDefault".into());
    }

    // Shutdown: Kubernetes must not kill sipgw before its drain is over (default 30 s).
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    let drain = config.server.limits.shutdown_grace.as_secs() as i64;
    if grace <= drain {
        problem(format!(
            "terminationGracePeriodSeconds {grace} is not above server.shutdown_grace_secs {drain}"
        ));
    }
    for bound in ["requests", "limits"] {
        if container["resources"][bound]["memory"].as_str().is_none() {
            problem(format!("resources.{bound}.memory is not set"));
        }
    }
    // Several replicas must share the lockout counts, or the vendor's lock can be reached
    // through two of them.
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    if replicas > 1 && file.rate_limit.backend != "redis" {
        problem(format!(
            "{replicas} replicas with rate_limit.backend = {:?}: quotas and lockout counts are not shared",
            file.rate_limit.backend
        ));
    }
    Some(Sipgw {
        deployment,
        pod_labels,
        named_ports,
        config,
    })
}

fn same_namespace(a: &Value, b: &Value) -> bool {
    a["metadata"]["namespace"] == b["metadata"]["namespace"]
}

fn check_service(service: &Value, sipgws: &[Sipgw], problems: &mut Vec<String>) {
    let at = name(service);
    let selector = labels(&service["spec"]["selector"]);
    let Some(target) = sipgws
        .iter()
        .find(|s| same_namespace(service, s.deployment) && selects(&selector, &s.pod_labels))
    else {
        problems.push(format!(
            "{at}: its selector matches no sipgw Deployment's pods"
        ));
        return;
    };
    let api = i64::from(target.config.server.listen.port());
    let mut targets_api = false;
    for port in service["spec"]["ports"].as_array().into_iter().flatten() {
        let target_port = if port["targetPort"].is_null() {
            &port["port"]
        } else {
            &port["targetPort"]
        };
        match resolve_port(target_port, &target.named_ports) {
            None => problems.push(format!(
                "{at}: targetPort {target_port} is no port of sipgw"
            )),
            Some(n) if n == api => targets_api = true,
            Some(_) => {}
        }
    }
    if !targets_api {
        problems.push(format!(
            "{at}: no port targets the API port {api} (server.listen)"
        ));
    }
}

fn check_network_policy(policy: &Value, sipgws: &[Sipgw], problems: &mut Vec<String>) {
    let at = name(policy);
    let selector = labels(&policy["spec"]["podSelector"]["matchLabels"]);
    let Some(target) = sipgws
        .iter()
        .find(|s| same_namespace(policy, s.deployment) && selects(&selector, &s.pod_labels))
    else {
        problems.push(format!(
            "{at}: its podSelector matches no sipgw Deployment's pods"
        ));
        return;
    };
    let pod = &target.deployment["spec"]["template"]["spec"];
    // Every port a rule opens must be one a container of the pod declares.
    let mut declared = BTreeMap::new();
    let mut numbers = BTreeSet::new();
    for list in ["containers", "initContainers"] {
        for c in pod[list].as_array().into_iter().flatten() {
            let (named, n) = ports(c);
            declared.extend(named);
            numbers.extend(n);
        }
    }
    let api = i64::from(target.config.server.listen.port());
    let admin = i64::from(target.config.server.admin_listen.port());
    let loopback_api = target.config.server.listen.ip().is_loopback();
    let mut opened = BTreeSet::new();
    for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
        let from = rule["from"].as_array().map_or(&[][..], Vec::as_slice);
        for port in rule["ports"].as_array().into_iter().flatten() {
            let Some(n) = resolve_port(&port["port"], &declared) else {
                problems.push(format!(
                    "{at}: port {} is not declared by the pod",
                    port["port"]
                ));
                continue;
            };
            if !numbers.contains(&n) {
                problems.push(format!("{at}: port {n} is not declared by the pod"));
            }
            opened.insert(n);
            if n == api && loopback_api {
                problems.push(format!(
                    "{at}: opens the API port {api}, which listens on loopback only"
                ));
            }
            if (n == admin || n == api) && from.is_empty() {
                problems.push(format!("{at}: sipgw's port {n} is open to every peer"));
            }
            if n == admin
                && !from
                    .iter()
                    .all(|peer| peer["namespaceSelector"]["matchLabels"].is_object())
            {
                problems.push(format!(
                    "{at}: the admin port {admin} is open beyond the monitoring namespace"
                ));
            }
        }
        if rule["ports"].as_array().is_none_or(Vec::is_empty) {
            problems.push(format!("{at}: an ingress rule opens every port"));
        }
    }
    if !opened.contains(&admin) {
        problems.push(format!(
            "{at}: the admin port {admin} is closed to monitoring"
        ));
    }
    if !loopback_api && !opened.contains(&api) {
        problems.push(format!(
            "{at}: the API port {api} is closed to every client"
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes: the tests

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
    let path = repo_path(&format!("deploy/kubernetes/{file}"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(from),
        "{file} no longer contains {from:?}; update this test"
    );
    let scratch = fresh_dir("edit");
    let edited = scratch.join(file);
    std::fs::write(&edited, text.replacen(from, to, 1)).unwrap();
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
            "terminationGracePeriodSeconds: 40",
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
    for flag in ["--release", "--locked", "--bin sipgw"] {
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
