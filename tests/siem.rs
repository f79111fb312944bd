//! Shipping the trail to a SIEM (docs/audit.md, "Shipping to a SIEM"), as far as it can be
//! exercised here. Fluent Bit itself is not installable on the test machines, so no test
//! runs it. What is checked for real:
//!
//! - a `sipgw serve` with `audit.stdout = true` prints exactly the trail file's lines on
//!   stdout, byte for byte and in order, up to its exit on SIGTERM;
//! - those lines, framed as the kubelet writes a container's stdout (CRI log format), and
//!   taken apart again with the regex of Fluent Bit's built-in `cri` parser (which
//!   `deploy/fluent-bit/node-agent.yaml` names) and the committed `grep` filters, are the
//!   trail again: `sipgw audit verify` accepts them, and each decodes as JSON whose `ts`
//!   reads with the committed parser's `time_format`;
//! - both Fluent Bit files parse as YAML and say what docs/audit.md says they do (offsets
//!   DB, read from head, TLS, the endpoint and credential from the environment only);
//! - `deploy/kubernetes/sidecar.yaml` with its `#fluentbit` lines agrees with the sidecar
//!   config (mounts, paths, env, user, stop order), and the checks catch a broken one;
//! - `sipgw audit export --format ecs` over a trail the gateway wrote.

#[path = "deploy/checks.rs"]
mod checks;
mod common;
mod yaml;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use common::*;
use yaml::{load_one, repo_path};

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
const SIDECAR_CONFIG: &str = "deploy/fluent-bit/sidecar.yaml";
const NODE_AGENT_CONFIG: &str = "deploy/fluent-bit/node-agent.yaml";
const MANIFEST: &str = "deploy/kubernetes/sidecar.yaml";
/// The regex of Fluent Bit's built-in `cri` multiline parser (its source,
/// `src/multiline/flb_ml_parser_cri.c`, `FLB_ML_CRI_REGEX`). node-agent.yaml names that
/// parser (`multiline.parser: cri`) rather than spelling out a copy of it.
const FLUENT_BIT_CRI_REGEX: &str = r"^(?<time>.+?) (?<stream>stdout|stderr) (?<_p>F|P) (?<log>.*)$";
/// `audit.instance` of the gateways the tests run.
const INSTANCE: &str = "sipgw-siem-test";
/// A `sub` that would drive a terminal if it reached one raw.
const HOSTILE_SUB: &str = "mallory\u{1b}[31m\u{9b}2J\u{202e}gnp";

/// What a `sipgw serve` run left: its trail directory, the key, and what it printed.
struct Run {
    dir: PathBuf,
    key_file: PathBuf,
    trail: String,
    stdout: String,
}

/// Runs `sipgw serve` with `audit.stdout = true`, makes a change, a vendor rejection and
/// a policy refusal (the last by a caller whose `sub` is [`HOSTILE_SUB`]), and stops it
/// with SIGTERM.
async fn serve_and_change(name: &str) -> Run {
    let upstreams = Upstreams::start().await;
    let dir = fresh_dir(name);
    let trail_dir = dir.join("audit");
    std::fs::create_dir_all(&trail_dir).unwrap();
    let audit_path = trail_dir.join("sipgw-audit.jsonl");
    let key_file = dir.join("hmac.key");
    std::fs::write(&key_file, "audit-hmac-key-for-the-siem-test-0017").unwrap();
    let config = dir.join("sipgw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n\
             [audit]\npath = {:?}\nstdout = true\nhmac_key_file = {:?}\ninstance = \"{INSTANCE}\"\n{}",
            audit_path.display().to_string(),
            key_file.display().to_string(),
            upstreams.config_sections()
        ),
    )
    .unwrap();
    let mut child = Command::new(SIPGW)
        .args(["serve", "--config"])
        .arg(&config)
        .env("SIPGW_APP_SECRET", APP_SECRET)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (_lines, log, addr) = listening(&mut child, Duration::from_secs(30));
    let alice = upstreams
        .idp
        .mint_for("alice", AUDIENCE, Some(AGENT), false);
    let mallory = upstreams
        .idp
        .mint_for(HOSTILE_SUB, AUDIENCE, Some(AGENT), false);
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    for (token, current, new, status) in [
        (&alice, CURRENT, NEW, 200),
        (&alice, "Wrong~Pass77", "Other~Pass88", 422),
        (&mallory, NEW, "weakpassword", 400),
    ] {
        let request = http::Request::post(format!("http://{addr}{}", Harness::endpoint(AGENT)))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(change_body(
                current, new,
            ))))
            .unwrap();
        let answer = client.request(request).await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "log: {log:?}");
    }
    send_signal(&child, "TERM");
    let mut out = child.stdout.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut out, &mut stdout).unwrap();
    assert_eq!(exit.code(), Some(0), "sipgw exit after SIGTERM");
    let trail = trail_files(&trail_dir)
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect();
    Run {
        dir: trail_dir,
        key_file,
        trail,
        stdout,
    }
}

/// The trail's files in chain order (rotated ones first), as `audit verify` takes them.
fn trail_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

fn sipgw(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(SIPGW).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn verify(path: &Path, key_file: &Path) -> (Option<i32>, String) {
    let (code, stdout, stderr) = sipgw(&[
        "audit",
        "verify",
        path.to_str().unwrap(),
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    (code, format!("{stdout}{stderr}"))
}

// ---------------------------------------------------------------------------------------
// The Fluent Bit files

/// A Fluent Bit config as JSON.
fn fluent_bit(file: &str) -> Value {
    load_one(&repo_path(file))
}

/// Fluent Bit reads `on`/`true` alike (YAML 1.2 reads `on` as a string).
fn is_on(value: &Value) -> bool {
    value == &Value::Bool(true) || value == "on"
}

fn named<'a>(list: &'a Value, name: &str) -> Vec<&'a Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["name"] == name)
        .collect()
}

/// The parser that turns a line into the record.
fn audit_parser(config: &Value) -> &Value {
    let parsers = named(&config["parsers"], "sipgw_audit");
    assert_eq!(parsers.len(), 1, "one sipgw_audit parser");
    parsers[0]
}

/// `${NAME}` references in the uncommented lines of `text`.
fn env_references(text: &str) -> BTreeSet<String> {
    let pattern = regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}").unwrap();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| {
            pattern
                .captures_iter(line)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn both_fluent_bit_files_read_the_trail_and_send_it_over_tls_with_nothing_secret_inline() {
    for file in [SIDECAR_CONFIG, NODE_AGENT_CONFIG] {
        let config = fluent_bit(file);
        let parser = audit_parser(&config);
        assert_eq!(parser["format"], "json", "{file}");
        assert_eq!(parser["time_key"], "ts", "{file}");
        assert!(
            is_on(&parser["time_keep"]),
            "{file}: ts stays in the record"
        );
        let inputs = named(&config["pipeline"]["inputs"], "tail");
        assert_eq!(inputs.len(), 1, "{file}: one tail input");
        let tail = inputs[0];
        assert!(is_on(&tail["read_from_head"]), "{file}: read_from_head");
        assert!(
            tail["db"].as_str().is_some_and(|db| db.ends_with(".db")),
            "{file}: db"
        );
        assert_eq!(tail["skip_long_lines"], "off", "{file}: no silent skip");
        // The line itself stays next to the decoded fields: the MAC covers its bytes.
        let filters = named(&config["pipeline"]["filters"], "parser");
        assert_eq!(filters.len(), 1, "{file}");
        assert_eq!(filters[0]["parser"], "sipgw_audit", "{file}");
        assert_eq!(filters[0]["key_name"], "log", "{file}");
        assert!(is_on(&filters[0]["preserve_key"]), "{file}: preserve_key");
        assert!(is_on(&filters[0]["reserve_data"]), "{file}: reserve_data");
        // Buffered on disk while the SIEM is away, and retried without limit.
        assert!(config["service"]["storage.path"].is_string(), "{file}");
        assert_eq!(tail["storage.type"], "filesystem", "{file}");
        let outputs = config["pipeline"]["outputs"].as_array().unwrap();
        assert_eq!(outputs.len(), 1, "{file}: one output");
        let output = &outputs[0];
        assert!(
            is_on(&output["tls"]) && is_on(&output["tls.verify"]),
            "{file}: TLS"
        );
        assert_eq!(output["retry_limit"], "no_limits", "{file}");
        for key in ["host", "port", "uri"] {
            let value = output[key].as_str().unwrap_or_default();
            assert!(
                value.starts_with("${") && value.ends_with('}'),
                "{file}: {key} = {value:?} is not from the environment"
            );
        }
        assert_eq!(
            output["header"], "Authorization ${SIEM_AUTHORIZATION}",
            "{file}"
        );
        let text = std::fs::read_to_string(repo_path(file)).unwrap();
        assert_eq!(
            env_references(&text),
            ["SIEM_AUTHORIZATION", "SIEM_HOST", "SIEM_PORT", "SIEM_URI"]
                .map(String::from)
                .into(),
            "{file}"
        );
        for inline in [
            "Bearer ",
            "Basic ",
            "http_passwd",
            "http_user",
            "shared_key: ",
        ] {
            let inline_secret = text
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .any(|l| l.contains(inline));
            assert!(!inline_secret, "{file}: {inline:?} outside a comment");
        }
    }
    // The sidecar reads the files; the node agent reads the CRI container logs.
    let sidecar = fluent_bit(SIDECAR_CONFIG);
    let tail = &named(&sidecar["pipeline"]["inputs"], "tail")[0];
    assert_eq!(tail["path"], "/var/lib/sipgw/audit/*.jsonl");
    let node = fluent_bit(NODE_AGENT_CONFIG);
    let tail = &named(&node["pipeline"]["inputs"], "tail")[0];
    assert_eq!(tail["multiline.parser"], "cri");
    let path = tail["path"].as_str().unwrap();
    assert!(
        path.starts_with("/var/log/containers/") && path.contains("_sipgw-"),
        "{path}"
    );
}

/// The `grep` filters of a Fluent Bit config as (key, regex) pairs, in order.
fn grep_filters(config: &Value) -> Vec<(String, regex::Regex)> {
    named(&config["pipeline"]["filters"], "grep")
        .into_iter()
        .map(|filter| {
            let rule = filter["regex"].as_str().expect("a grep regex rule");
            let (key, pattern) = rule.split_once(' ').expect("KEY REGEX");
            (key.to_owned(), regex::Regex::new(pattern).unwrap())
        })
        .collect()
}

/// Reads `ts` with a Fluent Bit `time_format` (strptime, plus `%L` for the fraction).
fn fluent_bit_time(format: &str, ts: &str) -> jiff::civil::DateTime {
    let format = format.replace(".%L", "%.f");
    jiff::fmt::strtime::parse(&format, ts)
        .and_then(|parsed| parsed.to_datetime())
        .unwrap_or_else(|e| panic!("{ts:?} does not read with {format:?}: {e}"))
}

#[tokio::test]
async fn stdout_is_the_trail_and_survives_the_container_log_route() {
    let run = serve_and_change("siem-stdout").await;
    let changes = run
        .trail
        .lines()
        .filter(|l| l.contains("\"kind\":\"attempt\"") || l.contains("\"kind\":\"outcome\""))
        .count();
    assert_eq!(changes, 5, "two attempts, three outcomes: {}", run.trail);
    // Byte for byte, in order, up to the last record written at shutdown.
    assert_eq!(
        run.stdout, run.trail,
        "stdout = true prints the trail's lines"
    );

    // The kubelet's file: each line of stdout framed as CRI, and the log on stderr between.
    let node = fluent_bit(NODE_AGENT_CONFIG);
    let mut container_log = String::new();
    for (n, line) in run.stdout.lines().enumerate() {
        let time = jiff::Timestamp::now();
        let time = format!(
            "{}.{:09}Z",
            time.strftime("%Y-%m-%dT%H:%M:%S"),
            time.subsec_nanosecond()
        );
        container_log.push_str(&format!("{time} stdout F {line}\n"));
        container_log.push_str(&format!(
            "{time} stderr F {{\"level\":\"INFO\",\"message\":\"request {n}\"}}\n"
        ));
    }
    // Taken apart as node-agent.yaml does: the cri parser, then its grep filters, in order.
    let cri = regex::Regex::new(FLUENT_BIT_CRI_REGEX).unwrap();
    let filters = grep_filters(&node);
    assert_eq!(filters.len(), 2, "stream and record filters");
    let mut shipped = String::new();
    for framed in container_log.lines() {
        let fields = cri.captures(framed).expect("a CRI line");
        let kept = filters.iter().all(|(key, pattern)| {
            let value = fields
                .name(key)
                .unwrap_or_else(|| panic!("the cri parser yields no {key}"));
            pattern.is_match(value.as_str())
        });
        if kept {
            shipped.push_str(&fields["log"]);
            shipped.push('\n');
        }
    }
    assert_eq!(shipped, run.trail, "the SIEM's copy is the trail");
    let copy = run.dir.parent().unwrap().join("siem-copy.jsonl");
    std::fs::write(&copy, &shipped).unwrap();
    let (code, said) = verify(&copy, &run.key_file);
    assert_eq!(code, Some(0), "{said}");
    // The shutdown checkpoint travelled with the records: the SIEM's copy of it is an
    // anchor that the trail on the host must still hold.
    let anchor = shipped.lines().last().unwrap();
    assert!(anchor.contains("\"kind\":\"checkpoint\""), "{anchor}");
    let (code, stdout, stderr) = sipgw(&[
        "audit",
        "verify",
        run.dir.to_str().unwrap(),
        "--key-file",
        run.key_file.to_str().unwrap(),
        "--anchor",
        anchor,
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("ANCHOR OK"), "{stdout}");

    // Decoded as the sipgw_audit parser does, `ts` reads with its time_format (in both
    // files) as the record's own time.
    for file in [SIDECAR_CONFIG, NODE_AGENT_CONFIG] {
        let format = audit_parser(&fluent_bit(file))["time_format"]
            .as_str()
            .unwrap()
            .to_owned();
        for line in shipped.lines() {
            let record: Value = serde_json::from_str(line).expect("a JSON record");
            let ts = record["ts"].as_str().unwrap();
            let exact: jiff::Timestamp = ts.parse().unwrap();
            assert_eq!(
                fluent_bit_time(&format, ts),
                jiff::tz::TimeZone::UTC.to_datetime(exact),
                "{file}: {ts}"
            );
        }
    }
    // The sidecar's glob takes the trail's files, and only them.
    let sidecar = fluent_bit(SIDECAR_CONFIG);
    let glob = named(&sidecar["pipeline"]["inputs"], "tail")[0]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let suffix = glob.rsplit_once("/*").unwrap().1;
    for file in trail_files(&run.dir) {
        assert!(file.to_str().unwrap().ends_with(suffix));
    }
}

// ---------------------------------------------------------------------------------------
// The sidecar manifest

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

// ---------------------------------------------------------------------------------------
// audit export --format ecs

/// The documents `audit export` printed, one per line.
fn documents(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn audit_export_writes_ecs_documents_of_a_real_trail() {
    let run = serve_and_change("siem-export").await;
    let (dir, key) = (run.dir.to_str().unwrap(), run.key_file.to_str().unwrap());
    let (code, stdout, stderr) =
        sipgw(&["audit", "export", dir, "--format", "ecs", "--key-file", key]);
    assert_eq!(code, Some(0), "{stderr}");
    // Nothing that could drive a terminal reaches the output raw; JSON escapes it.
    assert!(
        !stdout
            .chars()
            .any(|c| c != '\n' && sipgw::terminal::is_unsafe(c)),
        "{stdout}"
    );
    let docs = documents(&stdout);
    assert_eq!(docs.len(), run.trail.lines().count(), "{stdout}");
    for doc in &docs {
        assert_eq!(doc["ecs"]["version"], "8.17.0");
        assert_eq!(doc["event"]["kind"], "event");
        assert_eq!(doc["event"]["category"], serde_json::json!(["iam"]));
        assert_eq!(doc["sipgw"]["verified"], true, "{doc}");
    }
    let records: Vec<Value> = run
        .trail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done = docs
        .iter()
        .find(|d| d["event"]["outcome"] == "success")
        .expect("the change");
    let record = records
        .iter()
        .find(|r| r["seq"] == done["sipgw"]["seq"])
        .unwrap();
    assert_eq!(done["@timestamp"], record["ts"]);
    assert_eq!(done["event"]["action"], "sip-phone-password-change");
    assert_eq!(done["event"]["type"], serde_json::json!(["change"]));
    assert_eq!(done["event"]["id"], record["requestId"]);
    assert_eq!(done["event"]["reason"], "ok");
    assert_eq!(done["event"]["sequence"], record["seq"]);
    assert_eq!(
        done["event"]["duration"],
        record["latencyMs"].as_u64().unwrap() * 1_000_000
    );
    assert_eq!(done["user"]["id"], "alice");
    assert_eq!(done["user"]["target"]["name"], AGENT);
    assert_eq!(done["sipgw"]["caller"]["iss"], ISSUER);
    assert_eq!(done["source"]["ip"], "127.0.0.1");
    assert_eq!(done["client"]["ip"], "127.0.0.1");
    assert_eq!(done["http"]["response"]["status_code"], 200);
    assert_eq!(done["host"]["name"], INSTANCE);
    assert_eq!(done["labels"]["grant"], "self");
    assert_eq!(done["sipgw"]["v"], 2);
    let checkpoint = docs.last().unwrap();
    assert_eq!(
        checkpoint["event"]["action"], "audit-checkpoint",
        "{checkpoint}"
    );
    assert_eq!(checkpoint["event"]["type"], serde_json::json!(["info"]));
    assert_eq!(checkpoint["host"]["name"], INSTANCE);
    let before = records.iter().rev().nth(1).unwrap();
    assert_eq!(checkpoint["sipgw"]["lastMac"], before["mac"]);
    assert_eq!(done["sipgw"]["mac"], record["mac"]);
    let attempts = docs
        .iter()
        .filter(|d| d["sipgw"]["kind"] == "attempt")
        .count();
    assert_eq!(attempts, 2);
    assert!(
        docs.iter()
            .filter(|d| d["sipgw"]["kind"] == "attempt")
            .all(|d| d["event"]["outcome"] == "unknown" && d["sipgw"]["outcomeUnknown"] == false)
    );
    let rejected = docs
        .iter()
        .find(|d| d["event"]["reason"] == "vendor_rejected")
        .unwrap();
    assert_eq!(rejected["event"]["outcome"], "failure");
    // The hostile caller's sub: escaped on the line, the same value once decoded.
    let refused = docs
        .iter()
        .find(|d| d["event"]["reason"] == "password_policy")
        .unwrap();
    assert_eq!(refused["user"]["id"], HOSTILE_SUB);
    assert_eq!(refused["event"]["outcome"], "failure");

    // An edited record is still exported, marked, and the status says so.
    let edited_dir = run.dir.parent().unwrap().join("edited");
    std::fs::create_dir_all(&edited_dir).unwrap();
    let edited = run
        .trail
        .replacen("\"code\":\"vendor_rejected\"", "\"code\":\"ok\"", 1);
    assert_ne!(edited, run.trail);
    std::fs::write(edited_dir.join("sipgw-audit.jsonl"), edited).unwrap();
    let (code, stdout, stderr) = sipgw(&[
        "audit",
        "export",
        edited_dir.to_str().unwrap(),
        "--format",
        "ecs",
        "--key-file",
        key,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    let docs = documents(&stdout);
    assert_eq!(docs.len(), records.len());
    let forged = docs
        .iter()
        .find(|d| d["sipgw"]["seq"] == rejected["sipgw"]["seq"])
        .unwrap();
    assert_eq!(forged["sipgw"]["verified"], false, "{forged}");
    assert!(forged["sipgw"]["problem"].is_string(), "{forged}");
    assert_eq!(docs[0]["sipgw"]["verified"], true);

    // A window, a bad time, a format that does not exist.
    let (code, stdout, _) = sipgw(&[
        "audit",
        "export",
        dir,
        "--format",
        "ecs",
        "--key-file",
        key,
        "--since",
        "2999-01-01T00:00:00Z",
    ]);
    assert_eq!((code, stdout.as_str()), (Some(0), ""));
    let (code, _, stderr) = sipgw(&[
        "audit",
        "export",
        dir,
        "--format",
        "ecs",
        "--until",
        "yesterday",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--until"), "{stderr}");
    let (code, _, _) = sipgw(&["audit", "export", dir, "--format", "csv"]);
    assert_eq!(code, Some(2));

    // Without the key: the MACs do not match, and the reader is told what a plain chain is.
    let (code, _, stderr) = sipgw(&["audit", "export", dir, "--format", "ecs"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(sipgw::audit::chain::UNKEYED_WARNING),
        "{stderr}"
    );

    // `| head -1`: the reader goes away after one line; the export ends quietly with the
    // status it had. Copies of the trail (one trail each) make more output than a pipe holds.
    let copies: Vec<PathBuf> = (0..80)
        .map(|n| {
            let copy = run.dir.parent().unwrap().join(format!("copy-{n}"));
            std::fs::create_dir_all(&copy).unwrap();
            std::fs::write(copy.join("sipgw-audit.jsonl"), &run.trail).unwrap();
            copy
        })
        .collect();
    let mut child = Command::new(SIPGW)
        .args(["audit", "export", "--format", "ecs", "--key-file", key])
        .args(&copies)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(serde_json::from_str::<Value>(&first).is_ok(), "{first}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
