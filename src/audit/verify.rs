//! `sipgw audit verify`: recomputes the chain over the files of one trail, in order, and
//! names the first bad line. `sipgw audit show`: prints matching records for a reviewer.
//!
//! A `discontinuity` record (written when an operator let the gateway start a new chain
//! after records went missing) is not a silent gap: its own link must hold (`seq` =
//! `lastSeq` + 1, `prev` = `lastMac`), the chain is checked on from it, and the summary
//! names it, so `verify` never answers a plain OK for such a trail.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde_json::Value;

use super::chain::{GENESIS, MacKey};
use super::record::{CHECKPOINT, DISCONTINUITY, unseal};
use crate::terminal::escape;

/// What an intact trail holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records checked.
    pub records: u64,
    /// `seq` of the first record (1 when the trail starts at its beginning).
    pub first_seq: u64,
    /// `ts` of the first and the last record.
    pub first_ts: Option<String>,
    /// `ts` of the last record.
    pub last_ts: Option<String>,
    /// Files read.
    pub files: usize,
    /// `seq` of the last record.
    pub last_seq: u64,
    /// Discontinuity records met, in order: the chain holds, but records are missing.
    pub discontinuities: Vec<Gap>,
}

/// Where a `discontinuity` record declares records lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The file holding the discontinuity record.
    pub file: PathBuf,
    /// Its 1-based line number.
    pub line: u64,
    /// What the gateway found (`missing`, `truncated`, `replaced`, `unlinked`, ...).
    pub detected: String,
    /// The last record the gateway had written before it.
    pub last_seq: u64,
    /// The last record these files hold before it (none: the files start with it).
    pub held_seq: Option<u64>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.discontinuities.is_empty() {
            "OK"
        } else {
            "DISCONTINUITY"
        };
        write!(
            f,
            "{verdict}: {} records in {} file(s), seq {}..{}, from {} to {}",
            self.records,
            self.files,
            self.first_seq,
            self.last_seq,
            escape(self.first_ts.as_deref().unwrap_or("-")),
            escape(self.last_ts.as_deref().unwrap_or("-")),
        )?;
        for gap in &self.discontinuities {
            let after = gap
                .held_seq
                .map_or_else(|| "the start".to_owned(), |seq| format!("seq {seq}"));
            write!(
                f,
                "\n  {}:{}: a new chain after the trail was found {}: records after {after} up to seq {} are not in these files",
                escape(&gap.file.display().to_string()),
                gap.line,
                escape(&gap.detected),
                gap.last_seq,
            )?;
        }
        Ok(())
    }
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The file.
    pub file: PathBuf,
    /// Its 1-based line number (0 when the file itself could not be read).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A file name is whatever the directory holds; shown escaped like record values.
        write!(
            f,
            "FAILED: {}:{}: {}",
            escape(&self.file.display().to_string()),
            self.line,
            escape(&self.reason)
        )
    }
}

/// The files to read: each argument is a file, or a directory whose `*.jsonl` files are
/// taken in name order (rotated files, named with their rotation time, sort before the
/// current one).
pub fn expand(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Checks JSON validity, `seq` continuity, `prev` links and every `mac` across `files`,
/// which must start at the trail's first record (`seq` 1): a trail whose head was removed
/// fails. Use [`verify_from_any`] to check archived tails on purpose.
pub fn verify(files: &[PathBuf], key: &MacKey) -> Result<Summary, Failure> {
    verify_with(files, key, false)
}

/// Like [`verify`], but accepts a trail that starts later than `seq` 1 (its first record's
/// `prev` is then taken on trust; the summary says where it starts).
pub fn verify_from_any(files: &[PathBuf], key: &MacKey) -> Result<Summary, Failure> {
    verify_with(files, key, true)
}

fn verify_with(files: &[PathBuf], key: &MacKey, later_start: bool) -> Result<Summary, Failure> {
    // Opened one by one as the check reaches them, so that a bad line in an earlier file
    // is reported before a missing later one.
    let trail = files
        .iter()
        .map(|file| (file.clone(), std::fs::File::open(file).map(BufReader::new)));
    verify_readers(trail, key, later_start)
}

/// The check behind [`verify`] (`later_start = false`) and [`verify_from_any`] (`true`),
/// over the files of one trail in chain order, each given as its name and a reader (or the
/// error that opening it gave). Used by those two for files on disk, and by the fuzz target
/// `audit_verify` (`fuzz/fuzz_targets/audit_verify.rs`) for bytes in memory.
pub fn verify_readers<R: BufRead>(
    trail: impl IntoIterator<Item = (PathBuf, std::io::Result<R>)>,
    key: &MacKey,
    later_start: bool,
) -> Result<Summary, Failure> {
    let mut summary = Summary {
        records: 0,
        first_seq: 0,
        first_ts: None,
        last_ts: None,
        files: 0,
        last_seq: 0,
        discontinuities: Vec::new(),
    };
    let mut last: Option<(u64, String)> = None; // (seq, mac) of the previous record
    for (file, reader) in trail {
        summary.files += 1;
        let fail = |line: u64, reason: String| Failure {
            file: file.clone(),
            line,
            reason,
        };
        let mut reader = reader.map_err(|e| fail(0, format!("cannot open: {e}")))?;
        let mut raw = Vec::new();
        let mut number = 0u64;
        loop {
            raw.clear();
            let n = reader
                .read_until(b'\n', &mut raw)
                .map_err(|e| fail(number + 1, format!("cannot read: {e}")))?;
            if n == 0 {
                break;
            }
            number += 1;
            if raw.last() != Some(&b'\n') {
                return Err(fail(number, "truncated mid-line (no line end)".into()));
            }
            let line = std::str::from_utf8(&raw[..raw.len() - 1])
                .map_err(|_| fail(number, "not UTF-8".into()))?;
            let (unsealed, mac) = unseal(line)
                .ok_or_else(|| fail(number, "not a sealed record (no trailing mac)".into()))?;
            let value: Value =
                serde_json::from_str(line).map_err(|_| fail(number, "not valid JSON".into()))?;
            let seq = value["seq"]
                .as_u64()
                .ok_or_else(|| fail(number, "no seq".into()))?;
            let prev = value["prev"]
                .as_str()
                .ok_or_else(|| fail(number, "no prev".into()))?;
            match &last {
                _ if value["kind"] == DISCONTINUITY => {
                    // Its link is to what the gateway had written, not to these files.
                    let declared = value["lastSeq"].as_u64().zip(value["lastMac"].as_str());
                    if declared.is_none_or(|(seq_before, mac)| seq != seq_before + 1 || prev != mac)
                    {
                        return Err(fail(
                            number,
                            "a discontinuity record that does not link to the record it names"
                                .into(),
                        ));
                    }
                    if last.is_none() {
                        summary.first_seq = seq;
                    }
                    summary.discontinuities.push(Gap {
                        file: file.clone(),
                        line: number,
                        detected: value["detected"].as_str().unwrap_or("-").to_owned(),
                        last_seq: seq - 1,
                        held_seq: last.as_ref().map(|(seq, _)| *seq),
                    });
                }
                Some((last_seq, last_mac)) => {
                    if seq != last_seq + 1 {
                        return Err(fail(
                            number,
                            format!(
                                "seq {seq} follows {last_seq}: a record was deleted, inserted or reordered"
                            ),
                        ));
                    }
                    if prev != last_mac {
                        return Err(fail(
                            number,
                            "prev does not match the previous record's mac".into(),
                        ));
                    }
                }
                None => {
                    summary.first_seq = seq;
                    if seq != 1 && !later_start {
                        return Err(fail(
                            number,
                            format!(
                                "the trail starts at seq {seq}: its first records are missing (use --partial to check an archived tail)"
                            ),
                        ));
                    }
                    if seq == 1 && prev != GENESIS {
                        return Err(fail(
                            number,
                            "the first record's prev is not the genesis value".into(),
                        ));
                    }
                }
            }
            // A checkpoint names the record before it; an anchor is matched against it.
            if value["kind"] == CHECKPOINT
                && (value["lastSeq"].as_u64() != seq.checked_sub(1)
                    || value["lastMac"].as_str() != Some(prev))
            {
                return Err(fail(
                    number,
                    "a checkpoint record that does not name the record before it".into(),
                ));
            }
            if key.mac(prev, &unsealed) != mac {
                return Err(fail(
                    number,
                    "mac does not match: the record was altered (or the key is wrong)".into(),
                ));
            }
            let ts = value["ts"].as_str().map(str::to_owned);
            if summary.first_ts.is_none() {
                summary.first_ts.clone_from(&ts);
            }
            summary.last_ts = ts;
            summary.records += 1;
            summary.last_seq = seq;
            last = Some((seq, mac.to_owned()));
        }
    }
    Ok(summary)
}

/// What `audit show` selects.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only this agent, in any ASCII letter case: the per-agent limits key accounts
    /// case-folded by default, so `A1002` and `a1002` are one account to review.
    pub agent: Option<String>,
    /// Only records at or after this RFC 3339 time (string comparison of UTC `ts`).
    pub since: Option<String>,
    /// Only this code.
    pub code: Option<String>,
}

impl Filter {
    /// Whether a parsed record matches.
    pub fn matches(&self, record: &Value) -> bool {
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        self.agent
            .as_deref()
            .is_none_or(|a| field("agent").is_some_and(|f| f.eq_ignore_ascii_case(a)))
            && self
                .code
                .as_deref()
                .is_none_or(|c| field("code") == Some(c))
            && self
                .since
                .as_deref()
                .is_none_or(|s| field("ts").is_some_and(|ts| ts >= s))
    }
}

/// Reads the records of `files` that match `filter` (lines that are not JSON are skipped:
/// `verify` is the tool that reports them).
pub fn select(files: &[PathBuf], filter: &Filter) -> std::io::Result<Vec<Value>> {
    let mut out = Vec::new();
    for file in files {
        for line in BufReader::new(std::fs::File::open(file)?).lines() {
            if let Ok(record) = serde_json::from_str::<Value>(&line?)
                && filter.matches(&record)
            {
                out.push(record);
            }
        }
    }
    Ok(out)
}

/// One record as a table row: ts, kind, code, status, agent, caller, request id. Every
/// cell is escaped ([`crate::terminal`]): a `sub` is whatever the identity provider
/// issued, and a trail may have been edited; neither may drive the reviewer's terminal.
pub fn table_row(record: &Value) -> String {
    let s = |v: &Value| {
        v.as_str()
            .map(|text| escape(text).into_owned())
            .or_else(|| v.as_u64().map(|n| n.to_string()))
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "{:<24} {:<8} {:<26} {:>4} {:<16} {:<24} {}",
        s(&record["ts"]),
        s(&record["kind"]),
        s(&record["code"]),
        s(&record["httpStatus"]),
        s(&record["agent"]),
        s(&record["caller"]["sub"]),
        s(&record["requestId"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_filter_ignores_ascii_case() {
        let record = serde_json::json!({"agent": "A1002", "code": "ok"});
        let filter = |agent: &str| Filter {
            agent: Some(agent.into()),
            ..Filter::default()
        };
        assert!(filter("a1002").matches(&record));
        assert!(filter("A1002").matches(&record));
        assert!(!filter("a1003").matches(&record));
    }

    #[test]
    fn table_cells_are_escaped() {
        let record = serde_json::json!({"caller": {"sub": "x\u{1b}]0;pwned\u{7}"}, "seq": 1});
        let row = table_row(&record);
        assert!(row.contains("x\\u{1b}]0;pwned\\u{7}"), "{row}");
        assert!(!row.contains('\u{1b}'));
    }
}
