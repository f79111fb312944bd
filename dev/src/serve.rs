//! The accept loop of the development servers (the vendor simulator, the development
//! issuer): HTTP/1.1 keep-alive and h2c on one listener, a bound on open connections,
//! hyper's head timeout, and a graceful drain on shutdown.
//!
//! The gateway's own listener (connection slots that shed idle clients, per-address caps,
//! an idle watchdog) is built for hostile traffic. These servers answer the gateway under
//! test, the demo and the benchmarks on loopback, so a connection cap and hyper's timers
//! are enough; a loop of their own also keeps this crate independent of the gateway, which
//! depends on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The bounds one development listener enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections open at once; the loop stops accepting while all are in use.
    pub max_connections: usize,
    /// Bound on a request head (HTTP/1 read buffer, at least 8 KiB; HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Bound on receiving an HTTP/1 request head, and on the wait between keep-alive
    /// requests (hyper runs the same timer there).
    pub header_read_timeout: Duration,
    /// How long in-flight requests may finish after the shutdown signal; the connections
    /// still open then are cut.
    pub shutdown_grace: Duration,
}

/// Pause after an accept error (e.g. out of file descriptors), so the loop does not spin
/// while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `listener` with `handler` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (for up to `limits.shutdown_grace`) and cuts what is left.
///
/// A handler error closes its connection without an answer (the simulator's "drop the
/// connection" fault relies on it). Accept errors are logged and survived: a test server
/// that stops on one bad connection breaks a whole test run.
pub async fn run<H, F, E>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let builder = Arc::new(http_builder(&limits));
    let sockets = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // Dropping the set aborts whatever connection tasks are still in it.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Finished connections leave the set here, so it holds only the open ones.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = Arc::clone(&sockets).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small request/response exchanges: waiting to coalesce writes only adds latency.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request| handler(request, peer));
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }

    drop(listener);
    tracing::debug!("shutting down: draining connections");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing the remaining connections");
    }
    connections.shutdown().await;
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// A future that resolves on SIGTERM or SIGINT (Ctrl-C), for the simulator binary. The
/// handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives during start-up is not lost to its default action (ending the
/// process without a drain). Must be called inside the Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            },
            (Err(error), _) | (_, Err(error)) => {
                // Without handlers the default actions stay: the process still ends on the
                // signal, only without draining.
                tracing::error!(%error, "cannot install the SIGTERM/SIGINT handlers");
                std::future::pending::<()>().await;
            }
        }
    }
}
