//! The HTTP listener shared by the gateway and the vendor simulator: accept loop, connection
//! slots, HTTP/1.1 + h2c (or both over TLS, see [`Transport`]), idle timeouts, graceful
//! shutdown. Parts: [`slots`] (who holds a connection slot, whom to shed), `connection`
//! (one connection: transport, HTTP, idle watchdog).
//!
//! Connection slots (docs/architecture.md): at most `max_connections` connections hold a slot, at
//! most `max_connections_per_ip` of them from one client network (an IPv4 address, an
//! IPv6 /64). The loop accepts every client rather than leaving it in the kernel backlog,
//! and at a cap sheds rather than waits:
//! - a connection is *busy* while a request of it is in flight (hyper has a complete head
//!   and is running the handler), *idle* otherwise: still sending its head (a slowloris),
//!   in its TLS handshake, or between keep-alive requests;
//! - a newcomer at a cap takes the slot of the connection idle the longest, under the same
//!   cap (its own client network's, or the listener's), which is closed at once; a busy
//!   connection is never shed;
//! - only when every slot under that cap is busy is the newcomer refused (closed at once).
//!
//! So a flood of connections that never complete a request cannot keep a client out: its
//! connections give way to every newcomer, and a newcomer that sends its request at once
//! (as clients do) is busy long before the flood has cycled through the cap. This holds
//! when every caller shares one address (a sidecar's pod: the application and an attacker
//! are both 127.0.0.1), where a per-address cap alone cannot tell them apart; the
//! per-address cap keeps room for other addresses without any shedding. Shed connections
//! are closed as soon as their task sees it; the loop takes a socket permit before it
//! accepts, [`SHED_SLACK`] more than the cap, so open sockets stay within cap + slack even
//! when many are being shed at once.
//!
//! Other bounds:
//! - a request head must arrive within `header_read_timeout` (hyper's timer) and fit in
//!   `max_header_bytes`;
//! - a connection with no request in flight is asked to close after `idle_timeout` since
//!   its last request, and after `header_read_timeout` when it never sent one (hyper's head
//!   timer does not run on a fresh connection, so a silent one would otherwise keep its
//!   slot forever; on HTTP/1 keep-alive connections hyper's head timer also runs between
//!   requests, so for them the shorter of the two applies). A connection that has not
//!   closed `header_read_timeout` after being asked (an HTTP/2 peer that stops reading) is
//!   cut. Requests count as in flight until hyper drops them, finished or cancelled (an
//!   HTTP/2 `RST_STREAM`), so a cancelled stream cannot pin a connection open;
//! - with TLS, the handshake runs in the connection's own task (a slow client never holds up
//!   the accept loop) and must complete within `header_read_timeout`: until it does, no
//!   request head can arrive, and a client that never sends its ClientHello would otherwise
//!   keep its slot. The idle and head bounds above start once it is done.
//!
//! Shutdown: the listener is dropped first (new clients are refused and go elsewhere), every
//! connection is told to finish its current request and close, and the drain waits until all
//! socket permits are back or `shutdown_grace` has passed; then the remaining connections
//! are cut.

pub mod config;
mod connection;
pub mod slots;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::tls::ServerTls;
use connection::Connection;
pub use slots::ConnectionStats;
use slots::Slots;

/// The bounds one listener enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections holding a slot at once (see the module doc for who gives way at the cap).
    pub max_connections: usize,
    /// Of those, most from one client network (IPv4 address, IPv6 /64); values above
    /// `max_connections` act as `max_connections`.
    pub max_connections_per_ip: usize,
    /// Bound on a request head (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Bound on receiving a request head, and on a new connection's silence.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with nothing in flight is closed after this long.
    pub idle_timeout: Duration,
    /// How long in-flight requests may finish after the shutdown signal.
    pub shutdown_grace: Duration,
}

/// Most concurrent HTTP/2 streams per connection: one password change is one request, so
/// clients gain nothing from more and an attacker would gain memory.
const MAX_H2_STREAMS: u32 = 32;
/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Sockets a listener may hold beyond its cap: connections shed but not yet closed by
/// their task. A few scheduler rounds of a flood; when they are in use the loop waits for
/// them before it accepts again.
pub const SHED_SLACK: usize = 64;

/// What a connection speaks before HTTP.
#[derive(Debug, Clone)]
pub enum Transport {
    /// HTTP straight on TCP (HTTP/1.1, or h2c by prior knowledge): the admin listener, the
    /// vendor simulator, the development issuer, and the API listener without TLS.
    Plain,
    /// TLS first, with the certificate current when the handshake starts; ALPN offers h2
    /// and HTTP/1.1.
    Tls(Arc<ServerTls>),
}

/// What the accept loop tells its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serve requests.
    Serving,
    /// Finish the request in flight, then close.
    Draining,
    /// The grace period is over: close now.
    Closing,
}

/// Serves `handler` in plain HTTP on `listener` until `shutdown` resolves, then drains.
///
/// `handler` answers one request; an `Err` makes hyper close the connection without an
/// answer (the simulator's "drop the connection" fault uses it). Returns once every
/// connection has finished or the grace period has passed.
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
    let stats = Arc::new(ConnectionStats::default());
    run_with(listener, limits, Transport::Plain, stats, handler, shutdown).await;
}

/// [`run`], with connections speaking `transport` (plain HTTP or TLS), and what the slot
/// table does counted in `stats` (for the metrics).
pub async fn run_with<H, F, E>(
    listener: TcpListener,
    limits: Limits,
    transport: Transport,
    stats: Arc<ConnectionStats>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let builder = Arc::new(http_builder(&limits));
    let slots = Slots::new(limits.max_connections, limits.max_connections_per_ip, stats);
    let all_sockets = limits.max_connections + SHED_SLACK;
    let sockets = Arc::new(Semaphore::new(all_sockets));
    let (phase, _) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);

    loop {
        // A socket permit before accepting: the hard bound on open sockets (cap + slack),
        // while shed connections are still closing.
        let permit = tokio::select! {
            permit = Arc::clone(&sockets).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    if !is_per_connection(&error) {
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A slot, shedding an idle connection at a cap; none when every slot under the cap
        // is busy: the newcomer is closed at once (counted; logged at debug, a flood must
        // not become a log flood).
        let Some(slot) = slots.admit(peer.ip()) else {
            tracing::debug!(%peer, "every connection slot busy: connection refused");
            continue;
        };
        let connection = Connection {
            builder: Arc::clone(&builder),
            limits: limits.clone(),
            phase: phase.subscribe(),
            slot,
        };
        let handler = handler.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            connection.start(stream, peer, &transport, handler).await;
            drop(permit);
        });
    }

    drop(listener);
    tracing::info!(
        grace_ms = limits.shutdown_grace.as_millis() as u64,
        "shutting down: draining connections"
    );
    phase.send_replace(Phase::Draining);
    // Every open connection holds a socket permit; all of them back means all closed.
    let all = u32::try_from(all_sockets).unwrap_or(u32::MAX);
    match tokio::time::timeout(limits.shutdown_grace, sockets.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
            phase.send_replace(Phase::Closing);
        }
    }
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
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

/// Accept errors that concern only the connection being accepted; the listener is fine.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// A future that resolves on SIGTERM or SIGINT (Ctrl-C): what orchestrators and terminals
/// send. The handlers are installed when this is called, not when the future is first
/// polled, so a signal that arrives while the process is still starting up is not lost to
/// its default action (ending the process at once, without a drain). Must be called inside
/// the Tokio runtime.
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
                // signal, only without draining. Serve on rather than refuse to start.
                tracing::error!(%error, "cannot install the SIGTERM/SIGINT handlers");
                std::future::pending::<()>().await;
            }
        }
    }
}
