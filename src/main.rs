//! The `sipgw` binary: parses the command line, sets up logging and dispatches to the
//! library. The exit status is the contract: see [`sipgw::app::StartError::exit_status`]
//! for `serve`, [`sipgw::audit::cli`] for `audit`.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sipgw::app::{self, EXIT_CONFIG, EXIT_FAILURE, Listeners, StartError};
use sipgw::audit::cli::AuditCommand;
use sipgw::config::Config;
use sipgw::telemetry::{self, LogFormat, Traces};
use sipgw::terminal::{self, print_all};
use sipgw::tls::Reloads;

/// Authenticating gateway for SIP phone password changes.
#[derive(Parser)]
#[command(name = "sipgw", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// TOML configuration file.
        #[arg(long, env = "SIPGW_CONFIG")]
        config: PathBuf,
        /// Log line format on stderr.
        #[arg(long, value_enum, default_value = "json")]
        log_format: LogFormat,
    },
    /// Validate a configuration as `serve` would and print it (secrets redacted).
    CheckConfig {
        /// TOML configuration file.
        #[arg(long, env = "SIPGW_CONFIG")]
        config: PathBuf,
        /// Also reach what the config names (IdP, vendor, Redis, the audit trail, the
        /// listen addresses): one `ok`/`FAIL` line each instead of the config; exit 1 when
        /// one fails.
        #[arg(long)]
        probe: bool,
    },
    /// Check or read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Mint a development JWT (never for production: the key is a file on disk).
    #[cfg(feature = "dev")]
    DevToken(sipgw_dev::dev_token::DevTokenArgs),
    /// Start a vendor simulator and the gateway on loopback and change a password end to end.
    #[cfg(feature = "dev")]
    Demo {
        /// Keep serving after the scripted requests, for trying the printed curl line.
        #[arg(long)]
        keep_running: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config, log_format } => {
            let log = telemetry::Logging::start(log_format, "info");
            match serve(&config, &log).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    // Config values and paths may hold any text: escaped for the terminal.
                    eprintln!("sipgw: {}", terminal::escape(&error.to_string()));
                    ExitCode::from(error.exit_status())
                }
            }
        }
        Command::CheckConfig { config, probe } => check_config(&config, probe).await,
        Command::Audit(command) => sipgw::audit::cli::run(command),
        #[cfg(feature = "dev")]
        Command::DevToken(args) => match sipgw_dev::dev_token::run(&args) {
            Ok(token) => print_all("sipgw dev-token", &format!("{token}\n"), ExitCode::SUCCESS),
            Err(error) => {
                eprintln!("sipgw dev-token: {error}");
                ExitCode::FAILURE
            }
        },
        #[cfg(feature = "dev")]
        Command::Demo { keep_running } => {
            // The gateway's log lines as an operator sees them, on stderr; the walk-through
            // keeps stdout.
            let _log = telemetry::init(LogFormat::Pretty, "info");
            match sipgw::demo::run(keep_running, &mut std::io::stdout()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("sipgw demo failed: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `sipgw serve`. The signal handlers come first: a SIGTERM or a SIGHUP (`systemctl
/// reload`) that arrives while the config is read or the ports are bound must not take the
/// signal's default action, which ends the process. Logging is installed once the config
/// says where traces go (its warnings are logged while it loads); queued spans are
/// exported before the process ends.
async fn serve(path: &Path, log: &telemetry::Logging) -> Result<(), StartError> {
    let shutdown = sipgw::server::shutdown_signal();
    let reloads = Reloads::when_files_change()
        .on_hangup()
        .map_err(|cause| StartError::Signal {
            signal: "SIGHUP",
            cause,
        })?;
    let config = log.scoped(|| Config::load(path))?;
    let traces = Traces::start(&config.telemetry, &config.audit.instance)
        .map_err(|e| StartError::Config(e.into()))?;
    log.install(traces.as_ref());
    let served = async {
        let listeners = Listeners::bind(&config).await?;
        app::serve(&config, listeners, reloads, shutdown).await
    }
    .await;
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    served
}

/// `sipgw check-config`: the config validated and the start-up checks that need no network
/// made, as `serve` makes them; then the effective config on stdout, or with `--probe` the
/// live checks. Exit status 2 for an invalid or unusable config (naming the key), 1 when a
/// live check failed, 0 otherwise.
async fn check_config(path: &Path, probe: bool) -> ExitCode {
    // Warnings about the config (deprecated keys) go to stderr, as `serve` logs them;
    // dropping the guard flushes them before the effective config is printed.
    let log = telemetry::init(LogFormat::Pretty, "warn");
    let checked = Config::check(path);
    drop(log);
    // The file and the environment may hold any text; echoed values are escaped.
    let checked = match checked {
        Ok(checked) => checked,
        Err(error) => {
            let error = error.to_string();
            eprintln!("sipgw: invalid configuration: {}", terminal::escape(&error));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(error) = app::preflight::check(&checked.config) {
        eprintln!("sipgw: {}", terminal::escape(&error.to_string()));
        return ExitCode::from(error.exit_status());
    }
    // Allowed, but weaker than it looks: said on stderr; the status stays 0.
    for warning in &checked.warnings {
        eprintln!("warning: {warning}");
    }
    if !probe {
        return print_all(
            "sipgw check-config",
            &terminal::escape_keeping_lines(&checked.effective),
            ExitCode::SUCCESS,
        );
    }
    let lines = app::probe::run(&checked.config).await;
    let status = if lines.iter().all(app::probe::Line::ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    };
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    print_all(
        "sipgw check-config",
        &terminal::escape_keeping_lines(&text),
        status,
    )
}
