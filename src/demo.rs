//! `sipgw demo`: the whole path on loopback, with nothing outside this process.
//!
//! Starts the vendor simulator with one agent and a development JWT issuer with a fresh key,
//! starts the gateway against both (the config is `config/demo.toml`, compiled in), mints a
//! token for the agent, sends one change that succeeds and one that the password rule
//! refuses, prints both answers and a curl line with the token, then stops (or keeps
//! serving with `--keep-running`). The passwords shown are the demo's own, made up for it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sipgw_dev::dev_issuer::{DevIssuer, KeyKind};
use sipgw_dev::sim::{SimConfig, VendorSim};
use tokio::net::TcpListener;

use crate::config::Config;

/// The demo configuration, also usable by hand (see the file).
const DEMO_TOML: &str = include_str!("../config/demo.toml");
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
    let (sim, sim_addr, idp, idp_addr) = start_upstreams(out).await?;
    let token = mint_token(&idp);
    // The demo's audit trail goes to a directory of its own, shown at the end.
    let audit_dir = std::env::temp_dir().join(format!("sipgw-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&audit_dir);
    let audit_path = audit_dir.join("sipgw-audit.jsonl");
    let gateway = Running::start(sim_addr, idp_addr, &audit_path).await?;
    writeln!(out, "sipgw gateway      http://{}\n", gateway.addr)?;

    let url = format!(
        "http://{}/v1/agents/{AGENT}/sip-phone-password",
        gateway.addr
    );
    send_the_changes(out, &sim, &gateway, &url, &token).await?;
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    idp.mint(
        KeyKind::Es256,
        &serde_json::json!({
            "iss": DEMO_ISSUER, "sub": "alice", "aud": "sipgw", "preferred_username": AGENT,
            "name": "Alice Agent",
            "iat": now, "nbf": now, "exp": now + DEMO_TOKEN_LIFETIME_SECS,
        }),
    )
}

/// The gateway, serving `config/demo.toml` against the two upstreams until stopped.
struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
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
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let listeners = crate::app::Listeners {
                api: listener,
                admin: None,
            };
            let tls = crate::tls::Reloads::when_files_change();
            crate::app::serve(&config, listeners, tls, async {
                let _ = stopped.await;
            })
            .await
        });
        Ok(Self { addr, stop, task })
    }

    async fn stop(self) -> Result<(), DemoError> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| DemoError::Unexpected(format!("gateway task: {e}")))??;
        Ok(())
    }
}

/// The four requests: a change that succeeds, a weak password, another agent, a forged
/// token; each answer printed and checked.
async fn send_the_changes(
    out: &mut impl Write,
    sim: &VendorSim,
    gateway: &Running,
    url: &str,
    token: &str,
) -> Result<(), DemoError> {
    let body = format!(r#"{{"accountPwd":"{CURRENT_PASSWORD}","newPhonePwd":"{NEW_PASSWORD}"}}"#);
    let (status, answer) = post(url, token, &body).await?;
    writeln!(
        out,
        "1. as alice (self-service), change {AGENT}'s password to {NEW_PASSWORD}\n   POST {url}\n   -> {status} {answer}"
    )?;
    expect(status, StatusCode::OK, "the change was refused")?;
    let held = sim.agent_password(AGENT);
    writeln!(
        out,
        "   the vendor simulator now holds the new password: {}\n",
        if held.as_deref() == Some(NEW_PASSWORD) {
            "yes"
        } else {
            "NO"
        }
    )?;

    let weak = format!(r#"{{"accountPwd":"{NEW_PASSWORD}","newPhonePwd":"password"}}"#);
    let (status, answer) = post(url, token, &weak).await?;
    writeln!(
        out,
        "2. try the weak password \"password\"\n   -> {status} {answer}"
    )?;
    expect(
        status,
        StatusCode::BAD_REQUEST,
        "the weak password was not refused",
    )?;
    if sim.update_count() != 1 {
        return Err(DemoError::Unexpected(
            "the weak password reached the vendor".into(),
        ));
    }
    writeln!(
        out,
        "   refused by the gateway: the vendor never saw this request\n"
    )?;

    let other = format!("http://{}/v1/agents/a1002/sip-phone-password", gateway.addr);
    let (status, answer) = post(&other, token, &weak).await?;
    writeln!(
        out,
        "3. as alice, change another agent's password (a1002)\n   -> {status} {answer}\n"
    )?;
    expect(status, StatusCode::FORBIDDEN, "alice was not refused")?;
    let (status, answer) = post(url, "not-a-token", &body).await?;
    writeln!(out, "4. with a forged token\n   -> {status} {answer}\n")?;
    expect(
        status,
        StatusCode::UNAUTHORIZED,
        "a forged token was not refused",
    )
}

fn expect(status: StatusCode, wanted: StatusCode, otherwise: &str) -> Result<(), DemoError> {
    if status == wanted {
        Ok(())
    } else {
        Err(DemoError::Unexpected(format!("{otherwise}: {status}")))
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

async fn post(url: &str, token: &str, body: &str) -> Result<(StatusCode, String), DemoError> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| DemoError::Http(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| DemoError::Http(e.to_string()))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| DemoError::Http(e.to_string()))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
