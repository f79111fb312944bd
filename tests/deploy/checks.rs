//! The cross-checks of `tests/deploy.rs`: what in a Kubernetes manifest must agree with the
//! config it embeds for the deployment to work. Each check adds a problem naming the object
//! and what is wrong, so that the tests can also show it catches a broken manifest. Plain
//! Kubernetes schema (kinds, names, resources, capabilities) is the cluster's to check.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sipgw::config::{Config, FileConfig};

#[path = "embedded.rs"]
mod embedded;
#[path = "objects.rs"]
mod objects;

pub use embedded::{load_embedded, sipgw_env};

/// The user the image runs as (distroless "nonroot", the Dockerfile's `USER`).
pub const NONROOT_UID: i64 = 65532;
/// Where the image looks for its config (the Dockerfile's `CMD`).
pub const IMAGE_CONFIG_PATH: &str = "/etc/sipgw/sipgw.toml";

pub fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| d["kind"] == kind)
}

/// `child` is `parent` or lies below it (whole path components).
pub fn is_under(child: &str, parent: &str) -> bool {
    Path::new(child).starts_with(parent)
}

/// The sipgw container of a pod spec: a container, or a native sidecar (an init container).
pub fn sipgw_container(pod: &Value) -> Option<(&Value, bool)> {
    let find = |list: &str| pod[list].as_array()?.iter().find(|c| c["name"] == "sipgw");
    find("containers")
        .map(|c| (c, false))
        .or_else(|| find("initContainers").map(|c| (c, true)))
}

/// sipgw's container ports by name.
fn named_ports(container: &Value) -> BTreeMap<String, i64> {
    let ports = container["ports"].as_array().into_iter().flatten();
    ports
        .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["containerPort"].as_i64()?)))
        .collect()
}

/// A port given by number or by name.
fn resolve_port(port: &Value, named: &BTreeMap<String, i64>) -> Option<i64> {
    port.as_i64()
        .or_else(|| port.as_str().and_then(|n| named.get(n).copied()))
}

/// `selector` is non-empty and all its labels are on `pod`.
fn selects(selector: &Value, pod: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &pod[k] == v))
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
    let volumes = pod["volumes"].as_array()?;
    Some((mount, volumes.iter().find(|v| v["name"] == mount["name"])?))
}

/// `path` relative to the mount that holds it.
fn relative_to(path: &str, mount: &Value) -> String {
    let root = mount["mountPath"].as_str().unwrap_or("/");
    Path::new(path)
        .strip_prefix(root)
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The file names a Secret volume provides (`secret`, or `projected` from secrets).
fn secret_files(volume: &Value) -> Vec<&str> {
    let projected = volume["projected"]["sources"]
        .as_array()
        .into_iter()
        .flatten();
    std::iter::once(&volume["secret"])
        .chain(projected.map(|s| &s["secret"]))
        .flat_map(|s| s["items"].as_array().into_iter().flatten())
        .filter_map(|item| item["path"].as_str())
        .collect()
}

/// What a Deployment's sipgw runs with, for its Service and NetworkPolicy.
struct Sipgw<'a> {
    pod_labels: &'a Value,
    named_ports: BTreeMap<String, i64>,
    config: Config,
    /// The Deployment's replicas: more than one needs a PodDisruptionBudget.
    replicas: i64,
}

/// Every problem of one manifest file (all its documents together).
pub fn check_manifest(docs: &[Value], scratch: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut sipgws = Vec::new();
    for deployment in of_kind(docs, "Deployment") {
        let at = format!("Deployment {}", deployment["metadata"]["name"]);
        let mut add = |what: String| problems.push(format!("{at}: {what}"));
        sipgws.extend(check_deployment(docs, deployment, scratch, &mut add));
    }
    for service in of_kind(docs, "Service") {
        check_service(service, &sipgws, &mut problems);
    }
    for policy in of_kind(docs, "NetworkPolicy") {
        check_network_policy(policy, &sipgws, &mut problems);
    }
    objects::check_monitoring_and_disruption(docs, &sipgws, &mut problems);
    problems
}

fn check_deployment<'a>(
    docs: &[Value],
    deployment: &'a Value,
    scratch: &Path,
    add: &mut dyn FnMut(String),
) -> Option<Sipgw<'a>> {
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let Some((container, init)) = sipgw_container(pod) else {
        add("no container named sipgw".into());
        return None;
    };
    // An init container must exit before the app starts; `sipgw serve` never does.
    if init && container["restartPolicy"] != "Always" {
        add("sipgw is an init container without restartPolicy: Always".into());
    }
    let (file, config) = embedded_config(docs, pod, container, scratch, add)?;
    check_network_exposure(&file, &config, add);
    check_mounts(pod, container, &file, add);
    let named_ports = named_ports(container);
    check_ports_and_probes(template, container, &named_ports, &config, add);
    check_users(pod, container, add);
    check_lifecycle(deployment, container, &file, &config, add);
    objects::check_service_account(docs, pod, add);
    Some(Sipgw {
        pod_labels: &template["metadata"]["labels"],
        named_ports,
        config,
        replicas: deployment["spec"]["replicas"].as_i64().unwrap_or(1),
    })
}

/// The config sipgw runs with: the `--config` path of its arguments, on a ConfigMap
/// volume, from a ConfigMap of this file, loaded by sipgw's own loader.
fn embedded_config(
    docs: &[Value],
    pod: &Value,
    container: &Value,
    scratch: &Path,
    add: &mut dyn FnMut(String),
) -> Option<(FileConfig, Config)> {
    let args: Vec<&str> = container["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let path = args
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| args.get(i + 1).copied())
        .unwrap_or(IMAGE_CONFIG_PATH);
    let Some((mount, volume)) = mount_for(pod, container, path) else {
        add(format!(
            "the config {path} is under no volumeMount of sipgw"
        ));
        return None;
    };
    let map = &volume["configMap"]["name"];
    let key = relative_to(path, mount);
    let toml = of_kind(docs, "ConfigMap")
        .find(|c| &c["metadata"]["name"] == map)
        .and_then(|c| c["data"][&key].as_str());
    let Some(toml) = toml else {
        add(format!(
            "no ConfigMap {map} in this file holds {key:?} for {path}"
        ));
        return None;
    };
    load_embedded(toml, &sipgw_env(container), scratch)
        .map_err(|e| {
            add(format!(
                "ConfigMap {map} {key} is not a valid sipgw config: {e}"
            ))
        })
        .ok()
}

/// An API reachable from other pods serves TLS; Redis, whose lockout state lets a third
/// wrong password through if rewritten, is reached over TLS and with a password.
fn check_network_exposure(file: &FileConfig, config: &Config, add: &mut dyn FnMut(String)) {
    let listen = config.server.listen;
    if !listen.ip().is_loopback() && file.server.tls_cert_file.is_none() {
        add(format!(
            "server.listen {listen} is not loopback but server.tls_cert_file is not set"
        ));
    }
    let r = &file.rate_limit;
    if r.backend == "redis" {
        if r.redis_url
            .as_deref()
            .is_some_and(|u| !u.starts_with("rediss://"))
        {
            add("rate_limit.redis_url is not rediss://".into());
        }
        if r.redis_password_file.is_none() {
            add("rate_limit.redis_password_file is not set".into());
        }
    }
}

/// Every secret file the config names is an item of a read-only Secret volume (TLS files
/// without subPath, which never sees a renewal); the audit trail is on a writable volume.
fn check_mounts(pod: &Value, container: &Value, file: &FileConfig, add: &mut dyn FnMut(String)) {
    let (server, redis) = (&file.server, &file.rate_limit);
    // (key, path, reloaded when it changes)
    #[rustfmt::skip]
    let secrets = [
        ("vendor.app_secret_file", &file.vendor.app_secret_file, false),
        ("audit.hmac_key_file", &file.audit.hmac_key_file, false),
        ("server.tls_cert_file", &server.tls_cert_file, true),
        ("server.tls_key_file", &server.tls_key_file, true),
        ("server.tls_client_ca_file", &server.tls_client_ca_file, true),
        ("rate_limit.redis_password_file", &redis.redis_password_file, false),
        ("rate_limit.redis_ca_file", &redis.redis_ca_file, false),
    ];
    for (key, path, reloaded) in secrets {
        let Some(path) = path else { continue };
        let Some((mount, volume)) = mount_for(pod, container, path) else {
            add(format!("{key} = {path} is under no volumeMount of sipgw"));
            continue;
        };
        let name = relative_to(path, mount);
        if !secret_files(volume).contains(&name.as_str()) {
            let volume = &volume["name"];
            add(format!(
                "{key} = {path}: volume {volume} provides no Secret item"
            ));
        }
        if mount["readOnly"] != true {
            add(format!("{key}: the Secret mount is not readOnly"));
        }
        if reloaded && !mount["subPath"].is_null() {
            add(format!("{key}: the mount uses subPath"));
        }
    }
    let audit = file.audit.path.rsplit_once('/').map_or("", |(dir, _)| dir);
    match mount_for(pod, container, audit) {
        Some((mount, _)) if mount["readOnly"] != true => {}
        _ => add(format!(
            "the audit directory {audit} is on no writable mount"
        )),
    }
}

/// The admin port reachable by kubelet and declared by name, the API port declared exactly
/// when it is reachable from outside the pod, and the probes on the admin listener's paths.
///
/// Next to an app (a sidecar), sipgw's readiness is the whole pod's: the app may drop the
/// readiness probe or point it at `/healthz`. Alone, sipgw's readiness must be `/readyz`,
/// so that a replica without a vendor token or JWT keys leaves the Service.
fn check_ports_and_probes(
    template: &Value,
    container: &Value,
    named: &BTreeMap<String, i64>,
    config: &Config,
    add: &mut dyn FnMut(String),
) {
    let (listen, admin_listen) = (config.server.listen, config.server.admin_listen);
    let (api, admin) = (i64::from(listen.port()), i64::from(admin_listen.port()));
    if admin_listen.ip().is_loopback() {
        add(format!(
            "server.admin_listen {admin_listen} is loopback: no probe reaches it"
        ));
    }
    if named.get("admin") != Some(&admin) {
        add(format!("no container port named admin = {admin}"));
    }
    match (listen.ip().is_loopback(), named.get("api")) {
        (true, Some(_)) => add(format!("port api is declared, but {listen} is loopback")),
        (false, port) if port != Some(&api) => add(format!("no container port api = {api}")),
        _ => {}
    }
    let pod = &template["spec"];
    let next_to_an_app = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| pod[list].as_array().into_iter().flatten())
        .any(|c| c["name"] != "sipgw");
    let readiness = if next_to_an_app { 2 } else { 1 };
    for (probe, paths, optional) in [
        ("livenessProbe", &["/healthz"][..], false),
        (
            "readinessProbe",
            &["/readyz", "/healthz"][..readiness],
            next_to_an_app,
        ),
        ("startupProbe", &["/healthz", "/readyz"][..], true),
    ] {
        let get = &container[probe]["httpGet"];
        if get.is_null() {
            if !optional {
                add(format!("{probe} is not an httpGet probe"));
            }
            continue;
        }
        let path = get["path"].as_str().unwrap_or("");
        if !paths.contains(&path) {
            add(format!("{probe} path {path:?} is not one of {paths:?}"));
        }
        if resolve_port(&get["port"], named) != Some(admin) {
            add(format!(
                "{probe} port {} is not the admin port",
                get["port"]
            ));
        }
    }
}

/// sipgw runs as the image's user, set on its own container: set on the pod it would apply
/// to the app container of a sidecar pod too.
fn check_users(pod: &Value, container: &Value, add: &mut dyn FnMut(String)) {
    let (sc, pod_sc) = (&container["securityContext"], &pod["securityContext"]);
    if sc["runAsNonRoot"] != true {
        add("the sipgw container's securityContext.runAsNonRoot is not true".into());
    }
    for key in ["runAsUser", "runAsGroup"] {
        if sc[key].as_i64() != Some(NONROOT_UID) {
            add(format!(
                "the sipgw container's securityContext.{key} is not {NONROOT_UID}"
            ));
        }
        if !pod_sc[key].is_null() {
            add(format!(
                "the pod securityContext sets {key}, for every container"
            ));
        }
    }
}

/// Kubernetes must not kill sipgw mid-drain; an API reached over the network needs a
/// preStop pause while endpoints catch up; replicas must share the lockout counts.
fn check_lifecycle(
    deployment: &Value,
    container: &Value,
    file: &FileConfig,
    config: &Config,
    add: &mut dyn FnMut(String),
) {
    let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_i64()
        .unwrap_or(0);
    let listen = config.server.listen;
    if !listen.ip().is_loopback() && pause <= 0 {
        add(format!(
            "{listen} is reached over the network: no lifecycle.preStop.sleep"
        ));
    }
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    let drain = config.server.limits.shutdown_grace.as_secs() as i64;
    if grace <= pause + drain {
        add(format!(
            "terminationGracePeriodSeconds {grace} is not above the preStop sleep {pause} + \
             server.shutdown_grace_secs {drain}"
        ));
    }
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    if replicas > 1 && file.rate_limit.backend != "redis" {
        add(format!(
            "{replicas} replicas: lockout counts are not shared"
        ));
    }
}

/// The sipgw Deployment whose pods `selector` selects.
fn target<'s, 'a>(selector: &Value, sipgws: &'s [Sipgw<'a>]) -> Option<&'s Sipgw<'a>> {
    sipgws.iter().find(|s| selects(selector, s.pod_labels))
}

fn check_service(service: &Value, sipgws: &[Sipgw], problems: &mut Vec<String>) {
    let at = format!("Service {}", service["metadata"]["name"]);
    let Some(sipgw) = target(&service["spec"]["selector"], sipgws) else {
        problems.push(format!("{at}: its selector matches no sipgw pod"));
        return;
    };
    let api = i64::from(sipgw.config.server.listen.port());
    let ports = service["spec"]["ports"].as_array().into_iter().flatten();
    let targets_api = ports.into_iter().any(|port| {
        let to = &port["targetPort"];
        let to = if to.is_null() { &port["port"] } else { to };
        resolve_port(to, &sipgw.named_ports) == Some(api)
    });
    if !targets_api {
        problems.push(format!("{at}: no port targets the API port {api}"));
    }
}

/// The policy lets monitoring reach the admin port, and clients the API port unless it
/// listens on loopback only (where opening it would suggest it is reachable).
fn check_network_policy(policy: &Value, sipgws: &[Sipgw], problems: &mut Vec<String>) {
    let at = format!("NetworkPolicy {}", policy["metadata"]["name"]);
    let Some(sipgw) = target(&policy["spec"]["podSelector"]["matchLabels"], sipgws) else {
        problems.push(format!("{at}: its podSelector matches no sipgw pod"));
        return;
    };
    let server = &sipgw.config.server;
    let (api, admin) = (
        server.listen.port().into(),
        server.admin_listen.port().into(),
    );
    let rules = policy["spec"]["ingress"].as_array().into_iter().flatten();
    let opened: Vec<i64> = rules
        .flat_map(|rule| rule["ports"].as_array().into_iter().flatten())
        .filter_map(|port| resolve_port(&port["port"], &sipgw.named_ports))
        .collect();
    let loopback = server.listen.ip().is_loopback();
    if !opened.contains(&admin) {
        problems.push(format!(
            "{at}: the admin port {admin} is closed to monitoring"
        ));
    }
    match (loopback, opened.contains(&api)) {
        (true, true) => problems.push(format!("{at}: opens the API port, on loopback only")),
        (false, false) => problems.push(format!("{at}: the API port {api} is closed")),
        _ => {}
    }
}
