use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use super::trail::rotated_name;
use super::*;
use crate::audit::chain::GENESIS;
use crate::audit::record::{CallerInfo, Kind, seal, unseal};
use crate::audit::verify::{expand, verify};

pub(super) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sipgw-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn event(n: u64) -> Event {
    Event {
        kind: Kind::Outcome,
        request_id: Some(format!("req-{n}")),
        caller: CallerInfo {
            iss: Some("https://sso".into()),
            sub: Some("alice".into()),
            client_ip: "127.0.0.1".into(),
        },
        agent: Some("a1001".into()),
        code: "ok".into(),
        http_status: Some(200),
        vendor: None,
        latency_ms: Some(3),
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

fn open(path: &Path, fsync: Fsync, max_bytes: u64) -> AuditWriter {
    open_with(path, fsync, max_bytes, None, None)
}

fn open_with(
    path: &Path,
    fsync: Fsync,
    max_bytes: u64,
    checkpoint_every: Option<u64>,
    checkpoint_interval: Option<Duration>,
) -> AuditWriter {
    AuditWriter::open(WriterConfig {
        path: path.to_owned(),
        max_bytes,
        fsync,
        stdout: false,
        key: key(),
        file_mode: 0o600,
        allow_new_chain: false,
        instance: "test-gw".into(),
        checkpoint_every,
        checkpoint_interval,
    })
    .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn records_chain_and_verify() {
    let path = temp_dir("chain").join("audit.jsonl");
    let writer = open(&path, Fsync::Always, 1 << 20);
    for n in 1..=3 {
        assert_eq!(writer.append(event(n)).await.unwrap(), n);
    }
    let written = lines(&path);
    assert_eq!(written.len(), 3);
    assert!(written[0].contains(&format!("\"prev\":\"{GENESIS}\"")));
    let summary = verify(std::slice::from_ref(&path), &key()).unwrap();
    assert_eq!(summary.records, 3);
    assert!(summary.to_string().starts_with("OK: 3 records"));
    // The plain SHA-256 chain is a different chain: a keyed trail fails without its key.
    assert_eq!(verify(&[path], &MacKey::Plain).unwrap_err().line, 1);
}

#[tokio::test]
async fn the_chain_continues_across_restarts_and_cuts_a_partial_last_line() {
    let path = temp_dir("restart").join("audit.jsonl");
    let writer = open(&path, Fsync::Always, 1 << 20);
    writer.append(event(1)).await.unwrap();
    writer.append(event(2)).await.unwrap();
    drop(writer);
    // A crash in the middle of a write leaves a partial line; it was never acknowledged.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"v\":1,\"seq\":3,\"ts")
        .unwrap();
    let writer = open(&path, Fsync::Always, 1 << 20);
    assert_eq!(writer.append(event(3)).await.unwrap(), 3);
    assert_eq!(lines(&path).len(), 3);
    assert_eq!(verify(&[path], &key()).unwrap().records, 3);
}

#[tokio::test]
async fn rotation_keeps_the_chain_verifiable() {
    let dir = temp_dir("rotate");
    let path = dir.join("audit.jsonl");
    let writer = open(&path, Fsync::Always, 1000);
    for n in 1..=12 {
        writer.append(event(n)).await.unwrap();
    }
    drop(writer);
    let files = expand(std::slice::from_ref(&dir)).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    assert_eq!(files.last().unwrap(), &path, "the current file sorts last");
    let summary = verify(&files, &key()).unwrap();
    assert_eq!((summary.records, summary.first_seq), (12, 1));
    // A crash right after a rotation's rename leaves no current file: a restart continues
    // from the newest rotated one.
    std::fs::rename(&path, rotated_name(&path, 12, SystemTime::now())).unwrap();
    let writer = open(&path, Fsync::Always, 1 << 20);
    assert_eq!(writer.append(event(13)).await.unwrap(), 13);
    drop(writer);
    assert_eq!(
        verify(&expand(&[dir]).unwrap(), &key()).unwrap().records,
        13
    );
}

#[tokio::test]
async fn concurrent_writers_share_fsyncs() {
    let path = temp_dir("group").join("audit.jsonl");
    let writer = Arc::new(open(&path, Fsync::Always, 1 << 24));
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move { writer.append(event(n)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let fsyncs = writer.stats().fsyncs.load(Ordering::Relaxed);
    assert!(fsyncs < 100, "{fsyncs} fsyncs for 100 concurrent records");
    assert_eq!(writer.stats().records.load(Ordering::Relaxed), 100);
    assert_eq!(verify(&[path], &key()).unwrap().records, 100);
}

#[tokio::test]
async fn a_full_disk_refuses_and_the_chain_stays_whole() {
    // The trail's path names /dev/full (its state file goes beside the link).
    let path = temp_dir("full").join("audit.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    let writer = open(&path, Fsync::Always, u64::MAX);
    assert!(matches!(
        writer.append(event(1)).await,
        Err(AuditError::Io(_))
    ));
    assert_eq!(writer.stats().failures.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn every_kind_of_tampering_is_found_at_its_line() {
    let dir = temp_dir("tamper");
    let path = dir.join("audit.jsonl");
    let writer = open(&path, Fsync::Never, 1 << 20);
    for n in 1..=5 {
        writer.append(event(n)).await.unwrap();
    }
    drop(writer);
    let original = lines(&path);
    let check = |name: &str, content: String, expected_line: u64| {
        let file = dir.join(format!("{name}.jsonl"));
        std::fs::write(&file, content).unwrap();
        let failure = verify(&[file], &key()).unwrap_err();
        assert_eq!(failure.line, expected_line, "{name}: {failure}");
    };
    let join = |l: &[String]| l.iter().map(|s| format!("{s}\n")).collect::<String>();
    let mut edited = original.clone();
    edited[2] = edited[2].replace("a1001", "a1002");
    check("edited", join(&edited), 3);
    let mut deleted = original.clone();
    deleted.remove(1);
    check("deleted", join(&deleted), 2);
    let mut swapped = original.clone();
    swapped.swap(2, 3);
    check("swapped", join(&swapped), 3);
    let mut truncated = join(&original);
    truncated.truncate(truncated.len() - 10);
    check("truncated", truncated, 5);
    let mut inserted = original.clone();
    inserted.insert(2, original[2].clone());
    // The copy itself links correctly; the record after it no longer does.
    check("inserted", join(&inserted), 4);
    // An attacker who rewrites the chain with plain SHA-256 is caught by the key.
    let forged: Vec<String> = {
        let mut prev = GENESIS.to_owned();
        original
            .iter()
            .map(|line| {
                let (unsealed, _) = unseal(line).unwrap();
                let unsealed = unsealed.replace(
                    &format!(
                        "\"prev\":\"{}",
                        &line[line.find("\"prev\":\"").unwrap() + 8..][..64]
                    ),
                    &format!("\"prev\":\"{prev}"),
                );
                let mac = MacKey::Plain.mac(&prev, &unsealed);
                prev = mac.clone();
                seal(&unsealed, &mac)
            })
            .collect()
    };
    let forged_file = dir.join("forged.jsonl");
    std::fs::write(&forged_file, join(&forged)).unwrap();
    assert!(
        verify(std::slice::from_ref(&forged_file), &MacKey::Plain).is_ok(),
        "a consistent SHA-256 chain"
    );
    assert_eq!(verify(&[forged_file], &key()).unwrap_err().line, 1);
}

#[tokio::test]
async fn a_crash_during_a_new_files_first_write_is_cut_off() {
    let dir = temp_dir("first-write");
    let path = dir.join("audit.jsonl");
    let writer = open(&path, Fsync::Always, 600);
    for n in 1..=3 {
        writer.append(event(n)).await.unwrap();
    }
    drop(writer);
    // A rotation renamed the file, and the crash came during the new file's first write.
    std::fs::rename(&path, rotated_name(&path, 3, SystemTime::now())).unwrap();
    std::fs::write(&path, b"{\"v\":1,\"seq\":4,\"ts\":\"2026").unwrap();
    let writer = open(&path, Fsync::Always, 1 << 20);
    assert_eq!(writer.append(event(4)).await.unwrap(), 4);
    drop(writer);
    assert_eq!(
        verify(&expand(std::slice::from_ref(&dir)).unwrap(), &key())
            .unwrap()
            .records,
        4
    );
}

#[tokio::test]
async fn a_trail_missing_its_head_fails_unless_checked_as_a_tail() {
    let dir = temp_dir("head");
    let path = dir.join("audit.jsonl");
    let writer = open(&path, Fsync::Never, 1 << 20);
    for n in 1..=4 {
        writer.append(event(n)).await.unwrap();
    }
    drop(writer);
    let tail: String = lines(&path)[2..].iter().map(|l| format!("{l}\n")).collect();
    let cut = dir.join("cut.jsonl");
    std::fs::write(&cut, tail).unwrap();
    let failure = crate::audit::verify::verify(std::slice::from_ref(&cut), &key()).unwrap_err();
    assert_eq!(failure.line, 1);
    assert!(failure.reason.contains("starts at seq 3"), "{failure}");
    let summary = crate::audit::verify::verify_from_any(&[cut], &key()).unwrap();
    assert_eq!((summary.first_seq, summary.records), (3, 2));
}

#[tokio::test]
async fn flush_makes_records_durable_whatever_the_policy() {
    let path = temp_dir("flush").join("audit.jsonl");
    let writer = open(&path, Fsync::Never, 1 << 20);
    for n in 1..=3 {
        writer.append(event(n)).await.unwrap();
    }
    assert_eq!(writer.stats().fsyncs.load(Ordering::Relaxed), 0);
    writer.flush().await.unwrap();
    assert_eq!(writer.stats().fsyncs.load(Ordering::Relaxed), 1);
    assert_eq!(writer.stats().records.load(Ordering::Relaxed), 3);
}

/// The parsed lines of every file of the trail in `dir`, in chain order.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    expand(&[dir.to_owned()])
        .unwrap()
        .iter()
        .flat_map(|file| lines(file))
        .map(|line| serde_json::from_str(&line).unwrap())
        .collect()
}

fn kinds(records: &[serde_json::Value]) -> String {
    records
        .iter()
        .map(|r| if r["kind"] == "checkpoint" { 'C' } else { 'r' })
        .collect()
}

#[tokio::test]
async fn a_checkpoint_follows_every_n_records_and_closes_the_run_once() {
    let dir = temp_dir("checkpoint-every");
    let path = dir.join("audit.jsonl");
    // Small files: checkpoints rotate like any record.
    let writer = open_with(&path, Fsync::Always, 1200, Some(3), None);
    let mut seqs = Vec::new();
    for n in 1..=7 {
        seqs.push(writer.append(event(n)).await.unwrap());
    }
    assert_eq!(seqs, [1, 2, 3, 5, 6, 7, 9], "checkpoints take their seq");
    writer.close().await.unwrap();
    // Nothing came since the last checkpoint: no second one in a row.
    writer.close().await.unwrap();
    assert_eq!(writer.stats().checkpoints.load(Ordering::Relaxed), 3);
    assert_eq!(writer.stats().records.load(Ordering::Relaxed), 7);
    drop(writer);
    let written = records(&dir);
    assert_eq!(kinds(&written), "rrrCrrrCrC");
    assert!(
        expand(std::slice::from_ref(&dir)).unwrap().len() > 1,
        "rotated"
    );
    for (i, record) in written.iter().enumerate() {
        assert_eq!(record["v"], 2);
        assert_eq!(record["instance"], "test-gw");
        if record["kind"] == "checkpoint" {
            let before = &written[i - 1];
            assert_eq!(record["lastSeq"], before["seq"]);
            assert_eq!(record["lastMac"], before["mac"]);
            assert_eq!(record["prev"], before["mac"]);
        }
    }
    let summary = verify(&expand(std::slice::from_ref(&dir)).unwrap(), &key()).unwrap();
    assert_eq!((summary.records, summary.last_seq), (10, 10));
    // The next run goes on from the checkpoint, and closes with one of its own.
    let writer = open_with(&path, Fsync::Always, 1 << 20, Some(3), None);
    assert_eq!(writer.append(event(8)).await.unwrap(), 11);
    writer.close().await.unwrap();
    drop(writer);
    assert_eq!(kinds(&records(&dir)), "rrrCrrrCrCrC");
}

#[tokio::test]
async fn records_of_one_batch_get_their_own_seqs_around_checkpoints() {
    let dir = temp_dir("checkpoint-batch");
    let path = dir.join("audit.jsonl");
    let writer = Arc::new(open_with(&path, Fsync::Always, 1 << 20, Some(4), None));
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move { (n, writer.append(event(n)).await.unwrap()) })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.push(task.await.unwrap());
    }
    writer.close().await.unwrap();
    let written = records(&dir);
    assert_eq!(
        written.len(),
        50,
        "40 records and a checkpoint after every 4"
    );
    for (n, seq) in acknowledged {
        let record = &written[usize::try_from(seq).unwrap() - 1];
        assert_eq!(record["seq"], seq);
        assert_eq!(record["requestId"], format!("req-{n}"), "seq {seq}");
    }
    assert_eq!(kinds(&written), "rrrrC".repeat(10));
}

#[tokio::test]
async fn a_checkpoint_comes_an_interval_after_a_record_and_not_without_one() {
    let dir = temp_dir("checkpoint-interval");
    let path = dir.join("audit.jsonl");
    let writer = open_with(
        &path,
        Fsync::Interval(Duration::from_millis(20)),
        1 << 20,
        None,
        Some(Duration::from_millis(50)),
    );
    writer.append(event(1)).await.unwrap();
    // Polled with a generous bound: the machine may be slow, the interval is short.
    let started = Instant::now();
    while writer.stats().checkpoints.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no checkpoint came"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The timed checkpoint closes what was written: shutdown adds none after it.
    writer.close().await.unwrap();
    assert_eq!(writer.stats().checkpoints.load(Ordering::Relaxed), 1);
    assert_eq!(kinds(&records(&dir)), "rC");
    // A record after it waits for the next one.
    writer.append(event(2)).await.unwrap();
    writer.close().await.unwrap();
    assert_eq!(kinds(&records(&dir)), "rCrC");
}

#[tokio::test]
async fn a_run_after_a_crash_anchors_what_the_last_one_left_unanchored() {
    let dir = temp_dir("checkpoint-crash");
    let path = dir.join("audit.jsonl");
    // A run that wrote no checkpoint (as if it crashed before its shutdown one).
    let writer = open(&path, Fsync::Always, 1 << 20);
    writer.append(event(1)).await.unwrap();
    writer.flush().await.unwrap();
    drop(writer);
    let writer = open_with(&path, Fsync::Always, 1 << 20, Some(1000), None);
    writer.close().await.unwrap();
    assert_eq!(kinds(&records(&dir)), "rC", "its record is anchored now");
    drop(writer);
    // A trail that ends with a checkpoint needs no other.
    let writer = open_with(&path, Fsync::Always, 1 << 20, Some(1000), None);
    writer.close().await.unwrap();
    assert_eq!(kinds(&records(&dir)), "rC");
}

#[tokio::test]
async fn no_checkpoints_when_both_cadences_are_off() {
    let dir = temp_dir("checkpoint-off");
    let writer = open(&dir.join("audit.jsonl"), Fsync::Always, 1 << 20);
    writer.append(event(1)).await.unwrap();
    writer.close().await.unwrap();
    assert_eq!(writer.stats().checkpoints.load(Ordering::Relaxed), 0);
    assert_eq!(kinds(&records(&dir)), "r");
}
