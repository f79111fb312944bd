//! `sipgw demo`: the whole path on loopback, with nothing outside this process.
//!
//! Starts the vendor simulator with one agent and a development JWT issuer with a fresh key,
//! starts the gateway against both (the config is `config/demo.toml`, compiled in) with its
//! admin listener, waits for `/readyz`, mints a token for the agent, sends a change that
//! succeeds, one that the password rule refuses, one for another agent and one with a token
//! signed by a key the gateway does not trust, prints the answers, a few `/metrics` lines,
//! the audit trail and a curl line with the token, then stops (or keeps serving with
//! `--keep-running`). The passwords shown are the demo's own, made up for it.
//!
//! Stdout carries the walk-through; the gateway's own log lines go to stderr, as they would
//! for an operator (the binary sets the level).
//!
//! - `requests`: the scripted requests and what each answer shows.
//! - `operator`: the admin listener's side: `/readyz` and `/metrics`.

mod operator;
mod requests;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use sipgw_dev::dev_issuer::{DevIssuer, KeyKind};
use sipgw_dev::sim::{SimConfig, VendorSim};
use tokio::net::TcpListener;

use crate::config::Config;

/// The demo configuration (see the file).
const DEMO_TOML: &str = include_str!("../../config/demo.toml");
/// The simulator's credentials; `config/demo.toml` names the same app key.
const DEMO_APP_KEY: &str = "demo-app-key";
const DEMO_APP_SECRET: &str = "demo-app-secret";
/// The development issuer's name; `config/demo.toml` names the same.
const DEMO_ISSUER: &str = "https://sso.dev.internal/realms/demo";
/// Long enough to try the curl line by hand.
const DEMO_TOKEN_LIFETIME_SECS: u64 = 3600;
/// The demo agent and its passwords.
const AGENT: &str = "a1001";
const CURRENT_PASSWORD: &str = "Welcome~2024";
const NEW_PASSWORD: &str = "Sip~Phone2025";
const NEXT_PASSWORD: &str = "Next~Phone26";

/// Why the demo could not complete.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A loopback socket could not be bound or read.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The compiled-in demo config was refused (a bug).
    #[error("demo config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The gateway could not start.
    #[error("{0}")]
    Start(#[from] crate::app::StartError),
    /// A request to the gateway failed at the HTTP level.
    #[error("request to the gateway failed: {0}")]
    Http(String),
    /// The gateway answered differently than the demo expects.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Runs the demo, writing what happens to `out`.
pub async fn run(keep_running: bool, out: &mut impl Write) -> Result<(), DemoError> {
    writeln!(
        out,
        "The gateway's own log lines go to stderr, as an operator sees them; this walk-through\n\
         goes to stdout (`sipgw demo 2>/dev/null` shows it alone).\n"
    )?;
    let (sim, sim_addr, idp, idp_addr) = start_upstreams(out).await?;
    let token = mint_token(&idp);
    // The demo's audit trail goes to a directory of its own, shown at the end.
    let audit_dir = std::env::temp_dir().join(format!("sipgw-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&audit_dir);
    let audit_path = audit_dir.join("sipgw-audit.jsonl");
    let gateway = Running::start(sim_addr, idp_addr, &audit_path).await?;
    writeln!(out, "sipgw gateway      http://{}", gateway.addr)?;
    writeln!(
        out,
        "sipgw admin        http://{} (/healthz, /readyz, /metrics)\n",
        gateway.admin
    )?;
    operator::show_readiness(out, gateway.admin).await?;

    let url = format!(
        "http://{}/v1/agents/{AGENT}/sip-phone-password",
        gateway.addr
    );
    requests::send_the_changes(out, &sim, gateway.addr, &url, &token).await?;
    operator::show_metrics(out, gateway.admin).await?;
    show_the_trail(out, &audit_path)?;
    show_the_curl_line(out, keep_running, &url, &token)?;
    if keep_running {
        writeln!(out, "\nServing until Ctrl-C.")?;
        out.flush()?;
        crate::server::shutdown_signal().await;
    }
    gateway.stop().await
}

/// The vendor simulator (one agent) and the development issuer (a fresh ES256 key).
async fn start_upstreams(
    out: &mut impl Write,
) -> Result<(VendorSim, SocketAddr, DevIssuer, SocketAddr), DemoError> {
    let sim = VendorSim::new(SimConfig {
        app_key: DEMO_APP_KEY.into(),
        app_secret: DEMO_APP_SECRET.into(),
        agents: vec![(AGENT.into(), CURRENT_PASSWORD.into())],
        ..SimConfig::default()
    });
    let sim_addr = sim.spawn(TcpListener::bind("127.0.0.1:0").await?)?;
    writeln!(
        out,
        "vendor simulator   http://{sim_addr} (agent {AGENT}, current password {CURRENT_PASSWORD})"
    )?;
    let idp = DevIssuer::new(DEMO_ISSUER);
    let idp_addr = idp.spawn(TcpListener::bind("127.0.0.1:0").await?)?;
    writeln!(
        out,
        "development issuer http://{idp_addr}/jwks.json (a fresh ES256 key)"
    )?;
    Ok((sim, sim_addr, idp, idp_addr))
}

/// Alice is agent a1001 and may change her own password (self-service).
fn mint_token(idp: &DevIssuer) -> String {
    idp.mint(KeyKind::Es256, &alice_claims())
}

/// Alice's claims, valid for [`DEMO_TOKEN_LIFETIME_SECS`] from now.
fn alice_claims() -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({
        "iss": DEMO_ISSUER, "sub": "alice", "aud": "sipgw", "preferred_username": AGENT,
        "name": "Alice Agent",
        "iat": now, "nbf": now, "exp": now + DEMO_TOKEN_LIFETIME_SECS,
    })
}

/// The gateway, serving `config/demo.toml` against the two upstreams until stopped.
struct Running {
    /// The API listener.
    addr: SocketAddr,
    /// The admin listener: `/healthz`, `/readyz`, `/metrics`.
    admin: SocketAddr,
    /// Starts the gateway's graceful shutdown.
    stop: tokio::sync::oneshot::Sender<()>,
    /// The gateway's task: how it ended.
    task: tokio::task::JoinHandle<Result<(), crate::app::StartError>>,
}

impl Running {
    async fn start(
        sim_addr: SocketAddr,
        idp_addr: SocketAddr,
        audit_path: &Path,
    ) -> Result<Self, DemoError> {
        let figment = Figment::from(Toml::string(DEMO_TOML))
            .merge(Serialized::default(
                "vendor.base_url",
                format!("http://{sim_addr}"),
            ))
            .merge(Serialized::default(
                "auth.jwks_url",
                format!("http://{idp_addr}/jwks.json"),
            ))
            .merge(Serialized::default(
                "audit.path",
                audit_path.display().to_string(),
            ));
        let config = Config::from_figment(figment, |name| {
            (name == "SIPGW_APP_SECRET").then(|| DEMO_APP_SECRET.to_owned())
        })?;
        let api = TcpListener::bind("127.0.0.1:0").await?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        let (addr, admin_addr) = (api.local_addr()?, admin.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let listeners = crate::app::Listeners {
                api,
                admin: Some(admin),
            };
            let tls = crate::tls::Reloads::when_files_change();
            crate::app::serve(&config, listeners, tls, async {
                let _ = stopped.await;
            })
            .await
        });
        Ok(Self {
            addr,
            admin: admin_addr,
            stop,
            task,
        })
    }

    async fn stop(self) -> Result<(), DemoError> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| DemoError::Unexpected(format!("gateway task: {e}")))??;
        Ok(())
    }
}

/// The trail the four requests left, and what `sipgw audit verify` says of it.
fn show_the_trail(out: &mut impl Write, audit_path: &Path) -> Result<(), DemoError> {
    let files = vec![audit_path.to_path_buf()];
    let review = crate::audit::review::load(&files, &crate::audit::chain::MacKey::Plain, false)?;
    writeln!(out, "The audit trail ({}):", audit_path.display())?;
    for line in crate::audit::show::table(&review.rows) {
        writeln!(out, "  {line}")?;
    }
    match crate::audit::verify::verify(&files, &crate::audit::chain::MacKey::Plain) {
        Ok(summary) => writeln!(out, "  sipgw audit verify: {summary}\n")?,
        Err(failure) => {
            return Err(DemoError::Unexpected(format!(
                "the audit trail does not verify: {failure}"
            )));
        }
    }
    Ok(())
}

fn show_the_curl_line(
    out: &mut impl Write,
    keep_running: bool,
    url: &str,
    token: &str,
) -> Result<(), DemoError> {
    writeln!(
        out,
        "Try it by hand{}:",
        if keep_running {
            ""
        } else {
            " (run `sipgw demo --keep-running`)"
        }
    )?;
    writeln!(
        out,
        "  curl -i -X POST {url} -H 'Content-Type: application/json' \\\n    -H 'Authorization: Bearer {token}' \\\n    -d '{{\"accountPwd\":\"{NEW_PASSWORD}\",\"newPhonePwd\":\"{NEXT_PASSWORD}\"}}'"
    )?;
    out.flush()?;
    Ok(())
}
