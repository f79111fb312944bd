//! `sipgw audit show`: the records of one or more trails, verified as they are read, that
//! match a reviewer's filters, as a table, JSON lines or CSV (docs/audit.md#verify-and-read).
//!
//! Every record is checked ([`super::review`]); a record that fails is still shown,
//! marked `FAILED: reason`, and makes the exit status 1. After the rows, one status line
//! per trail goes to stderr, and the warning that an unkeyed trail proves nothing against
//! an attacker.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use jiff::{SignedDuration, Timestamp, civil::Date, tz::TimeZone};

use super::chain::{MacKey, UNKEYED_WARNING};
use super::review::{self, Record, Review};
use crate::terminal::{self, escape, write_failed};

mod format;

pub use format::{csv_cell, csv_header, csv_row, json_line, marks, table, trail_status};

/// Exit status when a record failed verification (its row is still shown, marked).
pub const EXIT_FAILED: u8 = 1;
/// Exit status for input that cannot be read, or bad usage (clap's own is 2 as well).
pub const EXIT_UNREADABLE: u8 = 2;
/// Exit status when every record verified but a trail has discontinuity records.
pub const EXIT_DISCONTINUITY: u8 = 3;

/// How the rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal, with a header line.
    #[default]
    Table,
    /// One JSON object per line: the record's fields plus `_`-prefixed ones.
    Json,
    /// RFC 4180 CSV with a header row, safe to open in a spreadsheet.
    Csv,
}

/// What every reviewer's command (`show`, `export`, `report`) reads: the trails, the key
/// they were sealed with, and the period of records it covers.
#[derive(Debug, Clone, clap::Args)]
pub struct TrailArgs {
    /// Trail directories (one trail each: several replicas merge in time order), or
    /// trail files (grouped by their directory, in the order given).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The HMAC key file the trails were written with (plain SHA-256 without it).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Accept trails that start after seq 1 (archived tails).
    #[arg(long)]
    pub partial: bool,
    /// The records covered (the chain is checked over all of them either way).
    #[command(flatten)]
    pub period: Period,
}

impl TrailArgs {
    /// The key of `--key-file` (plain SHA-256 without one), or why it cannot be had.
    pub fn key(&self) -> Result<MacKey, String> {
        self.key_file.as_deref().map_or(Ok(MacKey::Plain), |path| {
            MacKey::read(path).map_err(|why| format!("--key-file {}: {why}", path.display()))
        })
    }

    /// Reads and verifies the trails, or says what could not be read.
    pub fn load(&self) -> Result<Review, String> {
        review::load(&self.paths, &self.key()?, self.partial).map_err(|e| e.to_string())
    }
}

/// The records a command covers: `--since` (inclusive) to `--until` (exclusive), by
/// record time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct Period {
    /// Only records at or after this time: RFC 3339 with any offset
    /// (2026-12-01T05:18:26Z), a date (2026-12-01, midnight UTC), or a time ago
    /// (30m, 24h, 7d, 2w).
    #[arg(long, value_parser = parse_time_arg)]
    pub since: Option<Timestamp>,
    /// Only records before this time (the same forms as --since).
    #[arg(long, value_parser = parse_time_arg)]
    pub until: Option<Timestamp>,
}

impl Period {
    /// Whether `record` falls in the period. A record whose time does not parse is in
    /// every period: the writer never writes one, so it is damage or an edit, which no
    /// choice of period may hide from a reviewer.
    pub fn holds(&self, record: &Record) -> bool {
        record.time.is_none_or(|time| {
            self.since.is_none_or(|since| time >= since)
                && self.until.is_none_or(|until| time < until)
        })
    }
}

/// What `show` selects; every filter given must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records in this period.
    pub period: Period,
    /// This agent, in any ASCII letter case: the per-agent limits fold the case by
    /// default, so `A1002` and `a1002` are one account to review.
    pub agent: Option<String>,
    /// The caller: its `sub`, its display name (`callerName`), or `ISS#SUB`, exactly.
    pub caller: Option<String>,
    /// This code, exactly.
    pub code: Option<String>,
    /// This request: its `requestId`, or the `replayOf` of its replays.
    pub request_id: Option<String>,
}

impl Filter {
    /// Whether `record` matches.
    pub fn matches(&self, record: &Record) -> bool {
        let given = |filter: &Option<String>, test: &dyn Fn(&str) -> bool| {
            filter.as_deref().is_none_or(test)
        };
        self.period.holds(record)
            && given(&self.agent, &|agent| {
                record
                    .agent
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(agent))
            })
            && given(&self.caller, &|caller| caller_is(record, caller))
            && given(&self.code, &|code| record.code.as_deref() == Some(code))
            && given(&self.request_id, &|id| {
                record.request_id.as_deref() == Some(id) || record.replay_of.as_deref() == Some(id)
            })
    }
}

/// Whether `caller` names the record's caller: its `sub`, its display name, or
/// `ISS#SUB` (two issuers may issue the same `sub`).
fn caller_is(record: &Record, caller: &str) -> bool {
    let sub = record.sub.as_deref();
    sub == Some(caller)
        || record.caller_name.as_deref() == Some(caller)
        || record.iss.as_deref().zip(sub).is_some_and(|(iss, sub)| {
            caller
                .strip_prefix(iss)
                .and_then(|rest| rest.strip_prefix('#'))
                == Some(sub)
        })
}

/// What a time filter accepts, for the error message.
const TIME_FORMS: &str = "use RFC 3339 with an offset (2026-12-01T05:18:26Z, \
    2026-12-01T06:18:26+01:00), a date (2026-12-01, midnight UTC), or a time ago \
    (30s, 30m, 24h, 7d, 2w)";

/// A `--since`/`--until` value: RFC 3339 with any offset, a date (midnight UTC), or a
/// time before `now` (`30m`, `24h`, `7d`, `2w`; also `s`). Anything else is an error that
/// says what is accepted (a filter that silently matched nothing would read as "no such
/// records").
pub fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let not_a_time = || format!("{:?} is not a time: {TIME_FORMS}", escape(text));
    if let Some((count, unit)) = text.split_at_checked(text.len().saturating_sub(1))
        && !count.is_empty()
        && count.bytes().all(|b| b.is_ascii_digit())
    {
        let seconds: i64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(not_a_time()),
        };
        return count
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds))
            .and_then(|secs| now.checked_sub(SignedDuration::from_secs(secs)).ok())
            .ok_or_else(not_a_time);
    }
    if text.len() == "2026-12-01".len() {
        return text
            .parse::<Date>()
            .ok()
            .and_then(|date| date.to_zoned(TimeZone::UTC).ok())
            .map(|zoned| zoned.timestamp())
            .ok_or_else(not_a_time);
    }
    text.parse::<Timestamp>().map_err(|_| not_a_time())
}

/// [`parse_time`] relative to the clock, as clap's value parser (a bad value: exit 2).
pub fn parse_time_arg(text: &str) -> Result<Timestamp, String> {
    parse_time(text, Timestamp::now())
}

/// The exit status for what `review` found: 1 when any record (shown or not) failed, 3
/// when all passed but a trail has discontinuities, 0 otherwise.
pub fn exit_status(review: &Review) -> u8 {
    if review.trails.iter().any(|trail| !trail.intact()) {
        EXIT_FAILED
    } else if review
        .trails
        .iter()
        .any(|trail| !trail.discontinuities.is_empty())
    {
        EXIT_DISCONTINUITY
    } else {
        0
    }
}

/// `sipgw audit show`: reads the trails at `paths`, writes the rows that match `filter`
/// to stdout in `format`, the trails' status to stderr; the result is the exit status.
pub fn run(trails: &TrailArgs, filter: &Filter, format: Format) -> ExitCode {
    const CONTEXT: &str = "sipgw audit show";
    let review = match trails.load() {
        Ok(review) => review,
        Err(error) => {
            eprintln!("{CONTEXT}: {}", terminal::escape(&error));
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let status = ExitCode::from(exit_status(&review));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = write_rows(&mut out, &review, filter, format).and_then(|()| out.flush());
    if let Err(error) = written {
        // A reader that went away (`| head -1`) asked for no more: nothing more is said.
        return write_failed(CONTEXT, &error, status);
    }
    let mut err = std::io::stderr().lock();
    for (index, _) in review.trails.iter().enumerate() {
        let _ = writeln!(err, "{}", trail_status(&review, index));
    }
    if !review.keyed {
        let _ = writeln!(err, "warning: {UNKEYED_WARNING}");
    }
    status
}

/// Writes the header and the matching rows.
fn write_rows(
    out: &mut impl Write,
    review: &Review,
    filter: &Filter,
    format: Format,
) -> std::io::Result<()> {
    let rows = review.rows.iter().filter(|row| filter.matches(&row.record));
    match format {
        Format::Table => {
            for line in table(rows) {
                writeln!(out, "{line}")?;
            }
        }
        Format::Csv => {
            write!(out, "{}\r\n", csv_header())?;
            for row in rows {
                write!(out, "{}\r\n", csv_row(row))?;
            }
        }
        Format::Json => {
            for row in rows {
                writeln!(out, "{}", json_line(review, row))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
