//! Switches that make the simulator misbehave on purpose, so tests can prove how the
//! gateway copes with a slow, failing or broken vendor.

use std::sync::Mutex;
use std::time::Duration;

use http::StatusCode;

/// The fault switches, shared by every connection. Set them from a test at any time; each
/// request reads one consistent snapshot when it arrives (the hold excepted, see
/// [`Faults::hold_updates`]).
#[derive(Debug, Default)]
pub struct Faults {
    /// The current settings. A mutex rather than atomics because a request must see all the
    /// switches as of one moment, and the lock is held only to copy a few words.
    settings: Mutex<FaultSettings>,
    /// Whether update requests are held. A watch channel, not a snapshot switch: a held
    /// request must see the release that comes after it arrived, and cannot miss it.
    update_hold: tokio::sync::watch::Sender<bool>,
}

/// One snapshot of every switch. `None` / `false` means "behave like the vendor".
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FaultSettings {
    /// The token endpoint answers this status instead of issuing a token.
    pub(crate) token_status: Option<StatusCode>,
    /// The token endpoint waits this long before answering.
    pub(crate) token_delay: Option<Duration>,
    /// The update endpoint waits this long before doing anything else.
    pub(crate) update_delay: Option<Duration>,
    /// The update endpoint answers this status with a small JSON error body.
    pub(crate) update_status: Option<StatusCode>,
    /// The update endpoint answers 200 with a body that is not JSON.
    pub(crate) update_garbage: bool,
    /// The update endpoint closes the connection without answering.
    pub(crate) update_drop: bool,
    /// The update endpoint answers 401 whatever the token.
    pub(crate) reject_all_tokens: bool,
}

/// Turns a caller's status number into a `StatusCode`. A test asking for an impossible
/// status is a bug in the test, so it fails loudly at the call site.
fn status(status: Option<u16>) -> Option<StatusCode> {
    status.map(|code| {
        StatusCode::from_u16(code)
            .unwrap_or_else(|_| panic!("fault status {code} is not an HTTP status code"))
    })
}

impl Faults {
    /// The token endpoint answers `status` (e.g. 500) instead of working; `None` restores it.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code (100..=999).
    pub fn set_token_status(&self, status_code: Option<u16>) {
        self.update(|s| s.token_status = status(status_code));
    }

    /// The token endpoint waits `delay` before answering.
    pub fn set_token_delay(&self, delay: Option<Duration>) {
        self.update(|s| s.token_delay = delay);
    }

    /// The update endpoint waits `delay` before any check, so the account is untouched until
    /// the delay has passed.
    pub fn set_update_delay(&self, delay: Option<Duration>) {
        self.update(|s| s.update_delay = delay);
    }

    /// From now on, update requests wait after the delay fault and before any check
    /// (counted and recorded, the account untouched) until [`Faults::release_updates`].
    /// Lets a test keep requests in flight for exactly as long as it needs, whatever the
    /// machine's speed.
    pub fn hold_updates(&self) {
        self.update_hold.send_replace(true);
    }

    /// Lets every held update request go on, and stops holding new ones.
    pub fn release_updates(&self) {
        self.update_hold.send_replace(false);
    }

    /// Returns once update requests are not held (at once when they are not).
    pub(crate) async fn wait_while_updates_held(&self) {
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = self.update_hold.subscribe().wait_for(|held| !*held).await;
    }

    /// The update endpoint answers `status` (400/404/500, 401 too) with a small JSON error
    /// body, without checking the token or touching the account.
    ///
    /// # Panics
    /// If `status` is not a valid HTTP status code (100..=999).
    pub fn set_update_status(&self, status_code: Option<u16>) {
        self.update(|s| s.update_status = status(status_code));
    }

    /// The update endpoint answers 200 with a body that is not JSON.
    pub fn set_update_garbage(&self, on: bool) {
        self.update(|s| s.update_garbage = on);
    }

    /// The update endpoint reads the request and then closes the connection (HTTP/1) or
    /// resets the stream (HTTP/2) without any response.
    pub fn set_update_drop(&self, on: bool) {
        self.update(|s| s.update_drop = on);
    }

    /// The update endpoint answers 401 whatever the token, as the vendor does when the
    /// service is not purchased or the tenant is suspended.
    pub fn set_reject_all_tokens(&self, on: bool) {
        self.update(|s| s.reject_all_tokens = on);
    }

    /// The switches as of now.
    pub(crate) fn snapshot(&self) -> FaultSettings {
        *self.lock()
    }

    fn update(&self, change: impl FnOnce(&mut FaultSettings)) {
        change(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultSettings> {
        // The guarded data is a few plain values that are always consistent, so a panic
        // elsewhere while holding the lock cannot leave it half-written.
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
