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
//! - the sidecar overlay rendered with its `#fluentbit` patch agrees with the sidecar
//!   config (mounts, paths, env, user, stop order), and the checks catch a broken one
//!   (`siem/manifest.rs`);
//! - `sipgw audit export --format ecs` over a trail the gateway wrote (`siem/export.rs`).

#[path = "deploy/checks.rs"]
mod checks;
mod common;
#[path = "siem/export.rs"]
mod export;
#[path = "deploy/kustomize.rs"]
mod kustomize;
#[path = "siem/manifest.rs"]
mod manifest;
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
/// The sidecar overlay's patch that adds Fluent Bit (under `deploy/kubernetes/`).
const MANIFEST: &str = "overlays/sidecar/fluent-bit.yaml";
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
    let mut child = serve_command(&config)
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
    let client = http_client();
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
