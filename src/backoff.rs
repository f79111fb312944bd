//! Exponential back-off with jitter, shared by the vendor token cache and the key-set
//! refresher, so that a failing dependency sees a trickle of retries rather than a storm.

use std::time::Duration;

/// First back-off delay after a failure; doubled per further failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest back-off delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Exponential back-off with "equal jitter": half the exponential delay plus a random share of
/// the other half, so that replicas that failed together do not retry together.
/// `unit_random` is in `[0, 1)`.
pub fn backoff_delay(failures: u32, unit_random: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP);
    full / 2 + (full / 2).mul_f64(unit_random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_bounds() {
        assert_eq!(backoff_delay(1, 0.0), Duration::from_millis(250));
        assert_eq!(backoff_delay(1, 1.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(2, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(4, 1.0), Duration::from_secs(4));
        assert_eq!(backoff_delay(30, 0.0), Duration::from_secs(30));
        assert_eq!(backoff_delay(30, 1.0), Duration::from_secs(60));
        assert_eq!(backoff_delay(u32::MAX, 0.5), Duration::from_secs(45));
    }
}
