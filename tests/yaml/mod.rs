//! YAML documents as `serde_json::Value`s, for the tests that read the deploy manifests
//! and `openapi.yaml`. yaml-rust2 parses (YAML 1.2, duplicate keys refused); JSON values
//! keep the checks short (`doc["spec"]["template"]`, `.as_str()`).

#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// A path inside the repository, independent of the current directory.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Every document of a YAML file, or a message naming the file and what is wrong.
pub fn load_all(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| format!("{}: not valid YAML: {e}", path.display()))?;
    docs.iter()
        .enumerate()
        .map(|(i, doc)| {
            to_json(doc).map_err(|e| format!("{} document {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// The one document of a YAML file.
pub fn load_one(path: &Path) -> Value {
    let mut docs = load_all(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        docs.len(),
        1,
        "{}: expected one YAML document",
        path.display()
    );
    docs.remove(0)
}

fn to_json(yaml: &Yaml) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(text) => {
            let f = yaml
                .as_f64()
                .ok_or_else(|| format!("bad number {text:?}"))?;
            Value::from(f)
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (key, value) in hash {
                // Kubernetes and OpenAPI keys are strings; an unquoted `200:` is an integer
                // in YAML, and tools disagree on what to make of it.
                let Yaml::String(key) = key else {
                    return Err(format!("mapping key {key:?} is not a string (quote it)"));
                };
                map.insert(key.clone(), to_json(value)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err(format!("unsupported node {yaml:?}")),
    })
}
