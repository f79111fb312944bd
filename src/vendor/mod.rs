//! The vendor side: its HTTP client ([`VendorClient`]) and the AccessToken cache ([`token`]).
//!
//! Requests to the vendor are built from scratch: nothing of the caller's request (its
//! `Authorization`, cookies, other headers) is ever forwarded. The client is built once at
//! start-up (TLS roots, connection pool) and shared by every request.

pub mod config;
pub mod token;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::config_key::{InvalidKey, invalid};
use crate::metrics::{VendorCall, VendorMetrics, VendorStatus};
use crate::outbound::{self, ExchangeError};
use config::VendorConfig;
pub use token::{AccessToken, TokenCache, TokenSource, TokenUnavailable};
pub use wire::UpdateOutcome;

/// `tokenByAkSk` (docs/vendor.md).
pub const TOKEN_PATH: &str = "/apigovernance/api/oauth/tokenByAkSk";
/// `updateSipPhonePassword` (docs/vendor.md).
pub const UPDATE_PATH: &str = "/apiaccess/rest/cc-management/v1/sipPhone/updateSipPhonePassword";
/// Largest vendor response body we read; the real ones are a few hundred bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Shortest token life we work with: the refresher replaces a token at 80 % of its life, so
/// a shorter one would have it fetch several times a second.
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(10);

/// Why a vendor call failed. The split between `Connect` and `Transport` matters: a
/// connection that was never made cannot have changed anything, one cut after the request
/// was sent may have. The two carry [`ExchangeError`]'s text: the call's `METHOD URL` and
/// the cause chain; [`VendorClient::describe`] names the URL for the others.
#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// No answer within `vendor.timeout_ms`.
    #[error("no answer within the vendor timeout")]
    Timeout,
    /// The connection could not be established (refused, DNS, TLS handshake).
    #[error("vendor call {0}")]
    Connect(String),
    /// The connection failed after the request may have been sent.
    #[error("vendor call {0}")]
    Transport(String),
    /// HTTP 401: the AccessToken (or the app key and secret) was refused.
    #[error("the vendor answered 401 Unauthorized")]
    Unauthorized,
    /// Any other non-200 status.
    #[error("the vendor answered HTTP {0}")]
    Status(u16),
    /// A 200 whose body is not what the vendor documents.
    #[error("the vendor answered an unparsable body")]
    BadBody,
}

/// One password change as sent to the vendor.
pub struct UpdateRequest<'a> {
    /// The agent account (`userAccount`).
    pub user_account: &'a str,
    /// The agent's current password.
    pub account_pwd: &'a SecretString,
    /// The new password.
    pub new_phone_pwd: &'a SecretString,
    /// Our request id, forwarded as `X-Request-Id` for cross-system tracing.
    pub request_id: &'a str,
    /// `traceparent` and `tracestate` for the vendor (see
    /// [`crate::telemetry::propagation::outgoing`]); empty when the request has no trace.
    pub trace_headers: &'a http::HeaderMap,
}

/// Pooled HTTP(S) client for the vendor's two calls.
#[derive(Clone)]
pub struct VendorClient {
    /// Keep-alive connection pool with rustls; cloning shares the pool.
    http: outbound::HttpsClient,
    /// Settings: base URL, credentials, timeout, body shape.
    config: Arc<VendorConfig>,
    /// `{base}{TOKEN_PATH}`, parsed once.
    token_uri: Uri,
    /// `{base}{UPDATE_PATH}`, parsed once.
    update_uri: Uri,
    /// Call counters and durations; cloning shares them.
    metrics: VendorMetrics,
}

impl VendorClient {
    /// Builds the TLS configuration (Mozilla roots plus `ca_file`) and the connection pool.
    pub fn new(config: VendorConfig) -> Result<Self, InvalidKey> {
        let http = outbound::client(&config.extra_roots, config.timeout)
            .map_err(|e| invalid("vendor.ca_file", format!("TLS set-up failed: {e}")))?;
        let uri = |path: &str| {
            format!("{}{path}", config.base_url)
                .parse::<Uri>()
                .map_err(|e| invalid("vendor.base_url", format!("cannot form a request URL: {e}")))
        };
        Ok(Self {
            http,
            token_uri: uri(TOKEN_PATH)?,
            update_uri: uri(UPDATE_PATH)?,
            config: Arc::new(config),
            metrics: VendorMetrics::default(),
        })
    }

    /// The call counters and durations, for the metrics registry.
    pub fn metrics(&self) -> &VendorMetrics {
        &self.metrics
    }

    /// Calls `tokenByAkSk` for a new AccessToken.
    pub async fn fetch_token(&self) -> Result<wire::FetchedToken, VendorError> {
        let body = serde_json::json!({
            "app_key": self.config.app_key,
            "app_secret": self.config.app_secret.expose_secret(),
        });
        let request = Request::post(&self.token_uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-token-expire", self.config.token_ttl.as_secs())
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| VendorError::Transport(format!("{}: {e}", self.token_target())))?;
        let deadline = Instant::now() + self.config.timeout;
        let (status, body) = self.send(VendorCall::Token, request, deadline).await?;
        match status {
            StatusCode::OK => {
                let mut token = wire::parse_token(&body).ok_or(VendorError::BadBody)?;
                // Never count on a longer life than we asked for (it also keeps clock
                // arithmetic far from overflow); refuse one too short to refresh in time.
                token.lifetime = token.lifetime.min(self.config.token_ttl);
                if token.lifetime < MIN_TOKEN_LIFETIME {
                    return Err(VendorError::BadBody);
                }
                Ok(token)
            }
            StatusCode::UNAUTHORIZED => Err(VendorError::Unauthorized),
            other => Err(VendorError::Status(other.as_u16())),
        }
    }

    /// Calls `updateSipPhonePassword` once with `token`, giving up at `vendor.timeout_ms` or
    /// at `deadline` (the request's own), whichever comes first. Never retries: see the
    /// gateway.
    pub async fn update_password(
        &self,
        token: &AccessToken,
        change: &UpdateRequest<'_>,
        deadline: Instant,
    ) -> Result<UpdateOutcome, VendorError> {
        let body = wire::update_body(self.config.body_shape, change);
        let mut bearer =
            HeaderValue::try_from(format!("Bearer {}", token.secret().expose_secret()))
                .map_err(|_| VendorError::BadBody)?;
        // Keeps the token out of `Debug` output and out of HPACK tables.
        bearer.set_sensitive(true);
        let mut request = Request::post(&self.update_uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, bearer)
            .header("x-app-key", &self.config.app_key)
            .header(crate::error::REQUEST_ID_HEADER, change.request_id);
        for (name, value) in change.trace_headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(|e| {
            VendorError::Transport(format!(
                "{}: {e}",
                outbound::cause::target(&http::Method::POST, &self.update_uri)
            ))
        })?;
        let deadline = deadline.min(Instant::now() + self.config.timeout);
        let (status, body) = self.send(VendorCall::Update, request, deadline).await?;
        match status {
            StatusCode::OK => wire::parse_update(&body).ok_or(VendorError::BadBody),
            StatusCode::UNAUTHORIZED => Err(VendorError::Unauthorized),
            other => Err(VendorError::Status(other.as_u16())),
        }
    }

    /// One exchange with the vendor, counted in the metrics by its status or failure.
    async fn send(
        &self,
        call: VendorCall,
        request: Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<(StatusCode, Bytes), VendorError> {
        let started = Instant::now();
        let result = outbound::exchange(&self.http, request, deadline, MAX_RESPONSE_BYTES).await;
        let status = match &result {
            Ok((status, _)) => VendorStatus::Http(status.as_u16()),
            Err(ExchangeError::Timeout { .. }) => VendorStatus::Timeout,
            Err(ExchangeError::Connect { .. }) => VendorStatus::ConnectError,
            Err(ExchangeError::Transport { .. }) => VendorStatus::TransportError,
        };
        self.metrics
            .observe(call, status, started.elapsed().as_secs_f64());
        result.map_err(|e| match e {
            ExchangeError::Timeout { .. } => VendorError::Timeout,
            ExchangeError::Connect { .. } => VendorError::Connect(e.to_string()),
            ExchangeError::Transport { .. } => VendorError::Transport(e.to_string()),
        })
    }

    /// `POST <token URL>`, as failures name it.
    pub fn token_target(&self) -> String {
        self.target(VendorCall::Token)
    }

    /// `POST <URL>` of `call`, as failures name it.
    fn target(&self, call: VendorCall) -> String {
        let uri = match call {
            VendorCall::Token => &self.token_uri,
            VendorCall::Update => &self.update_uri,
        };
        outbound::cause::target(&http::Method::POST, uri)
    }

    /// A failed `call` as one line naming the URL: the connection failures already carry
    /// it, the others (a status, a timeout, a bad body) get it in front.
    pub fn describe(&self, call: VendorCall, error: &VendorError) -> String {
        match error {
            VendorError::Connect(_) | VendorError::Transport(_) => error.to_string(),
            _ => format!("{}: {error}", self.target(call)),
        }
    }
}

impl TokenSource for VendorClient {
    fn fetch(&self) -> token::FetchFuture<'_> {
        Box::pin(self.fetch_token())
    }

    fn describe(&self, error: &VendorError) -> String {
        VendorClient::describe(self, VendorCall::Token, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> VendorClient {
        let section = config::VendorSection {
            base_url: Some("https://vendor.example".into()),
            app_key: Some("ak".into()),
            ..Default::default()
        };
        let config = VendorConfig::from_section(&section, |_| Some("sk".into())).unwrap();
        VendorClient::new(config).unwrap()
    }

    #[test]
    fn a_failure_without_a_connection_cause_is_named_by_the_calls_url() {
        let client = client();
        let update = client.describe(VendorCall::Update, &VendorError::Status(502));
        assert_eq!(
            update,
            format!("POST https://vendor.example{UPDATE_PATH}: the vendor answered HTTP 502")
        );
        let token = client.describe(VendorCall::Token, &VendorError::Timeout);
        assert!(
            token.starts_with(&format!("POST https://vendor.example{TOKEN_PATH}: ")),
            "{token}"
        );
        // A connection failure already names its URL: nothing is put in front twice.
        let connect = VendorError::Connect("POST https://vendor.example/x: refused".into());
        assert_eq!(
            client.describe(VendorCall::Update, &connect),
            connect.to_string()
        );
    }
}
