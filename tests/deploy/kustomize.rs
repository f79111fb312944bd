//! The Kubernetes manifests as `kubectl apply -k` would see them: a copy of
//! `deploy/kubernetes/`, maybe edited and with optional patches switched on, rendered by
//! `kubectl kustomize` and parsed. The kustomization files use what kustomize v5 has
//! (`patches` with targets, generator `options`); an older kubectl fails here with a message
//! that says so rather than with kustomize's own parse error.

#![allow(dead_code)] // tests/deploy.rs and tests/siem.rs each use a part

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::checks::load_embedded;
use crate::common::fresh_dir;
use crate::yaml::{load_all, repo_path};

/// The overlay that runs sipgw beside an app in its pod.
pub const SIDECAR: &str = "sidecar";
/// The overlay that runs sipgw as a Deployment of its own behind a Service.
pub const SHARED: &str = "shared-service";
/// The oldest kustomize the overlays are known to build with (v5.5.0 was tried; the
/// v2.0.3 in Debian 12's kubectl 1.20 refuses `patches` and generator `options`).
pub const MIN_KUSTOMIZE_MAJOR: u64 = 5;

/// The kubectl to run: `$SIPGW_KUBECTL`, or `kubectl` on the `PATH`.
fn kubectl_program() -> String {
    std::env::var("SIPGW_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// Whether `kubectl version --client -o json` output names a kustomize this module can
/// use, or why not.
pub fn check_kustomize_version(version_json: &str) -> Result<(), String> {
    let version: Value = serde_json::from_str(version_json)
        .map_err(|e| format!("`kubectl version --client -o json` is not JSON: {e}"))?;
    let kubectl = version["clientVersion"]["gitVersion"]
        .as_str()
        .unwrap_or("unknown");
    let Some(kustomize) = version["kustomizeVersion"].as_str() else {
        return Err(format!(
            "kubectl {kubectl} reports no kustomize version (kubectl before 1.24 embeds \
             kustomize v2 or v3); the overlays need kustomize v{MIN_KUSTOMIZE_MAJOR}+ \
             (kubectl 1.27+)"
        ));
    };
    let major = kustomize
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok());
    match major {
        Some(m) if m >= MIN_KUSTOMIZE_MAJOR => Ok(()),
        _ => Err(format!(
            "kubectl {kubectl} embeds kustomize {kustomize}; the overlays need \
             v{MIN_KUSTOMIZE_MAJOR}+ (kubectl 1.27+)"
        )),
    }
}

/// Panics with a clear message unless a usable kubectl is there (checked once).
fn require_kubectl() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let program = kubectl_program();
        let output = Command::new(&program)
            .args(["version", "--client", "-o", "json"])
            .output()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        check_kustomize_version(&String::from_utf8_lossy(&output.stdout))
    });
    if let Err(why) = checked {
        panic!(
            "these tests render deploy/kubernetes with `kubectl kustomize`: {why}. \
             Install kubectl 1.27+ or point SIPGW_KUBECTL at one."
        );
    }
}

/// The text of a file under `deploy/kubernetes/`.
pub fn source(file: &str) -> String {
    let path = repo_path(&format!("deploy/kubernetes/{file}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One edit before rendering: in the file (under `deploy/kubernetes/`), the first `from`
/// replaced by `to`.
pub type Edit<'a> = (&'a str, &'a str, &'a str);

/// A rendered overlay: its documents, and a scratch directory for the checks' test files.
pub struct Rendered {
    /// Every object `kubectl apply -k` would apply.
    pub docs: Vec<Value>,
    /// Where the copy was rendered; free for the checks' throw-away files.
    pub scratch: PathBuf,
}

/// `overlay` rendered after `edits`, with the patches marked `#MARKER ` in its
/// kustomization.yaml switched on for each of `markers`.
pub fn render(overlay: &str, markers: &[&str], edits: &[Edit]) -> Rendered {
    require_kubectl();
    let scratch = fresh_dir(&format!("kustomize-{overlay}"));
    let tree = scratch.join("kubernetes");
    copy_tree(&repo_path("deploy/kubernetes"), &tree);
    for (file, from, to) in edits {
        let path = tree.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            text.contains(from),
            "{file} no longer holds {from:?}; update this test"
        );
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    let kustomization = tree.join(format!("overlays/{overlay}/kustomization.yaml"));
    let text = std::fs::read_to_string(&kustomization).unwrap();
    for marker in markers {
        assert!(
            text.contains(&format!("#{marker} ")),
            "no #{marker} lines in {overlay}"
        );
    }
    std::fs::write(&kustomization, uncomment(&text, markers)).unwrap();
    let output = Command::new(kubectl_program())
        .arg("kustomize")
        .arg(kustomization.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize {overlay} {markers:?} {edits:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = scratch.join("rendered.yaml");
    std::fs::write(&rendered, &output.stdout).unwrap();
    let docs = load_all(&rendered).unwrap_or_else(|e| panic!("{e}"));
    Rendered { docs, scratch }
}

/// `text` with the lines marked `#MARKER ` (for each marker) uncommented, keeping their
/// indent.
pub fn uncomment(text: &str, markers: &[&str]) -> String {
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

/// A copy of the directory `from` at `to`, for rendering an edited tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `root`, as paths relative to it, sorted.
pub fn source_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                out.push(relative.display().to_string());
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files.sort();
    files
}

/// What is wrong with the kustomize tree at `root` that needs no kubectl to see: a file
/// that is not YAML (a `.toml` that is not a config sipgw loads), a file a kustomization
/// names that does not exist, a file no kustomization names (a stale one). The optional
/// patches count as named.
pub fn tree_problems(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for file in source_files(root) {
        let text = std::fs::read_to_string(root.join(&file)).unwrap();
        if file.ends_with(".toml") {
            if let Err(e) = load_embedded(&text, &[], &fresh_dir("toml")) {
                problems.push(format!("{file}: {e}"));
            }
            continue;
        }
        let scratch = fresh_dir("source").join("file.yaml");
        std::fs::write(&scratch, uncomment(&text, &["tls", "mtls", "fluentbit"])).unwrap();
        let docs = match load_all(&scratch) {
            Ok(docs) => docs,
            Err(e) => {
                problems.push(format!("{file}: {e}"));
                continue;
            }
        };
        if !file.ends_with("kustomization.yaml") {
            continue;
        }
        let dir = Path::new(&file).parent().unwrap();
        for name in named_files(&docs[0]) {
            let target = root.join(dir).join(&name);
            let target = if target.is_dir() {
                target.join("kustomization.yaml")
            } else {
                target
            };
            match std::fs::canonicalize(&target) {
                Ok(path) => named.insert(path),
                Err(_) => {
                    problems.push(format!("{file} names {name}, which does not exist"));
                    continue;
                }
            };
        }
    }
    for file in source_files(root) {
        // An overlay's kustomization is what `kubectl apply -k` is pointed at.
        let entry = file.starts_with("overlays/") && file.ends_with("/kustomization.yaml");
        let path = std::fs::canonicalize(root.join(&file)).unwrap();
        if !entry && !named.contains(&path) {
            problems.push(format!("{file} is named by no kustomization"));
        }
    }
    problems
}

/// The files a kustomization names: resources, patches, generator files.
fn named_files(kustomization: &Value) -> Vec<String> {
    let list = |key: &str| kustomization[key].as_array().cloned().unwrap_or_default();
    let resources = list("resources").into_iter();
    let patches = list("patches").into_iter().map(|p| p["path"].clone());
    let generated = list("configMapGenerator")
        .into_iter()
        .flat_map(|g| g["files"].as_array().cloned().unwrap_or_default());
    resources
        .chain(patches)
        .chain(generated)
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}
