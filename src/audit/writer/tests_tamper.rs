//! The trail removed or altered under the writer, the restart that follows, and file modes.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::tamper::{Tamper, TamperLabel};
use super::*;
use crate::audit::record::{CallerInfo, Kind};
use crate::audit::verify::{expand, verify};

/// A fresh directory of the writer's tests, apart from `tests.rs`'s own.
fn temp_dir(name: &str) -> PathBuf {
    super::tests::temp_dir(&format!("tamper-{name}"))
}

fn event(n: u64) -> Event {
    Event {
        kind: Kind::Attempt,
        request_id: Some(format!("req-{n}")),
        caller: CallerInfo {
            iss: Some("https://sso".into()),
            sub: Some("alice".into()),
            client_ip: "127.0.0.1".into(),
        },
        agent: Some("a1001".into()),
        code: "attempt".into(),
        http_status: None,
        vendor: None,
        latency_ms: None,
        caller_name: None,
        forwarded_for: None,
        grant: None,
        replay_of: None,
        trace_id: None,
        suppressed: None,
        flood: None,
    }
}

fn key() -> MacKey {
    MacKey::from_file_bytes(b"test-hmac-key-0123456789abcdef").unwrap()
}

fn config(path: &Path, file_mode: u32, allow_new_chain: bool) -> WriterConfig {
    WriterConfig {
        path: path.to_owned(),
        max_bytes: 1 << 20,
        fsync: Fsync::Always,
        stdout: false,
        key: key(),
        file_mode,
        allow_new_chain,
        instance: "test-gw".into(),
        checkpoint_every: None,
        checkpoint_interval: None,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn tampered(writer: &AuditWriter, kind: Tamper) -> u64 {
    writer
        .stats()
        .tampered
        .get_or_create(&TamperLabel { kind })
        .get()
}

/// Writes `n` records to a new trail in `dir`; returns the writer.
async fn written(dir: &Path, n: u64) -> AuditWriter {
    let writer = AuditWriter::open(config(&dir.join("audit.jsonl"), 0o600, false)).unwrap();
    for i in 1..=n {
        writer.append(event(i)).await.unwrap();
    }
    writer
}

/// After `damage`, the next append fails with `kind`, and so does every one after it.
async fn halts_on(name: &str, kind: Tamper, damage: impl FnOnce(&Path)) {
    let dir = temp_dir(name);
    let writer = written(&dir, 2).await;
    assert_eq!(writer.halted(), None);
    assert_eq!(tampered(&writer, kind), 0, "present at 0 before");
    damage(&dir.join("audit.jsonl"));
    let refused = writer.append(event(3)).await;
    assert!(
        matches!(refused, Err(AuditError::Halted(k)) if k == kind),
        "{name}: {refused:?}"
    );
    assert!(matches!(
        writer.append(event(4)).await,
        Err(AuditError::Halted(_))
    ));
    assert_eq!(writer.halted(), Some(kind));
    assert_eq!(tampered(&writer, kind), 1);
    assert!(
        writer.flush().await.is_err(),
        "nothing is made durable any more"
    );
    // The state file remembers it, so that a restart does not carry on as if nothing
    // happened, even when the damage looks harmless afterwards.
    let state = std::fs::read_to_string(dir.join("audit.state")).unwrap();
    assert!(
        state.contains(&format!("\"tampered\":\"{kind}\"")),
        "{state}"
    );
    drop(writer);
    let reopened = AuditWriter::open(config(&dir.join("audit.jsonl"), 0o600, false));
    let error = reopened.err().expect("a restart is refused");
    assert!(
        error.to_string().contains("audit.allow_new_chain"),
        "{error}"
    );
}

#[tokio::test]
async fn removing_the_live_file_halts_the_writer() {
    halts_on("unlinked", Tamper::Unlinked, |path| {
        std::fs::remove_file(path).unwrap();
    })
    .await;
}

#[tokio::test]
async fn cutting_the_live_file_short_halts_the_writer() {
    halts_on("truncated", Tamper::Truncated, |path| {
        let len = std::fs::metadata(path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn replacing_the_live_file_halts_the_writer() {
    halts_on("replaced", Tamper::Replaced, |path| {
        let other = path.with_file_name("other.txt");
        std::fs::write(&other, std::fs::read(path).unwrap()).unwrap();
        std::fs::rename(&other, path).unwrap();
    })
    .await;
}

#[tokio::test]
async fn appending_to_the_live_file_halts_the_writer() {
    halts_on("extended", Tamper::Extended, |path| {
        // A copy of the last record: well-formed, so only the length gives it away.
        let last = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_owned();
        let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(format!("{last}\n").as_bytes()).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_restart_after_removal_is_refused_unless_a_new_chain_is_allowed() {
    let dir = temp_dir("restart");
    let path = dir.join("audit.jsonl");
    let writer = written(&dir, 2).await;
    drop(writer);
    let last_mac = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .last()
        .unwrap()[..]
        .rsplit("\"mac\":\"")
        .next()
        .unwrap()[..64]
        .to_owned();
    std::fs::remove_file(&path).unwrap();

    let error = AuditWriter::open(config(&path, 0o600, false))
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(message.contains("up to seq 2"), "{message}");
    assert!(message.contains("(missing)"), "{message}");
    assert!(!path.exists(), "a refused start creates nothing");

    let writer = AuditWriter::open(config(&path, 0o600, true)).unwrap();
    assert_eq!(tampered(&writer, Tamper::Missing), 1, "counted for alerts");
    assert_eq!(writer.append(event(3)).await.unwrap(), 4);
    drop(writer);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["kind"], "discontinuity");
    assert_eq!(first["detected"], "missing");
    assert_eq!(
        (first["seq"].as_u64(), first["lastSeq"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(first["lastMac"], last_mac.as_str());
    assert_eq!(first["prev"], last_mac.as_str());
    assert!(first["foundSeq"].is_null());
    // verify says so: not a silent OK.
    let summary = verify(&expand(std::slice::from_ref(&dir)).unwrap(), &key()).unwrap();
    assert_eq!(summary.discontinuities.len(), 1);
    assert_eq!((summary.first_seq, summary.last_seq), (3, 4));
    let text = summary.to_string();
    assert!(text.starts_with("DISCONTINUITY: 2 records"), "{text}");
    assert!(text.contains("found missing"), "{text}");
    // The new chain is whole: the next start continues it without the override.
    let writer = AuditWriter::open(config(&path, 0o600, false)).unwrap();
    assert_eq!(writer.append(event(5)).await.unwrap(), 5);
}

#[tokio::test]
async fn a_trail_cut_short_while_stopped_is_refused_and_kept_beside_a_new_chain() {
    let dir = temp_dir("cut-offline");
    let path = dir.join("audit.jsonl");
    drop(written(&dir, 4).await);
    // Whole lines removed from the end: the trail looks as if it simply ended at seq 2.
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, kept).unwrap();
    let error = AuditWriter::open(config(&path, 0o600, false))
        .err()
        .unwrap();
    assert!(error.to_string().contains("now ends at seq 2"), "{error}");

    drop(AuditWriter::open(config(&path, 0o600, true)).unwrap());
    let files = expand(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(files.len(), 2, "the cut file is kept, renamed: {files:?}");
    let summary = verify(&files, &key()).unwrap();
    let gap = &summary.discontinuities[0];
    assert_eq!((gap.held_seq, gap.last_seq), (Some(2), 4));
    assert_eq!(gap.detected, "truncated");
    assert!(
        summary
            .to_string()
            .contains("records after seq 2 up to seq 4")
    );
}

#[tokio::test]
async fn a_trail_from_before_the_state_file_is_adopted() {
    let dir = temp_dir("adopt");
    let path = dir.join("audit.jsonl");
    drop(written(&dir, 2).await);
    std::fs::remove_file(dir.join("audit.state")).unwrap();
    let writer = AuditWriter::open(config(&path, 0o600, false)).unwrap();
    assert_eq!(writer.append(event(3)).await.unwrap(), 3);
    assert!(dir.join("audit.state").exists());
}

#[tokio::test]
async fn files_and_directories_are_created_with_the_configured_modes() {
    for (file_mode, dir_mode) in [(0o600, 0o700), (0o640, 0o750)] {
        let root = temp_dir(&format!("modes-{file_mode:o}"));
        let dir = root.join("var").join("audit");
        let path = dir.join("audit.jsonl");
        let mut cfg = config(&path, file_mode, false);
        cfg.max_bytes = 1000;
        let writer = AuditWriter::open(cfg).unwrap();
        for n in 1..=12 {
            writer.append(event(n)).await.unwrap();
        }
        drop(writer);
        assert_eq!(mode(&dir), dir_mode, "the trail directory");
        let files = rotated_files(&path).unwrap();
        assert!(files.len() >= 2, "rotated: {files:?}");
        for file in files.iter().chain([&path, &dir.join("audit.state")]) {
            assert_eq!(mode(file), file_mode, "{}", file.display());
        }
    }
}

#[tokio::test]
async fn an_existing_trail_is_narrowed_to_the_configured_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("narrowed");
    let path = dir.join("audit.jsonl");
    let writer = AuditWriter::open(config(&path, 0o600, false)).unwrap();
    writer.append(event(1)).await.unwrap();
    drop(writer);
    // As an older release (or a hand-made file) might have left it: readable by everyone.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let writer = AuditWriter::open(config(&path, 0o640, false)).unwrap();
    assert_eq!(mode(&path), 0o640, "world-readable bits taken away");
    drop(writer);
    // Never widened: an operator's tighter mode stays.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let _writer = AuditWriter::open(config(&path, 0o640, false)).unwrap();
    assert_eq!(mode(&path), 0o600);
}
