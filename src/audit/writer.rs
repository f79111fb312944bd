//! The audit writer: one thread owns the file; requests hand it events and wait until their
//! record is durable.
//!
//! Group commit: the thread takes whatever is queued (up to [`MAX_BATCH`]), seals the records
//! in order, writes them with one `write` and, with `fsync = "always"`, makes them durable
//! with one `sync_data`; so 100 concurrent requests cost a handful of fsyncs, not 100. A
//! failed write or sync is rolled back (the file is cut back to its last durable length) and
//! every request of the batch is told, so the gateway can refuse them (503
//! `audit_unavailable`) before calling the vendor; the next batch tries again, so the writer
//! recovers by itself when the disk does. The chain continues across restarts (the tail of
//! the trail is read at start-up) and across rotation (`max_bytes`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use super::chain::{GENESIS, MacKey};
use super::record::{Event, seal, unseal, unsealed_json};

/// Most records sealed and written together.
pub const MAX_BATCH: usize = 1024;
/// Events waiting for the writer; beyond it the disk is far behind and requests are refused.
const QUEUE: usize = 8192;
/// How much of the trail's end is read at start-up to find the last record.
const TAIL_BYTES: u64 = 64 * 1024;

/// When records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch, before any request of it is answered (the default).
    Always,
    /// At most this long after a record is written: a crash can lose that much.
    Interval(Duration),
    /// Left to the OS: a crash can lose recent records.
    Never,
}

/// How the writer is set up.
#[derive(Debug)]
pub struct WriterConfig {
    /// The current trail file.
    pub path: PathBuf,
    /// Rotate when the file would grow beyond this.
    pub max_bytes: u64,
    /// Durability.
    pub fsync: Fsync,
    /// Also print each record on stdout (sidecar log collectors).
    pub stdout: bool,
    /// Seals records.
    pub key: MacKey,
}

/// Why a record is not durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// Writing or syncing failed (disk full, permission lost, ...).
    #[error("audit write failed: {0}")]
    Io(String),
    /// The writer is far behind or gone.
    #[error("audit writer unavailable")]
    Unavailable,
}

struct Job {
    /// What to record; `None` asks for a flush (everything written made durable).
    event: Option<Event>,
    /// Told the record's `seq` once durable, or why not.
    ack: oneshot::Sender<Result<u64, AuditError>>,
}

/// Counters for tests and metrics.
#[derive(Debug)]
pub struct Stats {
    /// Records made durable (as the policy defines it).
    pub records: AtomicU64,
    /// `sync_data` calls that succeeded.
    pub fsyncs: AtomicU64,
    /// Batches that could not be written, and fsyncs that failed after their records were
    /// acknowledged (`fsync = "interval"`, shutdown).
    pub failures: AtomicU64,
    /// How long each `sync_data` took (`sipgw_audit_fsync_seconds`).
    pub fsync_duration: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            records: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            fsync_duration: crate::metrics::fsync_histogram(),
        }
    }
}

impl Stats {
    /// `file.sync_data()`, timed and counted.
    fn sync(&self, file: &File) -> std::io::Result<()> {
        let started = Instant::now();
        let result = file.sync_data();
        self.fsync_duration.observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// Handle to the writer thread; cheap to share.
pub struct AuditWriter {
    /// Queue to the thread.
    jobs: SyncSender<Job>,
    /// Counters.
    stats: Arc<Stats>,
}

impl AuditWriter {
    /// Opens (or creates) the trail, continues its chain, and starts the writer thread.
    pub fn open(config: WriterConfig) -> std::io::Result<Self> {
        let trail = Trail::open(&config.path)?;
        let stats = Arc::new(Stats::default());
        let (jobs, queue) = sync_channel(QUEUE);
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("sipgw-audit".into())
            .spawn(move || run(queue, trail, config, &thread_stats))?;
        Ok(Self { jobs, stats })
    }

    /// Records `event`; resolves once it is durable, with its `seq`.
    pub async fn append(&self, event: Event) -> Result<u64, AuditError> {
        self.send(Some(event)).await
    }

    /// Makes every record written so far durable, whatever the `fsync` policy (on
    /// shutdown).
    pub async fn flush(&self) -> Result<(), AuditError> {
        self.send(None).await.map(drop)
    }

    async fn send(&self, event: Option<Event>) -> Result<u64, AuditError> {
        let (ack, done) = oneshot::channel();
        match self.jobs.try_send(Job { event, ack }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                return Err(AuditError::Unavailable);
            }
        }
        done.await.unwrap_or(Err(AuditError::Unavailable))
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// The open trail file and the chain's head.
struct Trail {
    /// Opened for appending.
    file: File,
    /// Bytes known durable (or written, with `fsync = "never"`).
    len: u64,
    /// `seq` of the last record.
    seq: u64,
    /// `mac` of the last record (the next `prev`).
    prev: String,
    /// The file may hold bytes past `len` (a failed write whose cut-back failed too): they
    /// are cut before anything else is written.
    needs_cut: bool,
    /// The directory must be synced before the next write (a new file's entry, or a
    /// rename, is not durable yet).
    dir_dirty: bool,
}

impl Trail {
    /// Opens `path`, finding the chain's head in it or, when it is new, in the newest
    /// rotated file beside it. A last line without its line end was never acknowledged
    /// (records are acknowledged after the write), so it is cut off.
    fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let (mut seq, mut prev) = (0, GENESIS.to_owned());
        let mut len = file.metadata()?.len();
        let (head, complete_len) = read_tail(&mut file, len)?;
        if complete_len < len {
            tracing::warn!(path = %path.display(), cut = len - complete_len, "audit trail ends with a partial record; cutting it off");
            file.set_len(complete_len)?;
            len = complete_len;
        }
        if let Some((tail_seq, tail_mac)) = head {
            (seq, prev) = (tail_seq, tail_mac);
        } else if let Some(rotated) = newest_rotated(path)? {
            let mut old = File::open(&rotated)?;
            let old_len = old.metadata()?.len();
            if let (Some((tail_seq, tail_mac)), _) = read_tail(&mut old, old_len)? {
                (seq, prev) = (tail_seq, tail_mac);
            }
        }
        Ok(Self {
            file,
            len,
            seq,
            prev,
            needs_cut: false,
            dir_dirty: !existed,
        })
    }
}

/// The last complete record of a file, `(seq, mac)`, and the length up to its line end
/// (0 when the file holds no complete line: a crash during its very first write).
fn read_tail(file: &mut File, len: u64) -> std::io::Result<(Option<(u64, String)>, u64)> {
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut tail)?;
    let Some(last_newline) = tail.iter().rposition(|&b| b == b'\n') else {
        if start == 0 {
            return Ok((None, 0));
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the audit trail ends with a line longer than any record; run `sipgw audit verify` on it",
        ));
    };
    let complete = &tail[..last_newline];
    let line_start = complete
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = std::str::from_utf8(&complete[line_start..]).ok();
    let parsed = line.and_then(|line| {
        let (_, mac) = unseal(line)?;
        let seq = serde_json::from_str::<serde_json::Value>(line).ok()?["seq"].as_u64()?;
        Some((seq, mac.to_owned()))
    });
    match parsed {
        Some(head) => Ok((Some(head), start + last_newline as u64 + 1)),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the audit trail's last line is not a sealed record; run `sipgw audit verify` on it",
        )),
    }
}

/// Rotated files are `<stem>-<last seq, 20 digits>-<time>.jsonl` beside `<stem>.jsonl`:
/// the sequence number makes names unique and sort in chain order whatever the clock does,
/// and they sort before the current file.
fn rotated_name(path: &Path, last_seq: u64, at: SystemTime) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "audit".into(), |s| s.to_string_lossy().into_owned());
    let stamp = humantime::format_rfc3339_millis(at)
        .to_string()
        .replace(':', "-");
    path.with_file_name(format!("{stem}-{last_seq:020}-{stamp}.jsonl"))
}

fn newest_rotated(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let Some(dir) = path.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    }) else {
        return Ok(None);
    };
    let stem = path
        .file_stem()
        .map(|s| format!("{}-", s.to_string_lossy()))
        .unwrap_or_default();
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&stem) && n.ends_with(".jsonl")
            })
        })
        .collect();
    rotated.sort();
    Ok(rotated.pop())
}

/// The writer thread.
fn run(queue: Receiver<Job>, mut trail: Trail, config: WriterConfig, stats: &Stats) {
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let first = match config.fsync {
            Fsync::Interval(every) if unsynced_since.is_some() => {
                let due = unsynced_since.map_or(every, |t| every.saturating_sub(t.elapsed()));
                match queue.recv_timeout(due) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match queue.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        let mut batch: Vec<Job> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (batch, flushes): (Vec<Job>, Vec<Job>) =
            batch.into_iter().partition(|job| job.event.is_some());
        if !batch.is_empty() {
            let result = write_batch(&mut trail, &config, &batch, stats);
            if result.is_ok()
                && matches!(config.fsync, Fsync::Interval(_))
                && unsynced_since.is_none()
            {
                unsynced_since = Some(Instant::now());
            }
            answer(batch, result, stats);
        }
        if !flushes.is_empty() {
            let synced = stats.sync(&trail.file);
            if synced.is_ok() {
                unsynced_since = None;
            }
            for job in flushes {
                let _ = job.ack.send(
                    synced
                        .as_ref()
                        .map(|()| trail.seq)
                        .map_err(|e| AuditError::Io(e.to_string())),
                );
            }
        }
        if let (Fsync::Interval(every), Some(since)) = (config.fsync, unsynced_since)
            && since.elapsed() >= every
        {
            match stats.sync(&trail.file) {
                Ok(()) => {
                    unsynced_since = None;
                }
                Err(error) => {
                    // These records were acknowledged at write time (that is what
                    // "interval" means); count the failure so that it shows.
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, "audit fsync failed");
                }
            }
        }
    }
    // The gateway is shutting down: make everything written durable.
    if let Err(error) = stats.sync(&trail.file) {
        stats.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%error, "audit fsync at shutdown failed");
    }
}

fn answer(batch: Vec<Job>, result: Result<u64, AuditError>, stats: &Stats) {
    match result {
        Ok(first_seq) => {
            stats
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for (i, job) in batch.into_iter().enumerate() {
                let _ = job.ack.send(Ok(first_seq + i as u64));
            }
        }
        Err(error) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, records = batch.len(), "audit records could not be made durable");
            for job in batch {
                let _ = job.ack.send(Err(error.clone()));
            }
        }
    }
}

/// Seals and writes one batch; returns the first record's `seq`. On failure nothing of
/// the batch stays in the file and the chain's head is unchanged.
fn write_batch(
    trail: &mut Trail,
    config: &WriterConfig,
    batch: &[Job],
    stats: &Stats,
) -> Result<u64, AuditError> {
    let io = |e: std::io::Error| AuditError::Io(e.to_string());
    let (mut seq, mut prev) = (trail.seq, trail.prev.clone());
    let mut lines = String::with_capacity(batch.len() * 512);
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    for job in batch {
        seq += 1;
        let event = job
            .event
            .as_ref()
            .expect("flush requests are split off before");
        let unsealed = unsealed_json(seq, &now, event, &prev);
        let mac = config.key.mac(&prev, &unsealed);
        lines.push_str(&seal(&unsealed, &mac));
        lines.push('\n');
        prev = mac;
    }
    if trail.needs_cut {
        trail.file.set_len(trail.len).map_err(io)?;
        trail.needs_cut = false;
    }
    if trail.len > 0 && trail.len + lines.len() as u64 > config.max_bytes {
        rotate(trail, &config.path).map_err(io)?;
    }
    if trail.dir_dirty {
        sync_dir(&config.path).map_err(io)?;
        trail.dir_dirty = false;
    }
    let written = trail
        .file
        .write_all(lines.as_bytes())
        .and_then(|()| match config.fsync {
            Fsync::Always => stats.sync(&trail.file),
            Fsync::Interval(_) | Fsync::Never => Ok(()),
        });
    if let Err(error) = written {
        // Cut back to the last durable record, so that the chain stays whole; if even that
        // fails, the next batch cuts first (or is refused).
        trail.needs_cut = trail.file.set_len(trail.len).is_err();
        return Err(io(error));
    }
    let first = trail.seq + 1;
    trail.len += lines.len() as u64;
    trail.seq = seq;
    trail.prev = prev;
    if config.stdout {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(lines.as_bytes());
        let _ = out.flush();
    }
    Ok(first)
}

/// Renames the full file with its rotation time and starts a new one; the chain simply
/// continues in it. The directory is synced before the next write (`dir_dirty`), which makes
/// both the rename and the new file's entry durable. A rename done by an earlier, failed
/// attempt is not repeated.
fn rotate(trail: &mut Trail, path: &Path) -> std::io::Result<()> {
    trail.file.sync_data()?;
    if path.exists() {
        let rotated = rotated_name(path, trail.seq, SystemTime::now());
        std::fs::rename(path, &rotated)?;
        tracing::info!(rotated = %rotated.display(), "audit trail rotated");
    }
    trail.dir_dirty = true;
    trail.file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    trail.len = 0;
    Ok(())
}

/// Makes the directory's entries (a new file, a rename) durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
