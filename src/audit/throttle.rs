//! Flood control for refusal records (docs/audit.md).
//!
//! A refusal that never reached the vendor changed nothing, so its record may be
//! summarized. Each is counted against a key: the caller (`iss`, `sub`) once known,
//! otherwise the client's network ([`Network`]). Per key and window, the first `limit`
//! records are written in full while a global [`Budget`] lasts; the rest are counted (by
//! problem code), and one `summary` record per key and window carries the count when the
//! window closes. A flood therefore cannot fill the disk, while its source, its size and
//! what it was refused for stay on the record.
//!
//! Bounds: at most `max_keys` keys are tracked at once (more share one overflow window),
//! and a window closes no sooner than `window` after it opened, so per `window` one
//! [`Throttle`] closes at most `max_keys + 1` windows, hence writes at most `max_keys + 1`
//! summaries; the budget caps the full records of all throttles sharing it.
//!
//! Cost per record: one lookup in a map under a mutex. Expired windows of other keys are
//! closed by [`Throttle::sweep`], which the auditor runs every few seconds.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

mod network;

pub use network::Network;

/// One key's current window.
#[derive(Debug, Clone)]
struct Window {
    /// When it opened (its expiry runs from here).
    opened: Instant,
    /// The same moment on the wall clock, for the summary's `since`.
    opened_at: SystemTime,
    /// Records written in full in it.
    written: u32,
    /// Records suppressed in it.
    suppressed: u64,
    /// Suppressed records per problem code (a handful of codes at most, so a list).
    codes: Vec<(&'static str, u64)>,
    /// The client address of the suppressed records, while they all came from one.
    addr: Addr,
}

/// Where a window's suppressed records came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// Nothing suppressed yet.
    None,
    /// All from this address.
    One(IpAddr),
    /// From more than one address.
    Several,
}

impl Addr {
    fn add(self, ip: IpAddr) -> Self {
        match self {
            Self::None => Self::One(ip),
            Self::One(seen) if seen == ip => self,
            Self::One(_) | Self::Several => Self::Several,
        }
    }
}

/// What to do with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it in full.
    Write,
    /// Count it in its key's window; do not write it.
    Suppress(Why),
}

/// Why a record was suppressed (the `reason` label of `sipgw_audit_suppressed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Its key had written `limit` records in this window already.
    KeyLimit,
    /// The global budget of full records was spent for this window.
    Budget,
}

/// A window that closed with suppressed records: write a summary for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed<K> {
    /// Whose window it was; `None` for the shared overflow window.
    pub key: Option<K>,
    /// When the window opened.
    pub since: SystemTime,
    /// Records suppressed.
    pub suppressed: u64,
    /// Suppressed records per problem code.
    pub codes: Vec<(&'static str, u64)>,
    /// Where they came from.
    pub addr: Addr,
}

/// The global budget of full records per window, shared by every key of every throttle
/// that is given it: whatever the number of keys, full records stay bounded.
pub struct Budget {
    /// Full records allowed per window.
    per_window: u32,
    /// Window length.
    window: Duration,
    /// Start of the current window (`None` before the first record) and records taken.
    state: Mutex<(Option<Instant>, u32)>,
}

impl Budget {
    /// `per_window` full records per `window`.
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            state: Mutex::new((None, 0)),
        }
    }

    /// Takes one record from the budget, if any is left at `now`.
    fn take(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (opened, taken) = &mut *state;
        if opened.is_none_or(|at| now.saturating_duration_since(at) >= self.window) {
            *opened = Some(now);
            *taken = 0;
        }
        if *taken < self.per_window {
            *taken += 1;
            true
        } else {
            false
        }
    }
}

/// Windows per key.
pub struct Throttle<K> {
    /// Records written in full per key and window.
    limit: u32,
    /// Window length.
    window: Duration,
    /// Most keys tracked at once; beyond it, new keys share the overflow window.
    max_keys: usize,
    /// Open windows; `None` is the shared overflow window.
    windows: Mutex<HashMap<Option<K>, Window>>,
}

impl<K: Clone + Eq + Hash> Throttle<K> {
    /// `limit` full records per `window` and key, for at most `max_keys` keys at once.
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Decides for one record of `key`, refused with `code`, from `addr`, at `now`. A full
    /// record also needs one from `budget`. Also returns this key's previous window when it
    /// had expired and needs a summary.
    pub fn decide(
        &self,
        key: K,
        addr: IpAddr,
        code: &'static str,
        budget: &Budget,
        now: Instant,
    ) -> (Decision, Option<Closed<K>>) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = Some(key);
        let mut closed = None;
        if let Some(window) = windows.get(&key)
            && self.expired(window, now)
            && let Some(window) = windows.remove(&key)
        {
            closed = summary_of(key.clone(), window);
        }
        let overflow_open = usize::from(windows.contains_key(&None));
        if !windows.contains_key(&key) && windows.len() - overflow_open >= self.max_keys {
            // No slot for a new key: it shares the overflow window, whose own expiry is
            // handled here like a key's.
            key = None;
            if let Some(window) = windows.get(&key)
                && self.expired(window, now)
                && let Some(window) = windows.remove(&key)
            {
                closed = summary_of(None, window);
            }
        }
        let window = windows.entry(key).or_insert_with(|| Window {
            opened: now,
            opened_at: SystemTime::now(),
            written: 0,
            suppressed: 0,
            codes: Vec::new(),
            addr: Addr::None,
        });
        let decision = if window.written >= self.limit {
            Decision::Suppress(Why::KeyLimit)
        } else if !budget.take(now) {
            Decision::Suppress(Why::Budget)
        } else {
            window.written += 1;
            Decision::Write
        };
        if decision != Decision::Write {
            window.suppressed += 1;
            window.addr = window.addr.add(addr);
            match window.codes.iter_mut().find(|(c, _)| *c == code) {
                Some((_, n)) => *n += 1,
                None => window.codes.push((code, 1)),
            }
        }
        (decision, closed)
    }

    /// Closes expired windows (call periodically, so a flood that stopped still gets its
    /// summary, and slots are freed for new keys).
    pub fn sweep(&self, now: Instant) -> Vec<Closed<K>> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = Vec::new();
        windows.retain(|key, window| {
            if !self.expired(window, now) {
                return true;
            }
            closed.extend(summary_of(key.clone(), window.clone()));
            false
        });
        closed
    }

    /// Closes every window, expired or not (at shutdown).
    pub fn close_all(&self) -> Vec<Closed<K>> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .drain()
            .filter_map(|(key, window)| summary_of(key, window))
            .collect()
    }

    /// Keys tracked now (the overflow window included).
    pub fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn expired(&self, window: &Window, now: Instant) -> bool {
        now.saturating_duration_since(window.opened) >= self.window
    }
}

/// The summary a closed window needs, if it suppressed anything.
fn summary_of<K>(key: Option<K>, window: Window) -> Option<Closed<K>> {
    (window.suppressed > 0).then(|| Closed {
        key,
        since: window.opened_at,
        suppressed: window.suppressed,
        codes: window.codes,
        addr: window.addr,
    })
}

#[cfg(test)]
mod tests;
