//! The `#fluentbit` lines of `deploy/kubernetes/sidecar.yaml` against sipgw's config and
//! the Fluent Bit sidecar's, with each check shown to catch a broken manifest.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::common::fresh_dir;
use super::yaml::{self, repo_path};
use super::{MANIFEST, SIDECAR_CONFIG, checks, env_references, fluent_bit, named};

/// `text` with the `#fluentbit ` lines uncommented.
fn with_fluent_bit(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        match body.strip_prefix("#fluentbit ") {
            Some(rest) => out.push_str(&format!("{indent}{rest}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn manifest_docs(text: &str, name: &str) -> (Vec<Value>, PathBuf) {
    let scratch = fresh_dir(name);
    let file = scratch.join("sidecar.yaml");
    std::fs::write(&file, text).unwrap();
    (
        yaml::load_all(&file).unwrap_or_else(|e| panic!("{e}")),
        scratch,
    )
}

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
    let (file, _) = checks::load_embedded(map["data"]["sipgw.toml"].as_str().unwrap(), scratch)
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
    let text = std::fs::read_to_string(repo_path(MANIFEST)).unwrap();
    assert!(text.contains("#fluentbit "), "no #fluentbit lines");
    let enabled = with_fluent_bit(&text);
    let (docs, scratch) = manifest_docs(&enabled, "fluent-bit-manifest");
    let problems = checks::check_manifest(&docs, &scratch);
    assert!(problems.is_empty(), "{problems:#?}");
    let problems = fluent_bit_problems(&docs, &scratch, &text);
    assert!(problems.is_empty(), "{problems:#?}");

    // Broken one way each, and caught.
    let broken: &[(&str, &str, &str)] = &[
        (
            "#fluentbit       mountPath: /var/lib/sipgw/audit",
            "#fluentbit       mountPath: /var/lib/sipgw/trail",
            "does not mount sipgw's trail volume",
        ),
        (
            "#fluentbit       mountPath: /var/lib/fluent-bit\n",
            "#fluentbit       mountPath: /var/lib/fluent-bit-state\n",
            "on no writable emptyDir mount",
        ),
        (
            "#fluentbit     - name: SIEM_URI\n#fluentbit       value: /ingest/sipgw-audit\n",
            "",
            "SIEM_URI is not in fluent-bit's env",
        ),
        (
            "#fluentbit     runAsUser: 65532",
            "#fluentbit     runAsUser: 1000",
            "trail's owner",
        ),
        (
            "    path = \"/var/lib/sipgw/audit/sipgw-audit.jsonl\"",
            "    path = \"/var/lib/sipgw/audit/trail/sipgw-audit.jsonl\"",
            "not audit.path's directory",
        ),
    ];
    for (from, to, needle) in broken {
        let edited = edit_ignoring_indent(&text, from, to);
        let (docs, scratch) = manifest_docs(&with_fluent_bit(&edited), "fluent-bit-broken");
        let problems = fluent_bit_problems(&docs, &scratch, &edited);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{from:?} -> {to:?}: expected {needle:?} in {problems:#?}"
        );
    }
    // The stop order: fluent-bit moved after sipgw.
    let deployment = checks::of_kind(&docs, "Deployment").next().unwrap().clone();
    let mut moved = docs.clone();
    let position = moved.iter().position(|d| d == &deployment).unwrap();
    let init = moved[position]["spec"]["template"]["spec"]["initContainers"]
        .as_array_mut()
        .unwrap();
    init.reverse();
    let problems = fluent_bit_problems(&moved, &scratch, &text);
    assert!(
        problems.iter().any(|p| p.contains("it would stop first")),
        "{problems:#?}"
    );
}

/// `text` with the lines of `from` (compared without their leading spaces) replaced by
/// those of `to`, each keeping the indent of the line it replaces (or of the first one).
fn edit_ignoring_indent(text: &str, from: &str, to: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from: Vec<&str> = from.lines().map(str::trim_start).collect();
    let start = (0..lines.len())
        .find(|&i| {
            from.iter()
                .enumerate()
                .all(|(k, f)| lines.get(i + k).is_some_and(|l| l.trim_start() == *f))
        })
        .unwrap_or_else(|| panic!("{MANIFEST} no longer holds {from:?}; update this test"));
    let indent = |l: &str| l[..l.len() - l.trim_start().len()].to_owned();
    let mut out: Vec<String> = lines[..start].iter().map(|l| (*l).to_owned()).collect();
    for (k, line) in to.lines().enumerate() {
        let at = lines[start + k.min(from.len() - 1)];
        out.push(format!("{}{}", indent(at), line.trim_start()));
    }
    out.extend(lines[start + from.len()..].iter().map(|l| (*l).to_owned()));
    out.join("\n") + "\n"
}
