//! The composition root: builds the parts of one gateway process once ([`Parts`]) and hands
//! each consumer only what it needs: the pipeline ([`crate::gateway::Gateway`]) its own
//! share, the admin listener what readiness and the metrics read, the background tasks
//! what they keep fresh. [`serve`] is the one way to run a gateway, for the binary, the
//! demo and the tests alike.
//!
//! - `parts`: [`Parts`], built from the config.
//! - `error`: [`StartError`], what failed at start-up, and the exit status it means.
//! - `restore`: the lockout shield's counts, read back from the audit trail.
//! - [`preflight`]: the start-up checks that need no network, shared with `check-config`.
//! - [`probe`]: `check-config --probe`, the live checks.
//! - `notify`: systemd's `READY=1`, `WATCHDOG=1` and `STOPPING=1`, when it asks for them.

mod error;
mod notify;
mod parts;
pub mod preflight;
pub mod probe;
mod restore;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use error::{EXIT_CONFIG, EXIT_FAILURE, StartError};
pub use parts::{Background, Parts};

use crate::admin;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::server::{self, ConnectionStats, Transport};
use crate::tls::{Reloading, Reloads};

/// The two listeners of a gateway process, bound before [`serve`] is called.
#[derive(Debug)]
pub struct Listeners {
    /// The API listener (`server.listen`): password changes, TLS when configured.
    pub api: TcpListener,
    /// The admin listener (`server.admin_listen`): `/healthz`, `/readyz`, `/metrics`,
    /// always plain HTTP (kubelet probes and Prometheus scrape it). `None` runs without
    /// one (the demo).
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds `server.listen` and `server.admin_listen`; an error names the key.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let bind = |key: &'static str, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|cause| StartError::Bind { key, addr, cause })
        };
        Ok(Self {
            api: bind("server.listen", config.server.listen).await?,
            admin: Some(bind("server.admin_listen", config.server.admin_listen).await?),
        })
    }
}

/// Runs a gateway on `listeners` until `shutdown` resolves and in-flight requests drained,
/// then flushes the audit trail. With `server.tls_*` set, the API listener speaks TLS,
/// loaded and reloaded as `tls` says; the admin listener stays plain HTTP.
///
/// The binary calls this with its configured listeners, SIGHUP and the SIGTERM/SIGINT
/// future; tests and the demo with listeners on `127.0.0.1:0` and a future of their own.
pub async fn serve(
    config: &Config,
    listeners: Listeners,
    tls: Reloads,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let tls = tls.start(config.server.tls.as_ref())?;
    let parts = Parts::build(config)?;
    parts.check_redis_credentials().await?;
    let background = parts.spawn_background();
    // Before the trail is read back: the watchdog pings from now on, however long that takes.
    let mut notifier = notify::Notifier::start(parts.readiness());
    // Each listener has its own connection slots; the metrics read both.
    let api_connections = Arc::new(ConnectionStats::default());
    let admin_connections = Arc::new(ConnectionStats::default());
    let stats = vec![
        ("api", Arc::clone(&api_connections)),
        ("admin", Arc::clone(&admin_connections)),
    ];
    // One shutdown signal for both listeners.
    let (stop, stopped) = watch::channel(false);
    let admin_task = listeners.admin.map(|admin| {
        let handler = admin::handler(
            parts.readiness(),
            parts.metric_sources(tls.tls().cloned(), stats),
        );
        let limits = config.server.admin_limits.clone();
        // Logged here, not in the task: the socket is listening (bound before the trail is
        // read back), and the line must come before the ones the start-up goes on to log.
        if let Ok(addr) = admin.local_addr() {
            tracing::info!(%addr, "admin listening");
        }
        tokio::spawn(run_admin(
            admin,
            limits,
            admin_connections,
            handler,
            stopped.clone(),
        ))
    });
    // Before the first request: the API listener is bound, and its clients wait in the
    // backlog until the rebuild is done; the admin listener already answers.
    restore::before_serving(config, &parts).await;
    notifier.serving();
    let api = run_api(
        config,
        listeners.api,
        &tls,
        parts.gateway(),
        api_connections,
        stopped,
    );
    tokio::pin!(api);
    tokio::select! {
        () = &mut api => {}
        () = shutdown => {
            // Before the drain: systemd shows "deactivating" while in-flight requests finish.
            notifier.stopping().await;
            stop.send_replace(true);
            api.await;
        }
    }
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    // In-flight requests are done (or cut): flush the audit trail.
    parts.auditor.close().await;
    // Stops the refreshers, the janitor and the sweeper (the TLS triggers stop with `tls`),
    // and the watchdog's pings.
    drop(background);
    drop(notifier);
    Ok(())
}

/// Serves the API listener with `gateway` until `stopped` turns true and in-flight
/// requests drained.
async fn run_api(
    config: &Config,
    api: TcpListener,
    tls: &Reloading,
    gateway: Gateway,
    connections: Arc<ConnectionStats>,
    stopped: watch::Receiver<bool>,
) {
    if let Ok(addr) = api.local_addr() {
        let tls_on = tls.tls().is_some();
        tracing::info!(%addr, tls = tls_on, vendor = %config.vendor.base_url, "sipgw listening");
    }
    let transport = match tls.tls() {
        Some(tls) => Transport::Tls(Arc::clone(tls)),
        None => Transport::Plain,
    };
    let gateway = Arc::new(gateway);
    // Each request runs in a task of its own, so that a client hanging up cannot cancel a
    // vendor call half-way: its outcome is still logged (and audited) like any other.
    let handler = move |request, peer| {
        let gateway = Arc::clone(&gateway);
        tokio::spawn(async move { gateway.handle(request, peer).await })
    };
    server::run_with(
        api,
        config.server.limits.clone(),
        transport,
        connections,
        handler,
        stopped_future(stopped),
    )
    .await;
}

/// Serves the admin listener until `stopped` turns true. Its own slots and short head
/// timeout: probes answer whatever the API port is going through, and a slowloris on this
/// port gives way to them.
async fn run_admin<H, F, E>(
    admin: TcpListener,
    limits: server::Limits,
    connections: Arc<ConnectionStats>,
    handler: H,
    stopped: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    server::run_with(
        admin,
        limits,
        Transport::Plain,
        connections,
        handler,
        stopped_future(stopped),
    )
    .await;
}

/// Resolves once the shutdown flag is set.
async fn stopped_future(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
