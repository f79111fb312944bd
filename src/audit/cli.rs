//! `sipgw audit verify`, `show`, `export` and `report`: the command line over
//! [`super::verify`], [`super::show`], [`super::export`] and [`super::report`].
//!
//! The verdict of `verify` is the exit status, so that a script or a cron job can act on
//! it without parsing: 0 intact, 1 a broken chain (the first bad line is named), 2 the
//! files or the key could not be read, 3 a chain that holds but records discontinuities
//! (records were lost, and a new chain began). With `--anchor`, 1 also when the trail no
//! longer holds the anchor's record (cut off its end, replaced, or a forged anchor), and 2
//! when no anchor of the trail's instance was given.

use std::path::PathBuf;
use std::process::ExitCode;

use super::anchor::{self, Verdict};
use super::chain::{MacKey, UNKEYED_WARNING};
use super::show::{self, TrailArgs};
use super::verify;
use crate::terminal::{self, print_all};

/// Exit status when the trail's files or the key file cannot be read.
const EXIT_UNREADABLE: u8 = 2;
/// Exit status of `audit verify` for a trail whose chain holds but that has discontinuity
/// records (records were lost, and a new chain began); 1 is a broken chain.
const EXIT_DISCONTINUITY: u8 = 3;

/// `sipgw audit ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute the chain of one trail (its rotated files in order, or a directory).
    Verify {
        /// Trail files in chain order, or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The HMAC key file the trail was written with (plain SHA-256 without it).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Accept a trail that starts after seq 1 (an archived tail; its first link is
        /// taken on trust).
        #[arg(long)]
        partial: bool,
        /// A checkpoint kept off the host: the line itself, or a file of checkpoint records
        /// or sipgw JSON log lines; the trail must still hold the latest one of its
        /// instance (repeatable).
        #[arg(long, value_name = "FILE_OR_LINE")]
        anchor: Vec<String>,
    },
    /// Print the records of one or more trails, verified as they are read, that match
    /// the filters: a table, JSON lines or CSV (docs/audit.md#verify-and-read).
    Show {
        /// The trails, their key, the period.
        #[command(flatten)]
        trails: TrailArgs,
        /// Only this agent (in any letter case: one account to the limits).
        #[arg(long)]
        agent: Option<String>,
        /// Only this caller: its sub, its display name, or ISS#SUB, exactly.
        #[arg(long)]
        caller: Option<String>,
        /// Only this code (ok, vendor_rejected, unauthenticated, ...).
        #[arg(long)]
        code: Option<String>,
        /// Only this request (its id, or the id its replays name).
        #[arg(long)]
        request_id: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: show::Format,
        /// The same as --format json (kept for older scripts).
        #[arg(long, hide = true, conflicts_with = "format")]
        json: bool,
    },
    /// Write the records as documents for a SIEM (Elastic Common Schema JSON lines).
    Export(super::export::ExportArgs),
    /// Write one self-contained HTML page for a reviewer: chain status, numbers, charts,
    /// top callers, lockout events, orphaned attempts, per-agent history, every record
    /// (docs/audit.md#the-report). Once it is written, the exit status is `show`'s (0
    /// intact, 1 a record failed verification, 3 discontinuities); 2 when nothing was.
    Report {
        /// The trails, their key, the period (the chain status always covers every
        /// record).
        #[command(flatten)]
        trails: TrailArgs,
        /// The HTML file to write (atomically; never one of the trail's files).
        #[arg(long, value_name = "FILE.html")]
        output: PathBuf,
        /// A checkpoint kept off the host, as for `verify --anchor`: each trail must
        /// still hold the latest one of its instance (repeatable).
        #[arg(long, value_name = "FILE_OR_LINE")]
        anchor: Vec<String>,
    },
}

/// Runs one `audit` command; its result is the exit status.
pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            files,
            key_file,
            partial,
            anchor,
        } => run_verify(&files, key_file, partial, &anchor),
        AuditCommand::Show {
            trails,
            agent,
            caller,
            code,
            request_id,
            format,
            json,
        } => {
            let filter = show::Filter {
                period: trails.period,
                agent,
                caller,
                code,
                request_id,
            };
            let format = if json { show::Format::Json } else { format };
            show::run(&trails, &filter, format)
        }
        AuditCommand::Export(args) => super::export::run(&args),
        AuditCommand::Report {
            trails,
            output,
            anchor,
        } => super::report::run(&super::report::Request {
            trails,
            output,
            anchors: anchor,
        }),
    }
}

/// The key of `--key-file`, or plain SHA-256 without one; a key file that cannot be read
/// is exit status 2, reported under `context`.
fn load_key(context: &str, key_file: Option<PathBuf>) -> Result<MacKey, ExitCode> {
    let Some(path) = key_file else {
        return Ok(MacKey::Plain);
    };
    MacKey::read(&path).map_err(|error| {
        eprintln!("{context}: --key-file {}: {error}", path.display());
        ExitCode::from(EXIT_UNREADABLE)
    })
}

fn run_verify(
    files: &[PathBuf],
    key_file: Option<PathBuf>,
    partial: bool,
    anchors: &[String],
) -> ExitCode {
    const CONTEXT: &str = "sipgw audit verify";
    let key = match load_key(CONTEXT, key_file) {
        Ok(key) => key,
        Err(status) => return status,
    };
    if !key.is_keyed() {
        eprintln!("warning: {UNKEYED_WARNING}");
        if !anchors.is_empty() {
            eprintln!(
                "warning: without --key-file an anchor cannot be authenticated either: \
                 whoever can rewrite the trail can forge an anchor that matches it"
            );
        }
    }
    // A path given that is not there is a typo, not a broken chain: said with the path,
    // as `show`, `export` and `report` say it, and exit status 2.
    if let Some((path, error)) = files
        .iter()
        .find_map(|path| std::fs::metadata(path).err().map(|e| (path, e)))
    {
        let error = format!("{}: {error}", path.display());
        eprintln!("{CONTEXT}: {}", terminal::escape(&error));
        return ExitCode::from(EXIT_UNREADABLE);
    }
    let files = match verify::expand(files) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            eprintln!("{CONTEXT}: no trail files found");
            return ExitCode::from(EXIT_UNREADABLE);
        }
        Err(error) => {
            let error = error.to_string();
            eprintln!("{CONTEXT}: {}", terminal::escape(&error));
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let anchors = match anchor::load(anchors) {
        Ok(anchors) => anchors,
        Err(error) => {
            eprintln!("{CONTEXT}: {}", terminal::escape(&error));
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let checked = if partial {
        verify::verify_from_any(&files, &key)
    } else {
        verify::verify(&files, &key)
    };
    if let (Ok(summary), false) = (&checked, anchors.is_empty()) {
        return check_anchor(&files, &key, &anchors, summary);
    }
    // The verdict is the exit status, whether or not anyone still reads the line.
    match checked {
        // The chain holds, but records were lost before a new chain began: not OK.
        Ok(summary) if !summary.discontinuities.is_empty() => print_all(
            CONTEXT,
            &format!("{summary}\n"),
            ExitCode::from(EXIT_DISCONTINUITY),
        ),
        Ok(summary) => print_all(CONTEXT, &format!("{summary}\n"), ExitCode::SUCCESS),
        Err(failure) => print_all(CONTEXT, &format!("{failure}\n"), ExitCode::FAILURE),
    }
}

/// After the chain verified: does the trail still hold its latest anchor?
fn check_anchor(
    files: &[PathBuf],
    key: &MacKey,
    anchors: &[anchor::Anchor],
    summary: &verify::Summary,
) -> ExitCode {
    const CONTEXT: &str = "sipgw audit verify";
    let check = match anchor::check(files, anchors, key) {
        Ok(check) => check,
        Err(error) => {
            eprintln!("{CONTEXT}: {}", terminal::escape(&error.to_string()));
            return ExitCode::from(EXIT_UNREADABLE);
        }
    };
    let explained = terminal::escape(&check.explain(key.is_keyed())).into_owned();
    let (text, status) = match &check {
        anchor::Check::NoneOfThisTrail(_) => {
            eprintln!("{CONTEXT}: {explained}");
            return ExitCode::from(EXIT_UNREADABLE);
        }
        anchor::Check::Judged(_, Verdict::Held) if summary.discontinuities.is_empty() => (
            format!("{summary}\nANCHOR OK: {explained}\n"),
            ExitCode::SUCCESS,
        ),
        anchor::Check::Judged(_, Verdict::Held) => (
            format!("{summary}\nANCHOR OK: {explained}\n"),
            ExitCode::from(EXIT_DISCONTINUITY),
        ),
        anchor::Check::Judged(_, Verdict::StartsAfter { .. }) => (
            format!("{summary}\nANCHOR NOT CHECKED: {explained}\n"),
            ExitCode::from(EXIT_UNREADABLE),
        ),
        anchor::Check::Judged(
            _,
            Verdict::NotGenuine | Verdict::EndsBefore { .. } | Verdict::Differs,
        ) => (format!("FAILED: anchor: {explained}\n"), ExitCode::FAILURE),
    };
    print_all(CONTEXT, &text, status)
}
