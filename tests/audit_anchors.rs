//! Anchors and the unkeyed warning, on the built binary with real files: a checkpoint kept
//! off the host catches what the chain alone cannot (records cut off the trail's end, a
//! whole trail swapped for another valid one), a forged anchor is refused with the key,
//! anchors come from a real `sipgw serve` log, and a trail without a key says so everywhere.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use sipgw::audit::chain::{GENESIS, MacKey, UNKEYED_WARNING};
use sipgw::audit::record::{CallerInfo, Envelope, Event, Kind, checkpoint_json, seal};
use sipgw::audit::writer::{AuditWriter, Fsync, WriterConfig};

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
const HMAC_KEY: &str = "anchors-test-hmac-key-0123456789";

/// A trail of `n` outcome records by `instance`, a checkpoint after every 5 and one at the
/// end, in a fresh directory; returns the directory and the trail's checkpoint lines.
async fn trail(name: &str, key: &MacKey, instance: &str, n: u64) -> (PathBuf, Vec<String>) {
    let dir = fresh_dir(&format!("anchors-{name}"));
    let writer = AuditWriter::open(WriterConfig {
        path: dir.join("audit.jsonl"),
        max_bytes: 1 << 20,
        fsync: Fsync::Always,
        stdout: false,
        key: key.clone(),
        file_mode: 0o600,
        allow_new_chain: false,
        instance: instance.into(),
        checkpoint_every: Some(5),
        checkpoint_interval: None,
    })
    .unwrap();
    for i in 0..n {
        let event = Event {
            kind: Kind::Outcome,
            request_id: Some(format!("{name}-{i}")),
            caller: CallerInfo {
                iss: Some(ISSUER.into()),
                sub: Some("alice".into()),
                client_ip: "127.0.0.1".into(),
            },
            caller_name: None,
            forwarded_for: None,
            agent: Some(AGENT.into()),
            grant: None,
            code: "ok".into(),
            http_status: Some(200),
            replay_of: None,
            trace_id: None,
            vendor: None,
            latency_ms: Some(1),
            suppressed: None,
            flood: None,
        };
        writer.append(event).await.unwrap();
    }
    writer.close().await.unwrap();
    let checkpoints = std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .filter(|line| line.contains(r#""kind":"checkpoint""#))
        .map(str::to_owned)
        .collect();
    (dir, checkpoints)
}

fn keyed() -> MacKey {
    MacKey::from_file_bytes(HMAC_KEY.as_bytes()).unwrap()
}

/// The key file, beside (not in) the trail's directory.
fn key_file(name: &str) -> PathBuf {
    let dir = fresh_dir(&format!("anchors-key-{name}"));
    let path = dir.join("hmac.key");
    std::fs::write(&path, HMAC_KEY).unwrap();
    path
}

/// An anchor kept elsewhere: `lines` in a file of their own.
fn kept(name: &str, lines: &[String]) -> PathBuf {
    let dir = fresh_dir(&format!("anchors-kept-{name}"));
    let path = dir.join("anchors.jsonl");
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    path
}

fn verify(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(SIPGW)
        .args(["audit", "verify"])
        .args(args)
        .output()
        .unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Removes the last `n` lines of the trail's current file.
fn cut_tail(dir: &Path, n: usize) {
    let path = dir.join("audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let kept: String = lines[..lines.len() - n]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, kept).unwrap();
}

#[tokio::test]
async fn an_anchor_catches_records_deleted_from_the_end() {
    let (dir, checkpoints) = trail("cut", &keyed(), "gw-1", 10).await;
    assert_eq!(checkpoints.len(), 2, "after record 5 and record 10");
    // All the checkpoints were shipped; the latest one counts.
    let anchors = kept("cut", &checkpoints);
    let key = key_file("cut");
    let args = [
        dir.as_os_str(),
        "--key-file".as_ref(),
        key.as_os_str(),
        "--anchor".as_ref(),
        anchors.as_os_str(),
    ];
    let (code, stdout, stderr) = verify(&args);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("OK: 12 records"), "{stdout}");
    assert!(
        stdout.contains("ANCHOR OK: the trail holds the anchor of instance gw-1 at seq 12"),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "keyed: {stderr}");
    // The last three records go: the chain of what is left still holds...
    cut_tail(&dir, 3);
    let (code, stdout, _) = verify(&args[..3]);
    assert_eq!(code, Some(0), "the chain alone cannot tell: {stdout}");
    // ...but the anchor shows they were written.
    let (code, stdout, stderr) = verify(&args);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "FAILED: anchor: the trail ends at seq 9, but the anchor shows seq 12 was written: records were deleted from its end"
        ),
        "{stdout}"
    );
}

#[tokio::test]
async fn an_anchor_catches_a_swapped_in_trail() {
    // Without a key anyone can write a valid trail: one with the same instance, the same
    // seq range, other records.
    let (dir, checkpoints) = trail("true", &MacKey::Plain, "gw-1", 10).await;
    let (swapped, _) = trail("swapped", &MacKey::Plain, "gw-1", 10).await;
    let anchor = checkpoints.last().unwrap();
    let (code, stdout, stderr) = verify(&[swapped.as_os_str()]);
    assert_eq!(code, Some(0), "a valid trail by itself: {stdout}");
    assert!(
        stderr.contains(&format!("warning: {UNKEYED_WARNING}")),
        "{stderr}"
    );
    let (code, stdout, stderr) =
        verify(&[swapped.as_os_str(), "--anchor".as_ref(), anchor.as_ref()]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "FAILED: anchor: the record at seq 12 differs from the anchor: the trail was replaced or rewritten"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("an anchor cannot be authenticated either"),
        "{stderr}"
    );
    // The true trail holds it.
    let (code, stdout, _) = verify(&[dir.as_os_str(), "--anchor".as_ref(), anchor.as_ref()]);
    assert_eq!(code, Some(0), "{stdout}");
}

#[tokio::test]
async fn a_forged_anchor_is_refused_with_the_key() {
    let (dir, checkpoints) = trail("forged", &keyed(), "gw-1", 10).await;
    let key = key_file("forged");
    // Someone who cut the trail to seq 7 forges an anchor that matches what is left; it
    // cannot carry a mac made with the key.
    cut_tail(&dir, 5);
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let last = text.lines().last().unwrap();
    let last_mac = &last[last.len() - 66..last.len() - 2];
    let envelope = Envelope {
        seq: 8,
        ts: "2026-12-07T10:00:00.000Z",
        instance: "gw-1",
    };
    let unsealed = checkpoint_json(envelope, last_mac);
    let forged = seal(&unsealed, &MacKey::Plain.mac(last_mac, &unsealed));
    let (code, stdout, stderr) = verify(&[
        dir.as_os_str(),
        "--key-file".as_ref(),
        key.as_os_str(),
        "--anchor".as_ref(),
        forged.as_ref(),
    ]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout
            .contains("FAILED: anchor: the anchor is not genuine: its mac does not match the key"),
        "{stdout}"
    );
    // The genuine one shows the cut.
    let (code, stdout, _) = verify(&[
        dir.as_os_str(),
        "--key-file".as_ref(),
        key.as_os_str(),
        "--anchor".as_ref(),
        checkpoints[1].as_ref(),
    ]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("the trail ends at seq 7"), "{stdout}");
}

#[tokio::test]
async fn anchors_of_other_instances_are_ignored_and_none_is_exit_2() {
    let (dir, _) = trail("instance", &MacKey::Plain, "gw-1", 5).await;
    let (_, others) = trail("other-instance", &MacKey::Plain, "gw-2", 5).await;
    let (code, stdout, stderr) =
        verify(&[dir.as_os_str(), "--anchor".as_ref(), others[0].as_ref()]);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("none of the 1 anchor(s) given is of this trail's instance (gw-1)"),
        "{stderr}"
    );
    let not_an_anchor = kept("none", &["{\"kind\":\"outcome\"}".to_owned()]);
    let (code, _, stderr) = verify(&[
        dir.as_os_str(),
        "--anchor".as_ref(),
        not_an_anchor.as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no checkpoint record in it"), "{stderr}");
}

#[test]
fn a_v1_trail_still_verifies() {
    // Bytes as a release before format 2 wrote them.
    let dir = fresh_dir("anchors-v1");
    let mut prev = GENESIS.to_owned();
    let mut text = String::new();
    for seq in 1..=3 {
        let unsealed = format!(
            r#"{{"v":1,"seq":{seq},"ts":"2026-11-27T20:00:0{seq}.000Z","kind":"outcome","requestId":"r-{seq}","caller":{{"iss":"https://sso","sub":"alice","clientIp":"127.0.0.1"}},"agent":"a1001","code":"ok","httpStatus":200,"latencyMs":15,"prev":"{prev}"}}"#
        );
        let mac = MacKey::Plain.mac(&prev, &unsealed);
        text.push_str(&seal(&unsealed, &mac));
        text.push('\n');
        prev = mac;
    }
    std::fs::write(dir.join("audit.jsonl"), text).unwrap();
    let (code, stdout, _) = verify(&[dir.as_os_str()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("OK: 3 records"), "{stdout}");
    // Its records name no instance: no anchor can be matched to it.
    let anchor = r#"{"v":2,"seq":4,"ts":"2026-11-27T20:00:05.000Z","instance":"gw-1","kind":"checkpoint","lastSeq":3,"lastMac":"PREV","prev":"PREV"}"#
        .replace("PREV", &prev);
    let anchor = seal(&anchor, &MacKey::Plain.mac(&prev, &anchor));
    let (code, _, stderr) = verify(&[dir.as_os_str(), "--anchor".as_ref(), anchor.as_ref()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("name no instance"), "{stderr}");
}

#[test]
fn check_config_warns_about_a_trail_without_a_key() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sipgw.example.toml");
    let run = |key: Option<&Path>| {
        let mut command = Command::new(SIPGW);
        command
            .args(["check-config", "--config", example])
            .env("SIPGW_APP_SECRET", "x");
        if let Some(key) = key {
            command.env("SIPGW__AUDIT__HMAC_KEY_FILE", key);
        }
        command.output().unwrap()
    };
    let output = run(None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: {UNKEYED_WARNING}")),
        "{stderr}"
    );
    let key = key_file("check-config");
    let output = run(Some(&key));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("HMAC key"), "{stderr}");
}

/// Runs `sipgw serve` with `audit` lines in its `[audit]` section, makes one password
/// change, stops it with SIGTERM, and returns its log lines, stdout and audit directory.
async fn serve_once(name: &str, audit: &str) -> (Vec<String>, String, PathBuf) {
    let upstreams = Upstreams::start().await;
    let token = upstreams
        .idp
        .mint_for("alice", AUDIENCE, Some(AGENT), false);
    let dir = fresh_dir(&format!("anchors-serve-{name}"));
    let trail = dir.join("trail").join("audit.jsonl");
    let config = dir.join("sipgw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             [audit]\npath = {:?}\ninstance = \"gw-{name}\"\n{audit}\n{}",
            trail.display().to_string(),
            upstreams.config_sections()
        ),
    )
    .unwrap();
    let mut child = serve_command(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, mut log, addr) = listening(&mut child, Duration::from_secs(60));
    let client = http_client();
    let request = http::Request::post(format!("http://{addr}{}", Harness::endpoint(AGENT)))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(change_body(
            CURRENT, NEW,
        ))))
        .unwrap();
    let answer = client.request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    send_signal(&child, "TERM");
    let mut stdout = child.stdout.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{log:?}");
    // The log thread ends with the process: every line is in the channel by now.
    log.extend(lines.iter());
    let mut printed = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut printed).unwrap();
    (log, printed, dir.join("trail"))
}

#[tokio::test]
async fn anchors_from_a_real_log_stream_prove_the_trail() {
    let key = key_file("serve");
    let (log, stdout, trail) = serve_once(
        "log",
        &format!(
            "hmac_key_file = {:?}\nstdout = true",
            key.display().to_string()
        ),
    )
    .await;
    let checkpoint = log
        .iter()
        .find(|line| line.contains(r#""message":"audit checkpoint""#))
        .unwrap_or_else(|| panic!("a checkpoint at shutdown: {log:?}"));
    let json: serde_json::Value = serde_json::from_str(checkpoint).unwrap();
    assert_eq!(json["target"], "sipgw::audit::checkpoint", "{json}");
    assert!(
        !log.iter().any(|line| line.contains("has no HMAC key")),
        "keyed: {log:?}"
    );
    // The trail ends with the same line, and stdout carried it too.
    let records = std::fs::read_to_string(trail.join("audit.jsonl")).unwrap();
    let last = records.lines().last().unwrap();
    assert_eq!(json["checkpoint"], last, "{json}");
    assert!(stdout.lines().any(|line| line == last), "{stdout}");
    // The whole log, as a shipper kept it, is the anchor file.
    let log_file = kept("serve-log", &log);
    let stdout_file = kept("serve-stdout", &[stdout]);
    for anchors in [&log_file, &stdout_file] {
        let (code, out, err) = verify(&[
            trail.as_os_str(),
            "--key-file".as_ref(),
            key.as_os_str(),
            "--anchor".as_ref(),
            anchors.as_os_str(),
        ]);
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.contains("ANCHOR OK"), "{out}");
    }
    // The shutdown checkpoint removed from the trail: the anchor in the log shows it.
    cut_tail(&trail, 1);
    let (code, out, _) = verify(&[
        trail.as_os_str(),
        "--key-file".as_ref(),
        key.as_os_str(),
        "--anchor".as_ref(),
        log_file.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("records were deleted from its end"), "{out}");
}

#[tokio::test]
async fn serve_logs_the_unkeyed_warning() {
    let (log, _, _) = serve_once("unkeyed", "").await;
    let warning = log
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == UNKEYED_WARNING)
        .unwrap_or_else(|| panic!("the warning: {log:?}"));
    assert_eq!(warning["level"], "WARN");
}
