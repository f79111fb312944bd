//! Slow clients against both listeners (issue 11, finding 4), attacked with the real tool:
//! `slowhttptest` (Debian package) in slowloris mode (`-H`) against the API port and the
//! admin port, and in slow-body mode (`-B`) against the endpoint. While each attack runs,
//! the test sends password changes and `/healthz` probes, each on a new connection as a
//! client or a kubelet would, and asserts that every one is answered within
//! [`ANSWER_WITHIN`], and that the gateway is still up afterwards.
//!
//! The bound is a liveness bound, not a performance figure: it is far above what an answer
//! takes on an idle machine. The attacks are bounded (connections, rate, length) and aimed
//! at `127.0.0.1` only; they run one at a time. The figures (answered, worst latency) are
//! printed, for docs/operating.md.
//!
//! `.ci/run` installs slowhttptest and sets `SIPGW_REQUIRE_LOAD_TOOLS=1`, which turns a
//! missing binary into a failure; elsewhere the tests are skipped without it.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

/// Every legitimate request and probe must be answered within this, attack or not.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How often the test starts a legitimate request and a probe while an attack runs.
const PACE: Duration = Duration::from_millis(200);
/// Seconds each attack lasts (`slowhttptest -l`).
const ATTACK_SECS: u32 = 10;

/// The attacks run one at a time: together they would measure each other.
static ONE_ATTACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `slowhttptest` binary, or `None` (the test is skipped) when it is not installed and
/// `SIPGW_REQUIRE_LOAD_TOOLS` is not set.
fn slowhttptest() -> Option<PathBuf> {
    let found = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| PathBuf::from(dir).join("slowhttptest"))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("SIPGW_REQUIRE_LOAD_TOOLS").is_none(),
            "SIPGW_REQUIRE_LOAD_TOOLS is set but slowhttptest is not installed"
        );
        eprintln!("skipped: slowhttptest not installed (set SIPGW_REQUIRE_LOAD_TOOLS=1 to fail)");
    }
    found
}

/// What `slowhttptest` sends.
#[derive(Clone, Copy, Debug)]
enum Attack {
    /// `-H`: request heads that never end, a header line every second.
    Slowloris,
    /// `-B`: a complete JSON POST head, then its body a few bytes a second.
    SlowBody,
}

/// Which of the gateway's listeners is attacked.
#[derive(Clone, Copy, Debug)]
enum Port {
    /// The API listener, at the endpoint.
    Api,
    /// The admin listener, at `/healthz`.
    Admin,
}

impl Port {
    /// Its `listener` label in the metrics.
    fn label(self) -> &'static str {
        match self {
            Port::Api => "api",
            Port::Admin => "admin",
        }
    }
}

/// A running `slowhttptest`, killed on drop.
struct Attacker(Child);

impl Attacker {
    /// Starts `attack` on `url`: `connections` in all, `rate` new ones a second.
    fn start(binary: &PathBuf, attack: Attack, url: &str, connections: u32, rate: u32) -> Self {
        // Through a shell that raises the open-file limit first (within the hard limit): a
        // common soft limit of 1024 would cap the attack below the gateway's cap.
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(r#"ulimit -n 8192 2>/dev/null; exec "$0" "$@""#)
            .arg(binary);
        match attack {
            Attack::Slowloris => command.arg("-H"),
            Attack::SlowBody => command.args(["-B", "-t", "POST", "-f", "application/json"]),
        };
        let child = command
            .args(["-c", &connections.to_string()])
            .args(["-r", &rate.to_string()])
            .args(["-l", &ATTACK_SECS.to_string()])
            // A follow-up line (or body chunk) every second, of up to 8 bytes.
            .args(["-i", "1", "-x", "8", "-s", "4000"])
            .args(["-u", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slowhttptest starts");
        Self(child)
    }

    fn finished(&mut self) -> bool {
        self.0
            .try_wait()
            .expect("slowhttptest can be waited for")
            .is_some()
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One request on a new connection from `from` to `to`: the status and body, or why there
/// was none within [`ANSWER_WITHIN`].
async fn exchange(
    from: IpAddr,
    to: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    let attempt = async {
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(from, 0))
            .map_err(|e| e.to_string())?;
        let stream = socket
            .connect(to)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(ANSWER_WITHIN, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {ANSWER_WITHIN:?}")))
}

/// The `i`-th legitimate change: agents in turn, each changed back and forth.
fn change_request(h: &Harness, i: usize) -> Request<Full<Bytes>> {
    let agent = format!("agent{}", i % 60);
    let (current, new) = if (i / 60).is_multiple_of(2) {
        (CURRENT, NEW)
    } else {
        (NEW, CURRENT)
    };
    let body = serde_json::json!({ "accountPwd": current, "newPhonePwd": new }).to_string();
    Request::post(h.url(&Harness::endpoint(&agent)))
        .header("host", h.addr.to_string())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", h.admin_token))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn healthz_request(h: &Harness) -> Request<Full<Bytes>> {
    Request::get(format!("http://{}/healthz", h.admin_addr))
        .header("host", h.admin_addr.to_string())
        .body(Full::default())
        .unwrap()
}

/// How the legitimate traffic of one kind fared during an attack.
#[derive(Default)]
struct Tally {
    /// Requests sent.
    sent: usize,
    /// Failures: a wrong status, no answer, or no answer in time.
    failures: Vec<String>,
    /// The slowest answer.
    worst: Duration,
}

impl Tally {
    fn record(&mut self, result: Result<(StatusCode, Bytes), String>, took: Duration) {
        self.sent += 1;
        self.worst = self.worst.max(took);
        match result {
            Ok((StatusCode::OK, _)) => {}
            Ok((status, _)) => self.failures.push(format!("status {status}")),
            Err(why) => self.failures.push(why),
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} of {} answered in time, worst {} ms",
            self.sent - self.failures.len(),
            self.sent,
            self.worst.as_millis()
        )
    }
}

/// Connections the gateway shed on `port`'s listener so far, at any cap: proof that the
/// attack reached one.
async fn shed_on(h: &Harness, port: Port) -> f64 {
    let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let request = Request::get(format!("http://{}/metrics", h.admin_addr))
        .header("host", h.admin_addr.to_string())
        .body(Full::default())
        .unwrap();
    let (_, body) = exchange(from, h.admin_addr, request)
        .await
        .expect("/metrics");
    let prefix = format!(
        "sipgw_connections_shed_total{{listener=\"{}\",",
        port.label()
    );
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .map(|line| line.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

/// Runs `attack` against `target` while changes (from `clients_from`) and `/healthz` probes
/// go on, then checks that every one was answered in time and the gateway is up.
async fn holds_up_under(
    attack: Attack,
    target: Port,
    (connections, rate): (u32, u32),
    clients_from: IpAddr,
) {
    let Some(binary) = slowhttptest() else { return };
    let _alone = ONE_ATTACK_AT_A_TIME.lock().await;
    let h = Harness::start().await;
    // The first change warms the token and the key set: a cold start is not the subject.
    assert_eq!(h.change(AGENT, CURRENT, NEW).await.status, 200);
    let url = match target {
        Port::Api => h.url(&Harness::endpoint(AGENT)),
        Port::Admin => format!("http://{}/healthz", h.admin_addr),
    };
    let mut attacker = Attacker::start(&binary, attack, &url, connections, rate);
    let h = std::sync::Arc::new(h);
    let mut pending = Vec::new();
    let mut i = 0;
    // slowhttptest ends by itself after ATTACK_SECS (or once all its connections are
    // gone); the test's own bound is only against a tool that hangs.
    let attack_started = Instant::now();
    let at_most = Duration::from_secs(u64::from(ATTACK_SECS) + 20);
    while !attacker.finished() && attack_started.elapsed() < at_most {
        let (changes, probes) = (h.clone(), h.clone());
        pending.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = exchange(clients_from, changes.addr, change_request(&changes, i)).await;
            (true, result, started.elapsed())
        }));
        pending.push(tokio::spawn(async move {
            let started = Instant::now();
            let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let result = exchange(from, probes.admin_addr, healthz_request(&probes)).await;
            (false, result, started.elapsed())
        }));
        i += 1;
        tokio::time::sleep(PACE).await;
    }
    let (mut changes, mut probes) = (Tally::default(), Tally::default());
    for task in pending {
        let (is_change, result, took) = task.await.unwrap();
        if is_change {
            changes.record(result, took);
        } else {
            probes.record(result, took);
        }
    }
    eprintln!(
        "{attack:?} on the {target:?} port: changes {}; /healthz probes {}",
        changes.summary(),
        probes.summary()
    );
    assert!(changes.sent > 0 && probes.sent > 0);
    // A slowloris did fill a cap: else the test would prove nothing. (A slow body without
    // a token need not: refused from its head, it holds no slot for long.)
    if let Attack::Slowloris = attack {
        let shed = shed_on(&h, target).await;
        assert!(
            shed > 0.0,
            "the {attack:?} never reached a cap of {target:?}"
        );
    }
    assert!(
        changes.failures.is_empty(),
        "changes during a {attack:?} on the {target:?} port: {}; first failures {:?}",
        changes.summary(),
        &changes.failures[..changes.failures.len().min(5)]
    );
    assert!(
        probes.failures.is_empty(),
        "/healthz during a {attack:?} on the {target:?} port: {}; first failures {:?}",
        probes.summary(),
        &probes.failures[..probes.failures.len().min(5)]
    );
    // Still up: the gateway task runs on, and answers both listeners.
    let mut h = std::sync::Arc::into_inner(h).expect("every request task has ended");
    assert!(
        !h.task.as_ref().unwrap().is_finished(),
        "the gateway stopped"
    );
    assert_eq!(h.change(AGENT, NEW, CURRENT).await.status, 200);
    let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let healthz = exchange(from, h.admin_addr, healthz_request(&h)).await;
    assert_eq!(healthz.map(|(status, _)| status), Ok(StatusCode::OK));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_on_the_api_port_leaves_room_for_changes_and_probes() {
    // The clients share the attacker's address, as the application and anything else in
    // a sidecar's pod do: only shedding the attacker's connections can make room.
    holds_up_under(
        Attack::Slowloris,
        Port::Api,
        (5000, 1000),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_on_the_admin_port_leaves_healthz_answering() {
    // The probes share the attacker's address (a kubelet's would come from the node's,
    // which the per-IP cap alone keeps room for).
    holds_up_under(
        Attack::Slowloris,
        Port::Admin,
        (1500, 500),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_on_the_api_port_leaves_room_for_other_clients() {
    // The clients share the attacker's address, as in a sidecar. slowhttptest sends no
    // token: checked from the head, before the body (docs/api.md), it is refused at once
    // and the connection closed, so its slow bodies hold no slot for long. (An
    // authenticated slow body is in flight and cannot be shed, but the caller's quota,
    // spent from the head, bounds how many a caller can start.)
    holds_up_under(
        Attack::SlowBody,
        Port::Api,
        (1500, 500),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
    .await;
}
