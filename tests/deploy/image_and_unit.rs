//! The Dockerfile and the systemd unit against the example config and the manifests, and
//! no secret written inline in any deployment file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use super::checks::{IMAGE_CONFIG_PATH, NONROOT_UID, is_under, of_kind, sipgw_container};
use super::*;

/// The example config, validated (its app secret named by an environment variable).
fn example_config() -> Config {
    let file: FileConfig = Figment::from(Toml::file_exact(repo_path("config/sipgw.example.toml")))
        .extract()
        .expect("config/sipgw.example.toml loads");
    Config::from_file(file, |_| Some("x".into())).expect("config/sipgw.example.toml validates")
}

/// The final stage's instructions of the Dockerfile (continuation lines joined, comments
/// dropped), and the base image of each stage.
fn dockerfile() -> (Vec<(String, String)>, Vec<String>) {
    let text = std::fs::read_to_string(repo_path("deploy/Dockerfile")).unwrap();
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let mut stage = Vec::new();
    let mut bases = Vec::new();
    for line in joined.lines().filter(|l| !l.is_empty()) {
        let (op, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            bases.push(rest.split_whitespace().next().unwrap_or("").to_owned());
            stage.clear();
        }
        stage.push((op, rest.trim().to_owned()));
    }
    (stage, bases)
}

#[test]
fn the_image_runs_as_the_manifests_user_on_the_configs_ports() {
    let (last, bases) = dockerfile();
    let all = |op: &str| -> Vec<&str> {
        let matching = last.iter().filter(|(o, _)| o == op);
        matching.map(|(_, a)| a.as_str()).collect()
    };
    let user = all("USER");
    let user = user.last().expect("the final stage sets USER");
    assert_eq!(
        user.split(':').next(),
        Some(NONROOT_UID.to_string().as_str()),
        "USER {user}"
    );
    // The manifests run sipgw as that numeric user, with the config where CMD looks.
    for name in [SIDECAR, SHARED] {
        let docs = render(name, &[], &[]).docs;
        let deployment = of_kind(&docs, "Deployment").next().unwrap();
        let (sipgw, _) = sipgw_container(&deployment["spec"]["template"]["spec"]).unwrap();
        assert_eq!(sipgw["securityContext"]["runAsUser"], NONROOT_UID, "{name}");
        let args = sipgw["args"].as_array().unwrap();
        assert!(
            args.contains(&Value::from(IMAGE_CONFIG_PATH)),
            "{name}: {args:?}"
        );
    }
    let config = example_config();
    let exposed = all("EXPOSE").join(" ").replace("/tcp", "");
    let exposed: BTreeSet<&str> = exposed.split_whitespace().collect();
    let [api, admin] = [config.server.listen, config.server.admin_listen].map(|a| a.port());
    let (api, admin) = (api.to_string(), admin.to_string());
    assert_eq!(
        exposed,
        BTreeSet::from([&*api, &*admin]),
        "EXPOSE vs the ports"
    );
    assert_eq!(all("ENTRYPOINT"), [r#"["/usr/local/bin/sipgw"]"#]);
    let cmd = format!(r#"["serve", "--config", "{IMAGE_CONFIG_PATH}"]"#);
    assert_eq!(all("CMD"), [cmd]);
    // The image is the production build: no development tools (`demo`, `dev-token`).
    let text = std::fs::read_to_string(repo_path("deploy/Dockerfile")).unwrap();
    let text = text.replace("\\\n", " ");
    let build = text.lines().find(|l| l.contains("cargo build"));
    let build = build.expect("the Dockerfile runs cargo build");
    assert!(build.contains("--no-default-features"), "{build}");

    // The builder's Debian release is the runtime's: the binary runs with the glibc it was
    // linked against.
    let (builder, runtime) = (&bases[0], bases.last().unwrap());
    assert!(bases.len() >= 2, "the Dockerfile is not multi-stage");
    let nonroot = runtime.starts_with("gcr.io/distroless/cc-") && runtime.ends_with(":nonroot");
    assert!(nonroot, "runtime {runtime} is not distroless/cc, nonroot");
    let release = [("bookworm", "debian12"), ("trixie", "debian13")]
        .into_iter()
        .find(|(codename, _)| builder.ends_with(codename))
        .unwrap_or_else(|| panic!("builder {builder} names no known Debian release"));
    assert!(
        runtime.contains(&format!("cc-{}:", release.1)),
        "{builder} vs {runtime}"
    );
}

fn unit_text() -> String {
    std::fs::read_to_string(repo_path("deploy/systemd/sipgw.service")).unwrap()
}

/// The values of `key` in the `[Service]` section of `unit`, in order (a key may repeat).
fn service_values(unit: &str, key: &str) -> Vec<String> {
    let mut in_service = false;
    let mut values = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if let Some((k, v)) = line.split_once('=')
            && in_service
            && k.trim() == key
            && !line.starts_with('#')
        {
            values.push(v.trim().to_owned());
        }
    }
    values
}

/// Runs `sipgw check-config` on the example config with the unit's `SIPGW__*` variables,
/// `%d` (the credentials directory) pointing at test files named like the credentials.
fn check_config_with_unit(unit: &str, credentials: &Path) -> std::process::Output {
    for value in service_values(unit, "LoadCredential") {
        let id = value.split(':').next().unwrap();
        let contents = if id.contains("hmac") {
            "0123456789abcdef0123456789abcdef\n"
        } else {
            "unit-test-app-secret\n"
        };
        std::fs::write(credentials.join(id), contents).unwrap();
    }
    let mut command = Command::new(SIPGW);
    command
        .args(["check-config", "--config"])
        .arg(repo_path("config/sipgw.example.toml"));
    // Only the unit's overrides: none from the environment running the tests.
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("SIPGW")) {
        command.env_remove(name);
    }
    command.env("SIPGW_APP_SECRET", "only-used-if-the-unit-sets-no-file");
    for value in service_values(unit, "Environment") {
        let (name, value) = value.split_once('=').expect("Environment=NAME=VALUE");
        assert!(
            !value.contains(char::is_whitespace),
            "one per line: {value}"
        );
        command.env(
            name,
            value.replace("%d", &credentials.display().to_string()),
        );
    }
    command.output().unwrap()
}

#[test]
fn the_systemd_unit_runs_sipgw_as_configured_through_the_real_binary() {
    let unit = unit_text();
    let credentials = fresh_dir("credentials");
    let output = check_config_with_unit(&unit, &credentials);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "check-config with the unit's environment: {stderr}"
    );
    // The effective config is what the unit meant: the secrets from the credentials.
    let effective: FileConfig = toml::from_str(&stdout).expect("check-config prints TOML");
    let cred = |id: &str| Some(credentials.join(id).display().to_string());
    assert_eq!(effective.vendor.app_secret_file, cred("app-secret"));
    assert_eq!(effective.audit.hmac_key_file, cred("audit-hmac-key"));
    let audit = &effective.audit.path;
    assert!(
        is_under(audit, "/var/lib/sipgw"),
        "audit.path {audit} is outside ReadWritePaths"
    );
    // Every credential is used, and every %d path is a credential.
    let loaded = service_values(&unit, "LoadCredential");
    let ids: BTreeSet<&str> = loaded
        .iter()
        .map(|v| v.split(':').next().unwrap())
        .collect();
    let environment = service_values(&unit, "Environment");
    let used: BTreeSet<&str> = environment
        .iter()
        .filter_map(|v| v.split_once("=%d/").map(|(_, id)| id))
        .collect();
    assert_eq!(
        ids, used,
        "LoadCredential ids vs %d/... paths in Environment="
    );
    assert!(
        !stdout.contains("unit-test-app-secret"),
        "check-config printed the secret"
    );

    // sipgw runs as its user, may write its state directory, and has time to drain (or
    // systemd kills it mid-drain).
    for (key, want) in [
        ("User", "sipgw"),
        ("Group", "sipgw"),
        ("StateDirectory", "sipgw"),
        ("ReadWritePaths", "/var/lib/sipgw"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(service_values(&unit, key), [want], "{key}");
    }
    let exec = service_values(&unit, "ExecStart");
    let serve = "/usr/local/bin/sipgw serve --config ";
    assert!(
        exec.iter().any(|e| e.starts_with(serve)),
        "ExecStart {exec:?}"
    );
    // systemd waits for READY=1 (sent only by the main process), long enough for the
    // dependencies' retries to reach their cap at least once, and runs the watchdog that
    // sipgw pings at half the period.
    for (key, want) in [("Type", "notify"), ("NotifyAccess", "main")] {
        assert_eq!(service_values(&unit, key), [want], "{key}");
    }
    let start = seconds(&service_values(&unit, "TimeoutStartSec")[0]);
    let cap = sipgw::backoff::BACKOFF_CAP.as_secs();
    assert!(
        start > cap,
        "TimeoutStartSec {start} <= the retries' cap {cap}"
    );
    let watchdog = seconds(&service_values(&unit, "WatchdogSec")[0]);
    assert!((2..=start).contains(&watchdog), "WatchdogSec {watchdog}");
    let stop: u64 = service_values(&unit, "TimeoutStopSec")[0].parse().unwrap();
    let drain = example_config().server.limits.shutdown_grace.as_secs();
    assert!(
        stop > drain,
        "TimeoutStopSec {stop} <= shutdown_grace_secs {drain}"
    );

    // And the check has teeth: a misspelt key is refused, naming it.
    let typo = unit.replace("SIPGW__AUDIT__HMAC_KEY_FILE", "SIPGW__AUDIT__HMAC_KEYFILE");
    let output = check_config_with_unit(&typo, &fresh_dir("credentials-typo"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a misspelt override must fail: {stderr}"
    );
    assert!(
        stderr.contains("hmac_keyfile"),
        "the error names the key: {stderr}"
    );
}

/// A unit's time span in whole seconds: `30`, `30s` or `2min`.
fn seconds(span: &str) -> u64 {
    let (number, unit) = span.split_at(
        span.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(span.len()),
    );
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("a time span: {span}"));
    match unit {
        "" | "s" => number,
        "min" => number * 60,
        other => panic!("{span}: unit {other} not handled here"),
    }
}

/// A name that holds a secret when it holds a value.
fn names_a_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["SECRET", "PASSWORD", "TOKEN", "HMAC", "PRIVATE"]
        .iter()
        .any(|s| name.contains(s))
}

#[test]
fn no_secret_appears_inline() {
    let mut problems = Vec::new();
    let files = [
        "deploy/Dockerfile",
        "deploy/systemd/sipgw.service",
        "config/sipgw.example.toml",
    ];
    let manifests = kustomize::source_files(&repo_path("deploy/kubernetes"))
        .into_iter()
        .map(|f| format!("deploy/kubernetes/{f}"));
    for path in files.iter().map(|f| f.to_string()).chain(manifests) {
        let text = std::fs::read_to_string(repo_path(&path)).unwrap();
        if text.contains("-----BEGIN") {
            problems.push(format!("{path}: a PEM block"));
        }
    }
    // Manifests, with every optional patch: no Secret objects, no literal values in
    // secret-named variables, and each embedded config names files for its secrets (no
    // password in the Redis URL).
    for (name, markers) in [(SIDECAR, &["tls", "mtls", "fluentbit"][..]), (SHARED, &[])] {
        let docs = render(name, markers, &[]).docs;
        if of_kind(&docs, "Secret").count() > 0 {
            problems.push(format!("{name}: a Secret object"));
        }
        let deployment = of_kind(&docs, "Deployment").next().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        let containers = ["containers", "initContainers"].map(|list| pod[list].as_array());
        for env in containers
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|c| c["env"].as_array())
            .flatten()
        {
            if names_a_secret(env["name"].as_str().unwrap_or("")) && !env["value"].is_null() {
                problems.push(format!("{name}: env {} holds a value", env["name"]));
            }
        }
        let map = of_kind(&docs, "ConfigMap").next().unwrap();
        let file: FileConfig =
            Figment::from(Toml::string(map["data"]["sipgw.toml"].as_str().unwrap()))
                .extract()
                .unwrap();
        if file.vendor.app_secret_file.is_none() || file.audit.hmac_key_file.is_none() {
            problems.push(format!(
                "{name}: the app secret or the HMAC key is not a file"
            ));
        }
        if file
            .rate_limit
            .redis_url
            .as_deref()
            .is_some_and(|u| u.contains('@'))
        {
            problems.push(format!("{name}: credentials in rate_limit.redis_url"));
        }
    }
    // The unit: secrets only from credentials; the image: no secret in ENV or ARG.
    for value in service_values(&unit_text(), "Environment") {
        let (name, value) = value.split_once('=').unwrap_or((&value, ""));
        if names_a_secret(name) && !value.starts_with("%d/") {
            problems.push(format!("sipgw.service: {name} is not a credential"));
        }
    }
    let dockerfile = std::fs::read_to_string(repo_path("deploy/Dockerfile")).unwrap();
    for line in dockerfile.lines().map(str::trim) {
        if (line.starts_with("ENV ") || line.starts_with("ARG ")) && names_a_secret(line) {
            problems.push(format!("Dockerfile: {line}"));
        }
    }
    assert_no_problems("secrets written inline", &problems);
}
