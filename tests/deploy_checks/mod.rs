//! The Kubernetes cross-checks of `tests/deploy.rs`: each returns a list of problems,
//! each naming the object and what is wrong, so that the tests can also show that they
//! catch a broken manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;
use sipgw::config::{Config, FileConfig};

/// The user the image runs as (distroless "nonroot").
pub const NONROOT_UID: i64 = 65532;
/// Where sipgw's image looks for its config when no arguments are given (Dockerfile CMD).
pub const IMAGE_CONFIG_PATH: &str = "/etc/sipgw/sipgw.toml";
/// The kinds the manifests may hold.
pub const KNOWN_KINDS: &[(&str, &str)] = &[
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
];

pub fn kind(doc: &Value) -> (&str, &str) {
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

pub fn of_kind<'a>(docs: &'a [Value], wanted: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
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
pub fn is_under(child: &str, parent: &str) -> bool {
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
    /// The Deployment, for its namespace and pod spec.
    deployment: &'a Value,
    /// What Services and NetworkPolicies must select.
    pod_labels: BTreeMap<String, String>,
    /// sipgw's container ports by name, for `targetPort: api`.
    named_ports: BTreeMap<String, i64>,
    /// The validated config, for the listen addresses.
    config: Config,
}

/// Loads the config a ConfigMap embeds through the crate's loader, as `serve` would: stage
/// one (unknown keys, types) on the text as it is, stage two (values, secret files) with
/// the secret files replaced by test files, since the real ones exist only in the pod.
pub fn load_embedded(toml: &str, scratch: &Path) -> Result<(FileConfig, Config), String> {
    let file: FileConfig = Figment::from(Toml::string(toml))
        .extract()
        .map_err(|e| e.to_string())?;
    // A second copy (FileConfig is not Clone) whose secret paths point at test files.
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
    if test_file.rate_limit.redis_password_file.is_some() {
        let path = scratch.join("redis_password");
        std::fs::write(&path, "test-redis-password\n").unwrap();
        test_file.rate_limit.redis_password_file = Some(path.display().to_string());
    }
    if test_file.rate_limit.redis_ca_file.is_some() {
        let tls = TestTls::write(scratch);
        test_file.rate_limit.redis_ca_file = Some(tls.ca.display().to_string());
    }
    let server = &mut test_file.server;
    if server.tls_cert_file.is_some()
        || server.tls_key_file.is_some()
        || server.tls_client_ca_file.is_some()
    {
        let tls = TestTls::write(scratch);
        let point = |key: &mut Option<String>, path: &Path| {
            if key.is_some() {
                *key = Some(path.display().to_string());
            }
        };
        point(&mut server.tls_cert_file, &tls.cert);
        point(&mut server.tls_key_file, &tls.key);
        point(&mut server.tls_client_ca_file, &tls.ca);
    }
    let config = Config::from_file(test_file, |_| None).map_err(|e| e.to_string())?;
    Ok((file, config))
}

/// A throw-away CA and a server certificate it signed, as a cert-manager CA issuer writes
/// them into a `kubernetes.io/tls` Secret: `tls.crt` (leaf, then CA), `tls.key`, `ca.crt`.
struct TestTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl TestTls {
    fn write(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sipgw deploy test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["sipgw.sipgw.svc".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let tls = Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: dir.join("ca.crt"),
        };
        std::fs::write(&tls.cert, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
        std::fs::write(&tls.key, key.serialize_pem()).unwrap();
        std::fs::write(&tls.ca, ca_cert.pem()).unwrap();
        tls
    }
}

/// Every problem of one manifest file (all its documents together).
pub fn check_manifest(docs: &[Value], scratch: &Path) -> Vec<String> {
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
        sipgws.extend(check_deployment(docs, deployment, scratch, &mut problems));
    }
    for service in of_kind(docs, "Service") {
        check_service(service, &sipgws, &mut problems);
    }
    for policy in of_kind(docs, "NetworkPolicy") {
        check_network_policy(policy, &sipgws, &mut problems);
    }
    problems
}

/// Collects what is wrong with one object, each line prefixed with the object's name.
struct Problems<'a> {
    at: String,
    list: &'a mut Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, what: impl std::fmt::Display) {
        self.list.push(format!("{}: {what}", self.at));
    }
}

fn check_deployment<'a>(
    docs: &'a [Value],
    deployment: &'a Value,
    scratch: &Path,
    list: &mut Vec<String>,
) -> Option<Sipgw<'a>> {
    let mut problems = Problems {
        at: name(deployment),
        list,
    };
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let pod_labels = labels(&template["metadata"]["labels"]);
    if !selects(
        &labels(&deployment["spec"]["selector"]["matchLabels"]),
        &pod_labels,
    ) {
        problems.add("spec.selector.matchLabels does not match the pod template's labels");
    }
    let Some((container, sidecar)) = sipgw_container(pod) else {
        problems.add("no container named sipgw");
        return None;
    };
    // An init container without restartPolicy Always must exit before the app starts;
    // `sipgw serve` never does, so the pod would never start.
    if sidecar && container["restartPolicy"] != "Always" {
        problems.add("sipgw is an init container without restartPolicy: Always");
    }
    let (file, config) = embedded_config(docs, pod, container, scratch, &mut problems)?;
    check_tls(&file, &config, &mut problems);
    check_secret_mounts(pod, container, &file, &mut problems);
    check_audit_volume(pod, container, &file, &mut problems);
    let named_ports = check_ports(pod, container, &config, &mut problems);
    check_probes(template, container, &named_ports, &config, &mut problems);
    check_security(pod, container, &mut problems);
    check_lifecycle(deployment, container, &file, &config, &mut problems);
    Some(Sipgw {
        deployment,
        pod_labels,
        named_ports,
        config,
    })
}

/// The config sipgw runs with: the `--config` path of its arguments, on a ConfigMap
/// volume, from a ConfigMap of the same file, loaded by sipgw's own loader.
fn embedded_config(
    docs: &[Value],
    pod: &Value,
    container: &Value,
    scratch: &Path,
    problems: &mut Problems,
) -> Option<(FileConfig, Config)> {
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
        problems.add(format!(
            "the config {config_path} is under no volumeMount of sipgw"
        ));
        return None;
    };
    let Some(map_name) = volume["configMap"]["name"].as_str() else {
        problems.add(format!(
            "the config {config_path} is not on a configMap volume"
        ));
        return None;
    };
    let key = relative_to(config_path, mount);
    let Some(config_map) = of_kind(docs, "ConfigMap").find(|c| c["metadata"]["name"] == map_name)
    else {
        problems.add(format!("ConfigMap {map_name} is not in this file"));
        return None;
    };
    let Some(toml) = config_map["data"][&key].as_str() else {
        problems.add(format!(
            "ConfigMap {map_name} has no key {key:?} for {config_path}"
        ));
        return None;
    };
    load_embedded(toml, scratch)
        .map_err(|error| {
            problems.add(format!(
                "ConfigMap {map_name} {key} is not a valid sipgw config: {error}"
            ));
        })
        .ok()
}

/// `path` relative to the mount that holds it.
fn relative_to(path: &str, mount: &Value) -> String {
    Path::new(path)
        .strip_prefix(mount["mountPath"].as_str().unwrap_or("/"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// An API reachable from other pods carries passwords and tokens over the pod network: it
/// must serve TLS. On loopback (a sidecar) TLS is optional.
fn check_tls(file: &FileConfig, config: &Config, problems: &mut Problems) {
    let listen = config.server.listen;
    if !listen.ip().is_loopback() && file.server.tls_cert_file.is_none() {
        problems.add(format!(
            "server.listen {listen} is not loopback but server.tls_cert_file is not set: \
             passwords and tokens would cross the pod network in cleartext"
        ));
    }
    // The shared lockout state and quotas: whoever can write them can let a third wrong
    // password through, so Redis is reached over TLS and with a password.
    let r = &file.rate_limit;
    if r.backend == "redis" {
        if r.redis_url
            .as_deref()
            .is_some_and(|u| !u.starts_with("rediss://"))
        {
            problems.add(
                "rate_limit.redis_url is not rediss://: the lockout state would cross the \
                 pod network in cleartext",
            );
        }
        if r.redis_password_file.is_none() {
            problems.add(
                "rate_limit.redis_password_file is not set: any pod that reaches Redis \
                 could rewrite the lockout state",
            );
        }
    }
}

/// The app secret, the HMAC key, the TLS files and Redis's password and CA: files on a
/// read-only Secret volume that
/// provides them, readable by nobody but sipgw's user and group. The TLS files are
/// reloaded when they change, which a subPath mount never shows.
fn check_secret_mounts(pod: &Value, container: &Value, file: &FileConfig, problems: &mut Problems) {
    let server = &file.server;
    // (key, path, required, reloaded)
    let secrets = [
        (
            "vendor.app_secret_file",
            file.vendor.app_secret_file.as_deref(),
            true,
            false,
        ),
        (
            "audit.hmac_key_file",
            file.audit.hmac_key_file.as_deref(),
            true,
            false,
        ),
        (
            "server.tls_cert_file",
            server.tls_cert_file.as_deref(),
            false,
            true,
        ),
        (
            "server.tls_key_file",
            server.tls_key_file.as_deref(),
            false,
            true,
        ),
        (
            "server.tls_client_ca_file",
            server.tls_client_ca_file.as_deref(),
            false,
            true,
        ),
        (
            "rate_limit.redis_password_file",
            file.rate_limit.redis_password_file.as_deref(),
            false,
            false,
        ),
        (
            "rate_limit.redis_ca_file",
            file.rate_limit.redis_ca_file.as_deref(),
            false,
            false,
        ),
    ];
    for (key, path, required, reloaded) in secrets {
        let Some(path) = path else {
            if required {
                problems.add(format!(
                    "{key} is not set: the manifests mount secrets as files"
                ));
            }
            continue;
        };
        let Some((mount, volume)) = mount_for(pod, container, path) else {
            problems.add(format!("{key} = {path} is under no volumeMount of sipgw"));
            continue;
        };
        let file_name = relative_to(path, mount);
        if !secret_files(volume).contains(&file_name) {
            problems.add(format!(
                "{key} = {path}: volume {} provides no Secret item {file_name:?}",
                volume["name"]
            ));
        }
        if mount["readOnly"] != true {
            problems.add(format!(
                "{key}: the Secret mount {} is not readOnly",
                mount["mountPath"]
            ));
        }
        if reloaded && !mount["subPath"].is_null() {
            problems.add(format!(
                "{key}: the mount {} uses subPath, which never sees a renewed certificate",
                mount["mountPath"]
            ));
        }
        let mode = volume["projected"]["defaultMode"]
            .as_i64()
            .or_else(|| volume["secret"]["defaultMode"].as_i64());
        if mode.is_none_or(|m| m & 0o7 != 0) {
            problems.add(format!(
                "{key}: Secret volume defaultMode {mode:?} lets others read it"
            ));
        }
    }
}

/// The audit trail: an absolute path on a writable volume (never the read-only root).
fn check_audit_volume(pod: &Value, container: &Value, file: &FileConfig, problems: &mut Problems) {
    if !file.audit.path.starts_with('/') {
        problems.add(format!("audit.path {:?} is relative", file.audit.path));
    }
    let audit_dir = Path::new(&file.audit.path)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let Some((mount, volume)) = mount_for(pod, container, &audit_dir) else {
        problems.add(format!(
            "the audit directory {audit_dir} is under no volumeMount of sipgw"
        ));
        return;
    };
    if mount["readOnly"] == true {
        problems.add(format!(
            "the audit mount {} is readOnly",
            mount["mountPath"]
        ));
    }
    if volume["emptyDir"].is_null() && volume["persistentVolumeClaim"].is_null() {
        problems.add(format!(
            "the audit volume {} is neither emptyDir nor a PVC",
            volume["name"]
        ));
    }
}

/// The admin port declared by name; the API port declared exactly when it is reachable
/// from outside the pod; no other container on either (a pod shares one network
/// namespace). Returns sipgw's named ports.
fn check_ports(
    pod: &Value,
    container: &Value,
    config: &Config,
    problems: &mut Problems,
) -> BTreeMap<String, i64> {
    let listen: SocketAddr = config.server.listen;
    let admin: SocketAddr = config.server.admin_listen;
    let (api_port, admin_port) = (i64::from(listen.port()), i64::from(admin.port()));
    let (named, numbers) = ports(container);
    if admin.ip().is_loopback() {
        problems.add(format!(
            "server.admin_listen {admin} is loopback: kubelet probes cannot reach it"
        ));
    }
    if named.get("admin") != Some(&admin_port) {
        problems.add(format!(
            "no container port named admin = {admin_port} (server.admin_listen)"
        ));
    }
    if listen.ip().is_loopback() {
        if numbers.contains(&api_port) {
            problems.add(format!(
                "port {api_port} is declared but server.listen {listen} is loopback-only"
            ));
        }
    } else if named.get("api") != Some(&api_port) {
        problems.add(format!(
            "no container port named api = {api_port} (server.listen)"
        ));
    }
    for number in numbers
        .iter()
        .filter(|n| ![api_port, admin_port].contains(n))
    {
        problems.add(format!(
            "sipgw declares port {number}, which it does not listen on"
        ));
    }
    let sipgw_ports = BTreeSet::from([api_port, admin_port]);
    for list in ["containers", "initContainers"] {
        for other in pod[list].as_array().into_iter().flatten() {
            if other["name"] == "sipgw" {
                continue;
            }
            for clash in ports(other).1.intersection(&sipgw_ports) {
                problems.add(format!(
                    "container {} also uses sipgw's port {clash}",
                    other["name"]
                ));
            }
        }
    }
    named
}

/// Probes on the admin listener's real paths and port, and the scrape annotation.
///
/// Next to an app (a sidecar), sipgw's readiness is the whole pod's: README "Deploying"
/// lets an app that does more than password changes drop the readiness probe or point it
/// at `/healthz`. Alone, sipgw's readiness must be `/readyz`, so that a replica without a
/// vendor token or JWT keys leaves the Service.
fn check_probes(
    template: &Value,
    container: &Value,
    named_ports: &BTreeMap<String, i64>,
    config: &Config,
    problems: &mut Problems,
) {
    let pod = &template["spec"];
    let next_to_an_app = ["containers", "initContainers"].iter().any(|list| {
        pod[list]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] != "sipgw")
    });
    let readiness: &[&str] = if next_to_an_app {
        &["/readyz", "/healthz"]
    } else {
        &["/readyz"]
    };
    let admin = i64::from(config.server.admin_listen.port());
    for (probe, paths) in [
        ("livenessProbe", &["/healthz"][..]),
        ("readinessProbe", readiness),
        ("startupProbe", &["/healthz", "/readyz"][..]),
    ] {
        let get = &container[probe]["httpGet"];
        let optional = probe == "startupProbe" || (probe == "readinessProbe" && next_to_an_app);
        if get.is_null() {
            if !optional {
                problems.add(format!("{probe} is not an httpGet probe"));
            }
            continue;
        }
        let path = get["path"].as_str().unwrap_or("");
        if !paths.contains(&path) {
            problems.add(format!("{probe} path {path:?} is not one of {paths:?}"));
        }
        if resolve_port(&get["port"], named_ports) != Some(admin) {
            problems.add(format!(
                "{probe} port {} is not the admin port {admin} (server.admin_listen)",
                get["port"]
            ));
        }
    }
    let scrape_port = &template["metadata"]["annotations"]["prometheus.io/port"];
    if let Some(port) = scrape_port.as_str()
        && port != admin.to_string()
    {
        problems.add(format!(
            "prometheus.io/port {port} is not the admin port {admin}"
        ));
    }
}

/// Read-only root, non-root 65532, nothing to escalate to. The uid and gid are the sipgw
/// container's own: set on the pod they would apply to the app container of a sidecar pod
/// too, forcing the app to run as sipgw's user.
fn check_security(pod: &Value, container: &Value, problems: &mut Problems) {
    let sc = &container["securityContext"];
    let pod_sc = &pod["securityContext"];
    // Kubernetes takes the container's setting, else the pod's.
    let either = |key: &str| {
        if sc[key].is_null() {
            pod_sc[key].clone()
        } else {
            sc[key].clone()
        }
    };
    if sc["readOnlyRootFilesystem"] != true {
        problems.add("securityContext.readOnlyRootFilesystem is not true");
    }
    if sc["runAsNonRoot"] != true {
        problems.add("the sipgw container's securityContext.runAsNonRoot is not true");
    }
    if sc["runAsUser"].as_i64() != Some(NONROOT_UID) {
        problems.add(format!(
            "the sipgw container's securityContext.runAsUser is not {NONROOT_UID}"
        ));
    }
    for key in ["runAsUser", "runAsGroup"] {
        if !pod_sc[key].is_null() {
            problems.add(format!(
                "the pod securityContext sets {key}, which applies to every container: set it on sipgw's"
            ));
        }
    }
    if sc["allowPrivilegeEscalation"] != false {
        problems.add("securityContext.allowPrivilegeEscalation is not false");
    }
    if !sc["capabilities"]["drop"]
        .as_array()
        .is_some_and(|d| d.iter().any(|c| c == "ALL"))
    {
        problems.add("securityContext.capabilities.drop does not hold ALL");
    }
    if either("seccompProfile")["type"] != "RuntimeDefault" {
        problems.add("seccompProfile.type is not RuntimeDefault");
    }
}

/// Shutdown, memory bounds and replicas.
fn check_lifecycle(
    deployment: &Value,
    container: &Value,
    file: &FileConfig,
    config: &Config,
    problems: &mut Problems,
) {
    // On SIGTERM sipgw closes its listener at once; an API reached over the network needs a
    // preStop pause while the Service's endpoints and kube-proxy stop sending new
    // connections. A sleep action: the distroless image has no `sleep` to exec.
    let pre_stop = &container["lifecycle"]["preStop"];
    if !pre_stop["exec"].is_null() {
        problems.add(
            "lifecycle.preStop.exec: the distroless image has no shell or sleep (use preStop.sleep)",
        );
    }
    let pause = pre_stop["sleep"]["seconds"].as_i64().unwrap_or(0);
    let listen = config.server.listen;
    if !listen.ip().is_loopback() && pause <= 0 {
        problems.add(format!(
            "server.listen {listen} is reached over the network but there is no \
             lifecycle.preStop.sleep: connections are refused until the endpoints catch up"
        ));
    }
    // Kubernetes must not kill sipgw before its drain is over (its default is 30 s). The
    // kill timer starts with preStop.
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    let drain = config.server.limits.shutdown_grace.as_secs() as i64;
    if grace <= pause + drain {
        problems.add(format!(
            "terminationGracePeriodSeconds {grace} is not above the preStop sleep {pause} + \
             server.shutdown_grace_secs {drain}"
        ));
    }
    for bound in ["requests", "limits"] {
        if container["resources"][bound]["memory"].as_str().is_none() {
            problems.add(format!("resources.{bound}.memory is not set"));
        }
    }
    // Several replicas must share the lockout counts, or the vendor's lock can be reached
    // through two of them.
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    if replicas > 1 && file.rate_limit.backend != "redis" {
        problems.add(format!(
            "{replicas} replicas with rate_limit.backend = {:?}: quotas and lockout counts are not shared",
            file.rate_limit.backend
        ));
    }
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
