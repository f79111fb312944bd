//! One accepted connection: its transport (TLS handshake when configured), HTTP on it, the
//! idle watchdog, and the two ways it ends early: the accept loop's shutdown phases, and
//! being shed from its slot (see [`super::slots`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::slots::Slot;
use super::{Limits, Phase, Transport};
use crate::tls::ServerTls;

/// Why hyper's service failed, so that hyper closes the connection without an answer.
#[derive(Debug, thiserror::Error)]
enum ServiceError {
    /// The connection was shed just before hyper handed the request over: it is closed as
    /// if it had been shed a moment earlier.
    #[error("connection shed to make room for another")]
    Shed,
    /// The handler asked for it (the simulator's "drop the connection" fault).
    #[error(transparent)]
    Handler(Box<dyn std::error::Error + Send + Sync>),
}

/// One accepted connection and what it needs to serve itself.
pub(super) struct Connection {
    /// The shared HTTP/1 + HTTP/2 settings.
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
    /// Idle and shutdown bounds.
    pub(super) limits: Limits,
    /// Shutdown phase broadcast by the accept loop.
    pub(super) phase: watch::Receiver<Phase>,
    /// Its slot in the listener's table: told when the connection is shed.
    pub(super) slot: Slot,
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
    pub(super) async fn start<H, F, E>(
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

    /// The TLS handshake, bounded by the head timeout and abandoned on shutdown or when
    /// the connection is shed (no request is in flight yet, so there is nothing to drain).
    /// `None` when it did not complete.
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
            () = self.slot.shed() => {
                tracing::debug!(%peer, "shed during its TLS handshake");
                None
            }
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
            let requests = self.slot.requests();
            let handler = Arc::new(handler);
            service_fn(move |request| {
                // A complete head has arrived: from now on the connection holds its slot
                // until the request ends, unless it was shed a moment before.
                let busy = requests.begin();
                let started = busy.as_ref().map(|_| {
                    let in_flight = activity.start();
                    (in_flight, handler(request, peer))
                });
                async move {
                    let (in_flight, handling) = started.ok_or(ServiceError::Shed)?;
                    let result = handling.await;
                    drop(in_flight);
                    drop(busy);
                    result.map_err(|error| ServiceError::Handler(error.into()))
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
                // Shed with nothing in flight (else it could not have been): close now.
                () = self.slot.shed() => {
                    tracing::debug!(%peer, "connection shed to make room for another");
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
