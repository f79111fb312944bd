//! The trail as reviewers' tools read it: every trail given, checked, and its records in
//! one merged, time-ordered list.
//!
//! Provisional: only the agreed types, so that `audit export` builds against them; the
//! real module (loading and checking) replaces this file.

use std::path::PathBuf;

use super::chain::MacKey;
use super::verify;

/// Every trail given, checked, and its records in one merged, time-ordered list.
#[derive(Debug, Clone)]
pub struct Review {
    /// The trails, as verified.
    pub trails: Vec<TrailCheck>,
    /// All records of all trails, ordered by (time, trail, seq).
    pub rows: Vec<Row>,
    /// Whether a key (`--key-file`) was given.
    pub keyed: bool,
}

/// One trail (a directory, or the files given by name in one directory), as verified.
#[derive(Debug, Clone)]
pub struct TrailCheck {
    /// The directory the trail's files are in.
    pub source: PathBuf,
    /// Its files, in chain order.
    pub files: Vec<PathBuf>,
    /// From its v2 records.
    pub instance: Option<String>,
    /// Records read.
    pub records: u64,
    /// `seq` of the first record.
    pub first_seq: Option<u64>,
    /// `seq` of the last record.
    pub last_seq: Option<u64>,
    /// `ts` of the first record.
    pub first_ts: Option<String>,
    /// `ts` of the last record.
    pub last_ts: Option<String>,
    /// Every record that failed (file, line, reason).
    pub failures: Vec<verify::Failure>,
    /// Discontinuity records met.
    pub discontinuities: Vec<verify::Gap>,
    /// `seq` of the last checkpoint record.
    pub last_checkpoint: Option<u64>,
}

impl TrailCheck {
    /// No record failed.
    pub fn intact(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One record, as a reviewer sees it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Index into [`Review::trails`].
    pub trail: usize,
    /// The file holding the record.
    pub file: PathBuf,
    /// Its 1-based line.
    pub line: u64,
    /// Why this record failed verification (`None`: verified).
    pub problem: Option<String>,
    /// An attempt that no outcome in its trail answers.
    pub outcome_unknown: bool,
    /// The record.
    pub record: Record,
}

/// v1 and v2 alike; absent fields are `None`. Values are the raw strings of the trail.
#[derive(Debug, Clone)]
pub struct Record {
    pub v: u32,
    pub seq: u64,
    pub ts: String,
    pub time: Option<jiff::Timestamp>,
    pub instance: Option<String>,
    pub kind: String,
    pub request_id: Option<String>,
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub client_ip: Option<String>,
    pub caller_name: Option<String>,
    pub forwarded_for: Option<String>,
    pub grant: Option<String>,
    pub replay_of: Option<String>,
    pub agent: Option<String>,
    pub code: Option<String>,
    pub http_status: Option<u16>,
    pub vendor_status: Option<u16>,
    pub vendor_result_code: Option<String>,
    pub vendor_latency_ms: Option<u64>,
    pub latency_ms: Option<u64>,
    pub suppressed: Option<u64>,
    /// The record as parsed (for JSON output).
    pub raw: serde_json::Value,
}

impl Record {
    /// The end user's address: `forwardedFor`, else `clientIp`.
    pub fn client(&self) -> Option<&str> {
        self.forwarded_for.as_deref().or(self.client_ip.as_deref())
    }
}

/// Reads and checks the trails at `paths`. Provisional: the real loader replaces this file.
pub fn load(_paths: &[PathBuf], _key: &MacKey, _partial: bool) -> std::io::Result<Review> {
    Err(std::io::Error::other(
        "provisional review types: the trail loader is not merged yet",
    ))
}
