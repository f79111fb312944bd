use std::time::Duration;

use super::*;
use crate::vendor::config::BodyShape;
use figment::providers::{Format, Toml};

const MINIMAL: &str = r#"
[auth]
issuer = "https://sso.example.com/realms/corp"
audiences = ["sipgw"]
jwks_url = "https://sso.example.com/realms/corp/protocol/openid-connect/certs"

[vendor]
base_url = "https://vendor.example.com/"
app_key = "ak-1"
"#;

fn env_with_secret(name: &str) -> Option<String> {
    (name == "SIPGW_APP_SECRET").then(|| "s3cret".to_owned())
}

fn load(toml: &str) -> Result<Config, ConfigError> {
    Config::from_figment(Figment::from(Toml::string(toml)), env_with_secret)
}

fn error_of(toml: &str) -> String {
    load(toml)
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn minimal_file_gets_the_documented_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.limits.shutdown_grace, Duration::from_secs(20));
    assert_eq!(c.server.limits.max_connections_per_ip, 256);
    // The admin listener: its own slots and head timeout, the API's other bounds.
    assert_eq!(c.server.admin_limits.max_connections, 64);
    assert_eq!(c.server.admin_limits.max_connections_per_ip, 16);
    assert_eq!(
        c.server.admin_limits.header_read_timeout,
        Duration::from_secs(2)
    );
    assert_eq!(
        c.server.admin_limits.idle_timeout,
        c.server.limits.idle_timeout
    );
    assert_eq!(c.vendor.base_url, "https://vendor.example.com");
    assert_eq!(c.vendor.token_ttl, Duration::from_secs(600));
    assert_eq!(c.vendor.timeout, Duration::from_millis(5000));
    assert_eq!(c.vendor.body_shape, BodyShape::Wrapped);
    assert_eq!(c.password_policy, PasswordPolicy::default());
    use secrecy::ExposeSecret;
    assert_eq!(c.vendor.app_secret.expose_secret(), "s3cret");
}

#[test]
fn errors_name_the_key() {
    let with = |extra: &str| format!("{MINIMAL}{extra}\n");
    let cases = [
        (
            with("timeout_ms = 0"),
            "vendor.timeout_ms must be > 0, got 0",
        ),
        (
            with("token_ttl_secs = 3601"),
            "vendor.token_ttl_secs must be 30 to 3600, got 3601",
        ),
        (with("token_ttl_secs = 5"), "vendor.token_ttl_secs"),
        (
            with("timeout_ms = 9999999999999"),
            "vendor.timeout_ms must be 1 to 120000",
        ),
        (
            format!("{MINIMAL}[server]\nmax_connections = 5000000\n"),
            "server.max_connections must be 1 to 100000",
        ),
        (
            format!("{MINIMAL}[server]\nidle_timeout_secs = 0\n"),
            "server.idle_timeout_secs must be > 0, got 0",
        ),
        (
            format!("{MINIMAL}[server]\nshutdown_grace_secs = 99999999999\n"),
            "server.shutdown_grace_secs",
        ),
        (with("body_shape = \"nested\""), "vendor.body_shape"),
        (with("ca_file = \"/nonexistent/ca.pem\""), "vendor.ca_file"),
        (
            format!("{MINIMAL}[server]\nlisten = \"localhost\"\n"),
            "server.listen",
        ),
        (
            format!("{MINIMAL}[server]\nmax_connections = 0\n"),
            "server.max_connections",
        ),
        (
            format!("{MINIMAL}[server]\nmax_connections_per_ip = 0\n"),
            "server.max_connections_per_ip must be > 0",
        ),
        (
            format!("{MINIMAL}[server]\nadmin_max_connections = 0\n"),
            "server.admin_max_connections must be > 0",
        ),
        (
            format!("{MINIMAL}[server]\nadmin_max_connections_per_ip = 20000\n"),
            "server.admin_max_connections_per_ip must be 1 to 10000",
        ),
        (
            format!("{MINIMAL}[server]\nadmin_header_read_timeout_ms = 0\n"),
            "server.admin_header_read_timeout_ms",
        ),
        (
            format!("{MINIMAL}[password_policy]\nmin_classes = 7\n"),
            "password_policy.min_classes",
        ),
        (
            MINIMAL.replace("base_url = \"https://vendor.example.com/\"", ""),
            "vendor.base_url is required",
        ),
    ];
    for (toml, expected) in cases {
        let err = error_of(&toml);
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let err = error_of(&format!("{MINIMAL}timeout = 3\n"));
    assert!(err.contains("timeout"), "{err}");
    let err = error_of(&format!("{MINIMAL}[sever]\nlisten = \"127.0.0.1:1\"\n"));
    assert!(err.contains("sever"), "{err}");
}

#[test]
fn wrong_types_are_refused_with_the_key() {
    let err = error_of(&format!("{MINIMAL}timeout_ms = \"soon\"\n"));
    assert!(err.contains("timeout_ms"), "{err}");
}

#[test]
fn plain_http_needs_the_explicit_switch() {
    let http = MINIMAL.replace("https://vendor.example.com/", "http://127.0.0.1:9");
    assert!(error_of(&http).contains("vendor.base_url must be https://"));
    let c = load(&format!("{http}allow_insecure_http = true\n")).unwrap();
    assert_eq!(c.vendor.base_url, "http://127.0.0.1:9");
    let ftp = MINIMAL.replace("https://vendor.example.com/", "ftp://x");
    assert!(error_of(&ftp).contains("https://"));
}

#[test]
fn app_secret_comes_from_a_file_or_the_named_variable_only() {
    // Inline secrets are not a key at all.
    assert!(error_of(&format!("{MINIMAL}app_secret = \"inline\"\n")).contains("app_secret"));
    // Unset variable: the error names the variable, not a value.
    let err = Config::from_figment(Figment::from(Toml::string(MINIMAL)), |_| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vendor.app_secret_env") && err.contains("SIPGW_APP_SECRET"),
        "{err}"
    );
    // A file wins and its trailing newline is dropped.
    let dir = std::env::temp_dir().join(format!("sipgw-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, "from-file\n").unwrap();
    let toml = format!(
        "{MINIMAL}app_secret_file = {:?}\n",
        path.display().to_string()
    );
    use secrecy::ExposeSecret;
    assert_eq!(
        load(&toml).unwrap().vendor.app_secret.expose_secret(),
        "from-file"
    );
    std::fs::write(&path, "\n").unwrap();
    assert!(error_of(&toml).contains("vendor.app_secret_file"));
}

#[test]
fn debug_output_never_shows_the_secret() {
    let c = load(MINIMAL).unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
fn environment_overrides_any_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("sipgw.toml", MINIMAL)?;
        jail.set_env("SIPGW__VENDOR__TIMEOUT_MS", "3000");
        jail.set_env("SIPGW__SERVER__LISTEN", "127.0.0.1:9999");
        jail.set_env("SIPGW_APP_SECRET", "env-secret");
        let c = Config::load(Path::new("sipgw.toml")).map_err(|e| e.to_string())?;
        assert_eq!(c.vendor.timeout, Duration::from_millis(3000));
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9999");
        jail.set_env("SIPGW__VENDOR__TIMEOUT_MS", "0");
        let err = Config::load(Path::new("sipgw.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("vendor.timeout_ms"), "{err}");
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
fn one_key_of_a_table_can_be_overridden_alone() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("sipgw.toml", MINIMAL)?;
        jail.set_env("SIPGW_APP_SECRET", "env-secret");
        // The example in docs/configuration.md: the rest of the table keeps its default.
        jail.set_env("SIPGW__RATE_LIMIT__PER_AGENT__BURST", "5");
        let c = Config::load(Path::new("sipgw.toml")).map_err(|e| e.to_string())?;
        assert_eq!(c.limits.per_agent.burst.get(), 5);
        assert_eq!(c.limits.per_agent.per, Duration::from_secs(1800));
        assert_eq!(
            c.limits.per_caller.burst.get(),
            30,
            "the other table untouched"
        );

        // File then environment: the file's table, with the one key from the environment.
        let in_file = format!(
            "{MINIMAL}\n[rate_limit]\nper_agent = {{ burst = 4, per_secs = 600 }}\nper_caller = {{ burst = 7 }}\n"
        );
        jail.create_file("partial.toml", &in_file)?;
        let c = Config::load(Path::new("partial.toml")).map_err(|e| e.to_string())?;
        assert_eq!(c.limits.per_agent.burst.get(), 5, "the environment wins");
        assert_eq!(
            c.limits.per_agent.per,
            Duration::from_secs(600),
            "the file's"
        );
        // A partial inline table in the file also keeps the default of what it leaves out.
        assert_eq!(c.limits.per_caller.burst.get(), 7);
        assert_eq!(c.limits.per_caller.per, Duration::from_secs(60));

        // An override is still validated, naming the dotted key.
        jail.set_env("SIPGW__RATE_LIMIT__PER_AGENT__PER_SECS", "0");
        let err = Config::load(Path::new("sipgw.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rate_limit.per_agent.per_secs"), "{err}");
        Ok(())
    });
}

#[test]
fn a_missing_file_is_an_error_not_an_empty_config() {
    let err = Config::load(Path::new("/nonexistent/sipgw.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/sipgw.toml"), "{err}");
}

#[test]
fn the_shipped_config_files_are_valid() {
    let example = load(include_str!("../../config/sipgw.example.toml")).unwrap();
    assert_eq!(example.vendor.base_url, "https://service.example.com");
    assert_eq!(example.server.listen.to_string(), "127.0.0.1:8080");
    let demo = load(include_str!("../../config/demo.toml")).unwrap();
    assert_eq!(demo.vendor.base_url, "http://127.0.0.1:9443");
}

#[test]
fn audit_file_modes_are_owner_only_or_a_reviewers_group() {
    assert_eq!(load(MINIMAL).unwrap().audit.file_mode, 0o600);
    let group = load(&format!("{MINIMAL}[audit]\nfile_mode = \"0640\"\n")).unwrap();
    assert_eq!(group.audit.file_mode, 0o640);
    assert!(!group.audit.allow_new_chain);
    for refused in ["0644", "0666", "600", "0700", ""] {
        let err = error_of(&format!("{MINIMAL}[audit]\nfile_mode = \"{refused}\"\n"));
        assert!(
            err.contains("audit.file_mode must be \"0600\" or \"0640\""),
            "{refused}: {err}"
        );
    }
    let allowed = load(&format!("{MINIMAL}[audit]\nallow_new_chain = true\n")).unwrap();
    assert!(allowed.audit.allow_new_chain);
}

#[test]
fn trusted_proxies_are_none_by_default_and_each_entry_is_checked() {
    assert!(
        load(MINIMAL)
            .unwrap()
            .server
            .trusted_proxies
            .networks()
            .is_empty()
    );
    let some = load(&format!(
        "{MINIMAL}[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\", \"fd00::/8\"]\n"
    ))
    .unwrap();
    let shown: Vec<String> = some
        .server
        .trusted_proxies
        .networks()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]);
    for bad in [
        "10.0.0.0/33",
        "proxy.internal",
        "10.0.0.0/",
        "",
        "2001:db8::/200",
    ] {
        let err = error_of(&format!(
            "{MINIMAL}[server]\ntrusted_proxies = [\"127.0.0.1\", \"{bad}\"]\n"
        ));
        assert!(
            err.contains("server.trusted_proxies") && err.contains(&format!("{bad:?}")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn audit_instance_and_checkpoints_are_checked() {
    let defaults = load(MINIMAL).unwrap().audit;
    assert_eq!(defaults.instance, crate::audit::config::host_name());
    assert!(!defaults.instance.is_empty());
    assert_eq!(defaults.checkpoint_every, Some(1000));
    assert_eq!(defaults.checkpoint_interval, Some(Duration::from_secs(60)));
    let set = load(&format!(
        "{MINIMAL}[audit]\ninstance = \"gw-2.eu_west\"\ncheckpoint_every = 0\ncheckpoint_interval_secs = 0\n"
    ))
    .unwrap()
    .audit;
    assert_eq!(set.instance, "gw-2.eu_west");
    assert_eq!(
        (set.checkpoint_every, set.checkpoint_interval),
        (None, None)
    );
    for refused in ["", "gw 2", "gw/2", "\\u001b[31m", &"x".repeat(65)] {
        let err = error_of(&format!("{MINIMAL}[audit]\ninstance = \"{refused}\"\n"));
        assert!(
            err.contains("audit.instance must be 1 to 64"),
            "{refused}: {err}"
        );
        assert!(!err.contains('\u{1b}'), "{err}");
    }
    let err = error_of(&format!(
        "{MINIMAL}[audit]\ncheckpoint_interval_secs = 86401\n"
    ));
    assert!(
        err.contains("audit.checkpoint_interval_secs must be 1 to 86400"),
        "{err}"
    );
    let err = error_of(&format!(
        "{MINIMAL}[audit]\ncheckpoint_every = 2000000000\n"
    ));
    assert!(err.contains("audit.checkpoint_every must be"), "{err}");
}

mod auth;
mod redis;
mod tls;

#[test]
fn admin_listen_on_the_api_port_is_a_config_error_naming_both_keys() {
    let with = |listen: &str, admin: &str| {
        load(&format!(
            "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n{MINIMAL}"
        ))
    };
    let same = with("127.0.0.1:8080", "127.0.0.1:8080")
        .expect_err("one socket for both")
        .to_string();
    assert_eq!(
        same,
        "server.admin_listen 127.0.0.1:8080 takes the same port as server.listen \
         127.0.0.1:8080: give the admin listener a port of its own"
    );
    // A wildcard holds the loopback address of the same port (on Linux).
    let wild = with("0.0.0.0:8080", "127.0.0.1:8080").expect_err("collide");
    assert!(
        wild.to_string().contains("server.listen 0.0.0.0:8080"),
        "{wild}"
    );
    assert!(with("[::]:8080", "127.0.0.1:8080").is_err());
    // Port 0 picks a free port for each; different ports or addresses never collide.
    for (listen, admin) in [
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("127.0.0.1:8080", "127.0.0.1:9090"),
        ("127.0.0.1:8080", "127.0.0.2:8080"),
        ("0.0.0.0:8080", "[::1]:8080"),
    ] {
        assert!(with(listen, admin).is_ok(), "{listen} {admin}");
    }
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
fn telemetry_is_off_by_default_and_its_endpoint_can_come_from_the_environment() {
    assert_eq!(load(MINIMAL).unwrap().telemetry.traces_url, None);
    let err = error_of(&format!(
        "{MINIMAL}[telemetry]\notlp_endpoint = \"collector:4318\"\n"
    ));
    assert!(err.starts_with("telemetry.otlp_endpoint "), "{err}");
    let err = error_of(&format!(
        "{MINIMAL}[telemetry]\nendpoint = \"http://c:4318\"\n"
    ));
    assert!(
        err.contains("otlp_endpoint"),
        "the known keys are named: {err}"
    );
    figment::Jail::expect_with(|jail| {
        jail.create_file("sipgw.toml", MINIMAL)?;
        jail.set_env("SIPGW_APP_SECRET", "env-secret");
        jail.set_env("SIPGW__TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let c = Config::load(Path::new("sipgw.toml")).map_err(|e| e.to_string())?;
        assert_eq!(
            c.telemetry.traces_url.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        Ok(())
    });
}
