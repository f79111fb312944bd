//! AccessTokens issued by `tokenByAkSk`, and the `X-Token-Expire` header that sizes them.
//!
//! Plain data over an explicit `now` (`tokio::time::Instant`, so tests can pause time).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Lifetime used when the client sends no `X-Token-Expire` (the vendor's example value).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 600;

/// Most tokens held at once. Expired tokens are purged on every issue; this cap bounds
/// memory even when a client fetches long-lived tokens in a loop.
pub const MAX_LIVE_TOKENS: usize = 10_000;

/// Why an `X-Token-Expire` header was refused (the vendor answers 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTokenTtl {
    /// The largest lifetime this simulator grants, for the message.
    pub max_secs: u64,
}

impl fmt::Display for BadTokenTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "X-Token-Expire must be a whole number of seconds from 1 to {}",
            self.max_secs
        )
    }
}

/// Reads the token lifetime from the raw `X-Token-Expire` value (`None` when absent).
///
/// Only ASCII digits are accepted: no sign, no spaces, no fraction. Absent means
/// [`DEFAULT_TOKEN_TTL_SECS`], capped at `max_secs` so a simulator configured with a short
/// maximum still answers clients that send no header.
pub fn parse_ttl(header: Option<&[u8]>, max_secs: u64) -> Result<Duration, BadTokenTtl> {
    let bad = BadTokenTtl { max_secs };
    let secs = match header {
        None => DEFAULT_TOKEN_TTL_SECS.min(max_secs),
        Some(raw) => {
            if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
                return Err(bad);
            }
            // All ASCII digits, so this is valid UTF-8; parse fails only on overflow.
            std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| bad.clone())?
        }
    };
    if secs == 0 || secs > max_secs {
        return Err(bad);
    }
    Ok(Duration::from_secs(secs))
}

/// The tokens that currently authorise `updateSipPhonePassword`. No `Debug`: it holds tokens.
#[derive(Default)]
pub struct TokenStore {
    /// Token → the instant it stops being valid.
    live: HashMap<String, Instant>,
}

impl TokenStore {
    /// Records a freshly minted token valid for `ttl` from `now`.
    pub fn issue(&mut self, token: String, ttl: Duration, now: Instant) {
        self.live.retain(|_, expires_at| now < *expires_at);
        if self.live.len() >= MAX_LIVE_TOKENS {
            // Evict the token closest to expiry: the one a well-behaved client is least
            // likely still to use.
            if let Some(oldest) = self
                .live
                .iter()
                .min_by_key(|(_, expires_at)| **expires_at)
                .map(|(token, _)| token.clone())
            {
                self.live.remove(&oldest);
            }
        }
        self.live.insert(token, now + ttl);
    }

    /// Whether `token` was issued, not revoked, and not yet expired at `now`.
    pub fn is_live(&self, token: &str, now: Instant) -> bool {
        self.live
            .get(token)
            .is_some_and(|expires_at| now < *expires_at)
    }

    /// Invalidates every token issued so far.
    pub fn revoke_all(&mut self) {
        self.live.clear();
    }

    /// How many tokens are held (live or not yet purged).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_defaults_to_600_when_absent() {
        assert_eq!(parse_ttl(None, 3600), Ok(Duration::from_secs(600)));
        assert_eq!(parse_ttl(None, 60), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn ttl_accepts_whole_seconds_up_to_the_maximum() {
        assert_eq!(parse_ttl(Some(b"1"), 3600), Ok(Duration::from_secs(1)));
        assert_eq!(
            parse_ttl(Some(b"3600"), 3600),
            Ok(Duration::from_secs(3600))
        );
    }

    #[test]
    fn ttl_refuses_zero_too_large_and_non_integers() {
        for raw in [
            &b"0"[..],
            b"3601",
            b"",
            b"abc",
            b"-5",
            b"+5",
            b" 5",
            b"5.0",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                parse_ttl(Some(raw), 3600),
                Err(BadTokenTtl { max_secs: 3600 }),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn tokens_live_until_their_ttl_ends() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        store.issue("t1".to_owned(), Duration::from_secs(10), now);
        assert!(store.is_live("t1", now));
        assert!(store.is_live("t1", now + Duration::from_secs(9)));
        assert!(!store.is_live("t1", now + Duration::from_secs(10)));
        assert!(!store.is_live("unknown", now));
    }

    #[test]
    fn issue_purges_expired_tokens() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        store.issue("old".to_owned(), Duration::from_secs(1), now);
        store.issue(
            "new".to_owned(),
            Duration::from_secs(10),
            now + Duration::from_secs(5),
        );
        assert_eq!(store.len(), 1);
        assert!(store.is_live("new", now + Duration::from_secs(5)));
    }

    #[test]
    fn store_is_bounded_and_evicts_the_soonest_to_expire() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        store.issue("first".to_owned(), Duration::from_secs(1), now);
        for i in 1..=MAX_LIVE_TOKENS {
            store.issue(format!("t{i}"), Duration::from_secs(100), now);
        }
        assert_eq!(store.len(), MAX_LIVE_TOKENS);
        assert!(!store.is_live("first", now));
        assert!(store.is_live("t1", now));
    }

    #[test]
    fn revoke_all_invalidates_everything() {
        let mut store = TokenStore::default();
        let now = Instant::now();
        store.issue("t1".to_owned(), Duration::from_secs(10), now);
        store.revoke_all();
        assert!(!store.is_live("t1", now));
    }
}
