//! The objects around sipgw's pods that no config key depends on, but whose selectors and
//! ports must still meet sipgw: the ServiceAccount token (never mounted), the PodMonitor
//! (scrapes the admin port of the sipgw pods) and the PodDisruptionBudget (keeps one
//! replica serving through voluntary disruptions).

use serde_json::Value;

use super::{Sipgw, of_kind, resolve_port, target};

/// sipgw never calls the Kubernetes API: the pod mounts no token, and a ServiceAccount it
/// names is one of this file (not a default one with whatever RBAC the namespace has).
pub(super) fn check_service_account(docs: &[Value], pod: &Value, add: &mut dyn FnMut(String)) {
    if pod["automountServiceAccountToken"] != false {
        add("the pod's automountServiceAccountToken is not false".into());
    }
    let Some(name) = pod["serviceAccountName"].as_str() else {
        return;
    };
    let account = of_kind(docs, "ServiceAccount").find(|a| a["metadata"]["name"] == name);
    match account {
        None => add(format!(
            "serviceAccountName {name} is no ServiceAccount of this file"
        )),
        Some(a) if a["automountServiceAccountToken"] != false => add(format!(
            "ServiceAccount {name}: automountServiceAccountToken is not false"
        )),
        Some(_) => {}
    }
}

/// Every sipgw Deployment is scraped by a PodMonitor on its admin port, and one with more
/// than one replica has a PodDisruptionBudget that lets a drain proceed one pod at a time.
pub(super) fn check_monitoring_and_disruption(
    docs: &[Value],
    sipgws: &[Sipgw],
    problems: &mut Vec<String>,
) {
    let mut scraped = vec![false; sipgws.len()];
    for monitor in of_kind(docs, "PodMonitor") {
        let at = format!("PodMonitor {}", monitor["metadata"]["name"]);
        match check_pod_monitor(monitor, sipgws) {
            Ok(index) => scraped[index] = true,
            Err(what) => problems.push(format!("{at}: {what}")),
        }
    }
    let mut budgeted = vec![false; sipgws.len()];
    for budget in of_kind(docs, "PodDisruptionBudget") {
        let at = format!("PodDisruptionBudget {}", budget["metadata"]["name"]);
        match check_budget(budget, sipgws) {
            Ok(index) => budgeted[index] = true,
            Err(what) => problems.push(format!("{at}: {what}")),
        }
    }
    for (i, sipgw) in sipgws.iter().enumerate() {
        let labels = sipgw.pod_labels;
        if !scraped[i] {
            problems.push(format!("pods {labels}: no PodMonitor scrapes them"));
        }
        if sipgw.replicas > 1 && !budgeted[i] {
            let replicas = sipgw.replicas;
            problems.push(format!(
                "pods {labels}: {replicas} replicas and no PodDisruptionBudget"
            ));
        }
    }
}

/// The index of the sipgw Deployment `monitor` scrapes, or what is wrong with it.
fn check_pod_monitor(monitor: &Value, sipgws: &[Sipgw]) -> Result<usize, String> {
    let spec = &monitor["spec"];
    let index = index_of(&spec["selector"]["matchLabels"], sipgws)?;
    let sipgw = &sipgws[index];
    let admin = i64::from(sipgw.config.server.admin_listen.port());
    // Empty or absent: the PodMonitor's own namespace, the pods' (one overlay, one namespace).
    let namespaces = &spec["namespaceSelector"];
    if !(namespaces.is_null() || namespaces.as_object().is_some_and(|n| n.is_empty())) {
        return Err(format!(
            "namespaceSelector {namespaces} looks beyond its namespace"
        ));
    }
    let endpoints = spec["podMetricsEndpoints"].as_array();
    let endpoints = endpoints
        .filter(|e| !e.is_empty())
        .ok_or("no podMetricsEndpoints")?;
    for endpoint in endpoints {
        // The Operator takes a container port's name here.
        let port = &endpoint["port"];
        if port.as_str().is_none() || resolve_port(port, &sipgw.named_ports) != Some(admin) {
            return Err(format!(
                "port {port} is not the name of the admin port {admin}"
            ));
        }
        let path = endpoint["path"].as_str().unwrap_or("/metrics");
        if path != "/metrics" {
            return Err(format!("path {path:?} is not /metrics"));
        }
    }
    Ok(index)
}

/// The index of the sipgw Deployment `budget` covers, or what is wrong with it: it must
/// let one pod go (or a drain never ends) and keep one (or it guards nothing).
fn check_budget(budget: &Value, sipgws: &[Sipgw]) -> Result<usize, String> {
    let spec = &budget["spec"];
    let index = index_of(&spec["selector"]["matchLabels"], sipgws)?;
    let replicas = sipgws[index].replicas;
    let allowed = match (
        spec["maxUnavailable"].as_i64(),
        spec["minAvailable"].as_i64(),
    ) {
        (Some(max), None) => max,
        (None, Some(min)) => replicas - min,
        _ => return Err("not exactly one of maxUnavailable, minAvailable as a number".into()),
    };
    if allowed < 1 {
        return Err(format!(
            "{replicas} replicas: no pod may be evicted, drains hang"
        ));
    }
    if allowed >= replicas {
        return Err(format!(
            "{replicas} replicas: every replica may be evicted at once"
        ));
    }
    Ok(index)
}

/// The index of the sipgw Deployment whose pods `selector` selects.
fn index_of(selector: &Value, sipgws: &[Sipgw]) -> Result<usize, String> {
    let found = target(selector, sipgws).ok_or("its selector matches no sipgw pod")?;
    Ok(sipgws.iter().position(|s| std::ptr::eq(s, found)).unwrap())
}
