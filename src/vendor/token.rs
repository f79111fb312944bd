//! The vendor AccessToken cache (docs/vendor.md).
//!
//! - One token is cached and shared by every request.
//! - A background task refreshes it at 80 % of its life, so requests rarely wait for a fetch.
//! - At most one fetch is in flight: callers that find no usable token queue on one lock and
//!   the first one fetches; the others find the fresh token when their turn comes.
//! - After a failed fetch nobody fetches again until an exponential, jittered back-off has
//!   passed, so a failing `tokenByAkSk` sees a trickle of requests, not one per caller. A token
//!   that is still valid keeps being used meanwhile.
//! - A token is used only until shortly before its expiry ([`Lifetime::usable_until`]), so
//!   it does not expire between our check and the vendor's.
//!
//! Times come from `tokio::time`, so the arithmetic is tested with paused time.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use secrecy::SecretString;
use tokio::time::Instant;

use super::VendorError;
use super::wire::FetchedToken;
use crate::backoff::backoff_delay;
use crate::metrics::{ResultLabel, result_family};

/// Fraction of a token's life after which the background task replaces it.
const REFRESH_AT_FRACTION: f64 = 0.8;
/// Most of a token's life that is withheld from use at its end (see [`Lifetime`]).
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// The future a [`TokenSource`] returns.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FetchedToken, VendorError>> + Send + 'a>>;

/// Where tokens come from: the vendor client in production, a scripted source in unit tests.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a new token (one `tokenByAkSk` call).
    fn fetch(&self) -> FetchFuture<'_>;

    /// A failed fetch as the log says it: the vendor client names the URL it called.
    fn describe(&self, error: &VendorError) -> String {
        error.to_string()
    }
}

/// The instants that matter in a token's life, measured from when we asked for it (not from
/// the vendor's `CreateTime`: our clock and the vendor's may disagree, and asking time is the
/// conservative start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// When the background task should replace the token: 80 % of its life.
    pub refresh_at: Instant,
    /// The last instant a request may start using it: its expiry less a margin of 10 % of
    /// its life, at most 30 s, so that it does not expire in flight.
    pub usable_until: Instant,
    /// When the vendor will stop accepting it.
    pub expires_at: Instant,
}

impl Lifetime {
    /// Derives the instants of a token asked for at `requested_at` and granted for `life`.
    pub fn new(requested_at: Instant, life: Duration) -> Self {
        let margin = (life / 10).min(MAX_EXPIRY_MARGIN);
        Self {
            refresh_at: requested_at + life.mul_f64(REFRESH_AT_FRACTION),
            usable_until: requested_at + life - margin,
            expires_at: requested_at + life,
        }
    }
}

/// A cached AccessToken. `Debug` never shows the token.
pub struct AccessToken {
    /// The token itself.
    secret: SecretString,
    /// Increases with every fetch; lets a 401 drop exactly the token it was about.
    generation: u64,
    /// Refresh and expiry instants.
    lifetime: Lifetime,
}

impl AccessToken {
    /// The token, for the `Authorization` header.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// Refresh and expiry instants.
    pub fn lifetime(&self) -> Lifetime {
        self.lifetime
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[REDACTED]")
            .field("generation", &self.generation)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Why no token could be had (maps to 503 `upstream_auth_unavailable`).
#[derive(Debug, thiserror::Error)]
pub enum TokenUnavailable {
    /// A recent fetch failed and the back-off has not passed yet.
    #[error("backing off after {failures} failed token fetch(es)")]
    BackingOff {
        /// Consecutive failed fetches so far.
        failures: u32,
    },
    /// This caller's fetch failed.
    #[error("token fetch failed: {0}")]
    Fetch(#[source] VendorError),
    /// The fetch task ended without an answer (the runtime is shutting down).
    #[error("token fetch interrupted")]
    Interrupted,
}

/// The mutable part of the cache, behind a short-held std mutex.
#[derive(Default)]
struct State {
    /// The current token, if any (expired tokens stay until replaced; `usable` checks time).
    token: Option<Arc<AccessToken>>,
    /// Consecutive failed fetches; 0 after a successful fetch.
    failures: u32,
    /// Consecutive fresh tokens the vendor refused; 0 once it accepts one. Kept apart from
    /// `failures` because fetching works meanwhile, yet the back-off must keep growing.
    refusals: u32,
    /// No fetch before this instant (set after a failure).
    retry_at: Option<Instant>,
    /// Generation of the last token fetched.
    generation: u64,
}

impl State {
    /// Counts a failed fetch and sets the back-off; returns the delay chosen.
    fn record_failure(&mut self) -> Duration {
        let failures = self.failures.saturating_add(1);
        self.failures = failures;
        self.back_off(failures)
    }

    fn back_off(&mut self, count: u32) -> Duration {
        let delay = backoff_delay(count, fastrand::f64());
        self.retry_at = Some(Instant::now() + delay);
        delay
    }
}

/// The shared, single-flight token cache.
pub struct TokenCache {
    /// Where tokens come from.
    source: Arc<dyn TokenSource>,
    /// Current token and back-off state.
    state: Mutex<State>,
    /// Held for the duration of a fetch: the single-flight guarantee.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Fetches by result (`sipgw_token_refreshes_total`).
    refreshes: Family<ResultLabel, Counter>,
}

impl TokenCache {
    /// An empty cache over `source`.
    pub fn new(source: Arc<dyn TokenSource>) -> Self {
        Self {
            source,
            state: Mutex::new(State::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            refreshes: result_family(),
        }
    }

    /// Fetches by result, for the metrics registry.
    pub fn refreshes(&self) -> &Family<ResultLabel, Counter> {
        &self.refreshes
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock guards plain data with no invariant a panic could break half-way.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A usable token: the cached one, or a freshly fetched one (single-flight, back-off).
    ///
    /// The slow path runs in a task of its own: a caller that gives up (its client hung up,
    /// its deadline passed) must not cancel a fetch half-way, which would leave no failure
    /// recorded and let the next caller fetch at once.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<AccessToken>, TokenUnavailable> {
        if let Some(token) = self.usable() {
            return Ok(token);
        }
        let this = Arc::clone(self);
        tokio::spawn(async move { this.get_slow().await })
            .await
            .unwrap_or(Err(TokenUnavailable::Interrupted))
    }

    async fn get_slow(&self) -> Result<Arc<AccessToken>, TokenUnavailable> {
        let _fetching = self.fetch_lock.lock().await;
        // Whoever held the lock before us may have fetched already.
        if let Some(token) = self.usable() {
            return Ok(token);
        }
        {
            let state = self.state();
            if state.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(TokenUnavailable::BackingOff {
                    failures: state.failures,
                });
            }
        }
        self.fetch_locked().await.map_err(TokenUnavailable::Fetch)
    }

    /// Drops `token` after the vendor refused it with 401, unless it was already replaced.
    pub fn invalidate(&self, token: &AccessToken) {
        let mut state = self.state();
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.generation == token.generation)
        {
            state.token = None;
        }
    }

    /// Drops a token the vendor refused although it was just fetched, and backs off as after
    /// a failed fetch: the vendor is refusing our credentials (service not purchased, account
    /// suspended), and fetching a new token for every request would not change that.
    pub fn refused(&self, token: &AccessToken) {
        let mut state = self.state();
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.generation == token.generation)
        {
            state.token = None;
        }
        let refusals = state.refusals.saturating_add(1);
        state.refusals = refusals;
        let delay = state.back_off(refusals);
        tracing::warn!(
            refusals = state.refusals,
            retry_in_ms = delay.as_millis() as u64,
            "the vendor refused a freshly fetched AccessToken; backing off"
        );
    }

    /// The vendor accepted a token (answered anything but 401): ends a run of refusals.
    pub fn accepted(&self) {
        let mut state = self.state();
        if state.refusals > 0 {
            state.refusals = 0;
            tracing::info!("the vendor accepts our AccessToken again");
        }
    }
    /// Seconds until the current token expires (negative when expired), for metrics.
    pub fn expires_in(&self) -> Option<f64> {
        let now = Instant::now();
        self.state().token.as_ref().map(|t| {
            let at = t.lifetime.expires_at;
            if at >= now {
                (at - now).as_secs_f64()
            } else {
                -(now - at).as_secs_f64()
            }
        })
    }

    /// Whether a usable token is held (readiness).
    pub fn has_usable_token(&self) -> bool {
        self.usable().is_some()
    }

    fn usable(&self) -> Option<Arc<AccessToken>> {
        let now = Instant::now();
        self.state()
            .token
            .as_ref()
            .filter(|t| now < t.lifetime.usable_until)
            .cloned()
    }

    /// Fetches and stores a token; the caller holds `fetch_lock`.
    async fn fetch_locked(&self) -> Result<Arc<AccessToken>, VendorError> {
        let requested_at = Instant::now();
        let result = self.source.fetch().await;
        self.refreshes
            .get_or_create(&ResultLabel::of(result.is_ok()))
            .inc();
        let mut state = self.state();
        match result {
            Ok(fetched) => {
                state.generation += 1;
                let token = Arc::new(AccessToken {
                    secret: fetched.value,
                    generation: state.generation,
                    lifetime: Lifetime::new(requested_at, fetched.lifetime),
                });
                state.token = Some(Arc::clone(&token));
                state.failures = 0;
                state.retry_at = None;
                tracing::info!(
                    lifetime_secs = fetched.lifetime.as_secs(),
                    generation = state.generation,
                    "vendor AccessToken fetched"
                );
                Ok(token)
            }
            Err(error) => {
                let delay = state.record_failure();
                tracing::warn!(
                    error = %self.source.describe(&error),
                    failures = state.failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "vendor AccessToken fetch failed"
                );
                Err(error)
            }
        }
    }

    /// The background refresher: fetches at start-up, then replaces the token at 80 % of its
    /// life, retrying failures after the back-off. Runs until its task is dropped.
    pub async fn run_refresher(self: Arc<Self>) {
        loop {
            tokio::time::sleep_until(self.next_refresh()).await;
            let _fetching = self.fetch_lock.lock().await;
            // A request may have fetched while we waited for the lock.
            if self.refresh_due(Instant::now()) {
                // Failures are logged and backed off inside; the old token keeps serving.
                let _ = self.fetch_locked().await;
            }
        }
    }

    /// Whether the refresher should fetch at `now` (compared with the state's instants, not
    /// with a second reading of the clock).
    fn refresh_due(&self, now: Instant) -> bool {
        let state = self.state();
        match (state.retry_at, &state.token) {
            (Some(retry_at), _) => now >= retry_at,
            (None, Some(token)) => now >= token.lifetime.refresh_at,
            (None, None) => true,
        }
    }

    /// When the refresher should act next. After a failure the back-off comes first, even
    /// while a still-valid token is held: retrying sooner would defeat the back-off.
    fn next_refresh(&self) -> Instant {
        let state = self.state();
        match (state.retry_at, &state.token) {
            (Some(retry_at), _) => retry_at,
            (None, Some(token)) => token.lifetime.refresh_at,
            (None, None) => Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests;
