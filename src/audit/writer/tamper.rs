//! Noticing that the live trail was removed or altered under the writer (issue 11,
//! finding 5): without this check, records of an `rm`ed file go on into a deleted inode,
//! acknowledged and lost.
//!
//! At each group commit the writer compares the file it holds open (`fstat`) with what the
//! path names now (`stat`): another inode (or none) at the path, or a length that is not the
//! one it wrote, means someone else changed the trail. Two system calls per batch.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use serde::{Deserialize, Serialize};

/// What was found wrong with the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tamper {
    /// The live file was removed from its directory.
    Unlinked,
    /// Another file stands at the live file's path (or, at start-up, the trail's last
    /// record is not the one the state file remembers).
    Replaced,
    /// The live file is shorter than what was written to it (or, at start-up, the trail
    /// ends before the last record the state file remembers).
    Truncated,
    /// The live file is longer than what was written to it: someone else appended.
    Extended,
    /// At start-up: the trail directory was written before, and its files are gone.
    Missing,
}

impl Tamper {
    /// Every kind, for metric labels present at 0 from start-up.
    pub const ALL: [Self; 5] = [
        Self::Unlinked,
        Self::Replaced,
        Self::Truncated,
        Self::Extended,
        Self::Missing,
    ];

    /// The kind's name in records, logs, metrics and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlinked => "unlinked",
            Self::Replaced => "replaced",
            Self::Truncated => "truncated",
            Self::Extended => "extended",
            Self::Missing => "missing",
        }
    }
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Tamper {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// `{kind}` of `sipgw_audit_trail_tampered_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TamperLabel {
    /// What was found.
    pub kind: Tamper,
}

/// Compares the open `file` with what `path` names now. `written` is the length the writer
/// knows it wrote; `may_hold_more` says a failed write could not be cut back, so a longer
/// file is expected (it is cut before the next write). An error to `stat` the path other
/// than its absence (a permission taken away) is returned as an I/O error: the batch fails
/// and the next one checks again.
pub(super) fn check(
    file: &File,
    path: &Path,
    written: u64,
    may_hold_more: bool,
) -> std::io::Result<Option<Tamper>> {
    let open = file.metadata()?;
    let named = match std::fs::metadata(path) {
        Ok(named) => named,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some(Tamper::Unlinked));
        }
        Err(error) => return Err(error),
    };
    // Another inode at the path: renamed over, or moved away and another file put in place.
    if (named.dev(), named.ino()) != (open.dev(), open.ino()) {
        return Ok(Some(Tamper::Replaced));
    }
    Ok(match open.len() {
        len if len < written => Some(Tamper::Truncated),
        len if len > written && !may_hold_more => Some(Tamper::Extended),
        _ => None,
    })
}
