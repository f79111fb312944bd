//! Test harness: a vendor simulator and a gateway, each on its own `127.0.0.1:0` socket,
//! plus a plain HTTP client. Every test gets its own pair, so tests run in parallel.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod binaries;
pub mod redis_server;
pub mod tls_front;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sipgw::config::{Config, FileConfig};
use sipgw::limits::config::QuotaSection;
use sipgw_dev::dev_issuer::DevIssuer;
use sipgw_dev::sim::{SimConfig, VendorSim};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const APP_KEY: &str = "test-app-key";
pub const APP_SECRET: &str = "test-app-secret-9f3c";
pub const AGENT: &str = "a1001";
pub const CURRENT: &str = "Welcome~2024";
pub const NEW: &str = "Sip~Phone2025";
pub const ISSUER: &str = "https://sso.test.internal/realms/corp";
pub const AUDIENCE: &str = "sipgw";
pub const ADMIN_SCOPE: &str = "sipgw.admin";
pub const ADMIN_ROLE: &str = "cc-admin";

/// A development issuer and the default vendor simulator, each on its own loopback socket:
/// what a `sipgw serve` process started by a test talks to.
pub struct Upstreams {
    pub idp: DevIssuer,
    pub idp_addr: SocketAddr,
    pub sim: VendorSim,
    pub sim_addr: SocketAddr,
}

impl Upstreams {
    pub async fn start() -> Self {
        let idp = DevIssuer::new(ISSUER);
        let idp_addr = idp
            .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .unwrap();
        let sim = VendorSim::new(sim_config());
        let sim_addr = sim
            .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .unwrap();
        Self {
            idp,
            idp_addr,
            sim,
            sim_addr,
        }
    }

    /// [`upstream_sections`] for these two.
    pub fn config_sections(&self) -> String {
        upstream_sections(self.idp_addr, self.sim_addr)
    }
}

/// The `[auth]` and `[vendor]` sections of a `sipgw serve` config file that trusts the
/// issuer on `idp_addr` and calls the simulator on `sim_addr` (the app secret comes from
/// `SIPGW_APP_SECRET`).
pub fn upstream_sections(idp_addr: SocketAddr, sim_addr: SocketAddr) -> String {
    format!(
        "[auth]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\n\
         jwks_url = \"http://{idp_addr}/jwks.json\"\nallow_insecure_http = true\n\
         [vendor]\nbase_url = \"http://{sim_addr}\"\napp_key = \"{APP_KEY}\"\nallow_insecure_http = true\n"
    )
}

/// A running gateway in front of a running simulator, with a development JWT issuer.
pub struct Harness {
    pub sim: VendorSim,
    pub sim_addr: SocketAddr,
    /// The issuer whose JWKS the gateway trusts; tests mint tokens with it.
    pub idp: DevIssuer,
    pub idp_addr: SocketAddr,
    /// An admin token (scope sipgw.admin) sent by `change` and `send`.
    pub admin_token: String,
    pub addr: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`).
    pub admin_addr: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What a test reads back from the gateway.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
    /// The `Retry-After` header, in seconds.
    pub fn retry_after(&self) -> u64 {
        self.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// The most attempts a back-off that starts at 0.25-0.5 s and doubles (the token cache's)
/// can allow within `elapsed`, the first attempt included. It assumes the shortest delay
/// every time, so a slow machine can only stay below it.
pub fn max_tries_within(elapsed: Duration) -> u64 {
    let (mut tries, mut waited, mut delay) = (1, Duration::ZERO, Duration::from_millis(250));
    loop {
        waited += delay;
        if waited > elapsed {
            return tries;
        }
        tries += 1;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// A new, empty directory under the system's temp dir, unique to this process and call.
pub fn fresh_dir(name: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sipgw-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Seconds since the Unix epoch, for token claims.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims every accepted token carries, for `sub`: issuer, audience, a 300 s lifetime
/// from now, and a fresh `jti`, so that no test is answered from another's verified-token
/// cache entry. Tests add what their caller is (`scope`, the agent claim).
pub fn token_claims(sub: &str) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// The JSON body of a password change.
pub fn change_body(current: &str, new: &str) -> String {
    serde_json::json!({ "accountPwd": current, "newPhonePwd": new }).to_string()
}

/// The default simulator: the test credentials and a handful of agents.
pub fn sim_config() -> SimConfig {
    let mut agents = vec![(AGENT.to_owned(), CURRENT.to_owned())];
    agents.extend((0..60).map(|i| (format!("agent{i}"), CURRENT.to_owned())));
    SimConfig {
        app_key: APP_KEY.into(),
        app_secret: APP_SECRET.into(),
        agents,
        ..SimConfig::default()
    }
}

/// The gateway's config, pointed at `sim_addr` and at the issuer on `idp_addr`.
pub fn file_config(sim_addr: SocketAddr, idp_addr: SocketAddr) -> FileConfig {
    let mut file = FileConfig::default();
    file.auth.issuer = Some(ISSUER.into());
    file.auth.audiences = vec![AUDIENCE.into()];
    file.auth.jwks_url = Some(format!("http://{idp_addr}/jwks.json"));
    file.auth.allow_insecure_http = true;
    file.auth.admin_scopes = vec![ADMIN_SCOPE.into()];
    file.auth.admin_roles = vec![ADMIN_ROLE.into()];
    file.auth.roles_claim = "realm_access.roles".into();
    // Limits that never bind unless a test sets its own: most tests are about other things.
    file.rate_limit.per_agent = QuotaSection {
        burst: 10_000,
        per_secs: 1,
    };
    file.rate_limit.per_caller = QuotaSection {
        burst: 10_000,
        per_secs: 1,
    };
    file.lockout.max_consecutive_failures = 100;
    // Each gateway writes its own audit trail in a fresh directory.
    file.audit.path = fresh_dir("audit")
        .join("sipgw-audit.jsonl")
        .display()
        .to_string();
    // No checkpoint records: tests count a trail's records exactly, whenever they read it
    // (tests/audit_anchors.rs and the serve tests see them with the defaults).
    file.audit.checkpoint_every = 0;
    file.audit.checkpoint_interval_secs = 0;
    file.vendor.base_url = Some(format!("http://{sim_addr}"));
    file.vendor.app_key = Some(APP_KEY.into());
    file.vendor.allow_insecure_http = true;
    // Generous: tests that are about timeouts set their own.
    file.vendor.timeout_ms = 10_000;
    file.server.shutdown_grace_secs = 10;
    file
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(sim_config(), |_| {}).await
    }

    /// Starts a simulator from `sim`, then a gateway whose config `tweak` may change.
    pub async fn start_with(sim: SimConfig, tweak: impl FnOnce(&mut FileConfig)) -> Self {
        let sim = VendorSim::new(sim);
        let sim_addr = sim
            .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .unwrap();
        Self::start_gateway(sim, sim_addr, tweak).await
    }

    /// Starts an issuer and a gateway in front of an already running simulator.
    pub async fn start_gateway(
        sim: VendorSim,
        sim_addr: SocketAddr,
        tweak: impl FnOnce(&mut FileConfig),
    ) -> Self {
        let idp = DevIssuer::new(ISSUER);
        let idp_addr = idp
            .spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .unwrap();
        Self::start_gateway_trusting(sim, sim_addr, idp, idp_addr, tweak).await
    }

    /// Starts a gateway in front of a running simulator that trusts an already running
    /// issuer: a second replica of another harness's gateway (same vendor, same callers).
    pub async fn start_gateway_trusting(
        sim: VendorSim,
        sim_addr: SocketAddr,
        idp: DevIssuer,
        idp_addr: SocketAddr,
        tweak: impl FnOnce(&mut FileConfig),
    ) -> Self {
        let admin_token = idp.mint_for("ops-robot", AUDIENCE, None, true);
        let mut file = file_config(sim_addr, idp_addr);
        tweak(&mut file);
        let config = Config::from_file(file, |name| {
            (name == "SIPGW_APP_SECRET").then(|| APP_SECRET.to_owned())
        })
        .expect("test config is valid");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let listeners = sipgw::app::Listeners {
                api: listener,
                admin: Some(admin),
            };
            let tls = sipgw::tls::Reloads::when_files_change();
            sipgw::app::serve(&config, listeners, tls, async {
                let _ = stopped.await;
            })
            .await
            .expect("gateway runs");
        });
        Self {
            sim,
            sim_addr,
            idp,
            idp_addr,
            admin_token,
            addr,
            admin_addr,
            stop: Some(stop),
            task: Some(task),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn endpoint(account: &str) -> String {
        format!("/v1/agents/{account}/sip-phone-password")
    }

    /// Sends any request as the admin caller; `headers` are added as given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let bearer = format!("Bearer {}", self.admin_token);
        let mut with_auth = vec![("authorization", bearer.as_str())];
        with_auth.extend_from_slice(headers);
        self.send_raw(method, path, &with_auth, body).await
    }

    /// Sends any request with exactly `headers` (no `Authorization` unless given).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut builder = Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = self
            .client
            .request(builder.body(Full::new(body.into())).unwrap())
            .await
            .expect("the gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A well-formed change request by the admin caller.
    pub async fn change(&self, account: &str, current: &str, new: &str) -> Answer {
        let token = self.admin_token.clone();
        self.change_as(&token, account, current, new).await
    }

    /// A well-formed change request with `token` as the bearer token.
    pub async fn change_as(&self, token: &str, account: &str, current: &str, new: &str) -> Answer {
        let bearer = format!("Bearer {token}");
        self.send_raw(
            Method::POST,
            &Self::endpoint(account),
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
            ],
            change_body(current, new),
        )
        .await
    }

    /// A change by the admin caller with an `Idempotency-Key`.
    pub async fn change_with_key(
        &self,
        account: &str,
        key: &str,
        current: &str,
        new: &str,
    ) -> Answer {
        self.send(
            Method::POST,
            &Self::endpoint(account),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", key),
            ],
            change_body(current, new),
        )
        .await
    }

    /// A second gateway (replica) in front of this harness's simulator, trusting its issuer.
    pub async fn replica(&self, tweak: impl FnOnce(&mut FileConfig)) -> Self {
        Self::start_gateway_trusting(
            self.sim.clone(),
            self.sim_addr,
            self.idp.clone(),
            self.idp_addr,
            tweak,
        )
        .await
    }

    /// Triggers graceful shutdown and waits for the gateway to finish.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the gateway stops within its grace period")
                .expect("the gateway task ends cleanly");
        }
    }
}

/// Sends `signal` (`"TERM"`, `"HUP"`) to `child` with kill(1), as an operator would.
pub fn send_signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {}", child.id());
}

/// The lines `child` writes to stderr, as they come (a thread reads them). The child must
/// have been spawned with `stderr(Stdio::piped())`.
pub fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    lines_rx
}

/// `sipgw serve --config CONFIG` as the tests run the binary: the app secret in the
/// environment, stderr piped (the JSON log, for [`listening`]), stdout discarded. Callers
/// add their own environment, or take stdout (the audit records with `audit.stdout`).
pub fn serve_command(config: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sipgw"));
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("SIPGW_APP_SECRET", APP_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command
}

/// A plain-HTTP client for a gateway started as a process.
pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A `sipgw serve` child's stderr (see [`stderr_lines`]) read up to its listening line: the
/// lines still to come, the log read so far, and the address it listens on.
pub fn listening(
    child: &mut std::process::Child,
    patience: Duration,
) -> (std::sync::mpsc::Receiver<String>, Vec<String>, String) {
    let lines = stderr_lines(child);
    let mut log = Vec::new();
    let addr = wait_for_listening(&lines, &mut log, patience)["addr"]
        .as_str()
        .unwrap()
        .to_owned();
    (lines, log, addr)
}

/// Reads JSON log lines of `sipgw serve` into `log` until "sipgw listening", and returns
/// that line (it carries the address); panics after `patience` without it.
pub fn wait_for_listening(
    lines: &std::sync::mpsc::Receiver<String>,
    log: &mut Vec<String>,
    patience: Duration,
) -> serde_json::Value {
    loop {
        let line = lines
            .recv_timeout(patience)
            .unwrap_or_else(|_| panic!("sipgw logs its address; log: {log:?}"));
        log.push(line.clone());
        let json: serde_json::Value = serde_json::from_str(&line).expect("logs are JSON lines");
        if json["message"] == "sipgw listening" {
            return json;
        }
    }
}
