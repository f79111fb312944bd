//! The `sipgw` binary: parses the command line and calls into the library.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sipgw::config::Config;
use sipgw::telemetry::{self, LogFormat};
use sipgw::terminal;
use tokio::signal::unix::{SignalKind, signal};

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

#[derive(Subcommand)]
enum AuditCommand {
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
    },
    /// Print matching records as a table (or JSON lines).
    Show {
        /// Trail files, or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only this agent (in any letter case: one account to the limits).
        #[arg(long)]
        agent: Option<String>,
        /// Only records at or after this RFC 3339 time (e.g. 2026-11-27T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only this code (ok, vendor_rejected, unauthenticated, ...).
        #[arg(long)]
        code: Option<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Exit status for an unusable configuration (as `check-config` will use).
const EXIT_CONFIG: u8 = 2;
/// Exit status of `audit verify` for a trail whose chain holds but that has discontinuity
/// records (records were lost, and a new chain began); 1 is a broken chain.
const EXIT_DISCONTINUITY: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config, log_format } => serve(&config, log_format).await,
        Command::CheckConfig { config } => {
            // Warnings about the config (deprecated keys) go to stderr, as `serve` logs
            // them; dropping the guard flushes them before the effective config is printed.
            let log = telemetry::init(LogFormat::Pretty, "warn");
            let checked = Config::check(&config);
            drop(log);
            // The file and the environment may hold any text; echoed values are escaped.
            match checked {
                Ok(effective) => print_all(
                    "sipgw check-config",
                    &terminal::escape_keeping_lines(&effective),
                    ExitCode::SUCCESS,
                ),
                Err(error) => {
                    let error = error.to_string();
                    eprintln!("sipgw: invalid configuration: {}", terminal::escape(&error));
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Audit(command) => audit(command),
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
            let _log = telemetry::init(LogFormat::Pretty, "warn");
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

async fn serve(path: &std::path::Path, log_format: LogFormat) -> ExitCode {
    let _log = telemetry::init(log_format, "info");
    // The signal handlers come first: a SIGTERM or a SIGHUP (`systemctl reload`) that
    // arrives while the config is read or the ports are bound must not take the signal's
    // default action, which ends the process.
    let shutdown = sipgw::server::shutdown_signal();
    let hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            eprintln!("sipgw: cannot install the SIGHUP handler: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            let error = error.to_string();
            eprintln!("sipgw: invalid configuration: {}", terminal::escape(&error));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "sipgw: cannot listen on {} (server.listen): {error}",
                config.server.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let admin = match tokio::net::TcpListener::bind(config.server.admin_listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "sipgw: cannot listen on {} (server.admin_listen): {error}",
                config.server.admin_listen
            );
            return ExitCode::FAILURE;
        }
    };
    // TLS is loaded here rather than inside `app` so that SIGHUP can reach it.
    let tls = match &config.server.tls {
        Some(files) => match sipgw::tls::ServerTls::load(files.clone()) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(error) => {
                eprintln!("sipgw: invalid configuration: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    tokio::spawn(sipgw::tls::reload::reload_on_hangup(tls.clone(), hangups));
    let served = match tls {
        Some(tls) => {
            sipgw::app::serve_with_tls(&config, listener, Some(admin), tls, shutdown).await
        }
        None => sipgw::app::serve_with_admin(&config, listener, Some(admin), shutdown).await,
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sipgw: invalid configuration: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn audit(command: AuditCommand) -> ExitCode {
    use sipgw::audit::{chain::MacKey, verify};
    match command {
        AuditCommand::Verify {
            files,
            key_file,
            partial,
        } => {
            let key = match key_file {
                None => MacKey::Plain,
                Some(path) => match std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| MacKey::from_file_bytes(&b))
                {
                    Ok(key) => key,
                    Err(error) => {
                        eprintln!("sipgw audit verify: --key-file {}: {error}", path.display());
                        return ExitCode::from(EXIT_CONFIG);
                    }
                },
            };
            let files = match verify::expand(&files) {
                Ok(files) if !files.is_empty() => files,
                Ok(_) => {
                    eprintln!("sipgw audit verify: no trail files found");
                    return ExitCode::from(EXIT_CONFIG);
                }
                Err(error) => {
                    let error = error.to_string();
                    eprintln!("sipgw audit verify: {}", terminal::escape(&error));
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let checked = if partial {
                verify::verify_from_any(&files, &key)
            } else {
                verify::verify(&files, &key)
            };
            // The verdict is the exit status, whether or not anyone still reads the line.
            match checked {
                // The chain holds, but records were lost before a new chain began: not OK.
                Ok(summary) if !summary.discontinuities.is_empty() => print_all(
                    "sipgw audit verify",
                    &format!("{summary}\n"),
                    ExitCode::from(EXIT_DISCONTINUITY),
                ),
                Ok(summary) => print_all(
                    "sipgw audit verify",
                    &format!("{summary}\n"),
                    ExitCode::SUCCESS,
                ),
                Err(failure) => print_all(
                    "sipgw audit verify",
                    &format!("{failure}\n"),
                    ExitCode::FAILURE,
                ),
            }
        }
        AuditCommand::Show {
            files,
            agent,
            since,
            code,
            json,
        } => {
            let filter = verify::Filter { agent, since, code };
            match verify::expand(&files).and_then(|files| verify::select(&files, &filter)) {
                Ok(records) => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    let written = records
                        .iter()
                        .try_for_each(|record| {
                            if json {
                                let line = record.to_string();
                                writeln!(out, "{}", terminal::escape_json(&line))
                            } else {
                                writeln!(out, "{}", verify::table_row(record))
                            }
                        })
                        .and_then(|()| out.flush());
                    match written {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(error) => write_failed("sipgw audit show", &error, ExitCode::SUCCESS),
                    }
                }
                Err(error) => {
                    let error = error.to_string();
                    eprintln!("sipgw audit show: {}", terminal::escape(&error));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Writes `text` to stdout and returns `status`; see [`write_failed`] for what a failed
/// write returns instead.
fn print_all(context: &str, text: &str, status: ExitCode) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => status,
        Err(error) => write_failed(context, &error, status),
    }
}

/// The exit status after writing to stdout failed. A reader that went away (`| head -1`:
/// EPIPE, since Rust ignores SIGPIPE) asked for no more: the command ends quietly with the
/// status it had anyway (`println!` would panic and exit 101). Any other failure (a full
/// disk behind a redirect) is reported and fails the command.
fn write_failed(context: &str, error: &std::io::Error, status: ExitCode) -> ExitCode {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        status
    } else {
        eprintln!("{context}: cannot write the output: {error}");
        ExitCode::FAILURE
    }
}
