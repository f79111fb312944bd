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
//!
//! Removal is not silent: each batch first checks that the file is still the one at the
//! path, as long as written ([`tamper`]); if not, the writer stops for good (every append
//! fails, so every change is refused) until an operator restarts it, and the state file
//! ([`state`]) makes that restart refuse too unless `audit.allow_new_chain` is set ([`trail`]).
//!
//! Checkpoints: after every `checkpoint_every` records, when a record has waited
//! `checkpoint_interval` for one, and at shutdown, the thread appends a `checkpoint` record
//! naming the record before it, through the same write, fsync and rotation as any record.
//! Once it is durable (at once with `fsync = "always"`, after the next sync with
//! `"interval"`), its sealed line also goes to the log stream (and, like every record, to
//! stdout with `audit.stdout`), where a shipper can keep it off the host as an anchor
//! (docs/audit.md, "Anchors").
//!
//! - [`batch`]: one batch sealed, checked, written and synced, or cut back whole.
//! - `queue`: the bounded job queue, whose memory follows what is queued.
//! - [`trail`]: the files, the start-up check, rotation, file modes.
//! - [`state`]: how far the trail was written, beside it.
//! - [`tamper`]: what "removed under the writer" means, checked per batch.

mod batch;
mod queue;
mod state;
pub mod tamper;
mod trail;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use super::chain::MacKey;
use super::record::Event;
use batch::{write_batch, write_checkpoint};
use tamper::{Tamper, TamperLabel};
use trail::Trail;
pub use trail::rotated_files;

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
    /// Mode of created files (`0o600` or `0o640`); directories get `0o700` / `0o750`.
    pub file_mode: u32,
    /// Start a new chain (with a `discontinuity` record) when the trail lacks records it
    /// is known to have had, instead of refusing to open it.
    pub allow_new_chain: bool,
    /// The replica's name, stamped on every record (`instance`).
    pub instance: String,
    /// A `checkpoint` record after this many records (`None`: none by count).
    pub checkpoint_every: Option<u64>,
    /// A `checkpoint` record at most this long after a record not yet followed by one
    /// (`None`: none by time).
    pub checkpoint_interval: Option<Duration>,
}

impl WriterConfig {
    /// Whether checkpoints are written at all (by count or time, then also at shutdown).
    fn checkpoints(&self) -> bool {
        self.checkpoint_every.is_some() || self.checkpoint_interval.is_some()
    }
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
    /// The live file was removed or altered under the writer: it writes nothing more.
    #[error("audit trail {0}; writes stopped until an operator restarts the gateway")]
    Halted(Tamper),
}

struct Job {
    /// What is asked.
    work: Work,
    /// Told the record's `seq` once durable (for a flush or close: the last `seq`), or why
    /// not.
    ack: oneshot::Sender<Result<u64, AuditError>>,
}

/// What a job asks of the writer thread.
#[allow(
    clippy::large_enum_variant,
    reason = "records are the jobs; flushes are rare, and a Box would cost every record an allocation"
)]
enum Work {
    /// Write this record.
    Record(Event),
    /// Make everything written durable.
    Flush,
    /// The gateway stops: a last checkpoint (when records came since the last one), then a
    /// flush.
    Close,
}

/// Counters for tests and metrics.
#[derive(Debug)]
pub struct Stats {
    /// Records made durable (as the policy defines it).
    pub records: AtomicU64,
    /// `sync_data` calls that succeeded.
    pub fsyncs: AtomicU64,
    /// `checkpoint` records written (`sipgw_audit_checkpoints_total`).
    pub checkpoints: AtomicU64,
    /// Batches that could not be written, and fsyncs that failed after their records were
    /// acknowledged (`fsync = "interval"`, shutdown).
    pub failures: AtomicU64,
    /// How long each `sync_data` took (`sipgw_audit_fsync_seconds`).
    pub fsync_duration: Histogram,
    /// `sipgw_audit_trail_tampered_total{kind}`: every kind present from start-up.
    pub tampered: Family<TamperLabel, Counter>,
    /// Why the writer stopped, once it has (for `/readyz`).
    halted: Mutex<Option<Tamper>>,
}

impl Default for Stats {
    fn default() -> Self {
        let tampered = Family::<TamperLabel, Counter>::default();
        for kind in Tamper::ALL {
            // Created at 0 now, so that alerts on an increase see the first one.
            drop(tampered.get_or_create(&TamperLabel { kind }));
        }
        Self {
            records: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            fsync_duration: crate::metrics::fsync_histogram(),
            tampered,
            halted: Mutex::new(None),
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

    /// Why the writer stopped accepting records, if it has.
    pub fn halted(&self) -> Option<Tamper> {
        *self.halted.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn halt(&self, kind: Tamper) {
        *self.halted.lock().unwrap_or_else(|p| p.into_inner()) = Some(kind);
        self.tampered.get_or_create(&TamperLabel { kind }).inc();
    }
}

/// Handle to the writer thread; cheap to share.
pub struct AuditWriter {
    /// Queue to the thread (taken only when the writer is dropped).
    jobs: Option<queue::Sender<Job>>,
    /// Counters.
    stats: Arc<Stats>,
    /// What was found missing when this start began a new chain (`allow_new_chain`).
    new_chain: Option<Tamper>,
    /// The writer thread, joined when the writer is dropped.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AuditWriter {
    /// Closes the queue and waits for the thread's last sync and state-file write: once
    /// the writer is gone, nothing more touches the trail's files (a restart, or a test
    /// that reads them, never races a write still under way).
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl AuditWriter {
    /// Opens (or creates) the trail, continues its chain, and starts the writer thread.
    /// Refused when the trail lacks records it is known to have had, unless
    /// `allow_new_chain` (see [`trail`]).
    pub fn open(config: WriterConfig) -> std::io::Result<Self> {
        let (trail, discontinuity) = Trail::open(&config)?;
        let stats = Arc::new(Stats::default());
        if let Some(kind) = discontinuity {
            // A new chain was started because records were missing: counted like a
            // tampering found while running, so that alerts see it.
            stats.tampered.get_or_create(&TamperLabel { kind }).inc();
        }
        let (jobs, queue) = queue::bounded(QUEUE);
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("sipgw-audit".into())
            .spawn(move || run(queue, trail, config, &thread_stats))?;
        Ok(Self {
            jobs: Some(jobs),
            stats,
            new_chain: discontinuity,
            thread: Some(thread),
        })
    }

    /// Whether this start began a new chain after records were found missing, and what was
    /// found: the records lost may have held lockout counts, so the shield cannot be
    /// rebuilt in full.
    pub fn started_new_chain(&self) -> Option<Tamper> {
        self.new_chain
    }

    /// Records `event`; resolves once it is durable, with its `seq`.
    pub async fn append(&self, event: Event) -> Result<u64, AuditError> {
        self.send(Work::Record(event)).await
    }

    /// Whether the writer stopped because its file was tampered with, and how.
    pub fn halted(&self) -> Option<Tamper> {
        self.stats.halted()
    }

    /// Makes every record written so far durable, whatever the `fsync` policy (on
    /// shutdown).
    pub async fn flush(&self) -> Result<(), AuditError> {
        self.send(Work::Flush).await.map(drop)
    }

    /// Ends the trail for this run: a last `checkpoint` record when records were written
    /// since the last one, then everything made durable (on shutdown, after the last
    /// record).
    pub async fn close(&self) -> Result<(), AuditError> {
        self.send(Work::Close).await.map(drop)
    }

    async fn send(&self, work: Work) -> Result<u64, AuditError> {
        let (ack, done) = oneshot::channel();
        let Some(jobs) = &self.jobs else {
            return Err(AuditError::Unavailable);
        };
        if jobs.try_send(Job { work, ack }).is_err() {
            return Err(AuditError::Unavailable);
        }
        done.await.unwrap_or(Err(AuditError::Unavailable))
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// The writer thread.
fn run(queue: queue::Receiver<Job>, mut trail: Trail, config: WriterConfig, stats: &Stats) {
    let mut unsynced_since: Option<Instant> = None;
    let (mut records, mut flushes) = (Vec::new(), Vec::new());
    loop {
        // Wait for work, or until an interval fsync or a checkpoint is due.
        let fsync_due = match config.fsync {
            Fsync::Interval(every) => unsynced_since.map(|since| since + every),
            Fsync::Always | Fsync::Never => None,
        };
        let checkpoint_due = config
            .checkpoint_interval
            .zip(trail.unanchored_since)
            .map(|(every, since)| since + every);
        let first = match fsync_due.into_iter().chain(checkpoint_due).min() {
            Some(due) => match queue.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match queue.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        // Whatever else is queued joins the batch (records and flushes kept apart; the two
        // vectors keep their room from batch to batch).
        let queued = std::iter::from_fn(|| queue.try_recv().ok());
        for job in first.into_iter().chain(queued).take(MAX_BATCH) {
            match job.work {
                Work::Record(_) => records.push(job),
                Work::Flush | Work::Close => flushes.push(job),
            }
        }
        if !records.is_empty() {
            let events: Vec<&Event> = records
                .iter()
                .filter_map(|job| match &job.work {
                    Work::Record(event) => Some(event),
                    Work::Flush | Work::Close => None,
                })
                .collect();
            let result = write_batch(&mut trail, &config, &events, false, stats);
            note_written(&result, &config, &mut unsynced_since);
            answer(records.drain(..), result, stats);
        }
        let closing = flushes.iter().any(|job| matches!(job.work, Work::Close));
        let checkpoint_overdue = trail.unanchored_since.is_some_and(|since| {
            config
                .checkpoint_interval
                .is_some_and(|every| since.elapsed() >= every)
        });
        let mut checkpointed = Ok(());
        if (closing || checkpoint_overdue) && trail.halted.is_none() {
            checkpointed = write_checkpoint(&mut trail, &config, stats);
            note_written(&checkpointed, &config, &mut unsynced_since);
        }
        if !flushes.is_empty() {
            let synced = match trail.halted {
                Some(kind) => Err(AuditError::Halted(kind)),
                None => stats
                    .sync(&trail.file)
                    .map_err(|e| AuditError::Io(e.to_string())),
            };
            if synced.is_ok() {
                unsynced_since = None;
                remember(&mut trail, &config, true);
                emit_synced(&mut trail);
            }
            for job in flushes.drain(..) {
                let closed = match job.work {
                    Work::Close => checkpointed.clone().and(synced.clone()),
                    Work::Flush | Work::Record(_) => synced.clone(),
                };
                let _ = job.ack.send(closed.map(|()| trail.seq));
            }
        }
        if let (Fsync::Interval(every), Some(since)) = (config.fsync, unsynced_since)
            && since.elapsed() >= every
        {
            match stats.sync(&trail.file) {
                Ok(()) => {
                    unsynced_since = None;
                    remember(&mut trail, &config, false);
                    emit_synced(&mut trail);
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
    // The gateway is shutting down: a last checkpoint, everything written made durable,
    // and how far that is remembered (a halted writer's file is no longer the trail: only
    // its state is kept).
    if trail.halted.is_none() {
        let _ = write_checkpoint(&mut trail, &config, stats);
        if let Err(error) = stats.sync(&trail.file) {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, "audit fsync at shutdown failed");
            return;
        }
        remember(&mut trail, &config, true);
        emit_synced(&mut trail);
    }
}

/// With `fsync = "interval"`, a successful write starts the wait for its fsync.
fn note_written<T>(
    result: &Result<T, AuditError>,
    config: &WriterConfig,
    unsynced_since: &mut Option<Instant>,
) {
    if result.is_ok() && matches!(config.fsync, Fsync::Interval(_)) && unsynced_since.is_none() {
        *unsynced_since = Some(Instant::now());
    }
}

/// Writes the chain's head (or the halt) to the state file. A failure does not undo
/// records already durable; it is logged once until the state file can be written again.
fn remember(trail: &mut Trail, config: &WriterConfig, durable: bool) {
    match trail.store_state(config, durable) {
        Ok(()) => trail.state_failing = false,
        Err(error) => {
            if !trail.state_failing {
                tracing::warn!(%error, "audit state file could not be updated; a restart cannot tell how far the trail was written");
            }
            trail.state_failing = true;
        }
    }
}

/// The live file was removed or altered: stop writing for good, say so everywhere
/// (log, metric, `/readyz`, the state file, so that a restart refuses too).
fn halt(trail: &mut Trail, config: &WriterConfig, stats: &Stats, kind: Tamper) {
    trail.halted = Some(kind);
    stats.halt(kind);
    tracing::error!(
        kind = kind.as_str(),
        path = %config.path.display(),
        last_seq = trail.seq,
        last_mac = %trail.prev,
        "audit trail tampered with: no more records are written and every change is refused until an operator restarts sipgw"
    );
    remember(trail, config, true);
}

fn answer(batch: std::vec::Drain<'_, Job>, result: Result<Vec<u64>, AuditError>, stats: &Stats) {
    match result {
        Ok(seqs) => {
            stats
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for (job, seq) in batch.zip(seqs) {
                let _ = job.ack.send(Ok(seq));
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

/// Sends a checkpoint's sealed line to the log stream, where a shipper keeps it off the
/// host as an anchor.
fn emit(line: &str) {
    tracing::info!(target: "sipgw::audit::checkpoint", checkpoint = %line, "audit checkpoint");
}

/// After a sync: the checkpoints it made durable are sent.
fn emit_synced(trail: &mut Trail) {
    for line in trail.unsent.drain(..) {
        emit(&line);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_golden;
#[cfg(test)]
mod tests_tamper;
