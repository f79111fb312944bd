//! The `sipgw` binary killed and started again on the same audit trail (issue 11, findings
//! 2 and 5): the lockout shield is rebuilt from the trail, and a trail whose files were
//! removed is not silently started over.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sipgw_dev::sim::VendorSim;

const SIPGW: &str = env!("CARGO_BIN_EXE_sipgw");
const WRONG: &str = "Wrong~Pass77";

/// The vendor simulator and the issuer, in this process, and a config file for the binary
/// whose audit trail lives in `dir`.
struct Setup {
    sim: VendorSim,
    token: String,
    config: PathBuf,
    dir: PathBuf,
}

impl Setup {
    async fn new(name: &str) -> Self {
        let upstreams = Upstreams::start().await;
        let sections = upstreams.config_sections();
        let Upstreams { idp, sim, .. } = upstreams;
        let dir = fresh_dir(name);
        let trail = dir.join("audit").join("sipgw-audit.jsonl");
        let config = dir.join("sipgw.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n\
                 [rate_limit]\nper_agent = {{ burst = 100, per_secs = 1 }}\n\
                 [audit]\npath = {:?}\n{sections}",
                trail.display().to_string()
            ),
        )
        .unwrap();
        let token = idp.mint_for("alice", AUDIENCE, Some(AGENT), false);
        Self {
            sim,
            token,
            config,
            dir,
        }
    }

    fn trail(&self) -> PathBuf {
        self.dir.join("audit").join("sipgw-audit.jsonl")
    }

    fn command(&self) -> Command {
        let mut command = serve_command(&self.config);
        command.env("RUST_LOG", "info");
        command
    }

    /// Starts the binary and waits for its listening line.
    fn start(&self, extra_env: &[(&str, &str)]) -> Gateway {
        let mut command = self.command();
        command.envs(extra_env.iter().copied());
        let mut child = command.spawn().unwrap();
        let (lines, log, addr) = listening(&mut child, Duration::from_secs(30));
        Gateway {
            child,
            addr,
            log,
            _lines: lines,
        }
    }

    /// Starts the binary expecting it to refuse: its exit status and log. Should it serve
    /// instead, it is killed after its listening line (and the test fails on the status).
    fn refused(&self) -> (Option<i32>, String) {
        let mut child = self.command().spawn().unwrap();
        let lines = stderr_lines(&mut child);
        let mut log = Vec::new();
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
            let listening = line.contains("\"sipgw listening\"");
            log.push(line);
            if listening {
                let _ = child.kill();
                break;
            }
        }
        (child.wait().unwrap().code(), log.join("\n"))
    }

    /// A change of `AGENT`'s password with `current`.
    async fn change(&self, gateway: &Gateway, current: &str) -> (u16, serde_json::Value) {
        change(&gateway.addr, &self.token, current).await
    }
}

/// A running `sipgw serve`.
struct Gateway {
    child: Child,
    addr: String,
    /// Its log up to the listening line.
    log: Vec<String>,
    /// Keeps the log reader's channel open, so the child never blocks on stderr.
    _lines: Receiver<String>,
}

/// SIGKILL: no shutdown, no flush (and no process left behind by a failing test).
impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn terminate(mut self) {
        send_signal(&self.child, "TERM");
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
    }

    /// The start-up log line with this message, as JSON.
    fn logged(&self, message: &str) -> Option<serde_json::Value> {
        self.log
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|j| j["message"] == message)
    }
}

async fn change(addr: &str, token: &str, current: &str) -> (u16, serde_json::Value) {
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = change_body(current, NEW);
    let request = http::Request::post(format!("http://{addr}{}", Harness::endpoint(AGENT)))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rejections_a_kill_and_a_restart_the_third_never_reaches_the_vendor() {
    let setup = Setup::new("restart-lockout").await;
    let gateway = setup.start(&[]);
    for _ in 0..2 {
        let (status, body) = setup.change(&gateway, WRONG).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("vendor_rejected"))
        );
    }
    drop(gateway);

    let gateway = setup.start(&[]);
    let (status, body) = setup.change(&gateway, WRONG).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("lockout_protection")),
        "{body}"
    );
    assert_eq!(setup.sim.update_count(), 2, "the vendor saw no third call");
    assert!(!setup.sim.is_locked(AGENT));
    let rebuilt = gateway
        .logged("lockout shield rebuilt from the audit trail")
        .expect("the rebuild is logged");
    assert_eq!(
        (rebuilt["agents"].as_u64(), rebuilt["blocked"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_off_by_a_kill_counts_after_the_restart() {
    let setup = Setup::new("restart-orphan").await;
    let gateway = setup.start(&[]);
    let (status, _) = setup.change(&gateway, WRONG).await;
    assert_eq!(status, 422);
    // The vendor holds the second call; the gateway dies before any answer: its attempt
    // record has no outcome, and the vendor may well have counted a wrong password.
    setup
        .sim
        .faults()
        .set_update_delay(Some(Duration::from_secs(600)));
    let (addr, token) = (gateway.addr.clone(), setup.token.clone());
    let in_flight = tokio::spawn(async move { change(&addr, &token, WRONG).await });
    for _ in 0..600 {
        if setup.sim.update_count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        setup.sim.update_count(),
        2,
        "the second call reached the vendor"
    );
    drop(gateway);
    in_flight.abort();
    let trail = lines(&setup.trail());
    let last = trail.last().unwrap();
    assert_eq!(
        last["kind"], "attempt",
        "the trail ends with the orphan attempt"
    );
    setup.sim.faults().set_update_delay(None);

    let gateway = setup.start(&[]);
    let (status, body) = setup.change(&gateway, WRONG).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("lockout_protection")),
        "{body}"
    );
    assert_eq!(setup.sim.update_count(), 2);
    let rebuilt = gateway
        .logged("lockout shield rebuilt from the audit trail")
        .unwrap();
    assert_eq!(rebuilt["orphans"].as_u64(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_removed_while_stopped_is_refused_unless_a_new_chain_is_allowed() {
    let setup = Setup::new("restart-removed").await;
    let gateway = setup.start(&[]);
    let (status, _) = setup.change(&gateway, WRONG).await;
    assert_eq!(status, 422);
    gateway.terminate();
    let before = lines(&setup.trail());
    let last_mac = before.last().unwrap()["mac"].as_str().unwrap().to_owned();
    std::fs::remove_file(setup.trail()).unwrap();

    let (code, stderr) = setup.refused();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("audit.path"), "{stderr}");
    assert!(stderr.contains("audit.allow_new_chain"), "{stderr}");
    assert!(stderr.contains("(missing)"), "{stderr}");

    let gateway = setup.start(&[("SIPGW__AUDIT__ALLOW_NEW_CHAIN", "true")]);
    // The lost records may have held rejections: the shield refuses rather than forgets,
    // for one cool-down, and the vendor is not called.
    let (status, body) = setup.change(&gateway, CURRENT).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("lockout_state_unavailable")),
        "{body}"
    );
    assert_eq!(setup.sim.update_count(), 1);
    assert!(
        gateway
            .logged(
                "lockout shield: the audit trail lost records (a new chain was allowed), so \
                 counts may be missing; every change is refused (lockout_state_unavailable) \
                 for one cool-down"
            )
            .is_some()
    );
    gateway.terminate();
    let after = lines(&setup.trail());
    let first = &after[0];
    assert_eq!(first["kind"], "discontinuity");
    assert_eq!(first["detected"], "missing");
    assert_eq!(first["lastSeq"].as_u64(), Some(before.len() as u64));
    assert_eq!(first["prev"], last_mac.as_str());

    let verified = Command::new(SIPGW)
        .args(["audit", "verify"])
        .arg(setup.dir.join("audit"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(verified.status.code(), Some(3), "{stdout}");
    assert!(stdout.starts_with("DISCONTINUITY: "), "{stdout}");
    assert!(stdout.contains("found missing"), "{stdout}");
}

/// The admin listener is up before the lockout counts are read back (and the API listener
/// only after), so that a long trail cannot get the process killed by its liveness probe
/// before it serves; `tests/admin.rs` checks what `/readyz` says meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_starts_before_the_lockout_counts_are_rebuilt() {
    let setup = Setup::new("restart-rebuilding").await;
    let gateway = setup.start(&[]);
    let (status, _) = setup.change(&gateway, WRONG).await;
    assert_eq!(status, 422);
    gateway.terminate();

    let gateway = setup.start(&[]);
    let position = |message: &str| {
        gateway
            .log
            .iter()
            .position(|l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|j| j["message"] == message)
            })
            .unwrap_or_else(|| panic!("no {message:?} in {:?}", gateway.log))
    };
    let admin = position("admin listening");
    let rebuilt = position("lockout shield rebuilt from the audit trail");
    let api = position("sipgw listening");
    assert!(admin < rebuilt && rebuilt < api, "{:?}", gateway.log);
    let (status, _) = setup.change(&gateway, WRONG).await;
    assert_eq!(status, 422, "the second rejection reaches the vendor");
    let (status, body) = setup.change(&gateway, WRONG).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("lockout_protection")),
        "{body}"
    );
}
