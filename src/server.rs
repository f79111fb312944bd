//! The API listener: accept loop, connection limits, HTTP/1.1 + h2c, graceful shutdown.
//!
//! Bounds (STYLE.md §7): at most `max_connections` connections are served at once (the
//! accept loop waits for a permit, so excess clients queue in the kernel backlog instead of
//! costing memory); request heads must arrive within `header_read_timeout` and fit in
//! `max_header_bytes`; bodies are bounded by the gateway itself. On shutdown the listener is
//! closed first, then in-flight requests get `shutdown_grace` to finish (hyper-util's
//! `GracefulShutdown`, as in its `server_graceful` example).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::ServerConfig;
use crate::gateway::Gateway;

/// Most concurrent HTTP/2 streams per connection; a password change is one request, so
/// clients gain nothing from more and an attacker would gain memory.
const MAX_H2_STREAMS: u32 = 32;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `gateway` on `listener` until `shutdown` resolves, then drains.
///
/// Returns once every connection has finished or the grace period has passed.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let builder = http_builder(limits);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        // Wait for a free connection slot before accepting: the bound on open connections.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
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
        let _ = stream.set_nodelay(true);
        let gateway = Arc::clone(&gateway);
        let service = service_fn(move |req| {
            let gateway = Arc::clone(&gateway);
            async move { Ok::<_, Infallible>(gateway.handle(req, peer).await) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }

    // Stop accepting at once: new clients get "connection refused" and go to another replica.
    drop(listener);
    tracing::info!(
        grace_secs = limits.shutdown_grace.as_secs(),
        "shutting down: draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
        }
    }
}

fn http_builder(limits: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): what orchestrators and terminals send.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
