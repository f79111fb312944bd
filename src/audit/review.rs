//! The trail as a reviewer reads it: every trail given, checked, and its records in one
//! merged, time-ordered list (provisional: the types only, until the reader lands).

use std::path::PathBuf;

use super::verify;

/// Every trail given, checked, and its records in one merged, time-ordered list.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// One entry per trail given.
    pub trails: Vec<TrailCheck>,
    /// All records of all trails, ordered by (time, trail, seq).
    pub rows: Vec<Row>,
    /// Whether a key (`--key-file`) was given.
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
    /// Discontinuity records met: the chain holds, but records were lost.
    pub discontinuities: Vec<verify::Gap>,
    /// `seq` of the last checkpoint record.
    pub last_checkpoint: Option<u64>,
}

impl TrailCheck {
    /// Whether every record verified.
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
    /// Its 1-based line number.
    pub line: u64,
    /// Why this record failed verification (`None`: verified).
    pub problem: Option<String>,
    /// An attempt that no outcome in its trail answers.
    pub outcome_unknown: bool,
    /// The record.
    pub record: Record,
}

/// A record of format v1 or v2; absent fields are `None`. Values are the raw strings from
/// the trail, not escaped: every tool escapes for its own output.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Format version.
    pub v: u32,
    /// Position in the chain.
    pub seq: u64,
    /// `ts` as written.
    pub ts: String,
    /// `ts` parsed, when it parses.
    pub time: Option<jiff::Timestamp>,
    /// The replica that wrote it (v2).
    pub instance: Option<String>,
    /// `attempt`, `outcome`, `summary`, `checkpoint`, `discontinuity`, ...
    pub kind: String,
    /// `requestId`.
    pub request_id: Option<String>,
    /// `caller.iss`.
    pub iss: Option<String>,
    /// `caller.sub`.
    pub sub: Option<String>,
    /// `caller.clientIp`.
    pub client_ip: Option<String>,
    /// `callerName` (v2).
    pub caller_name: Option<String>,
    /// `forwardedFor` (v2).
    pub forwarded_for: Option<String>,
    /// `grant` (v2).
    pub grant: Option<String>,
    /// `replayOf` (v2).
    pub replay_of: Option<String>,
    /// `agent`.
    pub agent: Option<String>,
    /// `code`.
    pub code: Option<String>,
    /// `httpStatus`.
    pub http_status: Option<u16>,
    /// `vendor.status`.
    pub vendor_status: Option<u16>,
    /// `vendor.resultCode`.
    pub vendor_result_code: Option<String>,
    /// `vendor.latencyMs`.
    pub vendor_latency_ms: Option<u64>,
    /// `latencyMs`.
    pub latency_ms: Option<u64>,
    /// `suppressed` (summary).
    pub suppressed: Option<u64>,
    /// The record as parsed (for JSON output).
    pub raw: serde_json::Value,
}

impl Record {
    /// The end user's address: `forwardedFor`, else the TCP peer.
    pub fn client(&self) -> Option<&str> {
        self.forwarded_for.as_deref().or(self.client_ip.as_deref())
    }
}
