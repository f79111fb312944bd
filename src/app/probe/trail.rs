//! The audit trail's probe: usable as `serve` would open it, and its last record (the one
//! the next record will chain to) readable, with a MAC that verifies with the configured
//! key. Only the tail is read: a trail of any size is checked in a few milliseconds
//! (`sipgw audit verify` checks the whole chain).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::app::preflight;
use crate::audit::config::AuditConfig;
use crate::audit::record::MAX_LINE;
use crate::audit::verify::{ChainCheck, RawLine};
use crate::audit::writer::rotated_files;

/// `ok` with the last record's `seq`, or why the trail cannot be used.
pub(super) fn check(audit: &AuditConfig) -> Result<String, String> {
    preflight::audit_usable(audit).map_err(|e| e.to_string())?;
    let Some(file) = newest_with_records(&audit.path)? else {
        return Ok(format!(
            "{}: usable; the trail is empty",
            audit.path.display()
        ));
    };
    let named = |what: String| format!("{}: {what}", file.display());
    let line = last_line(&file).map_err(named)?;
    let checked = ChainCheck::new(&audit.key, true).check(&file, 0, RawLine::Bytes(&line));
    let seq = checked
        .value
        .as_ref()
        .and_then(|v| v["seq"].as_u64())
        .map_or_else(|| "?".to_owned(), |seq| seq.to_string());
    let how = if audit.key.is_keyed() {
        "its MAC verifies with audit.hmac_key_file"
    } else {
        "its hash verifies (no audit.hmac_key_file: tamper-evident against accidents only)"
    };
    match checked.verdict {
        Ok(_) => Ok(named(format!("usable; last record seq {seq}, {how}"))),
        Err(failure) => Err(named(format!(
            "last record (seq {seq}) does not verify: {}",
            failure.reason
        ))),
    }
}

/// The trail file the next record follows: the current file when it holds anything, else
/// the newest rotated one; `None` for a new trail.
fn newest_with_records(path: &Path) -> Result<Option<PathBuf>, String> {
    let non_empty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0);
    if non_empty(path) {
        return Ok(Some(path.to_owned()));
    }
    if !path.parent().is_some_and(Path::exists) {
        return Ok(None); // serve creates the directory
    }
    let rotated = rotated_files(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(rotated
        .into_iter()
        .rev()
        .find(|p| p.as_path() != path && non_empty(p)))
}

/// The last complete line of `file`, with its line end (records are at most
/// [`MAX_LINE`] bytes).
fn last_line(file: &Path) -> Result<Vec<u8>, String> {
    let mut reader = File::open(file).map_err(|e| e.to_string())?;
    let len = reader.metadata().map_err(|e| e.to_string())?.len();
    let start = len.saturating_sub(MAX_LINE + 1);
    reader
        .seek(SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    let mut tail = Vec::new();
    reader
        .take(MAX_LINE + 1)
        .read_to_end(&mut tail)
        .map_err(|e| e.to_string())?;
    let end = tail
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or("no complete record at its end; run `sipgw audit verify` on it")?;
    let begin = tail[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    if begin == 0 && start > 0 {
        return Err(
            "its last line is longer than any record; run `sipgw audit verify` on it".into(),
        );
    }
    Ok(tail[begin..=end].to_vec())
}
