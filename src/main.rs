//! The `sipgw` binary: parses the command line and calls into the library.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sipgw::config::Config;
use sipgw::telemetry::{self, LogFormat};

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
    /// Mint a development JWT (never for production: the key is a file on disk).
    DevToken(sipgw::dev_token::DevTokenArgs),
    /// Start a vendor simulator and the gateway on loopback and change a password end to end.
    Demo {
        /// Keep serving after the scripted requests, for trying the printed curl line.
        #[arg(long)]
        keep_running: bool,
    },
}

/// Exit status for an unusable configuration (as `check-config` will use).
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve { config, log_format } => serve(&config, log_format).await,
        Command::DevToken(args) => match sipgw::dev_token::run(&args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("sipgw dev-token: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { keep_running } => {
            telemetry::init(LogFormat::Pretty, "warn");
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
    telemetry::init(log_format, "info");
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sipgw: invalid configuration: {error}");
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
    match sipgw::app::serve(&config, listener, sipgw::server::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sipgw: invalid configuration: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
