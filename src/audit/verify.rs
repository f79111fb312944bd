//! `sipgw audit verify`: recomputes the chain over the files of one trail, in order, and
//! names the first bad line. Its per-line check, [`ChainCheck`], is also the reviewers'
//! reading API's ([`super::review`]), which goes on after a failure.
//!
//! A `discontinuity` record (written when an operator let the gateway start a new chain
//! after records went missing) is not a silent gap: its own link must hold (`seq` =
//! `lastSeq` + 1, `prev` = `lastMac`), the chain is checked on from it, and the summary
//! names it, so `verify` never answers a plain OK for such a trail.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::chain::{GENESIS, MacKey};
use super::record::{CHECKPOINT, DISCONTINUITY, MAX_LINE, unseal};
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
            write!(f, "\n  {gap}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let after = self
            .held_seq
            .map_or_else(|| "the start".to_owned(), |seq| format!("seq {seq}"));
        write!(
            f,
            "{}:{}: a new chain after the trail was found {}: records after {after} up to seq {} are not in these files",
            escape(&self.file.display().to_string()),
            self.line,
            escape(&self.detected),
            self.last_seq,
        )
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
    let mut chain = ChainCheck::new(key, later_start);
    for (file, reader) in trail {
        summary.files += 1;
        let mut reader = reader.map_err(|e| Failure {
            file: file.clone(),
            line: 0,
            reason: format!("cannot open: {e}"),
        })?;
        let mut raw = Vec::new();
        let mut number = 0u64;
        loop {
            let read = next_line(&mut reader, &mut raw);
            number += 1;
            let checked = match read {
                Ok(None) => break,
                Ok(Some(line)) => chain.check(&file, number, line),
                Err(e) => ChainCheck::unreadable(&file, number, format!("cannot read: {e}")),
            };
            let gap = checked.verdict?;
            summary.discontinuities.extend(gap);
            let value = checked.value.unwrap_or_default();
            let seq = value["seq"].as_u64().unwrap_or_default();
            let ts = value["ts"].as_str().map(str::to_owned);
            if summary.records == 0 {
                summary.first_seq = seq;
                summary.first_ts.clone_from(&ts);
            }
            summary.last_ts = ts;
            summary.records += 1;
            summary.last_seq = seq;
        }
    }
    Ok(summary)
}

/// One line as [`next_line`] read it.
#[derive(Debug, Clone, Copy)]
pub enum RawLine<'a> {
    /// The line's bytes, with its line end when it has one (the last line of a file cut
    /// mid-write has none).
    Bytes(&'a [u8]),
    /// A line longer than [`MAX_LINE`]: not a record (the writer never writes one); it
    /// was read to its end and dropped.
    TooLong,
}

/// Reads the next line of a trail file into `raw`, holding at most [`MAX_LINE`] bytes of
/// it in memory; `None` at the end of the file.
pub fn next_line<'a>(
    reader: &mut impl BufRead,
    raw: &'a mut Vec<u8>,
) -> std::io::Result<Option<RawLine<'a>>> {
    raw.clear();
    let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', raw)?;
    if n == 0 {
        return Ok(None);
    }
    if raw.last() == Some(&b'\n') || (n as u64) < MAX_LINE {
        return Ok(Some(RawLine::Bytes(raw)));
    }
    loop {
        raw.clear();
        let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', raw)?;
        if n == 0 || raw.last() == Some(&b'\n') {
            return Ok(Some(RawLine::TooLong));
        }
    }
}

/// The record-by-record check of one trail: each line must be a sealed JSON record whose
/// `seq` follows the previous record's, whose `prev` is that record's `mac`, and whose own
/// `mac` is right. `verify` stops at the first failure; the reading API
/// ([`super::review`]) goes on, checking each record against the one before it as written,
/// so that an edited record fails alone and a deleted one fails the record after the gap.
#[derive(Debug)]
pub struct ChainCheck<'k> {
    /// How the records were sealed.
    key: &'k MacKey,
    /// Whether the first record may come after `seq` 1 (an archived tail).
    later_start: bool,
    /// `seq` and `mac` of the previous record, as written (`None` before the first).
    last: Option<(u64, String)>,
}

/// What [`ChainCheck::check`] found for one line.
#[derive(Debug)]
pub struct Checked {
    /// The line as JSON, when it is JSON (whether or not it passed).
    pub value: Option<Value>,
    /// Passed (with the gap it declares when it is a discontinuity record), or why not.
    pub verdict: Result<Option<Gap>, Failure>,
}

impl<'k> ChainCheck<'k> {
    /// A check from the start of a trail.
    pub fn new(key: &'k MacKey, later_start: bool) -> Self {
        Self {
            key,
            later_start,
            last: None,
        }
    }

    /// A line that could not be read at all; the chain is left where it was.
    pub fn unreadable(file: &Path, line: u64, reason: String) -> Checked {
        Checked {
            value: None,
            verdict: Err(Failure {
                file: file.to_owned(),
                line,
                reason,
            }),
        }
    }

    /// Checks line `number` of `file`. The next line is checked against this one's `seq`
    /// and `mac` as written, whether or not this one passed (a line without them leaves
    /// the chain where it was).
    pub fn check(&mut self, file: &Path, number: u64, line: RawLine<'_>) -> Checked {
        let raw = match line {
            RawLine::Bytes(raw) => raw,
            RawLine::TooLong => {
                let reason = format!("longer than {MAX_LINE} bytes: not a record");
                return Self::unreadable(file, number, reason);
            }
        };
        let text = std::str::from_utf8(raw.strip_suffix(b"\n").unwrap_or(raw)).ok();
        let value = text.and_then(|text| serde_json::from_str::<Value>(text).ok());
        let verdict = self
            .link(raw, text, value.as_ref())
            .map(|gap| {
                gap.map(|mut gap| {
                    (gap.file, gap.line) = (file.to_owned(), number);
                    gap
                })
            })
            .map_err(|reason| Failure {
                file: file.to_owned(),
                line: number,
                reason,
            });
        Checked { value, verdict }
    }

    /// The checks of one line, in the order `verify` has always named them; `Ok` carries
    /// the gap a discontinuity record declares (its place is filled in by the caller).
    fn link(
        &mut self,
        raw: &[u8],
        text: Option<&str>,
        value: Option<&Value>,
    ) -> Result<Option<Gap>, String> {
        if raw.last() != Some(&b'\n') {
            return Err("truncated mid-line (no line end)".into());
        }
        let line = text.ok_or("not UTF-8")?;
        let (unsealed, mac) = unseal(line).ok_or("not a sealed record (no trailing mac)")?;
        let value = value.ok_or("not valid JSON")?;
        let seq = value["seq"].as_u64().ok_or("no seq")?;
        let prev = value["prev"].as_str().ok_or("no prev")?;
        // From here on the line names its place: the next one is checked against it.
        let last = self.last.replace((seq, mac.to_owned()));
        let mut gap = None;
        match &last {
            _ if value["kind"] == DISCONTINUITY => {
                // Its link is to what the gateway had written, not to these files.
                let declared = value["lastSeq"].as_u64().zip(value["lastMac"].as_str());
                if declared.is_none_or(|(seq_before, mac)| seq != seq_before + 1 || prev != mac) {
                    return Err(
                        "a discontinuity record that does not link to the record it names".into(),
                    );
                }
                gap = Some(Gap {
                    file: PathBuf::new(),
                    line: 0,
                    detected: value["detected"].as_str().unwrap_or("-").to_owned(),
                    last_seq: seq - 1,
                    held_seq: last.as_ref().map(|(seq, _)| *seq),
                });
            }
            Some((last_seq, last_mac)) => {
                if seq != last_seq + 1 {
                    return Err(format!(
                        "seq {seq} follows {last_seq}: a record was deleted, inserted or reordered"
                    ));
                }
                if prev != last_mac {
                    return Err("prev does not match the previous record's mac".into());
                }
            }
            None => {
                if seq != 1 && !self.later_start {
                    return Err(format!(
                        "the trail starts at seq {seq}: its first records are missing (use --partial to check an archived tail)"
                    ));
                }
                if seq == 1 && prev != GENESIS {
                    return Err("the first record's prev is not the genesis value".into());
                }
            }
        }
        // A checkpoint names the record before it; an anchor is matched against it.
        if value["kind"] == CHECKPOINT
            && (value["lastSeq"].as_u64() != seq.checked_sub(1)
                || value["lastMac"].as_str() != Some(prev))
        {
            return Err("a checkpoint record that does not name the record before it".into());
        }
        if self.key.mac(prev, &unsealed) != mac {
            return Err("mac does not match: the record was altered (or the key is wrong)".into());
        }
        Ok(gap)
    }
}
