//! `sipgw check-config`: the effective config printed without secrets, environment
//! overrides (one key of a table alone), each kind of mistake named by its key, the
//! start-up checks `serve` makes (an unusable audit directory), and `--probe`'s live
//! checks against real upstreams ([`probe`]).

mod common;
#[path = "check_config/probe.rs"]
mod probe;

use std::process::Command;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sipgw-check-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sipgw.toml");
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sipgw.example.toml");
    let output = Command::new(SIPGW)
        .args(["check-config", "--config", example])
        .env("SIPGW_APP_SECRET", "app-secret-value-42")
        .env("SIPGW__VENDOR__TIMEOUT_MS", "3000")
        .env("SIPGW__RATE_LIMIT__REDIS_URL", "rediss://redis:6380/0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("timeout_ms = 3000"),
        "the override is shown: {stdout}"
    );
    assert!(
        stdout.contains("[auth]") && stdout.contains("[audit]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# vendor app secret: <redacted>, read from $SIPGW_APP_SECRET"),
        "{stdout}"
    );
    assert!(stdout.contains("rediss://redis:6380/0"), "{stdout}");
    assert!(!stdout.contains("app-secret-value-42"));
    // A password in the Redis URL is refused, pointing at the file key, never quoted.
    let output = Command::new(SIPGW)
        .args(["check-config", "--config", example])
        .env("SIPGW_APP_SECRET", "x")
        .env(
            "SIPGW__RATE_LIMIT__REDIS_URL",
            "redis://:redis-pass-77@redis:6379/0",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rate_limit.redis_url")
            && stderr.contains("rate_limit.redis_password_file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("redis-pass-77") && output.stdout.is_empty(),
        "{stderr}"
    );
    // The same checks as `serve`: a bad value exits 2 naming the key.
    let output = Command::new(SIPGW)
        .args(["check-config", "--config", example])
        .env("SIPGW_APP_SECRET", "x")
        .env("SIPGW__AUDIT__FSYNC", "sometimes")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("audit.fsync"));
}

#[test]
fn check_config_takes_one_key_of_a_table_from_the_environment() {
    // docs/configuration.md's example, alone, over a file without a [rate_limit] section:
    // the rest of the table keeps its default.
    let page = include_str!("../docs/configuration.md");
    assert!(
        page.contains("`SIPGW__RATE_LIMIT__PER_AGENT__BURST=5` changes the burst")
            && page.contains("keeps `per_secs`"),
        "docs/configuration.md no longer gives this example"
    );
    let path = temp_file(
        "one-key",
        "[vendor]\nbase_url = \"https://v.example\"\napp_key = \"k\"\n\n[auth]\n\
         issuer = \"https://sso.example\"\naudiences = [\"sipgw\"]\n\
         jwks_url = \"https://sso.example/jwks\"\n",
    );
    let output = Command::new(SIPGW)
        .args(["check-config", "--config"])
        .arg(&path)
        .env("SIPGW_APP_SECRET", "x")
        .env("SIPGW__RATE_LIMIT__PER_AGENT__BURST", "5")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let per_agent = stdout
        .split("[rate_limit.per_agent]")
        .nth(1)
        .expect("the per-agent quota is printed");
    let table: Vec<&str> = per_agent.lines().skip(1).take(2).collect();
    assert_eq!(table, ["burst = 5", "per_secs = 1800"], "{stdout}");
}

#[test]
fn check_config_refuses_each_kind_of_mistake_naming_the_key() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sipgw.example.toml"
    ))
    .unwrap();
    let edit = |from: &str, to: &str| {
        assert!(example.contains(from), "the example config has {from:?}");
        example.replacen(from, to, 1)
    };
    // (case, config text, the key the message must name, what else it must say)
    let cases = [
        (
            "unknown-key",
            edit(
                "max_connections = 1024",
                "max_connections = 1024\nmax_conections = 5",
            ),
            "server.max_conections",
            "is not a known key",
        ),
        (
            "bad-duration",
            edit("\ntimeout_ms = 5000", "\ntimeout_ms = \"5s\""),
            "vendor.timeout_ms",
            "must be a whole number",
        ),
        (
            "inline-secret",
            edit(
                "[vendor]\n",
                "[vendor]\napp_secret = \"hunter2-inline-secret\"\n",
            ),
            "vendor.app_secret",
            "Secrets are never written in the config file",
        ),
        (
            "toml-syntax",
            edit(
                "[vendor]\n",
                "[vendor]\napp_secret = hunter2-inline-secret\n",
            ),
            "config",
            "TOML parse error at line",
        ),
        (
            "missing-secret-file",
            edit(
                "# app_secret_file = \"/run/secrets/sipgw/app_secret\"",
                "app_secret_file = \"/nonexistent/sipgw/app_secret\"",
            ),
            "vendor.app_secret_file",
            "/nonexistent/sipgw/app_secret",
        ),
        (
            "missing-hmac-key-file",
            edit(
                "# hmac_key_file = \"/run/secrets/sipgw/audit_hmac_key\"",
                "hmac_key_file = \"/nonexistent/sipgw/hmac\"",
            ),
            "audit.hmac_key_file",
            "/nonexistent/sipgw/hmac",
        ),
        (
            "bad-trusted-proxy",
            edit(
                "trusted_proxies = []",
                "trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]",
            ),
            "server.trusted_proxies",
            "\"10.0.0.0/33\" is not an IP address or a CIDR network",
        ),
    ];
    for (case, text, key, says) in cases {
        let path = temp_file(case, &text);
        let output = Command::new(SIPGW)
            .args(["check-config", "--config"])
            .arg(&path)
            .env("SIPGW_APP_SECRET", "app-secret-value-42")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{case}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid configuration: {key} ")),
            "{case}: the message names {key}: {stderr}"
        );
        assert!(stderr.contains(says), "{case}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{case}: nothing is printed as effective"
        );
        for secret in ["hunter2-inline-secret", "app-secret-value-42"] {
            assert!(
                !stderr.contains(secret),
                "{case}: {secret} echoed: {stderr}"
            );
        }
    }
}

#[test]
fn check_config_fails_as_serve_would_on_an_unusable_audit_directory() {
    // Running as root, permission bits do not stop a write: a regular file where the
    // trail's directory should be does, for anyone.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sipgw.example.toml"
    ))
    .unwrap();
    let dir = common::fresh_dir("check-config-audit");
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, "a file").unwrap();
    let trail = blocker.join("audit/sipgw-audit.jsonl");
    let path = temp_file(
        "unusable-audit",
        &example.replacen(
            "path = \"audit/sipgw-audit.jsonl\"",
            &format!("path = \"{}\"", trail.display()),
            1,
        ),
    );
    let output = Command::new(SIPGW)
        .args(["check-config", "--config"])
        .arg(&path)
        .env("SIPGW_APP_SECRET", "app-secret-value-42")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot open the audit trail {} (audit.path): {} is not a directory",
            trail.display(),
            blocker.display()
        )),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing printed as effective");
}

#[test]
fn listen_on_the_admin_port_and_no_key_source_are_config_errors() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sipgw.example.toml"
    ))
    .unwrap();
    let run = |name: &str, text: &str| {
        let output = Command::new(SIPGW)
            .args(["check-config", "--config"])
            .arg(temp_file(name, text))
            .env("SIPGW_APP_SECRET", "x")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let listen = example
        .lines()
        .find(|line| line.starts_with("listen = "))
        .expect("the example sets server.listen");
    let address = listen.trim_start_matches("listen = ").trim_matches('"');
    let same = run(
        "same-port",
        &example.replacen(
            "admin_listen = ",
            &format!("admin_listen = \"{address}\"\n# was: "),
            1,
        ),
    );
    assert!(
        same.contains(&format!(
            "server.admin_listen {address} takes the same port as server.listen {address}"
        )),
        "{same}"
    );
    let none = run(
        "no-key-source",
        &example.replacen("\ndiscovery_url = ", "\n# discovery_url = ", 1),
    );
    assert!(
        none.contains(
            "auth has no key source: set one of auth.jwks_url, auth.jwks_file or auth.discovery_url"
        ),
        "{none}"
    );
}
