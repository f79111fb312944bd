//! Outbound HTTP(S), shared by the vendor client, the JWKS fetcher and the trace exporter: a
//! pooled hyper-util client with rustls (Mozilla roots plus configured extra roots) that
//! speaks HTTP/2 to a server offering it by ALPN and HTTP/1.1 otherwise, and one bounded
//! exchange.
//!
//! Both are built once at start-up; a request costs no TLS or pool set-up beyond the
//! handshake of a new connection. A failure names the request (`METHOD URL`) and its whole
//! cause chain ([`cause`]): the operator reads what failed where, never a bare
//! `client error (Connect)`.

pub mod cause;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;

/// The pooled client type.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Shorter than common server keep-alive timeouts (60-75 s), so we rarely pick a connection
/// the server is just closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a client that trusts the Mozilla roots plus `extra_roots`. Plain `http://` URLs
/// work too: whether they are allowed is the configuration's decision, checked there.
pub fn client(
    extra_roots: &[CertificateDer<'static>],
    connect_timeout: Duration,
) -> Result<HttpsClient, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        // ALPN offers h2, then http/1.1; plain `http://` stays HTTP/1.1.
        .enable_all_versions()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(https))
}

/// Why an exchange failed. A connection that was never made cannot have changed anything;
/// one that failed later may have. Each variant names the request (`target`, from
/// [`cause::target`]: no credentials, no query) and what went wrong; the request's body
/// (which may hold a secret) never appears.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// No complete answer before the deadline.
    #[error("{target}: no answer in time")]
    Timeout {
        /// `METHOD URL`.
        target: String,
    },
    /// The connection could not be established (refused, DNS, TLS handshake).
    #[error("{target}: cannot connect: {cause}")]
    Connect {
        /// `METHOD URL`.
        target: String,
        /// The cause chain ([`cause::chain`]).
        cause: String,
    },
    /// The connection failed after the request may have been sent, or the answer was over
    /// the size limit.
    #[error("{target}: connection failed: {cause}")]
    Transport {
        /// `METHOD URL`.
        target: String,
        /// The cause chain ([`cause::chain`]).
        cause: String,
    },
}

/// Sends one request and reads the whole answer, at most `max_bytes`, before `deadline`.
///
/// hyper-util's pool may resend a request it could not write on a reused connection (the
/// server had just closed it); that is safe, since nothing reached the server.
pub async fn exchange(
    client: &HttpsClient,
    request: Request<Full<Bytes>>,
    deadline: Instant,
    max_bytes: usize,
) -> Result<(StatusCode, Bytes), ExchangeError> {
    let target = cause::target(request.method(), request.uri());
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            let cause = cause::chain(&e);
            let target = target.clone();
            if e.is_connect() {
                ExchangeError::Connect { target, cause }
            } else {
                ExchangeError::Transport { target, cause }
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| ExchangeError::Transport {
                target: target.clone(),
                cause: cause::chain(&*e),
            })?
            .to_bytes();
        Ok((status, body))
    };
    // Boxed: every request's task carries the vendor call's future, and tokio copies a
    // task's future (and its output slot, as large) as it spawns and finishes it.
    match tokio::time::timeout_at(deadline, Box::pin(exchange)).await {
        Ok(result) => result,
        Err(_) => Err(ExchangeError::Timeout { target }),
    }
}
