//! The simulator's listener: the crate's development accept loop ([`crate::serve::run`])
//! with the simulator's (generous) limits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{Shared, routes};
use crate::serve::Limits;

/// How long in-flight requests may run after shutdown before the loop gives up on them.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// Most connections served at once; its clients are the gateways under test and the
/// benchmarks, all on loopback.
pub const MAX_CONNECTIONS: usize = 4096;
/// Time a client has to send a request head (and, on HTTP/1 keep-alive, the next one).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` resolves, then drains open connections.
pub(crate) async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits {
        max_connections: MAX_CONNECTIONS,
        max_header_bytes: 64 * 1024,
        header_read_timeout: HEADER_READ_TIMEOUT,
        shutdown_grace: DRAIN_GRACE,
    };
    let handler = move |request, _peer| routes::handle(Arc::clone(&shared), request);
    crate::serve::run(listener, limits, handler, shutdown).await;
}
