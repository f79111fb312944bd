//! Config loading (`src/config`): TOML text through stage one (serde, unknown keys refused)
//! and stage two (validation into typed values), as `serve` and `check-config` run them.
//!
//! Input: the TOML text. Validation reads the files that `*_file` keys name; so that
//! fuzzing reads nothing but its own fixtures (no device, FIFO or huge file), inputs whose
//! `*_file` keys name anything other than a file in `fuzz/fixtures/` are skipped, and the
//! target runs from that folder. Nothing is written, nothing touches the network (URLs are
//! only parsed).

#![no_main]

use std::sync::Once;

use figment::Figment;
use figment::providers::{Format, Toml};
use libfuzzer_sys::fuzz_target;
use sipgw::config::{Config, FileConfig};

/// The files a config may name (see `fuzz/fixtures/README.md`).
const FIXTURES: [&str; 6] = [
    "dev-jwks.json",
    "app-secret",
    "hmac-key",
    "ca.pem",
    "tls-cert.pem",
    "tls-key.pem",
];
/// The app secret the fake environment holds, under `SIPGW_APP_SECRET` only.
const ENV_SECRET: &str = "fuzz-env-app-secret";
/// The secrets the loader can read (the environment's, `app-secret`'s, `hmac-key`'s),
/// which no error message may quote.
const SECRETS: [&str; 3] = [
    ENV_SECRET,
    "fuzz-file-app-secret",
    "fuzz-hmac-key-0123456789abcdef",
];

fn env(name: &str) -> Option<String> {
    (name == "SIPGW_APP_SECRET").then(|| ENV_SECRET.to_owned())
}

fuzz_target!(|data: &[u8]| {
    static IN_FIXTURES: Once = Once::new();
    IN_FIXTURES.call_once(|| {
        std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
            .expect("fuzz/fixtures exists");
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // figment parses with this same `toml` crate: text it refuses never reaches a file read.
    if let Ok(document) = text.parse::<toml::Table>()
        && !names_only_fixtures(&toml::Value::Table(document))
    {
        return;
    }
    match load(text) {
        Ok(file) => check_accepted(&file),
        Err(message) => {
            for secret in SECRETS {
                assert!(
                    !message.contains(secret) || text.contains(secret),
                    "an error quotes a secret the input did not hold: {message}"
                );
            }
        }
    }
});

/// Stage one then stage two, as [`Config::from_figment`] runs them; the stage-one value is
/// returned too, for the round trip.
fn load(text: &str) -> Result<FileConfig, String> {
    let figment = || Figment::from(Toml::string(text));
    let file: FileConfig = figment().extract().map_err(|e| e.to_string())?;
    Config::from_figment(figment(), env).map_err(|e| e.to_string())?;
    Ok(file)
}

/// What `check-config` prints for an accepted file (less its redactions) is itself a
/// config that loads, and prints the same again.
fn check_accepted(file: &FileConfig) {
    let rendered = toml::to_string_pretty(file).expect("an accepted config renders as TOML");
    let again = load(&rendered)
        .unwrap_or_else(|e| panic!("the rendered config does not load: {e}\n{rendered}"));
    let rendered_again = toml::to_string_pretty(&again).expect("renders");
    assert_eq!(rendered, rendered_again, "rendering is not a fixed point");
}

/// Whether every `*_file` key, in any table, names one of the [`FIXTURES`].
fn names_only_fixtures(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(table) => table.iter().all(|(key, value)| match value {
            toml::Value::String(path) if key.ends_with("_file") => {
                FIXTURES.contains(&path.as_str())
            }
            other => names_only_fixtures(other),
        }),
        toml::Value::Array(items) => items.iter().all(names_only_fixtures),
        _ => true,
    }
}
