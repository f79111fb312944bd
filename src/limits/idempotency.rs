//! `Idempotency-Key` (DESIGN.md §1): the first outcome of a change is remembered for 24 h
//! per (caller, agent, key) and replayed for a retry without calling the vendor again. A
//! retried change would otherwise carry a current password that is no longer valid and
//! count towards the vendor's lockout.
//!
//! - A repeat with a different body is refused (`idempotency_key_reused`).
//! - A repeat while the first is in flight waits for it (bounded), then replays it.
//! - Only outcomes of requests that reached the vendor are remembered; a request refused
//!   before (quota, lockout, no token) releases its key, so the retry is processed anew.
//!
//! Keys and bodies are stored as HMAC-SHA256 digests under a key drawn at start-up (with the
//! Redis backend, derived from the vendor app secret so that every replica agrees): the
//! store never holds a body (which carries passwords), and a digest of a low-entropy password
//! cannot be brute-forced without the key.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 128;

/// A remembered outcome: what the first request answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its HTTP status.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its body, byte for byte.
    pub body: Bytes,
}

/// What [`IdempotencyStore::begin`] decided; `T` is the claim on the key.
pub enum Begin<T> {
    /// First time: process the request, then complete the ticket.
    Proceed(T),
    /// Seen before with the same body: answer this.
    Replay(Arc<Stored>),
    /// Seen before with another body.
    Reused,
    /// The first request is still in flight after the wait bound.
    Busy,
}

enum State {
    /// The first request is being processed; `None` until it completes.
    InFlight(watch::Receiver<Option<Arc<Stored>>>),
    /// Its outcome.
    Done(Arc<Stored>),
}

struct Entry {
    /// HMAC of the first request's body.
    fingerprint: [u8; 32],
    /// In flight or done.
    state: State,
    /// When the first request arrived.
    created: Instant,
}

/// Entries by key digest, and their arrival order for expiry and eviction.
#[derive(Default)]
struct Table {
    /// Entries by key digest.
    entries: HashMap<[u8; 32], Entry>,
    /// (key digest, arrival) in arrival order; may hold places of released entries.
    order: VecDeque<([u8; 32], Instant)>,
}

/// The store of remembered outcomes, bounded in time (`ttl`) and in entries (`capacity`,
/// oldest first out).
pub struct IdempotencyStore {
    /// Digests are keyed with this (random per process).
    hmac_key: hmac::Key,
    /// How long an outcome is remembered.
    ttl: Duration,
    /// Most entries held.
    capacity: usize,
    /// The entries.
    inner: Mutex<Table>,
}

/// The first request's claim on a key; dropping it without [`Ticket::complete`] releases
/// the key (waiters then process their own request).
pub struct Ticket<'a> {
    /// The store.
    store: &'a IdempotencyStore,
    /// The key digest.
    key: [u8; 32],
    /// Wakes the waiters; `None` once completed.
    sender: Option<watch::Sender<Option<Arc<Stored>>>>,
}

impl IdempotencyStore {
    /// An empty store.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let hmac_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system RNG works");
        Self::with_key(ttl, capacity, hmac_key)
    }

    /// An empty store whose digests are keyed with `hmac_key`.
    pub fn with_key(ttl: Duration, capacity: usize, hmac_key: hmac::Key) -> Self {
        Self {
            hmac_key,
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Table::default()),
        }
    }

    /// HMAC of `parts`, each length-prefixed.
    pub fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.hmac_key);
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }

    /// Looks up (iss, sub, agent, key) for a request with `body`; waits up to `wait` for a
    /// first request still in flight.
    pub async fn begin(&self, scope: [&str; 4], body: &[u8], wait: Duration) -> Begin<Ticket<'_>> {
        let key = self.digest(&scope.map(str::as_bytes));
        let fingerprint = self.digest(&[body]);
        let deadline = Instant::now() + wait;
        loop {
            let mut receiver = {
                let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                let Table { entries, order } = &mut *inner;
                let now = Instant::now();
                expire(entries, order, now, self.ttl);
                match entries.get(&key) {
                    Some(entry) if entry.fingerprint != fingerprint => return Begin::Reused,
                    Some(Entry {
                        state: State::Done(stored),
                        ..
                    }) => return Begin::Replay(Arc::clone(stored)),
                    Some(Entry {
                        state: State::InFlight(receiver),
                        ..
                    }) => receiver.clone(),
                    None => {
                        // Full: forget the oldest finished outcomes. An entry in flight is
                        // never dropped (its retry must wait for it, not run beside it);
                        // there are at most as many as requests in flight.
                        let mut kept = Vec::new();
                        while entries.len() >= self.capacity {
                            let Some((oldest, created)) = order.pop_front() else {
                                break;
                            };
                            match entries.get(&oldest) {
                                Some(e)
                                    if e.created == created
                                        && matches!(e.state, State::InFlight(_)) =>
                                {
                                    kept.push((oldest, created));
                                }
                                Some(e) if e.created == created => {
                                    entries.remove(&oldest);
                                }
                                _ => {}
                            }
                        }
                        for place in kept.into_iter().rev() {
                            order.push_front(place);
                        }
                        // Released keys leave their place in `order`; drop those places
                        // before they outnumber the entries.
                        if order.len() > 2 * self.capacity {
                            order.retain(|(k, c)| entries.get(k).is_some_and(|e| e.created == *c));
                        }
                        let (sender, receiver) = watch::channel(None);
                        entries.insert(
                            key,
                            Entry {
                                fingerprint,
                                state: State::InFlight(receiver),
                                created: now,
                            },
                        );
                        order.push_back((key, now));
                        return Begin::Proceed(Ticket {
                            store: self,
                            key,
                            sender: Some(sender),
                        });
                    }
                }
            };
            match tokio::time::timeout_at(deadline, receiver.wait_for(Option::is_some)).await {
                Ok(Ok(stored)) => {
                    return Begin::Replay(Arc::clone(stored.as_ref().expect("waited for Some")));
                }
                // The first request released the key: look again (it may be ours now).
                Ok(Err(_)) => continue,
                Err(_) => return Begin::Busy,
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries (also done on every lookup; call periodically when idle).
    pub fn purge(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Table { entries, order } = &mut *inner;
        expire(entries, order, Instant::now(), self.ttl);
    }
}

fn expire(
    entries: &mut HashMap<[u8; 32], Entry>,
    order: &mut VecDeque<([u8; 32], Instant)>,
    now: Instant,
    ttl: Duration,
) {
    while let Some(&(key, created)) = order.front() {
        if now.saturating_duration_since(created) < ttl {
            break;
        }
        order.pop_front();
        if entries.get(&key).is_some_and(|e| e.created == created) {
            entries.remove(&key);
        }
    }
}

impl Ticket<'_> {
    /// Remembers `outcome` (a request that reached the vendor) and wakes the waiters with it;
    /// `None` releases the key instead.
    pub fn complete(mut self, outcome: Option<Stored>) {
        let sender = self.sender.take().expect("completed once");
        let mut inner = self.store.inner.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Some(stored) => {
                let stored = Arc::new(stored);
                if let Some(entry) = inner.entries.get_mut(&self.key) {
                    entry.state = State::Done(Arc::clone(&stored));
                }
                sender.send_replace(Some(stored));
            }
            None => {
                inner.entries.remove(&self.key);
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.sender.take().is_some() {
            let mut inner = self.store.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.entries.remove(&self.key);
        }
    }
}

/// Whether `key` is an acceptable `Idempotency-Key`: 1-128 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests;
