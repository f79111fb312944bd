//! Flood control for records (DESIGN.md §5): per key (a client IP for unauthenticated
//! requests; a caller and its IP for refusals by the caller's own quota), at most `limit`
//! outcome records per window; the rest are counted, and the count is written as one
//! `summary` record when the window closes. A flood therefore cannot fill the disk, while
//! the fact of the flood, its source and its size stay on the record.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Most keys tracked at once; beyond it, new keys share one overflow window.
const MAX_TRACKED_KEYS: usize = 10_000;

/// One key's current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// When it opened.
    opened: Instant,
    /// Records written in it.
    written: u32,
    /// Records suppressed in it.
    suppressed: u64,
}

/// What to do with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it.
    Write,
    /// Count it; do not write it.
    Suppress,
}

/// A window that closed with suppressed records: write a summary for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed<K> {
    /// Whose window it was; `None` for the shared overflow window.
    pub key: Option<K>,
    /// Records suppressed.
    pub suppressed: u64,
}

/// Windows per key (a client IP by default).
pub struct Throttle<K = IpAddr> {
    /// Records written per key and window.
    limit: u32,
    /// Window length.
    window: Duration,
    /// Open windows; `None` is the shared overflow window.
    windows: Mutex<HashMap<Option<K>, Window>>,
}

impl<K: Clone + Eq + Hash> Throttle<K> {
    /// `limit` records per `window` and key.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Decides for one record of `key` at `now`; also returns the closed windows that need
    /// a summary (including this key's previous one).
    pub fn decide(&self, key: K, now: Instant) -> (Decision, Vec<Closed<K>>) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = close_expired(&mut windows, now, self.window);
        let key = Some(key);
        let key = if windows.contains_key(&key) || windows.len() < MAX_TRACKED_KEYS {
            key
        } else {
            None
        };
        let window = windows.entry(key).or_insert(Window {
            opened: now,
            written: 0,
            suppressed: 0,
        });
        let decision = if window.written < self.limit {
            window.written += 1;
            Decision::Write
        } else {
            window.suppressed += 1;
            Decision::Suppress
        };
        closed.retain(|c| c.suppressed > 0);
        (decision, closed)
    }

    /// Closes expired windows (call periodically, so a flood that stopped still gets its
    /// summary).
    pub fn sweep(&self, now: Instant) -> Vec<Closed<K>> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = close_expired(&mut windows, now, self.window);
        closed.retain(|c| c.suppressed > 0);
        closed
    }
}

fn close_expired<K: Clone + Eq + Hash>(
    windows: &mut HashMap<Option<K>, Window>,
    now: Instant,
    length: Duration,
) -> Vec<Closed<K>> {
    let mut closed = Vec::new();
    windows.retain(|key, w| {
        let open = now.saturating_duration_since(w.opened) < length;
        if !open {
            closed.push(Closed {
                key: key.clone(),
                suppressed: w.suppressed,
            });
        }
        open
    });
    closed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_capped_and_summarized_when_the_window_closes() {
        let throttle = Throttle::new(10, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        let decisions: Vec<_> = (0..1000).map(|_| throttle.decide(ip, t0).0).collect();
        assert_eq!(
            decisions.iter().filter(|d| **d == Decision::Write).count(),
            10
        );
        // Another IP has its own window.
        assert_eq!(
            throttle.decide("10.0.0.2".parse().unwrap(), t0).0,
            Decision::Write
        );
        assert!(throttle.sweep(t0 + Duration::from_secs(30)).is_empty());
        let closed = throttle.sweep(t0 + Duration::from_secs(61));
        assert_eq!(
            closed,
            vec![Closed {
                key: Some(ip),
                suppressed: 990
            }]
        );
        // The next window starts afresh.
        assert_eq!(
            throttle.decide(ip, t0 + Duration::from_secs(62)).0,
            Decision::Write
        );
    }

    #[test]
    fn a_new_record_closes_its_own_expired_window() {
        let throttle = Throttle::new(1, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        throttle.decide(ip, t0);
        throttle.decide(ip, t0);
        let (decision, closed) = throttle.decide(ip, t0 + Duration::from_secs(60));
        assert_eq!(decision, Decision::Write);
        assert_eq!(
            closed,
            vec![Closed {
                key: Some(ip),
                suppressed: 1
            }]
        );
    }
}
