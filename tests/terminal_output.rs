//! What reaches a reviewer's terminal (issue 11, finding 7), through the `sipgw` binary:
//! control and bidi characters from a trail or a config are shown as visible escapes, and
//! a reader that closes the pipe early (`sipgw audit show | head -1`) ends the output
//! quietly instead of a panic.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sipgw::audit::chain::MacKey;
use sipgw::audit::record::{CallerInfo, Event, Kind};
use sipgw::audit::writer::{AuditWriter, Fsync, WriterConfig};

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
            suppressed: None,
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
    let mut first = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut first).unwrap();
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
