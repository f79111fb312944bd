//! One batch: its records sealed in memory (with the checkpoints that fall in it), checked
//! against tampering, written with one `write` and, with `fsync = "always"`, made durable
//! with one sync; or, on any failure, cut back so that the chain's head is unchanged.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::tamper;
use super::trail::{Trail, rotate, sync_dir};
use super::{AuditError, Fsync, Stats, WriterConfig, emit, halt, remember};
use crate::audit::record::{Envelope, Event, checkpoint_json, seal_in_place, write_unsealed};

/// Seals and writes one batch of `events`, with a checkpoint after every
/// `checkpoint_every` records and, with `checkpoint_now`, one after the last record when it
/// has none; returns the events' `seq`s. On failure nothing of the batch stays in the file
/// and the chain's head is unchanged.
pub(super) fn write_batch(
    trail: &mut Trail,
    config: &WriterConfig,
    events: &[&Event],
    checkpoint_now: bool,
    stats: &Stats,
) -> Result<Vec<u64>, AuditError> {
    if let Some(kind) = trail.halted {
        return Err(AuditError::Halted(kind));
    }
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut sealed = Sealed::new(trail, config, &now, events, checkpoint_now);
    let written = if sealed.lines.is_empty() {
        Ok(())
    } else {
        write_sealed(trail, config, &sealed, stats)
    };
    let seqs = std::mem::take(&mut sealed.seqs);
    sealed.recycle(trail);
    written.map(|()| seqs)
}

/// Writes a sealed batch (and syncs it, with `fsync = "always"`), then moves the trail's
/// head to its end; on failure the file is cut back and the head stays.
fn write_sealed(
    trail: &mut Trail,
    config: &WriterConfig,
    sealed: &Sealed,
    stats: &Stats,
) -> Result<(), AuditError> {
    let io = |e: std::io::Error| AuditError::Io(e.to_string());
    // Is the file still the trail, as long as we wrote it? (A rotation half done is not a
    // tampering: its path is empty on purpose.)
    if !trail.renamed_away
        && let Some(kind) =
            tamper::check(&trail.file, &config.path, trail.len, trail.needs_cut).map_err(io)?
    {
        halt(trail, config, stats, kind);
        return Err(AuditError::Halted(kind));
    }
    let lines = sealed.bytes();
    if trail.needs_cut {
        trail.file.set_len(trail.len).map_err(io)?;
        trail.needs_cut = false;
    }
    if trail.len > 0 && trail.len + lines.len() as u64 > config.max_bytes {
        rotate(trail, config).map_err(io)?;
        // Everything written so far is durable: a good moment to remember it durably too.
        remember(trail, config, true);
    }
    if trail.dir_dirty {
        sync_dir(&config.path).map_err(io)?;
        trail.dir_dirty = false;
    }
    let written = trail
        .file
        .write_all(lines)
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
    trail.len += lines.len() as u64;
    trail.seq = sealed.seq;
    trail.prev.clone_from(&sealed.prev);
    if !sealed.checkpoints.is_empty() || trail.unanchored_since.is_none() {
        trail.unanchored_since = (sealed.unanchored > 0).then(Instant::now);
    }
    trail.unanchored = sealed.unanchored;
    if config.fsync == Fsync::Always {
        remember(trail, config, false);
    }
    if config.stdout {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(lines);
        let _ = out.flush();
    }
    // Durable before it leaves the host as an anchor: with "always" it is now; with
    // "interval" once the next sync succeeds ("never" leaves durability to the OS).
    for range in &sealed.checkpoints {
        stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        let line = sealed.line(range.clone());
        match config.fsync {
            Fsync::Interval(_) => trail.unsent.push(line.to_owned()),
            Fsync::Always | Fsync::Never => emit(line),
        }
    }
    Ok(())
}

/// A batch sealed in memory, not yet written: the trail's head moves only once it is.
pub(super) struct Sealed {
    /// The records' lines, each ending with `\n`: each record is serialised straight into
    /// it and sealed in place.
    lines: Vec<u8>,
    /// `seq` of each event, in order.
    pub(super) seqs: Vec<u64>,
    /// Where the checkpoint lines are in `lines` (without their line end).
    pub(super) checkpoints: Vec<std::ops::Range<usize>>,
    /// `seq` of the last line.
    pub(super) seq: u64,
    /// `mac` of the last line.
    pub(super) prev: String,
    /// Records after the last checkpoint.
    pub(super) unanchored: u64,
}

/// Largest batch buffer kept for the next batch; a larger one (a burst) is let go, so that
/// the writer does not hold on to a burst's memory.
const KEPT_BUFFER: usize = 256 * 1024;

impl Sealed {
    /// The batch's lines, as text (for tests).
    #[cfg(test)]
    pub(super) fn text(&self) -> &str {
        std::str::from_utf8(&self.lines).expect("records are UTF-8")
    }

    /// Seals `events` after the trail's head, with the checkpoints that fall among them,
    /// into the trail's spare buffer.
    pub(super) fn new(
        trail: &mut Trail,
        config: &WriterConfig,
        now: &str,
        events: &[&Event],
        checkpoint_now: bool,
    ) -> Self {
        let mut lines = std::mem::take(&mut trail.buffer);
        lines.clear();
        let mut sealed = Self {
            lines,
            seqs: Vec::with_capacity(events.len()),
            checkpoints: Vec::new(),
            seq: trail.seq,
            prev: trail.prev.clone(),
            unanchored: trail.unanchored,
        };
        for event in events {
            let start = sealed.lines.len();
            let envelope = sealed.next(config, now);
            write_unsealed(&mut sealed.lines, envelope, event, &sealed.prev);
            sealed.seal(config, start);
            sealed.seqs.push(sealed.seq);
            sealed.unanchored += 1;
            if config
                .checkpoint_every
                .is_some_and(|every| sealed.unanchored >= every)
            {
                sealed.checkpoint(config, now);
            }
        }
        if checkpoint_now && sealed.unanchored > 0 {
            sealed.checkpoint(config, now);
        }
        sealed
    }

    /// The envelope of the next line.
    fn next<'a>(&mut self, config: &'a WriterConfig, now: &'a str) -> Envelope<'a> {
        self.seq += 1;
        Envelope {
            seq: self.seq,
            ts: now,
            instance: &config.instance,
        }
    }

    /// Seals the unsealed record at `lines[start..]` (at `self.seq`) in place: its MAC
    /// over `prev` and its bytes, appended with the line end; the MAC is the next `prev`.
    fn seal(&mut self, config: &WriterConfig, start: usize) {
        let mac = config
            .key
            .digest(self.prev.as_bytes(), &self.lines[start..]);
        let hex = seal_in_place(&mut self.lines, &mac);
        self.prev.clear();
        self.prev
            .push_str(std::str::from_utf8(&self.lines[hex]).expect("hex digits are ASCII"));
    }

    fn checkpoint(&mut self, config: &WriterConfig, now: &str) {
        let unsealed = checkpoint_json(self.next(config, now), &self.prev);
        let start = self.lines.len();
        self.lines.extend_from_slice(unsealed.as_bytes());
        self.seal(config, start);
        self.checkpoints.push(start..self.lines.len() - 1);
        self.unanchored = 0;
    }

    /// The sealed lines, as they go to the file.
    fn bytes(&self) -> &[u8] {
        &self.lines
    }

    /// A checkpoint's line, as it goes to the log stream.
    fn line(&self, range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.lines[range]).expect("records are UTF-8")
    }

    /// Gives the buffer back to the trail for the next batch (unless a burst made it large).
    fn recycle(self, trail: &mut Trail) {
        if self.lines.capacity() <= KEPT_BUFFER {
            trail.buffer = self.lines;
        }
    }
}

/// A checkpoint now, when records were written since the last one. A failure is counted
/// and logged; the next try comes one interval later (or at shutdown).
pub(super) fn write_checkpoint(
    trail: &mut Trail,
    config: &WriterConfig,
    stats: &Stats,
) -> Result<(), AuditError> {
    if trail.unanchored == 0 || !config.checkpoints() {
        return Ok(());
    }
    let result = write_batch(trail, config, &[], true, stats).map(drop);
    if let Err(error) = &result {
        stats.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(%error, "audit checkpoint record could not be written");
        if trail.unanchored_since.is_some() {
            trail.unanchored_since = Some(Instant::now());
        }
    }
    result
}
