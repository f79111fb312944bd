//! What reaches a reviewer's terminal (issue 11, finding 7), through the `sipgw` binary:
//! control and bidi characters from a trail or a config are shown as visible escapes, and
//! a reader that closes the pipe early (`sipgw audit show | head -1`) ends the output
//! quietly instead of a panic; a hostile `sub` or path reaches the log escaped.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sipgw::audit::chain::MacKey;
use sipgw::audit::record::{CallerInfo, Event, Kind};
use sipgw::audit::writer::{AuditWriter, Fsync, WriterConfig};
use std::time::Duration;

use common::*;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
/// A `sub` that would turn the terminal red, clear the screen (8-bit CSI) and reverse the
/// rest of the line, if printed raw.
const HOSTILE_SUB: &str = "mallory\u{1b}[31m\u{9b}2J\u{202e}gnp.exe";

/// A fresh directory holding a trail of `n` outcome records whose `sub` is `sub`.
async fn trail(name: &str, n: usize, sub: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipgw-term-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let writer = AuditWriter::open(WriterConfig {
        path: dir.join("audit.jsonl"),
        max_bytes: 1 << 30,
        fsync: Fsync::Never,
        stdout: false,
        key: MacKey::Plain,
        file_mode: 0o600,
        allow_new_chain: false,
        instance: "test-gw".into(),
        checkpoint_every: None,
        checkpoint_interval: None,
    })
    .unwrap();
    for i in 0..n {
        let event = Event {
            kind: Kind::Outcome,
            request_id: Some(format!("req-{i}")),
            caller: CallerInfo {
                iss: Some("https://sso.test.internal".into()),
                sub: Some(sub.into()),
                client_ip: "127.0.0.1".into(),
            },
            agent: Some("a1001".into()),
            code: "forbidden".into(),
            http_status: Some(403),
            vendor: None,
            latency_ms: Some(1),
            caller_name: None,
            forwarded_for: None,
            grant: None,
            replay_of: None,
            trace_id: None,
            suppressed: None,
            flood: None,
        };
        writer.append(event).await.unwrap();
    }
    drop(writer);
    dir
}

fn sipgw(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(SIPGW).args(args).arg(dir).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Whether `text` holds a character that must not reach a terminal raw (line ends aside).
fn has_raw_controls(text: &str) -> bool {
    text.chars()
        .any(|c| c != '\n' && sipgw::terminal::is_unsafe(c))
}

#[tokio::test]
async fn audit_show_escapes_control_and_bidi_characters() {
    let dir = trail("escape", 1, HOSTILE_SUB).await;
    let (code, table, _) = sipgw(&["audit", "show"], &dir);
    assert_eq!(code, Some(0), "{table}");
    assert!(!has_raw_controls(&table), "raw controls in {table:?}");
    assert!(
        table.contains("mallory\\u{1b}[31m\\u{9b}2J\\u{202e}gnp.exe"),
        "{table}"
    );
    // JSON lines stay valid JSON with the same values, and hold no raw controls either.
    let (code, json, _) = sipgw(&["audit", "show", "--json"], &dir);
    assert_eq!(code, Some(0), "{json}");
    assert!(!has_raw_controls(&json), "raw controls in {json:?}");
    let record: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(record["caller"]["sub"], HOSTILE_SUB);
}

#[tokio::test]
async fn audit_show_into_a_closed_pipe_ends_quietly() {
    // Far more than a pipe buffer (64 KiB), so the writer meets the closed pipe.
    let dir = trail("pipe", 5_000, "alice").await;
    let mut child = Command::new(SIPGW)
        .args(["audit", "show"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut header, mut first) = (String::new(), String::new());
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut header).unwrap();
    reader.read_line(&mut first).unwrap();
    assert!(header.starts_with("TIME "), "{header}");
    assert!(first.contains("req-0"), "{first}");
    // `head -1` exits: the read end closes.
    drop(reader);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn check_config_escapes_the_values_it_echoes() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sipgw.example.toml");
    let output = Command::new(SIPGW)
        .args(["check-config", "--config", example])
        .env("SIPGW_APP_SECRET", "x")
        .env("SIPGW__AUTH__AGENT_CLAIM", "upn\u{9b}2J\u{202e}x")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(!has_raw_controls(&stdout), "raw controls in {stdout:?}");
    assert!(stdout.contains("upn\\u{9b}2J\\u{202e}x"), "{stdout}");
}

// Two workers: this test blocks on the child's sockets and log while the issuer and the
// simulator serve from the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_sub_and_path_reach_the_log_escaped() {
    let upstreams = Upstreams::start().await;
    let (idp, sections) = (&upstreams.idp, upstreams.config_sections());
    let dir = fresh_dir("term-log");
    let audit_path = dir.join("audit.jsonl").display().to_string();
    let config = dir.join("sipgw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             trusted_proxies = [\"127.0.0.1\"]\n[audit]\npath = {audit_path:?}\n{sections}"
        ),
    )
    .unwrap();
    let mut child = serve_command(&config)
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let (lines, mut log, addr) = listening(&mut child, Duration::from_secs(20));
    // A caller whose `sub` is hostile, asking for an agent it may not change (403) through
    // a trusted proxy (its span names the end user's address too), and a path holding a
    // raw U+202E (404), sent as bytes.
    let token = idp.mint_for(HOSTILE_SUB, AUDIENCE, Some("someone-else"), false);
    let exchange = |head: Vec<u8>| {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.write_all(&head).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let body = r#"{"accountPwd":"Welcome~2024","newPhonePwd":"Sip~Phone2025"}"#;
    let forbidden = exchange(
        format!(
            "POST {} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {token}\r\n\
             x-forwarded-for: 6.6.6.6, 203.0.113.9\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            Harness::endpoint(AGENT),
            body.len()
        )
        .into_bytes(),
    );
    assert!(forbidden.starts_with("HTTP/1.1 403"), "{forbidden}");
    let mut head = b"GET /v1/x".to_vec();
    head.extend_from_slice("\u{202e}gnp".as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let not_found = exchange(head);
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    let mut requests = Vec::new();
    while requests.len() < 2 {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("two request lines; log: {log:?}"));
        log.push(line.clone());
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["message"] == "request" {
            requests.push((line, json));
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for (line, _) in &requests {
        assert!(!has_raw_controls(line), "raw controls in {line:?}");
    }
    let spans: Vec<&serde_json::Value> = requests.iter().map(|(_, json)| &json["span"]).collect();
    assert!(
        spans
            .iter()
            .any(|s| s["sub"] == "mallory\\u{1b}[31m\\u{9b}2J\\u{202e}gnp.exe"),
        "{spans:?}"
    );
    assert!(
        spans.iter().any(|s| s["route"] == "/v1/x\\u{202e}gnp"),
        "{spans:?}"
    );
    assert!(
        spans.iter().any(|s| s["forwarded_for"] == "203.0.113.9"),
        "{spans:?}"
    );
}
