//! One batch: its records sealed in memory (with the checkpoints that fall in it), checked
//! against tampering, written with one `write` and, with `fsync = "always"`, made durable
//! with one sync; or, on any failure, cut back so that the chain's head is unchanged.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use super::tamper;
use super::trail::{Trail, rotate, sync_dir};
use super::{AuditError, Fsync, Stats, WriterConfig, emit, halt, remember};
use crate::audit::record::{Envelope, Event, checkpoint_json, seal, unsealed_json};

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
    let io = |e: std::io::Error| AuditError::Io(e.to_string());
    if let Some(kind) = trail.halted {
        return Err(AuditError::Halted(kind));
    }
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let sealed = Sealed::new(trail, config, &now, events, checkpoint_now);
    if sealed.lines.is_empty() {
        return Ok(Vec::new());
    }
    // Is the file still the trail, as long as we wrote it? (A rotation half done is not a
    // tampering: its path is empty on purpose.)
    if !trail.renamed_away
        && let Some(kind) =
            tamper::check(&trail.file, &config.path, trail.len, trail.needs_cut).map_err(io)?
    {
        halt(trail, config, stats, kind);
        return Err(AuditError::Halted(kind));
    }
    let lines = &sealed.lines;
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
        let _ = out.write_all(lines.as_bytes());
        let _ = out.flush();
    }
    // Durable before it leaves the host as an anchor: with "always" it is now; with
    // "interval" once the next sync succeeds ("never" leaves durability to the OS).
    for range in &sealed.checkpoints {
        stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        let line = &lines[range.clone()];
        match config.fsync {
            Fsync::Interval(_) => trail.unsent.push(line.to_owned()),
            Fsync::Always | Fsync::Never => emit(line),
        }
    }
    Ok(sealed.seqs)
}

/// A batch sealed in memory, not yet written: the trail's head moves only once it is.
pub(super) struct Sealed {
    /// The records' lines, each ending with `\n`.
    lines: String,
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

impl Sealed {
    /// The batch's lines, as text (for tests).
    #[cfg(test)]
    pub(super) fn text(&self) -> &str {
        &self.lines
    }

    /// Seals `events` after the trail's head, with the checkpoints that fall among them.
    pub(super) fn new(
        trail: &Trail,
        config: &WriterConfig,
        now: &str,
        events: &[&Event],
        checkpoint_now: bool,
    ) -> Self {
        let mut sealed = Self {
            lines: String::with_capacity(events.len() * 512),
            seqs: Vec::with_capacity(events.len()),
            checkpoints: Vec::new(),
            seq: trail.seq,
            prev: trail.prev.clone(),
            unanchored: trail.unanchored,
        };
        for event in events {
            let unsealed = unsealed_json(sealed.next(config, now), event, &sealed.prev);
            sealed.push(config, &unsealed);
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

    /// Seals `unsealed` (at `self.seq`) onto the lines.
    fn push(&mut self, config: &WriterConfig, unsealed: &str) {
        let mac = config.key.mac(&self.prev, unsealed);
        self.lines.push_str(&seal(unsealed, &mac));
        self.lines.push('\n');
        self.prev = mac;
    }

    fn checkpoint(&mut self, config: &WriterConfig, now: &str) {
        let unsealed = checkpoint_json(self.next(config, now), &self.prev);
        let start = self.lines.len();
        self.push(config, &unsealed);
        self.checkpoints.push(start..self.lines.len() - 1);
        self.unanchored = 0;
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
