//! `docs/configuration.md` (the key table), `config/sipgw.example.toml` and the error table
//! of `docs/api.md` against the code, so that the documentation of the configuration and of
//! the error codes cannot drift from it.

use std::collections::BTreeMap;

use figment::Figment;
use figment::providers::{Format, Toml};
use sipgw::config::FileConfig;

const CONFIGURATION: &str = include_str!("../docs/configuration.md");
const API: &str = include_str!("../docs/api.md");
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

/// The `## ` section of a page that starts with `heading`, up to the next `## ` heading.
fn section<'a>(page: &'a str, heading: &str) -> &'a str {
    let section = page
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading:?} section"));
    section.split("\n## ").next().unwrap()
}

/// The table of configuration keys in `docs/configuration.md`: key to the "Default" cell.
fn documented_keys() -> BTreeMap<String, String> {
    let section = section(CONFIGURATION, "## Configuration keys");
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
fn the_key_table_lists_every_key_with_the_codes_default() {
    let code = code_keys();
    let documented = documented_keys();
    let missing: Vec<_> = code
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/configuration.md: {missing:?}"
    );
    let invented: Vec<_> = documented
        .keys()
        .filter(|k| !code.contains_key(*k))
        .collect();
    assert!(
        invented.is_empty(),
        "docs/configuration.md keys the code does not have: {invented:?}"
    );
    for (key, default) in &code {
        let cell = &documented[key];
        match default {
            None => assert!(
                cell.starts_with('—'),
                "{key} has no default in the code; docs/configuration.md says {cell}"
            ),
            Some(value) => {
                let literal = cell.split('`').nth(1).unwrap_or_else(|| {
                    panic!("{key}: no `default` in docs/configuration.md cell {cell}")
                });
                let documented: toml::Table = toml::from_str(&format!("v = {literal}"))
                    .unwrap_or_else(|e| {
                        panic!("{key}: documented default {literal} is not TOML: {e}")
                    });
                assert_eq!(
                    &documented["v"], value,
                    "{key}: docs/configuration.md's default differs from the code's"
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

#[test]
fn the_api_pages_error_table_is_the_codes_catalogue() {
    // `| `code` | status | when |` rows of docs/api.md's "Error codes", both ways against
    // the codes the gateway can send.
    let documented: std::collections::BTreeSet<(u16, String)> = section(API, "## Error codes")
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let code = cells[0]
                .trim_start_matches("| ")
                .trim_matches('`')
                .to_owned();
            let status = cells[1]
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{code}: status {:?}: {e}", cells[1]));
            (status, code)
        })
        .collect();
    let implemented: std::collections::BTreeSet<(u16, String)> = sipgw::error::catalogue()
        .map(|(status, code)| (status.as_u16(), code.to_owned()))
        .collect();
    let undocumented: Vec<_> = implemented.difference(&documented).collect();
    let invented: Vec<_> = documented.difference(&implemented).collect();
    assert!(
        undocumented.is_empty() && invented.is_empty(),
        "docs/api.md \"Error codes\" vs sipgw::error::catalogue():\n  sent but not documented: \
         {undocumented:?}\n  documented but never sent: {invented:?}"
    );
}
