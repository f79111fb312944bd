//! The HTTP listener shared by the gateway and the vendor simulator: accept loop, connection
//! limits, HTTP/1.1 + h2c (or both over TLS, see [`Transport`]), idle timeouts, graceful
//! shutdown.
//!
//! Bounds (STYLE.md §7):
//! - at most `max_connections` connections at once: the loop takes a permit before it
//!   accepts, so excess clients wait in the kernel backlog instead of costing memory;
//! - a request head must arrive within `header_read_timeout` (hyper's timer) and fit in
//!   `max_header_bytes`;
//! - a connection with no request in flight is asked to close after `idle_timeout` since
//!   its last request, and after `header_read_timeout` when it never sent one (hyper's head
//!   timer does not run on a fresh connection, so a silent one would otherwise keep its
//!   permit forever; on HTTP/1 keep-alive connections hyper's head timer also runs between
//!   requests, so for them the shorter of the two applies). A connection that has not
//!   closed `header_read_timeout` after being asked (an HTTP/2 peer that stops reading) is
//!   cut. Requests count as in flight until hyper drops them, finished or cancelled (an
//!   HTTP/2 `RST_STREAM`), so a cancelled stream cannot pin a connection open;
//! - with TLS, the handshake runs in the connection's own task (a slow client never holds up
//!   the accept loop) and must complete within `header_read_timeout`: until it does, no
//!   request head can arrive, and a client that never sends its ClientHello would otherwise
//!   keep its permit. The idle and head bounds above start once it is done.
//!
//! Shutdown: the listener is dropped first (new clients are refused and go elsewhere), every
//! connection is told to finish its current request and close, and the drain waits until all
//! permits are back or `shutdown_grace` has passed; then the remaining connections are cut.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::tls::ServerTls;

/// The bounds one listener enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
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
    run_with(listener, limits, Transport::Plain, handler, shutdown).await;
}

/// [`run`], with connections speaking `transport` (plain HTTP or TLS).
pub async fn run_with<H, F, E>(
    listener: TcpListener,
    limits: Limits,
    transport: Transport,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let builder = Arc::new(http_builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (phase, _) = watch::channel(Phase::Serving);
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
                    if !is_per_connection(&error) {
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = Connection {
            builder: Arc::clone(&builder),
            limits: limits.clone(),
            phase: phase.subscribe(),
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
    // Every open connection holds a permit; all of them back means all connections closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    match tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all)).await {
        Ok(_) => tracing::info!("all connections drained"),
        Err(_) => {
            tracing::warn!("shutdown grace period over; closing the remaining connections");
            phase.send_replace(Phase::Closing);
        }
    }
}

/// One accepted connection and what it needs to serve itself.
struct Connection {
    /// The shared HTTP/1 + HTTP/2 settings.
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// Idle and shutdown bounds.
    limits: Limits,
    /// Shutdown phase broadcast by the accept loop.
    phase: watch::Receiver<Phase>,
}

/// Requests in flight on one connection and when the last one ended: what the idle
/// watchdog needs to tell a quiet connection from a busy one.
struct Activity {
    /// Requests being handled now (HTTP/2 may have several).
    in_flight: AtomicU32,
    /// Whether any request has started; a connection that never sent one gets only the
    /// head timeout.
    used: AtomicBool,
    /// When the connection was accepted or last finished a request.
    last_done: Mutex<Instant>,
}

impl Activity {
    /// Marks a request as started; the guard marks it finished when dropped, which hyper
    /// does whether the request completed or was cancelled.
    fn start(self: &Arc<Self>) -> InFlight {
        self.used.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// When the connection counts as idle, or `None` while a request is in flight.
    fn idle_deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let limit = if self.used.load(Ordering::Acquire) {
            limits.idle_timeout
        } else {
            limits.header_read_timeout
        };
        Some(*self.last_done.lock().unwrap_or_else(|p| p.into_inner()) + limit)
    }
}

/// One request in flight on a connection (see [`Activity::start`]).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_done.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the connection's watchdog timer does when it fires.
#[derive(Clone, Copy)]
enum Watchdog {
    /// Check whether the connection is idle.
    IdleCheck(Instant),
    /// The connection was asked to close and has not: cut it.
    Cut(Instant),
    /// Shutting down: the accept loop's grace period bounds the connection.
    Off,
}

impl Connection {
    /// Sets up the transport, then serves HTTP on it until the connection ends.
    async fn start<H, F, E>(
        mut self,
        stream: TcpStream,
        peer: SocketAddr,
        transport: &Transport,
        handler: H,
    ) where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        // Small request/response exchanges: waiting to coalesce writes only adds latency.
        let _ = stream.set_nodelay(true);
        match transport {
            Transport::Plain => self.serve(stream, peer, handler).await,
            Transport::Tls(tls) => {
                if let Some(stream) = self.handshake(tls, stream, peer).await {
                    self.serve(stream, peer, handler).await;
                }
            }
        }
    }

    /// The TLS handshake, bounded by the head timeout and abandoned on shutdown (no request
    /// is in flight yet, so there is nothing to drain). `None` when it did not complete.
    async fn handshake(
        &mut self,
        tls: &ServerTls,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let limit = self.limits.header_read_timeout;
        let accepting = tokio::time::timeout(limit, tls.acceptor().accept(stream));
        tokio::select! {
            result = accepting => match result {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(error)) => {
                    // Scanners, plain-HTTP clients and refused client certificates: the
                    // client learns why from the TLS alert; the log keeps it quiet.
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not completed within the head timeout");
                    None
                }
            },
            _ = self.phase.wait_for(|phase| *phase != Phase::Serving) => None,
        }
    }

    async fn serve<S, H, F, E>(mut self, stream: S, peer: SocketAddr, handler: H)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let activity = Arc::new(Activity {
            in_flight: AtomicU32::new(0),
            used: AtomicBool::new(false),
            last_done: Mutex::new(Instant::now()),
        });
        let service = {
            let activity = Arc::clone(&activity);
            let handler = Arc::new(handler);
            service_fn(move |request| {
                let in_flight = activity.start();
                let handling = handler(request, peer);
                async move {
                    let result = handling.await;
                    drop(in_flight);
                    result
                }
            })
        };
        let connection = self.builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        // Deadlines can move earlier (a first request switches the limit from the head
        // timeout to the idle timeout), so the watchdog looks at least this often.
        let tick = self
            .limits
            .idle_timeout
            .min(self.limits.header_read_timeout);
        let mut watchdog = Watchdog::IdleCheck(Instant::now() + tick);
        loop {
            let fires_at = match watchdog {
                Watchdog::IdleCheck(at) | Watchdog::Cut(at) => Some(at),
                Watchdog::Off => None,
            };
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                changed = self.phase.changed() => {
                    match (changed, *self.phase.borrow()) {
                        (Ok(()), Phase::Serving) => {}
                        (Ok(()), Phase::Draining) => {
                            connection.as_mut().graceful_shutdown();
                            watchdog = Watchdog::Off;
                        }
                        // Grace over, or the accept loop is gone: cut the connection.
                        (Ok(()), Phase::Closing) | (Err(_), _) => return,
                    }
                }
                () = tokio::time::sleep_until(fires_at.unwrap_or_else(Instant::now)), if fires_at.is_some() => {
                    let now = Instant::now();
                    watchdog = match (watchdog, activity.idle_deadline(&self.limits)) {
                        (Watchdog::Cut(_), _) => {
                            tracing::debug!(%peer, "cutting a connection that did not close when idle");
                            return;
                        }
                        (_, Some(deadline)) if deadline <= now => {
                            tracing::debug!(%peer, "closing idle connection");
                            connection.as_mut().graceful_shutdown();
                            Watchdog::Cut(now + self.limits.header_read_timeout)
                        }
                        (_, Some(deadline)) => Watchdog::IdleCheck(deadline.min(now + tick)),
                        (_, None) => Watchdog::IdleCheck(now + tick),
                    };
                }
            }
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
