//! Logs and traces: `tracing` to stderr, JSON for machines or human-readable text,
//! filtered by `RUST_LOG` (default `info`); and, with `[telemetry] otlp_endpoint` set, the
//! request spans exported as OpenTelemetry traces ([`Traces`]). JSON lines are written by a
//! layer of our own ([`JsonLayer`]), which keeps a span's fields encoded between lines.
//!
//! Secrets cannot reach a log line or a span by accident: passwords, the app secret and
//! AccessTokens are held as `secrecy::SecretString`, whose `Debug` prints `[REDACTED]`; the
//! HMAC key is a `MacKey`, whose `Debug` does the same; JWTs are never put in a field (the
//! request's span names the caller by `sub`). Spans carry the same fields as the log lines
//! and nothing else. `tests/cli.rs` scans the log of a trace-level run for every secret it
//! used; `tests/telemetry.rs` scans the exported spans.

mod config;
mod export;
mod json_log;
pub mod propagation;
pub mod spans;

use std::io::{BufWriter, IsTerminal};

use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use config::{TRACES_PATH, TelemetryConfig, TelemetrySection};
pub use export::Traces;
pub use json_log::JsonLayer;

/// The `tracing` target of the access line, the `request` event that ends each request
/// (status, code, latency, and the request's span). A target of its own so that
/// `RUST_LOG=info,sipgw::access=off` drops it and nothing else: warnings and errors of
/// the same requests are still logged.
pub const ACCESS_TARGET: &str = "sipgw::access";

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

/// The log thread writes the lines it finds queued into a buffer of this size and flushes
/// it when the queue is empty (or the buffer full): a burst of lines costs one `write`,
/// and a line never waits for the next one. Flushes fall between lines.
const BATCH_BYTES: usize = 16 * 1024;

/// The log writer of the process, and how lines are formatted and filtered. Keep it until
/// the process ends: dropping it flushes what is queued and stops the writer.
#[must_use = "dropping it stops the log writer"]
pub struct Logging {
    /// Lines are formatted on the thread that logs them and written to stderr by a thread
    /// of their own (`tracing-appender`), so a slow or blocked stderr never holds up a
    /// request; that thread writes them in batches ([`BATCH_BYTES`]).
    writer: NonBlocking,
    /// Flushes the writer's queue when dropped.
    _guard: WorkerGuard,
    /// JSON or text.
    format: LogFormat,
    /// Applies when `RUST_LOG` is unset.
    default_filter: String,
}

/// Sets up logging for the whole process: [`Logging::start`] and [`Logging::install`]
/// without traces.
pub fn init(format: LogFormat, default_filter: &str) -> Logging {
    let logging = Logging::start(format, default_filter);
    logging.install(None);
    logging
}

impl Logging {
    /// Starts the log writer; nothing is logged through it until [`Self::install`] or
    /// [`Self::scoped`].
    pub fn start(format: LogFormat, default_filter: &str) -> Self {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(BUFFERED_LINES)
            .lossy(true)
            .thread_name("sipgw-log")
            .finish(BufWriter::with_capacity(BATCH_BYTES, std::io::stderr()));
        Self {
            writer,
            _guard: guard,
            format,
            default_filter: default_filter.to_owned(),
        }
    }

    /// Runs `f` with the log lines going out already (before the configuration, which
    /// says where traces go, is loaded: its warnings are logged).
    pub fn scoped<T>(&self, f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::registry().with(self.log_layer());
        tracing::subscriber::with_default(subscriber, f)
    }

    /// Installs the process's subscriber: the log lines, and the spans of `sipgw` into
    /// `traces` when export is on. Spans are exported at `info` and above whatever
    /// `RUST_LOG` says of the log. A subscriber installed already (tests) is kept.
    pub fn install(&self, traces: Option<&Traces>) {
        let registry = tracing_subscriber::registry().with(self.log_layer());
        let _ = match traces {
            None => registry.try_init(),
            Some(traces) => {
                let spans = Targets::new()
                    .with_target("sipgw", LevelFilter::INFO)
                    .with_default(LevelFilter::OFF);
                let bridge = tracing_opentelemetry::layer()
                    .with_tracer(traces.tracer())
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_filter(spans);
                registry.with(bridge).try_init()
            }
        };
    }

    /// The log lines' layer. The phase spans are left out (they are for traces), so a
    /// line's current span stays the request's span with its ids.
    fn log_layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(&self.default_filter))
            .add_directive(
                format!("{}=off", spans::PHASE_TARGET)
                    .parse()
                    .expect("a valid directive"),
            );
        match self.format {
            // The request's span (request id, route, caller, agent, trace id) on every line
            // logged while it is handled.
            LogFormat::Json => JsonLayer::new(self.writer.clone())
                .with_filter(filter)
                .boxed(),
            // Colours only on a terminal: piped or captured (the demo's stderr in a file,
            // journald), escape codes are noise around every field.
            LogFormat::Pretty => tracing_subscriber::fmt::layer()
                .with_writer(self.writer.clone())
                .compact()
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(filter)
                .boxed(),
        }
    }
}
