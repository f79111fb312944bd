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

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
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
}
