//! `sipgw serve` under a stand-in for systemd: the test binds the notify socket (a Unix
//! datagram socket in a temporary directory), starts the real binary with `NOTIFY_SOCKET`
//! and `WATCHDOG_USEC` set, against the vendor simulator and a development JWKS, and reads
//! what it is told: `READY=1` only once `/readyz` answers 200 (not while the vendor's token
//! endpoint fails), `WATCHDOG=1` throughout, `STOPPING=1` on SIGTERM, then exit 0.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::*;

/// Long enough for any step of a debug build on a busy machine; only a failure waits it out.
const PATIENCE: Duration = Duration::from_secs(30);
/// A short watchdog period (pings every 100 ms), so the test sees several.
const WATCHDOG_USEC: &str = "200000";

/// The stand-in for systemd's notify socket: every datagram, as text, in order.
struct NotifySocket {
    path: PathBuf,
    datagrams: Receiver<String>,
    /// Everything read so far, for failure messages.
    seen: Vec<String>,
}

impl NotifySocket {
    /// Binds the socket in `dir`; a thread reads it, so the gateway never blocks on a full
    /// queue.
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let (tx, datagrams) = channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buffer) {
                if tx
                    .send(String::from_utf8_lossy(&buffer[..n]).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        Self {
            path,
            datagrams,
            seen: Vec::new(),
        }
    }

    /// The next datagram that holds the line `line` (`READY=1`); the ones before it are
    /// returned too, in order.
    fn wait_for(&mut self, line: &str) -> Vec<String> {
        let mut before = Vec::new();
        loop {
            let datagram = self.datagrams.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                panic!("no {line} datagram; received: {:?}", self.seen);
            });
            self.seen.push(datagram.clone());
            let found = datagram.lines().any(|l| l == line);
            before.push(datagram);
            if found {
                return before;
            }
        }
    }

    /// The next datagram, and any queued behind it.
    fn wait_for_any(&mut self) -> Vec<String> {
        let first = self
            .datagrams
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no datagram; received: {:?}", self.seen));
        self.seen.push(first.clone());
        let mut all = vec![first];
        all.extend(self.queued());
        all
    }

    /// The datagrams already queued, without waiting.
    fn queued(&mut self) -> Vec<String> {
        let queued: Vec<String> = self.datagrams.try_iter().collect();
        self.seen.extend(queued.iter().cloned());
        queued
    }
}

/// Whether any of `datagrams` holds the line `line`.
fn holds(datagrams: &[String], line: &str) -> bool {
    datagrams.iter().any(|d| d.lines().any(|l| l == line))
}

/// The upstreams, a config file for them, and the notify socket, in a fresh directory.
struct Setup {
    upstreams: Upstreams,
    config: PathBuf,
    notify: NotifySocket,
}

impl Setup {
    async fn new(name: &str) -> Self {
        let upstreams = Upstreams::start().await;
        let dir = fresh_dir(name);
        let config = dir.join("sipgw.toml");
        let trail = dir.join("audit").join("sipgw-audit.jsonl");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace_secs = 5\n\
                 [audit]\npath = {:?}\n{}",
                trail.display().to_string(),
                upstreams.config_sections()
            ),
        )
        .unwrap();
        let notify = NotifySocket::bind(&dir);
        Self {
            upstreams,
            config,
            notify,
        }
    }

    /// Starts `sipgw serve` with `env` and the notify socket; returns the child (killed on
    /// drop), the admin address, and the log lines still to come.
    fn start(&self, env: &[(&str, String)]) -> Running {
        let mut child = serve_command(&self.config)
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &self.notify.path)
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .unwrap();
        let (lines, log, _api) = listening(&mut child, PATIENCE);
        let admin = log
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|j| j["message"] == "admin listening")
            .and_then(|j| j["addr"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no admin listening line: {log:?}"));
        Running {
            child,
            admin,
            _lines: lines,
        }
    }
}

/// A running `sipgw serve`.
struct Running {
    child: Child,
    admin: String,
    /// Keeps the log reader's channel open, so the child never blocks on stderr.
    _lines: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// `GET /readyz` on the admin listener: the status code and the body.
    fn readyz(&self) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(&self.admin).unwrap();
        write!(
            stream,
            "GET /readyz HTTP/1.1\r\nHost: sipgw\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    /// SIGTERM, then the exit code.
    fn terminate(&mut self) -> Option<i32> {
        send_signal(&self.child, "TERM");
        self.child.wait().unwrap().code()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_readyz_is_200_then_watchdog_pings_and_stopping_on_sigterm() {
    let mut setup = Setup::new("notify-ready").await;
    // The vendor's token endpoint fails: no AccessToken, so /readyz is 503.
    let faults = setup.upstreams.sim.faults();
    faults.set_token_status(Some(500));
    let mut gateway = setup.start(&[("WATCHDOG_USEC", WATCHDOG_USEC.into())]);

    // The notifier says why it waits (systemctl status shows it), and /readyz agrees.
    let mut before_fix: Vec<String> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !before_fix
        .iter()
        .any(|d| d.contains("STATUS=not ready") && d.contains("no_vendor_token"))
    {
        assert!(
            !holds(&before_fix, "READY=1") && Instant::now() < deadline,
            "READY=1 or no STATUS naming no_vendor_token: {before_fix:?}"
        );
        before_fix.extend(setup.notify.wait_for_any());
    }
    let (status, body) = gateway.readyz();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no_vendor_token"), "{body}");
    before_fix.extend(setup.notify.queued());
    assert!(
        !holds(&before_fix, "READY=1"),
        "READY=1 while /readyz is 503: {before_fix:?}"
    );
    // Liveness, not readiness: the watchdog pings while the gateway waits (the first ping
    // may come after the STATUS line on a busy machine: wait for it, and still no READY).
    if !holds(&before_fix, "WATCHDOG=1") {
        before_fix.extend(setup.notify.wait_for("WATCHDOG=1"));
    }
    assert!(
        !holds(&before_fix, "READY=1"),
        "READY=1 while the vendor still fails: {before_fix:?}"
    );

    // The vendor recovers: READY=1 arrives, and at that moment /readyz is 200.
    faults.set_token_status(None);
    let until_ready = setup.notify.wait_for("READY=1");
    let (status, body) = gateway.readyz();
    assert_eq!(status, 200, "READY=1 sent, but /readyz says {body}");
    let ready = until_ready.last().unwrap();
    assert!(ready.lines().any(|l| l == "STATUS=serving"), "{ready}");

    // The pings go on once ready.
    setup.notify.wait_for("WATCHDOG=1");
    setup.notify.wait_for("WATCHDOG=1");

    // SIGTERM: STOPPING=1, then a clean exit; READY=1 was sent once.
    send_signal(&gateway.child, "TERM");
    setup.notify.wait_for("STOPPING=1");
    assert_eq!(gateway.child.wait().unwrap().code(), Some(0));
    let ready_count = setup
        .notify
        .seen
        .iter()
        .filter(|d| d.lines().any(|l| l == "READY=1"))
        .count();
    assert_eq!(ready_count, 1, "{:?}", setup.notify.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_pid_naming_another_process_disables_the_pings() {
    let mut setup = Setup::new("notify-watchdog-pid").await;
    // The watchdog is for another process (this test's): sipgw must not ping for it.
    let mut gateway = setup.start(&[
        ("WATCHDOG_USEC", WATCHDOG_USEC.into()),
        ("WATCHDOG_PID", std::process::id().to_string()),
    ]);
    setup.notify.wait_for("READY=1");
    assert_eq!(gateway.terminate(), Some(0));
    setup.notify.wait_for("STOPPING=1");
    setup.notify.queued();
    // With a watchdog, the first ping goes out as the notifier starts, before READY=1.
    assert!(
        !holds(&setup.notify.seen, "WATCHDOG=1"),
        "{:?}",
        setup.notify.seen
    );
}
