//! README "Operating sipgw" and `config/sipgw.example.toml` against the code, so that the
//! documentation of the configuration cannot drift from it.

use std::collections::BTreeMap;

use figment::Figment;
use figment::providers::{Format, Toml};
use sipgw::config::FileConfig;

const README: &str = include_str!("../README.md");
const EXAMPLE: &str = include_str!("../config/sipgw.example.toml");

/// Every key the configuration accepts, as `section.key`, with its default (absent when
/// the default is "unset"). Sections and their keys come from the code itself: the
/// defaults from serializing `FileConfig::default()`, the full key list of each section from
/// the "unknown key" error that names every accepted key.
fn code_keys() -> BTreeMap<String, Option<toml::Value>> {
    let defaults = toml::Value::try_from(FileConfig::default()).unwrap();
    let mut keys = BTreeMap::new();
    for (section, values) in defaults.as_table().unwrap() {
        let probe = format!("[{section}]\nnot_a_key_probe = 1\n");
        let error = Figment::new()
            .merge(Toml::string(&probe))
            .extract::<FileConfig>()
            .expect_err("an unknown key is refused");
        let figment::error::Kind::UnknownField(_, known) = error.kind else {
            panic!("unexpected error for [{section}]: {error}");
        };
        for key in known {
            keys.insert(
                format!("{section}.{key}"),
                values.as_table().unwrap().get(*key).cloned(),
            );
        }
    }
    keys
}

/// The README's table of configuration keys: key to the "Default" cell.
fn readme_keys() -> BTreeMap<String, String> {
    let section = README
        .split("### Configuration keys")
        .nth(1)
        .expect("README has a \"### Configuration keys\" section");
    let section = section.split("\n### ").next().unwrap();
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let key = cells[0].trim_start_matches("| ").trim_matches('`');
            (key.to_owned(), cells[1].to_owned())
        })
        .collect()
}

#[test]
fn the_readme_lists_every_key_with_the_codes_default() {
    let code = code_keys();
    let readme = readme_keys();
    let missing: Vec<_> = code.keys().filter(|k| !readme.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "keys missing from the README: {missing:?}"
    );
    let invented: Vec<_> = readme.keys().filter(|k| !code.contains_key(*k)).collect();
    assert!(
        invented.is_empty(),
        "README keys the code does not have: {invented:?}"
    );
    for (key, default) in &code {
        let cell = &readme[key];
        match default {
            None => assert!(
                cell.starts_with('—'),
                "{key} has no default in the code; the README says {cell}"
            ),
            Some(value) => {
                let literal = cell
                    .split('`')
                    .nth(1)
                    .unwrap_or_else(|| panic!("{key}: no `default` in README cell {cell}"));
                let documented: toml::Table = toml::from_str(&format!("v = {literal}"))
                    .unwrap_or_else(|e| panic!("{key}: README default {literal} is not TOML: {e}"));
                assert_eq!(
                    &documented["v"], value,
                    "{key}: the README's default differs from the code's"
                );
            }
        }
    }
}

#[test]
fn the_example_config_mentions_every_key_in_its_section() {
    // Each key appears as `key =` (set) or `# key =` (shown commented out) inside its
    // `[section]`; the example is the commented reference operators copy from.
    let mut section = String::new();
    let mut mentioned = std::collections::BTreeSet::new();
    for line in EXAMPLE.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.split('.').next().unwrap().to_owned();
            if let Some(sub) = name.split_once('.').map(|(_, sub)| sub) {
                mentioned.insert(format!("{section}.{sub}"));
            }
            continue;
        }
        if let Some((key, _)) = line.split_once(" =")
            && !key.contains(' ')
            && !section.is_empty()
        {
            mentioned.insert(format!("{section}.{key}"));
        }
    }
    let missing: Vec<_> = code_keys()
        .into_keys()
        .filter(|k| !mentioned.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "config/sipgw.example.toml does not mention: {missing:?}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let config =
        sipgw::config::Config::from_figment(Figment::new().merge(Toml::string(EXAMPLE)), |name| {
            (name == "SIPGW_APP_SECRET").then(|| "example-secret".to_owned())
        });
    assert!(config.is_ok(), "{:?}", config.err());
}
