//! The parts of one gateway process, built once from the config: the composition root
//! hands each consumer only the parts it needs (the pipeline its own, the admin listener
//! what readiness and the metrics read, the background tasks what they keep fresh).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{StartError, preflight};
use crate::admin::{self, metrics::ListenerStats};
use crate::auth::Authenticator;
use crate::auth::keys::KeyStore;
use crate::config::{Config, ConfigError};
use crate::gateway::{self, Auditor, Gateway};
use crate::limits::Limits;
use crate::metrics::RequestMetrics;
use crate::password_policy::PasswordPolicy;
use crate::request::forwarded::TrustedProxies;
use crate::tls::ServerTls;
use crate::vendor::{TokenCache, TokenSource, VendorClient};

/// Every long-lived part of a gateway process. The shared parts are handles: each consumer
/// gets a clone of the ones it needs, never the whole.
pub struct Parts {
    /// The vendor's pooled HTTP client (and its call metrics).
    pub vendor: VendorClient,
    /// The vendor AccessToken cache, refreshed in the background.
    pub tokens: Arc<TokenCache>,
    /// The callers' JWT key set, refreshed in the background when remote.
    pub keys: Arc<KeyStore>,
    /// The token check, over `keys`.
    pub auth: Arc<Authenticator>,
    /// Quotas, lockout shield, per-agent turns, idempotency; in process or on Redis.
    pub limits: Arc<Limits>,
    /// The audit trail and its flood control.
    pub auditor: Arc<Auditor>,
    /// The pipeline's request counters and durations.
    pub requests: RequestMetrics,
    /// The compiled `[password_policy]`.
    pub policy: PasswordPolicy,
    /// `server.request_timeout_ms`.
    pub request_timeout: Duration,
    /// `server.trusted_proxies`.
    pub trusted_proxies: TrustedProxies,
    /// Whether `[telemetry] otlp_endpoint` is set (request spans then carry trace contexts).
    pub exporting_traces: bool,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Parts {
    /// Builds the parts from a validated config. The audit trail is opened (and its chain
    /// checked) here; nothing is fetched yet (see [`Parts::spawn_background`]).
    pub fn build(config: &Config) -> Result<Self, StartError> {
        let vendor = VendorClient::new(config.vendor.clone()).map_err(ConfigError::from)?;
        let source: Arc<dyn TokenSource> = Arc::new(vendor.clone());
        let auth = &config.auth;
        let idp_client = preflight::idp_client(auth)?;
        let keys = Arc::new(KeyStore::new(
            auth.source.clone(),
            auth.fetch.clone(),
            idp_client,
        ));
        let limits = Limits::new(&config.limits, &config.vendor.app_secret).map_err(|e| {
            StartError::Redis {
                cause: format!("the client could not be set up ({:?})", e.kind()),
            }
        })?;
        // The same check as `check-config`'s, before the trail is opened (and created).
        preflight::audit_usable(&config.audit)?;
        let auditor = Auditor::open(&config.audit).map_err(|cause| StartError::AuditTrail {
            path: config.audit.path.clone(),
            cause,
        })?;
        Ok(Self {
            vendor,
            tokens: Arc::new(TokenCache::new(source)),
            auth: Arc::new(Authenticator::new(auth.settings.clone(), Arc::clone(&keys))),
            keys,
            limits: Arc::new(limits),
            auditor: Arc::new(auditor),
            requests: RequestMetrics::new(crate::error::answer_codes()),
            policy: config.password_policy.clone(),
            request_timeout: config.server.request_timeout,
            trusted_proxies: config.server.trusted_proxies.clone(),
            exporting_traces: config.telemetry.traces_url.is_some(),
        })
    }

    /// A Redis that refuses our credentials is a configuration error: stop now, naming the
    /// key, rather than run a replica that refuses every change. (An unreachable Redis is
    /// not: the replica starts on its fallbacks, as it rides out an outage.)
    pub async fn check_redis_credentials(&self) -> Result<(), StartError> {
        self.limits
            .check_redis_credentials()
            .await
            .map_err(|cause| StartError::RedisRefused { cause })
    }

    /// The pipeline, over its share of the parts.
    pub fn gateway(&self) -> Gateway {
        Gateway::new(gateway::Parts {
            auth: Arc::clone(&self.auth),
            auditor: Arc::clone(&self.auditor),
            limits: Arc::clone(&self.limits),
            policy: self.policy.clone(),
            request_timeout: self.request_timeout,
            vendor: self.vendor.clone(),
            tokens: Arc::clone(&self.tokens),
            metrics: self.requests.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            exporting_traces: self.exporting_traces,
        })
    }

    /// What `/readyz` reads.
    pub fn readiness(&self) -> admin::Readiness {
        admin::Readiness {
            keys: Arc::clone(&self.keys),
            tokens: Arc::clone(&self.tokens),
            limits: Arc::clone(&self.limits),
            auditor: Arc::clone(&self.auditor),
        }
    }

    /// What `/metrics` registers and reads, with the API listener's TLS (when configured)
    /// and the listeners' connection slots.
    pub fn metric_sources(
        &self,
        tls: Option<Arc<ServerTls>>,
        listeners: Vec<ListenerStats>,
    ) -> admin::metrics::Sources {
        admin::metrics::Sources {
            requests: self.requests.clone(),
            vendor: self.vendor.metrics().clone(),
            tokens: Arc::clone(&self.tokens),
            auth: Arc::clone(&self.auth),
            auditor: Arc::clone(&self.auditor),
            limits: Arc::clone(&self.limits),
            tls,
            listeners,
        }
    }

    /// Starts what keeps the parts fresh: the first AccessToken is fetched now rather than
    /// on the first request (and kept fresh), a remote key set likewise; the limits'
    /// janitor and the audit flood control's sweeper run on their own.
    pub fn spawn_background(&self) -> Background {
        Background(vec![
            tokio::spawn(Arc::clone(&self.tokens).run_refresher()),
            tokio::spawn(Arc::clone(&self.keys).run_refresher()),
            tokio::spawn(Arc::clone(&self.limits).run_janitor()),
            tokio::spawn(Arc::clone(&self.auditor).run_sweeper()),
        ])
    }
}

/// The background tasks of [`Parts::spawn_background`]; stopped when dropped.
#[derive(Debug)]
pub struct Background(Vec<JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
