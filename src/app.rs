//! Wires the parts together for one gateway process: gateway, token refresher, listener
//! (with TLS when configured), admin listener.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::net::TcpListener;

use crate::audit::history;
use crate::config::{Config, ConfigError};
use crate::gateway::Gateway;
use crate::limits::Limits;
use crate::limits::config::LimitsBackend;
use crate::limits::lockout::{LockoutRebuild, RECORD_TTL};
use crate::server::{self, ConnectionStats, Transport};
use crate::tls::ServerTls;

/// Runs the gateway on `listener` until `shutdown` resolves and in-flight requests drained.
///
/// The binary calls this with the configured address and the SIGTERM/SIGINT future; tests
/// and the demo call it with a listener on `127.0.0.1:0` and a future of their own.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConfigError> {
    serve_with_admin(config, listener, None, shutdown).await
}

/// [`serve`], plus the admin listener (`/healthz`, `/readyz`, `/metrics`) on `admin` when given; both
/// stop on the same `shutdown`. With `server.tls_*` set, the API listener speaks TLS (the
/// admin listener always stays plain HTTP: kubelet probes and Prometheus scrape it).
pub async fn serve_with_admin(
    config: &Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConfigError> {
    let tls = match &config.server.tls {
        Some(files) => Some(Arc::new(ServerTls::load(files.clone())?)),
        None => None,
    };
    serve_all(config, listener, admin, tls, shutdown).await
}

/// [`serve_with_admin`] with TLS on the API listener from `tls` (whatever
/// `config.server.tls` says): the caller keeps the handle to reload it, the binary on
/// SIGHUP, tests on demand. The files are also polled for changes.
pub async fn serve_with_tls(
    config: &Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    tls: Arc<ServerTls>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConfigError> {
    serve_all(config, listener, admin, Some(tls), shutdown).await
}

async fn serve_all(
    config: &Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConfigError> {
    let gateway = Arc::new(Gateway::new(config)?);
    // A Redis that refuses our credentials is a configuration error: stop now, naming the
    // key, rather than run a replica that refuses every change. (An unreachable Redis is
    // not: the replica starts on its fallbacks, as it rides out an outage.)
    if let Err(why) = gateway.limits().check_redis_credentials().await {
        return Err(crate::config::invalid(
            "rate_limit.redis_password_file",
            format!("(with rate_limit.redis_username, when set) was refused by Redis: {why}"),
        ));
    }
    // Fetch the first AccessToken now rather than on the first request, and keep it fresh.
    let refresher = tokio::spawn(Arc::clone(gateway.tokens()).run_refresher());
    // Fetch a remote key set now, and keep it current.
    let key_refresher = tokio::spawn(Arc::clone(gateway.keys()).run_refresher());
    let janitor = tokio::spawn(Arc::clone(gateway.limits()).run_janitor());
    let auditor = Arc::clone(gateway.auditor());
    let audit_sweeper = tokio::spawn(Arc::clone(&auditor).run_sweeper());
    // New certificates are picked up when the files change (cert-manager renewals).
    let tls_watcher = tls
        .as_ref()
        .map(|tls| tokio::spawn(Arc::clone(tls).watch()));
    let tls_on = tls.is_some();
    let admin_tls = tls.clone();
    let transport = match tls {
        Some(tls) => Transport::Tls(tls),
        None => Transport::Plain,
    };
    let admin_gateway = Arc::clone(&gateway);
    let gateway_for_restore = Arc::clone(&gateway);
    // Each request runs in a task of its own, so that a client hanging up cannot cancel a
    // vendor call half-way: its outcome is still logged (and audited) like any other.
    let handler = move |request, peer| {
        let gateway = Arc::clone(&gateway);
        tokio::spawn(async move { gateway.handle(request, peer).await })
    };
    // Each listener has its own connection slots; the metrics read both.
    let api_connections = Arc::new(ConnectionStats::default());
    let admin_connections = Arc::new(ConnectionStats::default());
    let listeners = vec![
        ("api", Arc::clone(&api_connections)),
        ("admin", Arc::clone(&admin_connections)),
    ];
    // One shutdown signal for both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let admin_task = admin.map(|admin| {
        // Its own slots and short head timeout: probes answer whatever the API port is
        // going through, and a slowloris on this port gives way to them.
        let limits = config.server.admin_limits.clone();
        if let Ok(addr) = admin.local_addr() {
            tracing::info!(%addr, "admin listening");
        }
        let handler = crate::admin::handler(admin_gateway, admin_tls, listeners);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            server::run_with(
                admin,
                limits,
                Transport::Plain,
                admin_connections,
                handler,
                stop,
            )
            .await;
        })
    });
    // Before the first request: a restart must not forget the lockout shield's counts. The
    // admin listener already answers meanwhile (`/healthz` 200, `/readyz` 503
    // `lockout_rebuilding`), so that a long trail cannot get the process killed by its
    // liveness probe before it serves; the API listener is bound, and its clients wait in
    // the backlog until the rebuild is done.
    if matches!(config.limits.backend, LimitsBackend::Memory) {
        let new_chain = gateway_for_restore
            .auditor()
            .writer()
            .started_new_chain()
            .is_some();
        let limits = Arc::clone(gateway_for_restore.limits());
        limits.set_rebuilding(true);
        restore_lockout(config, Arc::clone(&limits), new_chain).await;
        limits.set_rebuilding(false);
    }
    drop(gateway_for_restore);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = tls_on, vendor = %config.vendor.base_url, "sipgw listening");
    }
    let api = {
        let mut stopped = stopped.clone();
        server::run_with(
            listener,
            config.server.limits.clone(),
            transport,
            api_connections,
            handler,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )
    };
    tokio::pin!(api);
    tokio::select! {
        () = &mut api => {}
        () = shutdown => {
            stop.send_replace(true);
            api.await;
        }
    }
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    // In-flight requests are done (or cut): flush the audit trail (DESIGN.md §6).
    auditor.close().await;
    refresher.abort();
    key_refresher.abort();
    janitor.abort();
    audit_sweeper.abort();
    if let Some(watcher) = tls_watcher {
        watcher.abort();
    }
    Ok(())
}

/// Rebuilds the lockout shield's counts from the audit trail (the `memory` backend; Redis
/// keeps its own across restarts). Rejections are read back as far as the shield keeps them
/// ([`RECORD_TTL`]), not just one cool-down: like the vendor's, a count does not fade, and a
/// rejection older than the cool-down still makes the next one a block.
///
/// After a new chain (`audit.allow_new_chain`), the records that were lost may have held
/// rejections: the rebuild is incomplete by definition, and the shield refuses every change
/// for one cool-down rather than let a forgotten count become the vendor's third strike.
async fn restore_lockout(config: &Config, limits: Arc<Limits>, new_chain: bool) {
    let path = config.audit.path.clone();
    let key = config.audit.key.clone();
    let policy = config.limits.lockout;
    let folding = config.limits.account_folding;
    let started = std::time::Instant::now();
    let reader = Arc::clone(&limits);
    let rebuilt = tokio::task::spawn_blocking(move || {
        let since = SystemTime::now()
            .checked_sub(RECORD_TTL)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut rebuild = LockoutRebuild::new(policy, folding);
        let scan = history::replay(&path, since, &key, folding, |agent, at, answer| {
            rebuild.apply(agent, at, answer);
        });
        let agents = rebuild.len();
        let blocked = reader.restore_lockout(rebuild, scan.unreadable == 0 && !new_chain);
        (scan, agents, blocked)
    })
    .await;
    match rebuilt {
        Ok((scan, agents, blocked)) if new_chain => tracing::error!(
            files = scan.files,
            lines = scan.lines,
            agents,
            blocked,
            "lockout shield: the audit trail lost records (a new chain was allowed), so counts may be missing; every change is refused (lockout_state_unavailable) for one cool-down"
        ),
        Ok((scan, agents, blocked)) if scan.unreadable == 0 => tracing::info!(
            files = scan.files,
            lines = scan.lines,
            orphans = scan.orphans,
            agents,
            blocked,
            ms = started.elapsed().as_millis() as u64,
            "lockout shield rebuilt from the audit trail"
        ),
        Ok((scan, agents, blocked)) => tracing::error!(
            files = scan.files,
            lines = scan.lines,
            unreadable = scan.unreadable,
            agents,
            blocked,
            "lockout shield: part of the audit trail could not be read; every change is refused (lockout_state_unavailable) for one cool-down"
        ),
        Err(error) => {
            // Nothing rebuilt: the shield refuses rather than forgets.
            limits.restore_lockout(LockoutRebuild::new(policy, folding), false);
            tracing::error!(%error, "lockout shield could not be rebuilt; every change is refused for one cool-down");
        }
    }
}
