//! The sidecar overlay rendered with its `#fluentbit` patch against sipgw's config and the
//! Fluent Bit sidecar's, with each check shown to catch a broken manifest.

use std::path::Path;

use serde_json::Value;

use super::kustomize::{self, SIDECAR, render};
use super::yaml::repo_path;
use super::{MANIFEST, SIDECAR_CONFIG, checks, env_references, fluent_bit, named};

/// What must agree between the Fluent Bit sidecar, sipgw and the sidecar config for the
/// records to leave the pod.
fn fluent_bit_problems(docs: &[Value], scratch: &Path, manifest: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut add = |p: String| problems.push(p);
    let deployment = checks::of_kind(docs, "Deployment").next().unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let init = pod["initContainers"].as_array().unwrap();
    let index = |name: &str| init.iter().position(|c| c["name"] == name);
    let (Some(shipper), Some(sipgw)) = (index("fluent-bit"), index("sipgw")) else {
        return vec!["no fluent-bit and sipgw init containers".into()];
    };
    // Native sidecars stop in reverse order: the shipper must outlive sipgw's last record.
    if shipper > sipgw {
        add("fluent-bit comes after sipgw: it would stop first".into());
    }
    let container = &init[shipper];
    if container["restartPolicy"] != "Always" {
        add("fluent-bit is not a native sidecar (restartPolicy: Always)".into());
    }
    let mounts = container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mount_of = |path: &str| {
        mounts
            .iter()
            .filter(|m| checks::is_under(path, m["mountPath"].as_str().unwrap_or("-")))
            .max_by_key(|m| m["mountPath"].as_str().unwrap_or_default().len())
            .cloned()
    };
    let volume = |name: &Value| {
        pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| &v["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    // Its config: the ConfigMap the manifest's comment creates from the committed file.
    let config_path = container["args"]
        .as_array()
        .and_then(|a| a.iter().skip_while(|x| *x != "-c").nth(1))
        .and_then(Value::as_str)
        .unwrap_or("-");
    match mount_of(config_path) {
        None => add(format!("the config {config_path} is under no volumeMount")),
        Some(mount) => {
            let map = &volume(&mount["name"])["configMap"]["name"];
            let file = Path::new(config_path)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            // The comment's lines, without their indent.
            let comment: String = manifest
                .lines()
                .map(|l| format!("{}\n", l.trim_start()))
                .collect();
            let create = format!(
                "create configmap {} \\\n#     --from-file={file}={SIDECAR_CONFIG}\n",
                map.as_str().unwrap_or("-")
            );
            if !comment.contains(&create) {
                add(format!(
                    "no comment creates ConfigMap {map} from {SIDECAR_CONFIG}"
                ));
            }
        }
    }
    // The trail: the directory sipgw writes, on the same volume, read-only here.
    let config = fluent_bit(SIDECAR_CONFIG);
    let glob = named(&config["pipeline"]["inputs"], "tail")[0]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = glob.rsplit_once('/').unwrap().0;
    let map = checks::of_kind(docs, "ConfigMap").next().unwrap();
    let toml = map["data"]["sipgw.toml"].as_str().unwrap();
    let (file, _) = checks::load_embedded(toml, &checks::sipgw_env(&init[sipgw]), scratch)
        .unwrap_or_else(|e| panic!("{e}"));
    let audit_path = file.audit.path.clone();
    if Path::new(&audit_path).parent() != Some(Path::new(dir)) {
        add(format!(
            "the tail path {glob} is not audit.path's directory ({audit_path})"
        ));
    }
    let sipgw_mount = init[sipgw]["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| checks::is_under(&audit_path, m["mountPath"].as_str().unwrap_or("-")))
        .cloned();
    match (mount_of(dir), sipgw_mount) {
        (Some(ours), Some(theirs)) if ours["name"] == theirs["name"] => {
            if ours["readOnly"] != true {
                add("fluent-bit mounts the trail writable".into());
            }
        }
        _ => add(format!(
            "fluent-bit does not mount sipgw's trail volume at {dir}"
        )),
    }
    // Offsets and buffer: writable, not on the trail's volume.
    let tail = &named(&config["pipeline"]["inputs"], "tail")[0];
    for path in [&tail["db"], &config["service"]["storage.path"]] {
        let path = path.as_str().unwrap();
        match mount_of(path) {
            Some(m) if m["readOnly"] != true && volume(&m["name"])["emptyDir"].is_object() => {}
            _ => add(format!("{path} is on no writable emptyDir mount")),
        }
    }
    // The endpoint and the credential from its env; the credential from a Secret.
    let text = std::fs::read_to_string(repo_path(SIDECAR_CONFIG)).unwrap();
    let env = container["env"].as_array().cloned().unwrap_or_default();
    for name in env_references(&text) {
        match env.iter().find(|e| e["name"] == name.as_str()) {
            None => add(format!("{name} is not in fluent-bit's env")),
            Some(e) if name == "SIEM_AUTHORIZATION" && e["valueFrom"]["secretKeyRef"].is_null() => {
                add(format!("{name} is not from a Secret"))
            }
            Some(_) => {}
        }
    }
    // sipgw's files are its user's, mode 0600.
    if container["securityContext"]["runAsUser"] != checks::NONROOT_UID {
        add("fluent-bit does not run as the trail's owner (65532)".into());
    }
    problems
}

#[test]
fn the_fluent_bit_sidecar_manifest_agrees_with_sipgw_and_its_config() {
    let text = kustomize::source(MANIFEST);
    let rendered = render(SIDECAR, &["fluentbit"], &[]);
    let (docs, scratch) = (&rendered.docs, &rendered.scratch);
    let problems = checks::check_manifest(docs, scratch);
    assert!(problems.is_empty(), "{problems:#?}");
    let problems = fluent_bit_problems(docs, scratch, &text);
    assert!(problems.is_empty(), "{problems:#?}");

    // Broken one way each, and caught: (file under deploy/kubernetes, from, to, problem).
    let broken: &[(&str, &str, &str, &str)] = &[
        (
            MANIFEST,
            "        mountPath: /var/lib/sipgw/audit\n",
            "        mountPath: /var/lib/sipgw/trail\n",
            "does not mount sipgw's trail volume",
        ),
        (
            MANIFEST,
            "        mountPath: /var/lib/fluent-bit\n",
            "        mountPath: /var/lib/fluent-bit-state\n",
            "on no writable emptyDir mount",
        ),
        (
            MANIFEST,
            "      - name: SIEM_URI\n        value: /ingest/sipgw-audit\n",
            "",
            "SIEM_URI is not in fluent-bit's env",
        ),
        (
            MANIFEST,
            "      runAsUser: 65532",
            "      runAsUser: 1000",
            "trail's owner",
        ),
        (
            MANIFEST,
            "--from-file=fluent-bit.yaml=deploy/fluent-bit/sidecar.yaml",
            "--from-file=fluent-bit.yaml=fluent-bit.yaml",
            "no comment creates ConfigMap",
        ),
        (
            "overlays/sidecar/sipgw.toml",
            "path = \"/var/lib/sipgw/audit/sipgw-audit.jsonl\"",
            "path = \"/var/lib/sipgw/audit/trail/sipgw-audit.jsonl\"",
            "not audit.path's directory",
        ),
    ];
    for (file, from, to, needle) in broken {
        let edited = render(SIDECAR, &["fluentbit"], &[(file, from, to)]);
        let patch = if *file == MANIFEST {
            text.replacen(from, to, 1)
        } else {
            text.clone()
        };
        let problems = fluent_bit_problems(&edited.docs, &edited.scratch, &patch);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{file}: {from:?} -> {to:?}: expected {needle:?} in {problems:#?}"
        );
    }
    // The stop order: fluent-bit moved after sipgw.
    let deployment = checks::of_kind(docs, "Deployment").next().unwrap().clone();
    let mut moved = docs.clone();
    let position = moved.iter().position(|d| d == &deployment).unwrap();
    let init = moved[position]["spec"]["template"]["spec"]["initContainers"]
        .as_array_mut()
        .unwrap();
    init.reverse();
    let problems = fluent_bit_problems(&moved, scratch, &text);
    assert!(
        problems.iter().any(|p| p.contains("it would stop first")),
        "{problems:#?}"
    );
}
