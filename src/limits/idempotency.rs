//! `Idempotency-Key` (docs/api.md): the first outcome of a change is remembered for 24 h
//! per (caller, agent, key) and replayed for a retry without calling the vendor again. A
//! retried change would otherwise carry a current password that is no longer valid and
//! count towards the vendor's lockout.
//!
//! - A repeat with a different body is refused (`idempotency_key_reused`).
//! - A repeat while the first is in flight waits for it (bounded), then replays it.
//! - Only outcomes of requests that reached the vendor are remembered; a request refused
//!   before (quota, lockout, no token) releases its key, so the retry is processed anew.
//!
//! Memory is bounded twice: by entries (`idempotency.max_entries`) and by bytes
//! (`idempotency.max_bytes`, counting [`ENTRY_BYTES`] per entry plus its request id and
//! vendor message); when either is reached the oldest finished outcomes are forgotten
//! first, never one in flight. An entry keeps what a replay needs ([`Stored`]), not the
//! rendered response.
//!
//! Keys and bodies are stored as HMAC-SHA256 digests under a key drawn at start-up (with the
//! Redis backend, derived from the vendor app secret so that every replica agrees): the
//! store never holds a body (which carries passwords), and a digest of a low-entropy password
//! cannot be brute-forced without the key.

mod stored;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use tokio::sync::watch;
use tokio::time::Instant;

pub use stored::{Outcome, Stored, success_body};

/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 128;

/// A digest as the table keeps it: the first 128 bits of the HMAC (RFC 2104 §5 allows
/// truncation to half the output; a collision among even 10^9 entries has odds below
/// 10^-20), half the memory of the whole tag in the map and in the arrival order.
type Short = [u8; 16];

/// The first 16 bytes of `digest`.
fn short(digest: [u8; 32]) -> Short {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// What one entry costs besides its text, estimated from the layout (an 80-byte map slot
/// and a 32-byte place in the arrival order, both with the containers' spare capacity, and
/// the allocator's overhead on the text) and checked against `benches/load/run.py`'s
/// memory row.
pub const ENTRY_BYTES: usize = 180;

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
    /// Its outcome (inline: one allocation less per entry than an `Arc`).
    Done(Stored),
}

struct Entry {
    /// HMAC of the first request's body.
    fingerprint: Short,
    /// In flight or done.
    state: State,
    /// When the first request arrived.
    created: Instant,
}

impl Entry {
    /// What the entry counts against `max_bytes`.
    fn cost(&self) -> usize {
        ENTRY_BYTES
            + match &self.state {
                State::Done(stored) => stored.heap_bytes(),
                State::InFlight(_) => 0,
            }
    }
}

/// Entries by key digest, and their arrival order for expiry and eviction.
#[derive(Default)]
struct Table {
    /// Entries by key digest.
    entries: HashMap<Short, Entry>,
    /// (key digest, arrival) in arrival order; may hold places of released entries.
    order: VecDeque<(Short, Instant)>,
    /// The entries' costs, summed.
    bytes: usize,
}

impl Table {
    /// Removes `key`'s entry, if it is the one that arrived at `created` (when given).
    fn remove(&mut self, key: &Short, created: Option<Instant>) -> bool {
        match self.entries.get(key) {
            Some(e) if created.is_none_or(|c| e.created == c) => {
                let entry = self.entries.remove(key).expect("just seen");
                self.bytes -= entry.cost();
                true
            }
            _ => false,
        }
    }

    /// Drops the entries older than `ttl`.
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some(&(key, created)) = self.order.front() {
            if now.saturating_duration_since(created) < ttl {
                break;
            }
            self.order.pop_front();
            self.remove(&key, Some(created));
        }
    }

    /// Forgets the oldest finished outcomes until one more entry of `cost` fits both
    /// bounds. An entry in flight is never dropped (its retry must wait for it, not run
    /// beside it); there are at most as many as requests in flight.
    fn make_room(&mut self, capacity: usize, max_bytes: usize, cost: usize) {
        let mut kept = Vec::new();
        while self.entries.len() >= capacity || self.bytes + cost > max_bytes {
            let Some((oldest, created)) = self.order.pop_front() else {
                break;
            };
            match self.entries.get(&oldest) {
                Some(e) if e.created == created && matches!(e.state, State::InFlight(_)) => {
                    kept.push((oldest, created));
                }
                _ => {
                    self.remove(&oldest, Some(created));
                }
            }
        }
        for place in kept.into_iter().rev() {
            self.order.push_front(place);
        }
        // Released keys leave their place in `order`; drop those places before they
        // outnumber the entries.
        if self.order.len() > capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order
                .retain(|(k, c)| entries.get(k).is_some_and(|e| e.created == *c));
        }
    }
}

/// The store of remembered outcomes, bounded in time (`ttl`), in entries (`capacity`) and
/// in bytes (`max_bytes`), oldest first out.
pub struct IdempotencyStore {
    /// Digests are keyed with this (random per process).
    hmac_key: hmac::Key,
    /// How long an outcome is remembered.
    ttl: Duration,
    /// Most entries held.
    capacity: usize,
    /// Most bytes held (entries' costs, see [`ENTRY_BYTES`]).
    max_bytes: usize,
    /// The entries.
    inner: Mutex<Table>,
}

/// The first request's claim on a key; dropping it without [`Ticket::complete`] releases
/// the key (waiters then process their own request).
pub struct Ticket<'a> {
    /// The store.
    store: &'a IdempotencyStore,
    /// The key digest.
    key: Short,
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
            max_bytes: usize::MAX,
            inner: Mutex::new(Table::default()),
        }
    }

    /// The same store, holding at most `max_bytes` (at least one entry's worth).
    pub fn with_budget(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(ENTRY_BYTES);
        self
    }

    /// Most entries held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held, as counted against the budget.
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes
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
        let key = short(self.digest(&scope.map(str::as_bytes)));
        let fingerprint = short(self.digest(&[body]));
        let deadline = Instant::now() + wait;
        loop {
            let mut receiver = {
                let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                table.expire(now, self.ttl);
                match table.entries.get(&key) {
                    Some(entry) if entry.fingerprint != fingerprint => return Begin::Reused,
                    Some(Entry {
                        state: State::Done(stored),
                        ..
                    }) => return Begin::Replay(Arc::new(stored.clone())),
                    Some(Entry {
                        state: State::InFlight(receiver),
                        ..
                    }) => receiver.clone(),
                    None => {
                        table.make_room(self.capacity, self.max_bytes, ENTRY_BYTES);
                        let (sender, receiver) = watch::channel(None);
                        table.entries.insert(
                            key,
                            Entry {
                                fingerprint,
                                state: State::InFlight(receiver),
                                created: now,
                            },
                        );
                        table.bytes += ENTRY_BYTES;
                        table.order.push_back((key, now));
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
        let mut table = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        table.expire(Instant::now(), self.ttl);
    }
}

impl Ticket<'_> {
    /// Remembers `outcome` (a request that reached the vendor) and wakes the waiters with it;
    /// `None` releases the key instead.
    pub fn complete(mut self, outcome: Option<Stored>) {
        let sender = self.sender.take().expect("completed once");
        let store = self.store;
        let mut table = store.inner.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Some(stored) => {
                if let Some(entry) = table.entries.get_mut(&self.key) {
                    let grown = stored.heap_bytes();
                    entry.state = State::Done(stored.clone());
                    table.bytes += grown;
                    // A long vendor message may push the store past its budget: the oldest
                    // finished outcomes make room (never one in flight).
                    table.make_room(usize::MAX, store.max_bytes, 0);
                }
                sender.send_replace(Some(Arc::new(stored)));
            }
            None => {
                table.remove(&self.key, None);
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.sender.take().is_some() {
            let mut table = self.store.inner.lock().unwrap_or_else(|p| p.into_inner());
            table.remove(&self.key, None);
        }
    }
}

/// Whether `key` is an acceptable `Idempotency-Key`: 1-128 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests;
