//! Signature keys: a parsed JWKS ([`KeySet`], in `set`) and the store that keeps it current
//! ([`KeyStore`]: fetched at start-up, refreshed periodically, re-fetched on an unknown
//! `kid` at most once per cool-down, the last good set kept when a fetch fails).
//!
//! Keys are turned into `DecodingKey`s once, when a set is loaded, never per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;
use tokio::time::Instant;

use crate::backoff::backoff_delay;
use crate::metrics::{ResultLabel, result_family};
use crate::outbound::{self, HttpsClient};

mod set;
pub use set::{KeySet, KeySetError, VerifyingKey};

/// Largest JWKS or discovery document we read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS file, loaded with the configuration.
    Static(Arc<KeySet>),
    /// A JWKS URL.
    JwksUrl(Uri),
    /// An OIDC discovery document whose `jwks_uri` names the JWKS; its `issuer` must equal
    /// the configured issuer.
    Discovery(Uri),
}

/// How the store fetches and when.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// The configured issuer (checked against a discovery document).
    pub issuer: String,
    /// The allowed algorithms (keys that cannot verify one are skipped).
    pub algorithms: Vec<Algorithm>,
    /// Periodic refresh interval.
    pub refresh: Duration,
    /// Least time between two fetches caused by unknown `kid`s.
    pub refetch_cooldown: Duration,
    /// Bound on one fetch.
    pub timeout: Duration,
    /// Whether `http://` URLs may be followed (a discovery document could name one).
    pub allow_insecure_http: bool,
}

/// Why a fetch failed (logged; the last good set stays in use). Each names the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Transport failure or timeout (the message names the URL and the cause chain).
    #[error("{0}")]
    Exchange(#[from] outbound::ExchangeError),
    /// Non-200 answer.
    #[error("{target}: HTTP {status}")]
    Status {
        /// `GET URL`.
        target: String,
        /// The answer's status.
        status: u16,
    },
    /// The discovery document is unusable or names another issuer.
    #[error("discovery document at {url}: {reason}")]
    Discovery {
        /// The discovery URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The JWKS is unusable.
    #[error("JWKS at {url}: {source}")]
    KeySet {
        /// The JWKS URL.
        url: String,
        /// What is wrong with it.
        source: KeySetError,
    },
}

/// Longest value of a fetched document quoted in an error: the IdP's text, not ours.
const MAX_QUOTED: usize = 200;

/// `value` quoted for an error message, cut to [`MAX_QUOTED`] characters.
fn quoted(value: &str) -> String {
    let cut: String = value.chars().take(MAX_QUOTED).collect();
    if cut.len() < value.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// The current key set and the machinery that keeps it current.
pub struct KeyStore {
    /// Where keys come from.
    source: KeySource,
    /// Fetch settings.
    settings: FetchSettings,
    /// The HTTPS client for the IdP (unused for a static set).
    client: Option<HttpsClient>,
    /// The set in use; `None` until the first successful load.
    current: RwLock<Option<Arc<KeySet>>>,
    /// Incremented whenever the set is replaced; verified-token cache entries carry it.
    generation: AtomicU64,
    /// Held while fetching: one fetch at a time.
    fetch_lock: tokio::sync::Mutex<()>,
    /// When the last on-demand fetch started: the cool-down counts from it alone, so that
    /// the start-up and periodic fetches never delay a rotated-in key.
    last_refetch: Mutex<Option<Instant>>,
    /// SHA-256 of the last document loaded, to tell a changed set from the same one.
    last_digest: Mutex<Option<[u8; 32]>>,
    /// Fetches attempted (tests).
    fetches: AtomicU64,
    /// Fetches by result (`sipgw_jwks_refreshes_total`).
    refreshes: Family<ResultLabel, Counter>,
    /// When a fetch last succeeded, the set changed or not
    /// (`sipgw_jwks_last_success_timestamp_seconds`: how stale the set may be).
    last_success: Mutex<Option<SystemTime>>,
}

impl KeyStore {
    /// A store over `source`; a static set is usable at once, remote ones after the first
    /// fetch ([`KeyStore::run_refresher`] does it at start-up).
    pub fn new(source: KeySource, settings: FetchSettings, client: Option<HttpsClient>) -> Self {
        let current = match &source {
            KeySource::Static(set) => Some(Arc::clone(set)),
            KeySource::JwksUrl(_) | KeySource::Discovery(_) => None,
        };
        Self {
            source,
            settings,
            client,
            current: RwLock::new(current),
            generation: AtomicU64::new(1),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_refetch: Mutex::new(None),
            last_digest: Mutex::new(None),
            fetches: AtomicU64::new(0),
            refreshes: result_family(),
            last_success: Mutex::new(None),
        }
    }

    /// Fetches by result, for the metrics registry.
    pub fn refreshes(&self) -> &Family<ResultLabel, Counter> {
        &self.refreshes
    }

    /// Whether the set is fetched (from a URL or through discovery), and so can go stale.
    pub fn is_remote(&self) -> bool {
        !matches!(self.source, KeySource::Static(_))
    }

    /// When a fetch last succeeded; `None` before the first success (and always for a
    /// set from a file).
    pub fn last_success(&self) -> Option<SystemTime> {
        *self.last_success.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The set in use, if one was loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes whenever the set is replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a key set is loaded (readiness).
    pub fn is_loaded(&self) -> bool {
        self.current().is_some()
    }

    /// Fetches attempted so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// On demand (a token named an unknown `kid`, or no set is loaded yet): fetch again,
    /// unless a fetch started within the cool-down (then another caller's fetch already
    /// answered the question, or the IdP is being asked too often). A fetch in progress is
    /// waited for. Returns whether a new set was loaded meanwhile.
    pub async fn refetch(&self) -> bool {
        if matches!(self.source, KeySource::Static(_)) {
            return false;
        }
        let before = self.generation();
        let _fetching = self.fetch_lock.lock().await;
        if self.generation() != before {
            return true; // someone fetched while we waited
        }
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < self.settings.refetch_cooldown) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.fetch_locked().await.is_ok()
    }

    /// Fetches at start-up, then every `refresh`; after a failure retries with back-off and
    /// keeps the last good set. Returns at once for a static set.
    pub async fn run_refresher(self: Arc<Self>) {
        if matches!(self.source, KeySource::Static(_)) {
            return;
        }
        let mut failures = 0u32;
        loop {
            let result = {
                let _fetching = self.fetch_lock.lock().await;
                self.fetch_locked().await
            };
            let wait = match result {
                Ok(()) => {
                    failures = 0;
                    self.settings.refresh
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    // Without any key set, retry soon; with one, there is less hurry.
                    backoff_delay(failures, fastrand::f64()).min(self.settings.refresh)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One fetch; the caller holds `fetch_lock`.
    async fn fetch_locked(&self) -> Result<(), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_set().await;
        self.refreshes
            .get_or_create(&ResultLabel::of(result.is_ok()))
            .inc();
        if result.is_ok() {
            *self.last_success.lock().unwrap_or_else(|p| p.into_inner()) = Some(SystemTime::now());
        }
        match result {
            Ok((set, digest)) => {
                // An unchanged document keeps the set (and the verified-token cache) as is.
                let mut last = self.last_digest.lock().unwrap_or_else(|p| p.into_inner());
                if *last == Some(digest) {
                    tracing::debug!("JWKS unchanged");
                    return Ok(());
                }
                *last = Some(digest);
                let keys = set.len();
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(set));
                self.generation.fetch_add(1, Ordering::AcqRel);
                tracing::info!(keys, "JWKS loaded");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, keeping_last_good = self.is_loaded(), "JWKS fetch failed");
                Err(error)
            }
        }
    }

    /// Fetches and parses the set; also returns the document's SHA-256.
    async fn fetch_set(&self) -> Result<(KeySet, [u8; 32]), FetchError> {
        let jwks_uri = match &self.source {
            KeySource::Static(_) => unreachable!("static key sets are never fetched"),
            KeySource::JwksUrl(uri) => uri.clone(),
            KeySource::Discovery(uri) => self.discover(uri).await?,
        };
        let (set, document) = self.keys_at(&jwks_uri).await?;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &document).as_ref(),
        );
        Ok((set, digest))
    }

    /// Fetches and parses the JWKS at `uri`, leaving the store as it is (`check-config
    /// --probe` calls it too); also returns the document.
    pub async fn keys_at(&self, uri: &Uri) -> Result<(KeySet, Bytes), FetchError> {
        let document = self.get(uri).await?;
        let set = KeySet::parse(&document, &self.settings.algorithms).map_err(|source| {
            FetchError::KeySet {
                url: outbound::cause::safe_url(uri),
                source,
            }
        })?;
        Ok((set, document))
    }

    /// Reads a discovery document: its `issuer` must be ours, its `jwks_uri` a usable URL,
    /// which is returned. Leaves the store as it is (`check-config --probe` calls it too).
    pub async fn discover(&self, uri: &Uri) -> Result<Uri, FetchError> {
        let failed = |reason: String| FetchError::Discovery {
            url: outbound::cause::safe_url(uri),
            reason,
        };
        let document = self.get(uri).await?;
        let value: Value =
            serde_json::from_slice(&document).map_err(|_| failed("not JSON".into()))?;
        let issuer = value.get("issuer").and_then(Value::as_str);
        if issuer != Some(self.settings.issuer.as_str()) {
            let theirs = issuer.map_or_else(|| "(none)".to_owned(), quoted);
            return Err(failed(format!(
                "its issuer {theirs} is not auth.issuer {}",
                quoted(&self.settings.issuer)
            )));
        }
        let jwks_uri: Uri = value
            .get("jwks_uri")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| failed("no usable jwks_uri".into()))?;
        match jwks_uri.scheme_str() {
            Some("https") => Ok(jwks_uri),
            Some("http") if self.settings.allow_insecure_http => Ok(jwks_uri),
            _ => Err(failed(format!(
                "its jwks_uri {} is not https",
                quoted(&outbound::cause::safe_url(&jwks_uri))
            ))),
        }
    }

    async fn get(&self, uri: &Uri) -> Result<Bytes, FetchError> {
        let client = self
            .client
            .as_ref()
            .expect("remote key sources have a client");
        let target = outbound::cause::target(&http::Method::GET, uri);
        let request = Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| outbound::ExchangeError::Transport {
                target: target.clone(),
                cause: e.to_string(),
            })?;
        let deadline = Instant::now() + self.settings.timeout;
        let (status, body) =
            outbound::exchange(client, request, deadline, MAX_DOCUMENT_BYTES).await?;
        if status != StatusCode::OK {
            return Err(FetchError::Status {
                target,
                status: status.as_u16(),
            });
        }
        Ok(body)
    }
}
