//! Logging set-up: `tracing` to stderr, JSON for machines or human-readable text,
//! filtered by `RUST_LOG` (default `info`).
//!
//! Secrets cannot reach a log line by accident: passwords, the app secret and AccessTokens
//! are held as `secrecy::SecretString`, whose `Debug` prints `[REDACTED]`; the HMAC key is
//! a `MacKey`, whose `Debug` does the same; JWTs are never put in a field (the request's
//! span names the caller by `sub`). `tests/cli.rs` scans the log of a trace-level run for
//! every secret it used.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (the default for `serve`).
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Lines waiting for the log thread; beyond this, new lines are dropped rather than making
/// requests wait for stderr or growing without bound: at a few hundred bytes a line, at
/// most a few MiB. The audit trail, not the log, is the complete record. (At exit the
/// queue gets about a second to drain; `tracing-appender` says so on stdout if it does
/// not, which would mix into `audit.stdout` records only when stderr is blocked.)
const BUFFERED_LINES: usize = 8_192;

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is unset.
///
/// Lines are formatted on the thread that logs them and written to stderr by a thread of
/// their own (`tracing-appender`), so a slow or blocked stderr never holds up a request.
/// Keep the returned guard until the process ends: dropping it flushes what is queued.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(
    format: LogFormat,
    default_filter: &str,
) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .thread_name("sipgw-log")
        .finish(std::io::stderr());
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            // The request's span (request id, route, caller, agent) on every line logged
            // while it is handled; requests are not nested, so the list adds nothing.
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    // A subscriber installed already (tests) is fine.
    let _ = result;
    guard
}
