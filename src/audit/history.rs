//! Reading the trail back at start-up, for the lockout shield (issue 11, finding 2): a
//! restart must not forget that an agent already had vendor rejections, or the next wrong
//! password would be the vendor's third strike.
//!
//! The files of the trail are read in chain order, line by line (one line in memory at a
//! time), skipping rotated files whose rotation time is before the horizon. What each
//! record means to the shield:
//! - an `outcome` with a `vendor` object: `ok` resets the agent's count, `vendor_rejected`
//!   counts, `vendor_error` / `vendor_timeout` count unless the vendor answered a status
//!   that shows it did not check the password (a 4xx other than a 200's garbled body). The
//!   record does not say whether a failed connection was ever made, so an unknown outcome
//!   is counted, as the live shield counts a timeout: the conservative side.
//! - an `attempt` with no `outcome` of the same `requestId` (the process died during the
//!   vendor call): an unknown outcome, counted at its place. Changes of one agent are
//!   serialized, so an outcome of that agent resolves every attempt of it that came
//!   before its own as an orphan.
//! - outcomes without a `vendor` object (refusals, idempotent replays) change nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use super::writer::rotated_files;
use crate::limits::lockout::VendorAnswer;

/// Longest line read; a longer one is not a record (the writer never writes one).
const MAX_LINE: u64 = 64 * 1024;
/// Most attempts awaiting their outcome; beyond it the oldest is taken as an orphan
/// (counted), which bounds memory on a trail full of orphans.
const MAX_PENDING: usize = 10_000;

/// What reading the trail found, for the log and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Files read (rotated files before the horizon are skipped unread).
    pub files: usize,
    /// Lines read.
    pub lines: u64,
    /// Lines that are not records, and files or parts that could not be read.
    pub unreadable: u64,
    /// Attempts that never got an outcome.
    pub orphans: u64,
}

/// The fields of a record the shield needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    /// `attempt`, `outcome`, or another kind (ignored).
    kind: String,
    /// RFC 3339 UTC.
    ts: String,
    /// The request.
    request_id: Option<String>,
    /// The agent.
    agent: Option<String>,
    /// The code answered.
    code: Option<String>,
    /// The vendor's part, when it was called.
    vendor: Option<Vendor>,
}

/// The vendor's part of an outcome.
#[derive(Deserialize)]
struct Vendor {
    /// Its HTTP status; null when no answer came.
    status: Option<u16>,
}

/// An attempt awaiting its outcome.
struct Pending {
    /// The agent.
    agent: String,
    /// When the attempt was recorded.
    ts: SystemTime,
    /// Its place in the trail.
    order: u64,
}

/// Reads the trail at `path` (its rotated files, then the current file) from `since` on
/// and calls `apply` with each vendor answer, in the order they happened.
pub fn replay(
    path: &Path,
    since: SystemTime,
    mut apply: impl FnMut(&str, SystemTime, VendorAnswer),
) -> Scan {
    let mut scan = Scan::default();
    let mut files = match rotated_files(path) {
        Ok(files) => files,
        Err(error) => {
            tracing::error!(%error, path = %path.display(), "lockout rebuild: the trail's directory cannot be read");
            scan.unreadable += 1;
            Vec::new()
        }
    };
    files.retain(|file| rotated_at(file).is_none_or(|at| at >= since));
    files.push(path.to_owned());
    // Only regular files: a trail path naming a device (`/dev/full` in a test of a full
    // disk) or a pipe could be read forever.
    files.retain(|file| std::fs::metadata(file).is_ok_and(|m| m.is_file()));
    let mut state = Replay::default();
    for file in &files {
        scan.files += 1;
        if let Err(error) = read_file(file, since, &mut state, &mut scan, &mut apply) {
            tracing::error!(%error, file = %file.display(), "lockout rebuild: a trail file cannot be read");
            scan.unreadable += 1;
        }
    }
    // What is still pending never got an outcome: the process stopped during the call.
    let orphans: Vec<String> = state.by_order.into_values().collect();
    for id in orphans {
        if let Some(pending) = state.pending.remove(&id) {
            scan.orphans += 1;
            apply(&pending.agent, pending.ts, VendorAnswer::Unknown);
        }
    }
    scan
}

/// Attempts awaiting their outcome.
#[derive(Default)]
struct Replay {
    /// By request id.
    pending: HashMap<String, Pending>,
    /// Request ids by place in the trail.
    by_order: BTreeMap<u64, String>,
    /// Attempts already counted as orphans (an outcome of a later attempt of the same
    /// agent came first): their own outcome, should it still come, is not counted again.
    orphaned: HashSet<String>,
    /// Records seen.
    order: u64,
}

fn read_file(
    file: &PathBuf,
    since: SystemTime,
    state: &mut Replay,
    scan: &mut Scan,
    apply: &mut impl FnMut(&str, SystemTime, VendorAnswer),
) -> std::io::Result<()> {
    let mut reader = BufReader::new(std::fs::File::open(file)?);
    let mut raw = Vec::with_capacity(1024);
    loop {
        raw.clear();
        let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut raw)?;
        if n == 0 {
            return Ok(());
        }
        scan.lines += 1;
        if raw.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            scan.unreadable += 1;
            skip_line(&mut reader)?;
            continue;
        }
        let Some(line) = serde_json::from_slice::<Line>(&raw)
            .ok()
            .and_then(|line| Some((humantime::parse_rfc3339(&line.ts).ok()?, line)))
        else {
            scan.unreadable += 1;
            continue;
        };
        state.order += 1;
        let (ts, line) = line;
        if ts < since {
            continue;
        }
        match line.kind.as_str() {
            "attempt" => match (line.request_id, line.agent) {
                (Some(id), Some(agent)) => state.attempt(id, agent, ts, scan, apply),
                _ => scan.unreadable += 1,
            },
            "outcome" => state.outcome(&line, ts, scan, apply),
            // Summaries, discontinuities and kinds to come say nothing about the vendor.
            _ => {}
        }
    }
}

/// Reads and drops the rest of an over-long line.
fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    let mut scratch = Vec::new();
    loop {
        scratch.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE)
            .read_until(b'\n', &mut scratch)?;
        if n == 0 || scratch.last() == Some(&b'\n') {
            return Ok(());
        }
    }
}

impl Replay {
    fn attempt(
        &mut self,
        id: String,
        agent: String,
        ts: SystemTime,
        scan: &mut Scan,
        apply: &mut impl FnMut(&str, SystemTime, VendorAnswer),
    ) {
        if self.pending.len() >= MAX_PENDING
            && let Some((_, oldest)) = self.by_order.pop_first()
            && let Some(pending) = self.pending.remove(&oldest)
        {
            scan.orphans += 1;
            apply(&pending.agent, pending.ts, VendorAnswer::Unknown);
            self.orphaned.insert(oldest);
        }
        let order = self.order;
        self.by_order.insert(order, id.clone());
        self.pending.insert(id, Pending { agent, ts, order });
    }

    fn outcome(
        &mut self,
        line: &Line,
        ts: SystemTime,
        scan: &mut Scan,
        apply: &mut impl FnMut(&str, SystemTime, VendorAnswer),
    ) {
        let Some(id) = line.request_id.as_deref() else {
            return;
        };
        if self.orphaned.remove(id) {
            return;
        }
        let own = self.pending.remove(id);
        if let Some(own) = &own {
            self.by_order.remove(&own.order);
            // Attempts of the same agent before this one had their turn before it: with no
            // outcome of their own so far, they never will have one.
            let earlier: Vec<(u64, String)> = self
                .by_order
                .range(..own.order)
                .filter(|(_, other)| {
                    self.pending
                        .get(*other)
                        .is_some_and(|p| p.agent == own.agent)
                })
                .map(|(order, other)| (*order, other.clone()))
                .collect();
            for (order, other) in earlier {
                self.by_order.remove(&order);
                if let Some(pending) = self.pending.remove(&other) {
                    scan.orphans += 1;
                    apply(&pending.agent, pending.ts, VendorAnswer::Unknown);
                    self.orphaned.insert(other);
                }
            }
        }
        let agent = own
            .as_ref()
            .map(|p| p.agent.as_str())
            .or(line.agent.as_deref());
        if let (Some(agent), Some(answer)) = (agent, answer(line)) {
            apply(agent, ts, answer);
        }
    }
}

/// What an outcome record tells the shield; `None` when the vendor was not called or
/// certainly did not check the password.
fn answer(line: &Line) -> Option<VendorAnswer> {
    let vendor = line.vendor.as_ref()?;
    match line.code.as_deref()? {
        "ok" => Some(VendorAnswer::Accepted),
        "vendor_rejected" => Some(VendorAnswer::Rejected),
        // As the live pipeline decides: no answer (timeout, cut or failed connection: the
        // record cannot tell them apart, so all count), a 5xx, or a 200 whose body could
        // not be read may hide a checked password; a 4xx (a malformed call, a refused
        // token) does not.
        "vendor_error" | "vendor_timeout" => match vendor.status {
            Some(status) if (400..500).contains(&status) => None,
            Some(_) | None => Some(VendorAnswer::Unknown),
        },
        // Any other code after a vendor call (a fresh token refused: 401) is not the
        // vendor's verdict on the password.
        _ => None,
    }
}

/// The rotation time in a rotated file's name (`<stem>-<seq>-<time>.jsonl`), which is no
/// earlier than its last record; `None` when the name does not hold one (then it is read).
fn rotated_at(file: &Path) -> Option<SystemTime> {
    let name = file.file_stem()?.to_str()?;
    // The stamp is the last 24 characters: 2026-11-27T20-00-00.000Z.
    let stamp = name.get(name.len().checked_sub(24)?..)?;
    let mut text = stamp.to_owned();
    text.replace_range(13..14, ":");
    text.replace_range(16..17, ":");
    humantime::parse_rfc3339(&text).ok()
}

#[cfg(test)]
mod tests;
