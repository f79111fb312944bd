//! A real `redis-server` for the Redis backend's tests: its own process on a free loopback
//! port, no persistence, killed on drop. [`RedisServer::start_with`] adds arguments
//! (`--requirepass`, `--user ...`) and a TLS port.
//!
//! Without the binary the tests are skipped (with a message), unless `SIPGW_REQUIRE_REDIS=1`
//! (set by `.ci/run`), which makes a missing server a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running `redis-server`.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    /// The TLS port, with [`Options::tls`].
    tls_port: Option<u16>,
    /// What the test asked for.
    options: Options,
    child: Option<Child>,
}

/// More than the defaults, for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra arguments, e.g. `["--requirepass", "pw"]`.
    pub args: Vec<String>,
    /// Also serve TLS (on another port) with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A free loopback port: bind, note, release. Another process may take it in between, so a
/// server that does not come up is retried on another port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The `redis-server` binary: `/usr/bin/redis-server`, or one on `PATH`.
fn binary() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/redis-server");
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    })
}

impl RedisServer {
    /// Starts a server, or returns `None` (the test is skipped) when none is installed and
    /// `SIPGW_REQUIRE_REDIS` is not `1`.
    pub async fn start() -> Option<Self> {
        Self::start_with(Options::default()).await
    }

    /// [`RedisServer::start`] with `options`.
    pub async fn start_with(options: Options) -> Option<Self> {
        let Some(binary) = binary() else {
            if std::env::var("SIPGW_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("SIPGW_REQUIRE_REDIS=1 but redis-server is not installed");
            }
            eprintln!("skipped: redis-server not installed");
            return None;
        };
        for _ in 0..5 {
            let mut server = Self {
                binary: binary.clone(),
                port: free_port(),
                tls_port: options.tls.as_ref().map(|_| free_port()),
                options: options.clone(),
                child: None,
            };
            if server.spawn_and_wait().await {
                return Some(server);
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    /// `rediss://127.0.0.1:<tls port>` (with [`Options::tls`]).
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with Options::tls");
        format!("rediss://127.0.0.1:{port}")
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is persisted).
    pub async fn restart(&mut self) {
        self.kill();
        for _ in 0..20 {
            if self.spawn_and_wait().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// Spawns on `self.port`; true once it answers PING (within 10 s), false if it exited.
    async fn spawn_and_wait(&mut self) -> bool {
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.options.args);
        if let (Some((cert, key)), Some(port)) = (&self.options.tls, self.tls_port) {
            command
                .args(["--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .args(["--tls-auth-clients", "no"]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server can be started");
        self.child = Some(child);
        for _ in 0..200 {
            if self.pings().await {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited {
                self.child = None;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        false
    }

    /// Whether the server answers `PING` on the plain port, with `+PONG` or, when it wants
    /// a password first, `-NOAUTH`.
    async fn pings(&self) -> bool {
        let attempt = async {
            let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.ok()?;
            stream.write_all(b"PING\r\n").await.ok()?;
            let mut reply = [0u8; 7];
            stream.read_exact(&mut reply).await.ok()?;
            Some(&reply == b"+PONG\r\n" || &reply == b"-NOAUTH")
        };
        tokio::time::timeout(Duration::from_secs(1), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
