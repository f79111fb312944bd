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
//! - an `attempt` with no `outcome` (the process died during the vendor call): an unknown
//!   outcome, counted at its place. Request ids are chosen by callers (`X-Request-Id`), so
//!   an attempt is matched by its request id *and* its agent's key (as the limits key
//!   accounts); and only by an outcome that can follow an attempt (one with a `vendor`
//!   object, or a code the pipeline answers after the attempt record): a refusal decided
//!   before it (`change_in_progress`, `rate_limited`, ...) reusing the id resolves nothing.
//!   Changes of one agent are serialized, but the turn is released before the outcome
//!   record is written: an outcome may come after the agent's next attempt (it then counts
//!   as itself). Once an outcome of a later attempt of the agent came, an earlier attempt
//!   with none never had one: it counts as an unknown outcome, before that outcome (and its
//!   own, should it still come, is not counted again). An attempt repeating a pending one's
//!   request id and agent makes that one an orphan at once (their outcomes could not be
//!   told apart).
//! - outcomes without a `vendor` object (refusals, idempotent replays) change nothing.
//!
//! Only authenticated lines count: each line's `mac` is checked with the trail's key, and
//! its `prev` against the `mac` of the line read before it (the first line read is taken
//! as the start: rotated files before the horizon are not read). A line that fails is
//! unreadable, which makes the caller fail closed, and is not applied; the chain goes on
//! from the last line that passed, so a line forged into the trail does not also cost the
//! true lines after it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use super::chain::MacKey;
use super::record::{DISCONTINUITY, unseal};
use super::verify::{RawLine, next_line};
use super::writer::rotated_files;
use crate::ids::{AccountFolding, AgentId};
use crate::limits::lockout::VendorAnswer;

/// Most attempts awaiting their outcome; beyond it the oldest is taken as an orphan
/// (counted), which bounds memory on a trail full of orphans. Also the most orphans
/// remembered for their late outcome.
const MAX_PENDING: usize = 10_000;

/// Codes an outcome of a change that reached its attempt record can carry (the pipeline
/// writes the attempt record just before the vendor call). Refusals decided before it
/// never resolve an attempt, even with its request id.
const AFTER_ATTEMPT: [&str; 6] = [
    "ok",
    "vendor_rejected",
    "vendor_error",
    "vendor_timeout",
    "upstream_auth_unavailable",
    "audit_unavailable",
];

/// Whether an outcome with `code` (and a `vendor` object when `called_vendor`) can answer
/// an attempt: only a change that reached its attempt record ends this way. Shared with
/// the reviewers' reading of the trail (`super::review`), which matches the same way.
pub fn can_follow_attempt(code: Option<&str>, called_vendor: bool) -> bool {
    called_vendor || code.is_some_and(|code| AFTER_ATTEMPT.contains(&code))
}

/// What reading the trail found, for the log and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Files read (rotated files before the horizon are skipped unread).
    pub files: usize,
    /// Lines read.
    pub lines: u64,
    /// Lines that are not records or fail their `mac` or `prev` check, and files or parts
    /// that could not be read.
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
    /// The previous record's `mac`.
    prev: String,
    /// A discontinuity's link: the last record the gateway knew it wrote.
    last_mac: Option<String>,
}

/// The vendor's part of an outcome.
#[derive(Deserialize)]
struct Vendor {
    /// Its HTTP status; null when no answer came.
    status: Option<u16>,
}

/// An attempt awaiting its outcome.
struct Pending {
    /// Its request id.
    id: String,
    /// The agent, as the record names it.
    agent: String,
    /// When the attempt was recorded.
    ts: SystemTime,
    /// Its place in the trail.
    order: u64,
}

/// Reads the trail at `path` (its rotated files, then the current file) from `since` on,
/// checking each line with `key`, and calls `apply` with each vendor answer, in the order
/// they happened. `folding` keys agents as the limits do (`rate_limit.account_key`).
pub fn replay(
    path: &Path,
    since: SystemTime,
    key: &MacKey,
    folding: AccountFolding,
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
    let mut state = Replay {
        key,
        folding,
        last_mac: None,
        pending: HashMap::new(),
        by_order: BTreeMap::new(),
        orphaned: HashSet::new(),
        orphaned_order: VecDeque::new(),
        order: 0,
    };
    for file in &files {
        scan.files += 1;
        if let Err(error) = read_file(file, since, &mut state, &mut scan, &mut apply) {
            tracing::error!(%error, file = %file.display(), "lockout rebuild: a trail file cannot be read");
            scan.unreadable += 1;
        }
    }
    // What is still pending never got an outcome: the process stopped during the call.
    for (order, agent) in std::mem::take(&mut state.by_order) {
        if let Some(pending) = state.take(&agent, order) {
            scan.orphans += 1;
            apply(&pending.agent, pending.ts, VendorAnswer::Unknown);
        }
    }
    scan
}

/// The replay's state: the chain, and attempts awaiting their outcome.
struct Replay<'k> {
    /// Checks the lines.
    key: &'k MacKey,
    /// How agents are keyed.
    folding: AccountFolding,
    /// `mac` of the last line that passed its checks; `None` before the first.
    last_mac: Option<String>,
    /// By agent key, then by place in the trail; matched by request id within the agent.
    pending: HashMap<AgentId, BTreeMap<u64, Pending>>,
    /// Agent keys of the pending attempts, by place in the trail.
    by_order: BTreeMap<u64, AgentId>,
    /// Attempts (request id, agent key) already counted as orphans (a later attempt of
    /// the same agent came first): their own outcome, should it still come, is not counted
    /// again.
    orphaned: HashSet<(String, AgentId)>,
    /// The same, oldest first, to bound them.
    orphaned_order: VecDeque<(String, AgentId)>,
    /// Records seen.
    order: u64,
}

fn read_file(
    file: &PathBuf,
    since: SystemTime,
    state: &mut Replay<'_>,
    scan: &mut Scan,
    apply: &mut impl FnMut(&str, SystemTime, VendorAnswer),
) -> std::io::Result<()> {
    let mut reader = BufReader::new(std::fs::File::open(file)?);
    let mut raw = Vec::with_capacity(1024);
    while let Some(read) = next_line(&mut reader, &mut raw)? {
        scan.lines += 1;
        let RawLine::Bytes(raw) = read else {
            // Longer than any record: read to its end and dropped.
            scan.unreadable += 1;
            continue;
        };
        let Some((ts, line)) = state.authentic(raw) else {
            scan.unreadable += 1;
            continue;
        };
        state.order += 1;
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
    Ok(())
}

impl Replay<'_> {
    /// The record on `raw` (one line, with or without its line end) and its time, when it
    /// is a record, its `mac` is right (as `sipgw audit verify` checks it) and it links to
    /// the line that passed before it; the chain then goes on from it.
    fn authentic(&mut self, raw: &[u8]) -> Option<(SystemTime, Line)> {
        let text = std::str::from_utf8(raw.strip_suffix(b"\n").unwrap_or(raw)).ok()?;
        let (unsealed, mac) = unseal(text)?;
        let line = serde_json::from_str::<Line>(text).ok()?;
        let ts = humantime::parse_rfc3339(&line.ts).ok()?;
        if self.key.mac(&line.prev, &unsealed) != mac {
            return None;
        }
        let linked = self.last_mac.as_ref().is_none_or(|last| *last == line.prev);
        if !linked {
            // A discontinuity links to what the gateway had written (docs/audit.md), not to
            // these lines: the chain goes on from it, but records were lost, so the line
            // still counts as unreadable (the caller fails closed).
            if line.kind == DISCONTINUITY && line.last_mac.as_deref() == Some(&line.prev) {
                self.last_mac = Some(mac.to_owned());
            }
            return None;
        }
        self.last_mac = Some(mac.to_owned());
        Some((ts, line))
    }

    /// Removes the pending attempt of `agent` at `order`.
    fn take(&mut self, agent: &AgentId, order: u64) -> Option<Pending> {
        let attempts = self.pending.get_mut(agent)?;
        let pending = attempts.remove(&order);
        if attempts.is_empty() {
            self.pending.remove(agent);
        }
        self.by_order.remove(&order);
        pending
    }

    /// The place of `agent`'s pending attempt with request id `id`.
    fn find(&self, agent: &AgentId, id: &str) -> Option<u64> {
        self.pending
            .get(agent)?
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(order, _)| *order)
    }

    fn attempt(
        &mut self,
        id: String,
        agent: String,
        ts: SystemTime,
        scan: &mut Scan,
        apply: &mut impl FnMut(&str, SystemTime, VendorAnswer),
    ) {
        let key = AgentId::new(&agent, self.folding);
        // The same request id and agent again (a retry reusing its id) while the earlier
        // one awaits its outcome: the next outcome could be either's, so the earlier one
        // is taken as an orphan now, and the next outcome resolves this one.
        if let Some(order) = self.find(&key, &id)
            && let Some(earlier) = self.take(&key, order)
        {
            scan.orphans += 1;
            apply(&earlier.agent, earlier.ts, VendorAnswer::Unknown);
        }
        if self.by_order.len() >= MAX_PENDING
            && let Some((&order, oldest)) = self.by_order.first_key_value()
        {
            let oldest = oldest.clone();
            if let Some(pending) = self.take(&oldest, order) {
                scan.orphans += 1;
                apply(&pending.agent, pending.ts, VendorAnswer::Unknown);
                self.remember_orphan(pending.id, oldest);
            }
        }
        // An orphan's late outcome and this attempt's could not be told apart either.
        self.orphaned.remove(&(id.clone(), key.clone()));
        let order = self.order;
        self.by_order.insert(order, key.clone());
        self.pending.entry(key).or_default().insert(
            order,
            Pending {
                id,
                agent,
                ts,
                order,
            },
        );
    }

    /// Remembers an attempt counted as an orphan, so that its late outcome is not counted.
    fn remember_orphan(&mut self, id: String, key: AgentId) {
        if self.orphaned_order.len() >= MAX_PENDING
            && let Some(oldest) = self.orphaned_order.pop_front()
        {
            self.orphaned.remove(&oldest);
        }
        self.orphaned_order.push_back((id.clone(), key.clone()));
        self.orphaned.insert((id, key));
    }

    fn outcome(
        &mut self,
        line: &Line,
        ts: SystemTime,
        scan: &mut Scan,
        apply: &mut impl FnMut(&str, SystemTime, VendorAnswer),
    ) {
        let (Some(id), Some(agent)) = (line.request_id.as_deref(), line.agent.as_deref()) else {
            return;
        };
        if !can_follow_attempt(line.code.as_deref(), line.vendor.is_some()) {
            // A refusal decided before any attempt: it resolves none, and says nothing.
            return;
        }
        let key = AgentId::new(agent, self.folding);
        if !self.orphaned.is_empty() && self.orphaned.remove(&(id.to_owned(), key.clone())) {
            return;
        }
        let own = self.find(&key, id).and_then(|order| self.take(&key, order));
        if let Some(own) = &own {
            // Attempts of the same agent before this one had their turn before it: with no
            // outcome of their own so far, they never will have one.
            let earlier: Vec<u64> = self
                .pending
                .get(&key)
                .map(|attempts| attempts.range(..own.order).map(|(o, _)| *o).collect())
                .unwrap_or_default();
            for order in earlier {
                if let Some(pending) = self.take(&key, order) {
                    scan.orphans += 1;
                    apply(&pending.agent, pending.ts, VendorAnswer::Unknown);
                    self.remember_orphan(pending.id, key.clone());
                }
            }
        }
        let agent = own.as_ref().map_or(agent, |p| p.agent.as_str());
        if let Some(answer) = answer(line) {
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
    // The stamp is the last 24 characters: 2026-11-27T20-00-00.000Z. Not ASCII: not a
    // stamp (and the byte offsets below would split a character).
    let stamp = name
        .get(name.len().checked_sub(24)?..)
        .filter(|stamp| stamp.is_ascii())?;
    let mut text = stamp.to_owned();
    text.replace_range(13..14, ":");
    text.replace_range(16..17, ":");
    humantime::parse_rfc3339(&text).ok()
}

#[cfg(test)]
mod tests;
