//! The accept loop: one task per connection, HTTP/1.1 with keep-alive or h2c (prior
//! knowledge) on the same port, plain TCP only, and a graceful drain on shutdown.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{Shared, routes};

/// How long in-flight requests may run after shutdown before the loop gives up on them.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Most connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 4096;
/// Time a client has to send a request head; also closes idle keep-alive connections.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` resolves, then drains open connections.
pub(crate) async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let connection_slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = pin!(shutdown);

    loop {
        // Take a slot before accepting, so a full simulator leaves clients in the backlog
        // rather than accepting connections it will not serve.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&connection_slots).acquire_owned() => slot,
        };
        // The semaphore is never closed, so this cannot fail; stop cleanly if it ever did.
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_per_connection(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small request/response exchanges: waiting to coalesce writes only adds latency.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let handler_state = Arc::clone(&shared);
        let service =
            service_fn(move |request| routes::handle(Arc::clone(&handler_state), request));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Expected for dropped-connection faults and clients that hang up.
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(slot);
        });
    }

    // Stop accepting before draining, so new clients are refused rather than stranded.
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("all connections drained"),
        () = tokio::time::sleep(DRAIN_GRACE) => {
            tracing::warn!("connections still open after the drain grace period");
        }
    }
}

/// Accept errors that concern only the connection being accepted; the listener is fine.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
