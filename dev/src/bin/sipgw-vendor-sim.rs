//! `sipgw-vendor-sim`: the vendor simulator as a standalone server, for the demo and
//! benchmarks. Parses the command line, binds, and hands over to `sipgw_dev::sim`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sipgw_dev::sim::{DEFAULT_APP_KEY, DEFAULT_APP_SECRET, DEFAULT_MAX_TOKEN_TTL_SECS};
use sipgw_dev::sim::{SimConfig, VendorSim};
use tracing_subscriber::EnvFilter;

/// Environment variable that may hold the app secret. The secret is never a flag value,
/// since flag values show up in `ps` and shell history.
const APP_SECRET_ENV: &str = "SIM_APP_SECRET";

/// Simulates the vendor's tokenByAkSk and updateSipPhonePassword calls over plain HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// The app key (AK) the simulated tenant accepts.
    #[arg(long, default_value = DEFAULT_APP_KEY)]
    app_key: String,
    /// File holding the app secret (SK); otherwise $SIM_APP_SECRET, otherwise the demo secret.
    #[arg(long, value_name = "PATH")]
    app_secret_file: Option<PathBuf>,
    /// An agent and its current password; repeatable. Visible in `ps`: for demos only.
    #[arg(long = "agent", value_name = "ACCOUNT=PASSWORD", value_parser = parse_agent)]
    agents: Vec<(String, String)>,
    /// JSON file of agents: {"account": "password", ...}.
    #[arg(long, value_name = "PATH")]
    agents_file: Option<PathBuf>,
    /// Largest X-Token-Expire accepted, in seconds.
    #[arg(long, default_value_t = DEFAULT_MAX_TOKEN_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_token_ttl_secs: u64,
    /// Do not record update requests (benchmark mode).
    #[arg(long)]
    fast: bool,
    /// Answer every well-formed, authorised change with success and store nothing, so the
    /// same change can be repeated (benchmark mode; no password check, no lockout).
    #[arg(long)]
    always_succeed: bool,
    /// Delay every update call by this many milliseconds.
    #[arg(long, value_name = "MS")]
    update_delay_ms: Option<u64>,
    /// Answer every update call with this HTTP status.
    #[arg(long, value_name = "STATUS", value_parser = clap::value_parser!(u16).range(100..=599))]
    update_status: Option<u16>,
    /// Answer every token call with this HTTP status.
    #[arg(long, value_name = "STATUS", value_parser = clap::value_parser!(u16).range(100..=599))]
    token_status: Option<u16>,
}

/// Splits `ACCOUNT=PASSWORD` at the first `=`, so a password may itself contain `=` (an
/// agent's current password need not follow the vendor's rule for new ones).
fn parse_agent(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((account, password)) if !account.is_empty() => {
            Ok((account.to_owned(), password.to_owned()))
        }
        _ => Err("expected ACCOUNT=PASSWORD with a non-empty ACCOUNT".to_owned()),
    }
}

/// The app secret from the file, else the environment, else the demo secret.
fn load_app_secret(file: Option<&Path>) -> Result<String, String> {
    let from_env = std::env::var(APP_SECRET_ENV).ok();
    let secret = match (file, from_env) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "give the app secret by --app-secret-file or ${APP_SECRET_ENV}, not both"
            ));
        }
        (Some(path), None) => std::fs::read_to_string(path)
            .map_err(|e| format!("--app-secret-file {}: {e}", path.display()))?
            // Editors and `echo` add a final newline that is not part of the secret.
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        (None, Some(secret)) => secret,
        (None, None) => DEFAULT_APP_SECRET.to_owned(),
    };
    if secret.is_empty() {
        return Err("the app secret is empty".to_owned());
    }
    Ok(secret)
}

/// Agents from `--agents-file`; sorted by account so start-up is deterministic.
fn load_agents_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--agents-file {}: {e}", path.display()))?;
    // Only the position of a parse error is reported: serde's message can quote a value,
    // and the values are passwords.
    let agents: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "--agents-file {}: expected a JSON object of account to password strings \
             (error at line {} column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    Ok(agents.into_iter().collect())
}

/// Turns the command line into a simulator configuration. Command-line agents come after
/// the file's, so `--agent` overrides an account the file also names.
fn build_config(cli: &Cli) -> Result<SimConfig, String> {
    let mut agents = match &cli.agents_file {
        Some(path) => load_agents_file(path)?,
        None => Vec::new(),
    };
    agents.extend(cli.agents.iter().cloned());
    Ok(SimConfig {
        app_key: cli.app_key.clone(),
        app_secret: load_app_secret(cli.app_secret_file.as_deref())?,
        agents,
        max_token_ttl_secs: cli.max_token_ttl_secs,
        record_requests: !cli.fast,
        always_succeed: cli.always_succeed,
        ..SimConfig::default()
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr: stdout carries only the "listening" line scripts wait for.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = match build_config(&cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("sipgw-vendor-sim: {message}");
            return ExitCode::from(2);
        }
    };
    let agent_count = config.agents.len();
    let sim = VendorSim::new(config);
    let faults = sim.faults();
    faults.set_update_delay(cli.update_delay_ms.map(Duration::from_millis));
    faults.set_update_status(cli.update_status);
    faults.set_token_status(cli.token_status);

    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("sipgw-vendor-sim: cannot listen on {}: {error}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => {
            eprintln!("sipgw-vendor-sim: cannot read the bound address: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("sipgw-vendor-sim listening on http://{addr}");
    tracing::info!(%addr, agents = agent_count, fast = cli.fast, "vendor simulator started");

    match sim
        .serve(listener, sipgw_dev::serve::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sipgw-vendor-sim: {error}");
            ExitCode::FAILURE
        }
    }
}
