//! The simulator's listener: the gateway's own [`crate::server::run`] with the simulator's
//! (generous) limits, so both sides share one accept loop, drain and idle handling.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{Shared, routes};
use crate::server::Limits;

/// How long in-flight requests may run after shutdown before the loop gives up on them.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Most connections served at once (see [`crate::server`] for who gives way at the cap).
pub const MAX_CONNECTIONS: usize = 4096;
/// Time a client has to send a request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive connections idle this long are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `listener` until `shutdown` resolves, then drains open connections.
pub(crate) async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits {
        max_connections: MAX_CONNECTIONS,
        // Its clients are the gateways under test and the benchmarks, all on loopback.
        max_connections_per_ip: MAX_CONNECTIONS,
        max_header_bytes: 64 * 1024,
        header_read_timeout: HEADER_READ_TIMEOUT,
        idle_timeout: IDLE_TIMEOUT,
        shutdown_grace: DRAIN_GRACE,
    };
    let handler = move |request, _peer| routes::handle(Arc::clone(&shared), request);
    crate::server::run(listener, limits, handler, shutdown).await;
}
