//! The reading API for reviewers' tools (`sipgw audit show`, the report, exports): every
//! trail given, verified record by record, and all their records in one time-ordered list.
//!
//! - A directory argument is one trail (its `*.jsonl` files in name order, as
//!   [`verify::expand`] takes them); files given by name are grouped by their directory
//!   into one trail each, in the order given. Two replicas' directories are two trails.
//! - Each record is checked as `sipgw audit verify` checks it ([`verify::ChainCheck`]),
//!   but the reading goes on after a failure, checking each record against the one before
//!   it as written: an edited record fails alone, a deleted one fails the record after
//!   the gap, and every other record still reads as verified.
//! - An `attempt` that no outcome in its trail answers is marked: the gateway stopped
//!   during the vendor call, and nobody knows whether the password changed. Attempts and
//!   outcomes are matched as the lockout shield's reading of the trail matches them
//!   ([`super::history`]): by request id *and* agent account (case-folded), and only by an
//!   outcome that can follow an attempt.
//!
//! Lines are read one at a time, at most [`super::record::MAX_LINE`] bytes each; the rows
//! are held (a report needs them all).

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::chain::MacKey;
use super::history::can_follow_attempt;
use super::verify::{self, ChainCheck, RawLine};
use crate::ids::{AccountFolding, AgentId};

mod record;

pub use record::Record;

/// `kind` of a checkpoint record.
const CHECKPOINT: &str = "checkpoint";

/// Every trail given, checked, and its records in one merged, time-ordered list.
#[derive(Debug, Clone)]
pub struct Review {
    /// The trails, in the order their first path was given.
    pub trails: Vec<TrailCheck>,
    /// All records of all trails, ordered by (time, trail, seq): by time, then in the
    /// order the trails were given, then in trail order (the order of `seq` when the trail
    /// is intact, the order of the lines when it is not). A record without a readable time
    /// keeps its place after the record before it in its trail.
    pub rows: Vec<Row>,
    /// Whether a key (`--key-file`) was given: without one, the MACs are plain SHA-256,
    /// which anyone who can write the files can recompute.
    pub keyed: bool,
}

/// One trail (a directory, or the files given by name in one directory), as verified.
#[derive(Debug, Clone, PartialEq)]
pub struct TrailCheck {
    /// The directory the trail's files are in.
    pub source: PathBuf,
    /// Its files, in chain order.
    pub files: Vec<PathBuf>,
    /// The replica that wrote it, from its v2 records.
    pub instance: Option<String>,
    /// Lines read (records, and lines that failed to be one).
    pub records: u64,
    /// `seq` of the first record.
    pub first_seq: Option<u64>,
    /// `seq` of the last record.
    pub last_seq: Option<u64>,
    /// `ts` of the first record.
    pub first_ts: Option<String>,
    /// `ts` of the last record.
    pub last_ts: Option<String>,
    /// Every record that failed (file, line, reason), in trail order.
    pub failures: Vec<verify::Failure>,
    /// Discontinuity records: the chain goes on, but records were lost before them.
    pub discontinuities: Vec<verify::Gap>,
    /// `seq` of the last checkpoint record that passed.
    pub last_checkpoint: Option<u64>,
}

impl TrailCheck {
    /// Whether every record passed (discontinuities aside: see
    /// [`Self::discontinuities`]).
    pub fn intact(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One record, as a reviewer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Index into [`Review::trails`].
    pub trail: usize,
    /// The file holding it.
    pub file: PathBuf,
    /// Its 1-based line number in that file.
    pub line: u64,
    /// Why this record failed verification (`None`: verified).
    pub problem: Option<String>,
    /// An attempt that no outcome in its trail answers.
    pub outcome_unknown: bool,
    /// What it says.
    pub record: Record,
}

/// Reads and verifies the trails at `paths` (directories, or trail files) with `key`.
/// `partial` accepts trails that start after `seq` 1 (archived tails). An error is input
/// that cannot be read (a missing file, a directory without trail files); records that
/// fail verification are not errors, but marked rows.
pub fn load(paths: &[PathBuf], key: &MacKey, partial: bool) -> std::io::Result<Review> {
    let mut trails = Vec::new();
    let mut rows = Vec::new();
    let mut order = Vec::new(); // the sort time and place in its trail of each row
    for (index, (source, files)) in group(paths)?.into_iter().enumerate() {
        let first = rows.len();
        let trail = read_trail(index, source, files, key, partial, &mut rows)?;
        mark_orphans(&mut rows[first..]);
        // A record without a readable time keeps its place in its trail.
        let mut time = None;
        for (place, row) in rows[first..].iter().enumerate() {
            time = row.record.time.or(time);
            order.push((time, index, place));
        }
        trails.push(trail);
    }
    let mut sorted: Vec<_> = order.into_iter().zip(rows).collect();
    sorted.sort_by_key(|(order, _)| *order);
    Ok(Review {
        trails,
        rows: sorted.into_iter().map(|(_, row)| row).collect(),
        keyed: matches!(key, MacKey::Hmac(_)),
    })
}

/// The trails at `paths`: (directory, files in chain order), by first mention.
fn group(paths: &[PathBuf]) -> std::io::Result<Vec<(PathBuf, Vec<PathBuf>)>> {
    let mut trails: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    for path in paths {
        let (source, files) = if path.is_dir() {
            let files = verify::expand(std::slice::from_ref(path)).map_err(|e| named(path, e))?;
            if files.is_empty() {
                return Err(named(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no *.jsonl trail files"),
                ));
            }
            (path.clone(), files)
        } else {
            let parent = path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_owned(), vec![path.clone()])
        };
        // Named in full (`.` says nothing in a status line), and so that `trail` and
        // `./trail/x.jsonl` are one trail.
        let source = std::path::absolute(&source).unwrap_or(source);
        match trails.iter_mut().find(|(known, _)| *known == source) {
            Some((_, known)) => {
                for file in files {
                    if !known.contains(&file) {
                        known.push(file);
                    }
                }
            }
            None => trails.push((source, files)),
        }
    }
    Ok(trails)
}

/// An I/O error that names its path.
fn named(path: &Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Reads one trail's files in order, checking each line; its rows are appended to `rows`.
fn read_trail(
    index: usize,
    source: PathBuf,
    files: Vec<PathBuf>,
    key: &MacKey,
    partial: bool,
    rows: &mut Vec<Row>,
) -> std::io::Result<TrailCheck> {
    let mut trail = TrailCheck {
        source,
        files: Vec::new(),
        instance: None,
        records: 0,
        first_seq: None,
        last_seq: None,
        first_ts: None,
        last_ts: None,
        failures: Vec::new(),
        discontinuities: Vec::new(),
        last_checkpoint: None,
    };
    let mut chain = ChainCheck::new(key, partial);
    let mut raw = Vec::with_capacity(1024);
    for file in files {
        let mut reader = BufReader::new(std::fs::File::open(&file).map_err(|e| named(&file, e))?);
        let mut number = 0;
        loop {
            let read = verify::next_line(&mut reader, &mut raw).map_err(|e| named(&file, e))?;
            let Some(line) = read else { break };
            number += 1;
            let checked = chain.check(&file, number, line);
            let value = checked.value.unwrap_or_else(|| match line {
                RawLine::Bytes(bytes) => {
                    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
                    serde_json::Value::String(String::from_utf8_lossy(text).into_owned())
                }
                RawLine::TooLong => serde_json::Value::Null,
            });
            let record = Record::from_value(value);
            let problem = match checked.verdict {
                Ok(gap) => {
                    trail.discontinuities.extend(gap);
                    if record.kind == CHECKPOINT {
                        trail.last_checkpoint = Some(record.seq);
                    }
                    None
                }
                Err(failure) => {
                    let reason = failure.reason.clone();
                    trail.failures.push(failure);
                    Some(reason)
                }
            };
            trail.records += 1;
            if record.raw.is_object() {
                trail.first_seq.get_or_insert(record.seq);
                trail.last_seq = Some(record.seq);
                if trail.first_ts.is_none() {
                    trail.first_ts = Some(record.ts.clone());
                }
                trail.last_ts = Some(record.ts.clone());
            }
            if trail.instance.is_none() {
                trail.instance.clone_from(&record.instance);
            }
            rows.push(Row {
                trail: index,
                file: file.clone(),
                line: number,
                problem,
                outcome_unknown: false,
                record,
            });
        }
        trail.files.push(file);
    }
    Ok(trail)
}

/// Marks the attempts of one trail (its rows in trail order) that no outcome answers.
///
/// An outcome answers the latest earlier attempt with its request id and agent (request
/// ids are the callers' choice, so the agent must match too), and only when it can follow
/// an attempt ([`can_follow_attempt`]): a refusal decided before the attempt record
/// reusing the id answers nothing. An attempt repeating a pending one's id and agent
/// leaves that one unanswered: their outcomes could not be told apart.
fn mark_orphans(rows: &mut [Row]) {
    let mut pending: HashMap<(String, AgentId), usize> = HashMap::new();
    let key = |record: &Record| {
        let id = record.request_id.clone()?;
        let agent = record.agent.as_deref()?;
        Some((id, AgentId::new(agent, AccountFolding::CaseFolded)))
    };
    for index in 0..rows.len() {
        let record = &rows[index].record;
        let Some(key) = key(record) else { continue };
        match record.kind.as_str() {
            "attempt" => {
                if let Some(earlier) = pending.insert(key, index) {
                    rows[earlier].outcome_unknown = true;
                }
            }
            "outcome" if can_follow_attempt(record.code.as_deref(), record.called_vendor()) => {
                pending.remove(&key);
            }
            _ => {}
        }
    }
    for index in pending.into_values() {
        rows[index].outcome_unknown = true;
    }
}

#[cfg(test)]
mod tests;
