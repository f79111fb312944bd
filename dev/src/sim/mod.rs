//! A faithful simulator of the vendor's two HTTP calls (see `docs/vendor.md`), used
//! by integration tests, the demo (`sipgw-vendor-sim`) and benchmarks.
//!
//! # Layout
//! - this file: [`SimConfig`], and [`VendorSim`], the handle tests hold (state, counters,
//!   recorded requests, fault switches);
//! - `server`: the accept loop (HTTP/1.1 keep-alive and h2c, graceful drain);
//! - `routes`: path and method dispatch, body reading, JSON responses;
//! - `token_endpoint` / `update_endpoint`: the two calls, each as its ordered steps;
//! - `tokens`, `accounts`, `rule`: the vendor's behaviour as plain, unit-tested logic
//!   (token lifetimes, lockout, password rule);
//! - `faults`: the switches that make it misbehave on purpose;
//! - `record`: what the update endpoint received.
//!
//! A password change travels: `server` → `routes::handle` → `update_endpoint::handle`
//! (faults, token, app key, body) → `AccountBook::change_password` → a 200 JSON verdict.

mod accounts;
mod faults;
mod record;
mod routes;
mod rule;
mod server;
mod token_endpoint;
mod tokens;
mod update_endpoint;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

pub use faults::Faults;
pub use record::{MAX_RECORDED_UPDATES, NO_RESPONSE, RecordedUpdate};
pub use routes::{TOKEN_PATH, UPDATE_PATH};
pub use server::DRAIN_GRACE;

use accounts::{AccountBook, LockoutPolicy};
use record::UpdateLog;
use tokens::TokenStore;

/// Lockout threshold of the vendor: three wrong current passwords in a row.
pub const DEFAULT_LOCK_THRESHOLD: u32 = 3;
/// Lockout duration of the vendor: 30 minutes.
pub const DEFAULT_LOCK_DURATION: Duration = Duration::from_secs(30 * 60);
/// Longest token lifetime the vendor grants.
pub const DEFAULT_MAX_TOKEN_TTL_SECS: u64 = 3600;
/// App key of the demo tenant.
pub const DEFAULT_APP_KEY: &str = "demo-app-key";
/// App secret of the demo tenant.
pub const DEFAULT_APP_SECRET: &str = "demo-app-secret";

/// How the simulated tenant is set up.
#[derive(Clone)]
pub struct SimConfig {
    /// The app key (AK) that `tokenByAkSk` accepts and `x-app-key` must match.
    pub app_key: String,
    /// The app secret (SK) that `tokenByAkSk` accepts.
    pub app_secret: String,
    /// The agents that exist, as (`userAccount`, current password).
    pub agents: Vec<(String, String)>,
    /// Wrong current passwords in a row that lock an agent; 0 disables the lockout.
    pub lock_threshold: u32,
    /// How long a lock lasts.
    pub lock_duration: Duration,
    /// Largest `X-Token-Expire` accepted; larger values get 400.
    pub max_token_ttl_secs: u64,
    /// Keep [`RecordedUpdate`]s; benchmarks turn it off to measure the gateway, not us.
    pub record_requests: bool,
    /// Benchmark mode: every well-formed, authorised change succeeds and nothing is stored,
    /// so the same change can be sent again and again (no password check, no lockout).
    pub always_succeed: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            app_key: DEFAULT_APP_KEY.to_owned(),
            app_secret: DEFAULT_APP_SECRET.to_owned(),
            agents: Vec::new(),
            lock_threshold: DEFAULT_LOCK_THRESHOLD,
            lock_duration: DEFAULT_LOCK_DURATION,
            max_token_ttl_secs: DEFAULT_MAX_TOKEN_TTL_SECS,
            record_requests: true,
            always_succeed: false,
        }
    }
}

impl fmt::Debug for SimConfig {
    // Hand-written so the app secret and agent passwords never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accounts: Vec<&str> = self.agents.iter().map(|(a, _)| a.as_str()).collect();
        f.debug_struct("SimConfig")
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("agents", &accounts)
            .field("lock_threshold", &self.lock_threshold)
            .field("lock_duration", &self.lock_duration)
            .field("max_token_ttl_secs", &self.max_token_ttl_secs)
            .field("record_requests", &self.record_requests)
            .field("always_succeed", &self.always_succeed)
            .finish()
    }
}

/// A running (or ready to run) simulated vendor. Cheap to clone: every clone shares one
/// state, so a test keeps a handle while the server task uses another.
#[derive(Clone)]
pub struct VendorSim {
    /// Everything the request handlers and the test handle share.
    shared: Arc<Shared>,
}

/// The simulator's state. Each mutex guards one concern so token checks, account changes
/// and recording do not serialise on one lock under benchmark load.
pub(crate) struct Shared {
    /// The AK the token endpoint accepts and `x-app-key` must equal.
    pub(crate) app_key: String,
    /// The SK the token endpoint accepts.
    pub(crate) app_secret: String,
    /// Largest token lifetime granted.
    pub(crate) max_token_ttl_secs: u64,
    /// Whether update requests are kept in `updates`.
    pub(crate) record_requests: bool,
    /// Benchmark mode: answer every valid change with success, store nothing.
    pub(crate) always_succeed: bool,
    /// The fault switches.
    pub(crate) faults: Faults,
    /// Agent passwords and lockouts.
    pub(crate) accounts: Mutex<AccountBook>,
    /// Tokens that authorise the update call.
    pub(crate) tokens: Mutex<TokenStore>,
    /// The last update requests, for tests.
    pub(crate) updates: Mutex<UpdateLog>,
    /// Requests that reached the token path, answered or not.
    pub(crate) token_requests: AtomicU64,
    /// Tokens handed out.
    pub(crate) tokens_issued: AtomicU64,
    /// Requests that reached the update path (never bounded, unlike `updates`).
    pub(crate) update_count: AtomicU64,
}

/// Locks `mutex`, recovering from poisoning: every guarded value here is left consistent
/// between statements, so a panicking holder (a failed test assertion) cannot corrupt it,
/// and refusing all later requests would only hide the original failure.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl VendorSim {
    /// A simulator set up as `config` says, not yet listening.
    pub fn new(config: SimConfig) -> Self {
        let policy = LockoutPolicy {
            threshold: config.lock_threshold,
            duration: config.lock_duration,
        };
        Self {
            shared: Arc::new(Shared {
                app_key: config.app_key,
                app_secret: config.app_secret,
                max_token_ttl_secs: config.max_token_ttl_secs,
                record_requests: config.record_requests,
                always_succeed: config.always_succeed,
                faults: Faults::default(),
                accounts: Mutex::new(AccountBook::new(config.agents, policy)),
                tokens: Mutex::new(TokenStore::default()),
                updates: Mutex::new(UpdateLog::default()),
                token_requests: AtomicU64::new(0),
                tokens_issued: AtomicU64::new(0),
                update_count: AtomicU64::new(0),
            }),
        }
    }

    /// Spawns the accept loop on the current tokio runtime and returns the bound address.
    /// The loop runs until the runtime shuts down.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn spawn(&self, listener: TcpListener) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let shared = Arc::clone(&self.shared);
        tokio::spawn(server::run(shared, listener, std::future::pending()));
        Ok(addr)
    }

    /// Runs the accept loop until `shutdown` resolves, then lets in-flight requests finish
    /// (for up to [`DRAIN_GRACE`]). Used by the binary.
    ///
    /// Errors only if the listener's address cannot be read; accept errors are logged and
    /// survived, since a simulator that stops on one bad connection breaks a whole test run.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        tracing::debug!(%addr, "vendor simulator serving");
        server::run(Arc::clone(&self.shared), listener, shutdown).await;
        Ok(())
    }

    /// The fault switches.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every request to the token path so far, successful or not.
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::Relaxed)
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens_issued.load(Ordering::Relaxed)
    }

    /// The last [`MAX_RECORDED_UPDATES`] requests that reached the update path, in arrival
    /// order (empty when `record_requests` is off).
    pub fn update_requests(&self) -> Vec<RecordedUpdate> {
        lock(&self.shared.updates).snapshot()
    }

    /// Every request that reached the update path so far (not bounded, always counted).
    pub fn update_count(&self) -> u64 {
        self.shared.update_count.load(Ordering::Relaxed)
    }

    /// An agent's current password, or `None` for an unknown account.
    pub fn agent_password(&self, account: &str) -> Option<String> {
        lock(&self.shared.accounts)
            .password(account)
            .map(str::to_owned)
    }

    /// Creates or replaces an agent, clearing any lock (what a tenant administrator does).
    pub fn set_agent(&self, account: &str, password: &str) {
        lock(&self.shared.accounts).set(account, password);
    }

    /// Whether the agent exists and is locked right now.
    pub fn is_locked(&self, account: &str) -> bool {
        lock(&self.shared.accounts).is_locked(account, Instant::now())
    }

    /// Invalidates every token issued so far: the next update call with one gets 401.
    pub fn revoke_all_tokens(&self) {
        lock(&self.shared.tokens).revoke_all();
    }
}

/// Compile-time proof that the handle can be shared across tasks and threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<VendorSim>();
    assert_send_sync::<Faults>();
    assert_send_sync::<RecordedUpdate>();
    assert_send_sync::<SimConfig>();
};
