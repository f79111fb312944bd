//! The slot table of one listener: who holds its connection slots, which of them have a
//! request in flight, and whom to shed when a new client arrives at a cap.
//!
//! A connection is *busy* while hyper is running at least one of its requests (hyper calls
//! the service only once a complete request head has arrived), and *idle* otherwise: a
//! client still sending its head (a slowloris), a TLS handshake, a keep-alive connection
//! between requests. At a cap, the idle connection that has been idle longest gives way to
//! the newcomer ([`Slots::admit`]); a busy one never does. Only when every slot under the
//! cap is busy is the newcomer refused.
//!
//! Two caps: the listener's (`max_total`) and one per client network (`max_per_client`:
//! an IPv4 address, or an IPv6 /64, which one host can fill at will). The per-client cap
//! keeps room for other addresses; the shedding is what keeps room when every caller shares
//! one address, as the application and anything else in a sidecar's pod do (127.0.0.1).
//!
//! One mutex guards the table: it is taken when a connection opens and closes and when a
//! request starts and ends, for a few map operations each (logarithmic in the number of
//! connections), far from the cost of the request itself.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Which cap a connection was shed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// The listener's `max_connections`.
    Listener,
    /// The per-client-network cap.
    Client,
}

/// What happened to a connection shed at a cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// An idle connection was closed to make room for a new one.
    Evicted(Cap),
    /// The new connection was closed at once: every slot under the cap was busy.
    Refused(Cap),
}

impl Shed {
    /// Every value, in the order of [`ConnectionStats`]' counters.
    pub const ALL: [Shed; 4] = [
        Shed::Evicted(Cap::Listener),
        Shed::Evicted(Cap::Client),
        Shed::Refused(Cap::Listener),
        Shed::Refused(Cap::Client),
    ];

    /// The metric labels: `(cap, action)`.
    pub fn labels(self) -> (&'static str, &'static str) {
        let cap = |cap| match cap {
            Cap::Listener => "listener",
            Cap::Client => "client",
        };
        match self {
            Shed::Evicted(c) => (cap(c), "evicted"),
            Shed::Refused(c) => (cap(c), "refused"),
        }
    }

    fn index(self) -> usize {
        match self {
            Shed::Evicted(Cap::Listener) => 0,
            Shed::Evicted(Cap::Client) => 1,
            Shed::Refused(Cap::Listener) => 2,
            Shed::Refused(Cap::Client) => 3,
        }
    }
}

/// What one listener's slot table has done, read by the metrics at scrape time.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections holding a slot now.
    open: AtomicU64,
    /// Connections shed, indexed by [`Shed::index`].
    shed: [AtomicU64; 4],
}

impl ConnectionStats {
    /// Connections holding a slot now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections shed so far as `how`.
    pub fn shed(&self, how: Shed) -> u64 {
        self.shed[how.index()].load(Ordering::Relaxed)
    }

    fn count(&self, how: Shed) {
        self.shed[how.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// The key a per-client cap counts by: an IPv4 address, or an IPv6 /64 (the smallest
/// prefix a site is normally given, so one host can use every address in it). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// One connection's entry.
struct Entry {
    /// Its client network (see [`client_key`]).
    client: IpAddr,
    /// Requests hyper is running on it now.
    in_flight: u32,
    /// When it last became idle (accepted, or finished its last request): the shedding
    /// order. Meaningless while busy.
    idle_since: Instant,
    /// Told when the connection is shed.
    shed: oneshot::Sender<()>,
}

/// The slots one client network holds.
#[derive(Default)]
struct Client {
    /// How many connections it holds, busy or idle.
    open: usize,
    /// Its idle connections, longest idle first.
    idle: BTreeSet<(Instant, u64)>,
}

/// The table behind the mutex.
#[derive(Default)]
struct Table {
    /// The id the next connection gets.
    next_id: u64,
    /// Every connection holding a slot.
    entries: HashMap<u64, Entry>,
    /// Every idle connection, longest idle first: whom the listener's cap sheds.
    idle: BTreeSet<(Instant, u64)>,
    /// Per client network: whom its cap sheds. Entries go when their last connection does.
    clients: HashMap<IpAddr, Client>,
}

impl Table {
    /// Removes `id`, if still there; returns its entry.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.idle.remove(&(entry.idle_since, id));
        if let Some(client) = self.clients.get_mut(&entry.client) {
            client.idle.remove(&(entry.idle_since, id));
            client.open -= 1;
            if client.open == 0 {
                self.clients.remove(&entry.client);
            }
        }
        Some(entry)
    }
}

/// The slot table of one listener.
pub struct Slots {
    /// Most connections holding a slot at once.
    max_total: usize,
    /// Most of them from one client network.
    max_per_client: usize,
    /// The table.
    table: Mutex<Table>,
    /// Shared with the metrics.
    stats: Arc<ConnectionStats>,
}

impl Slots {
    /// A table with room for `max_total` connections, `max_per_client` of them from one
    /// client network. A per-client cap at or above the listener's never binds first: then
    /// only the listener's applies (and names the cap in the metrics).
    pub fn new(max_total: usize, max_per_client: usize, stats: Arc<ConnectionStats>) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_client: if max_per_client < max_total {
                max_per_client
            } else {
                usize::MAX
            },
            table: Mutex::new(Table::default()),
            stats,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot for a new connection from `peer`, shedding the longest-idle connection of
    /// the same client network at its cap, or of the listener at the listener's cap; `None`
    /// (the newcomer is refused) when every slot under the cap that binds is busy.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let client = client_key(peer);
        let mut table = self.lock();
        let held = table.clients.get(&client).map_or(0, |c| c.open);
        if held >= self.max_per_client {
            let victim = table
                .clients
                .get(&client)
                .and_then(|c| c.idle.first().copied());
            self.shed(&mut table, victim, Cap::Client)?;
        } else if table.entries.len() >= self.max_total {
            let victim = table.idle.first().copied();
            self.shed(&mut table, victim, Cap::Listener)?;
        }
        let id = table.next_id;
        table.next_id += 1;
        let now = Instant::now();
        let (tell, told) = oneshot::channel();
        table.entries.insert(
            id,
            Entry {
                client,
                in_flight: 0,
                idle_since: now,
                shed: tell,
            },
        );
        table.idle.insert((now, id));
        let entry = table.clients.entry(client).or_default();
        entry.open += 1;
        entry.idle.insert((now, id));
        self.stats
            .open
            .store(table.entries.len() as u64, Ordering::Relaxed);
        Some(Slot {
            slots: Arc::clone(self),
            id,
            shed: told,
        })
    }

    /// Sheds `victim` (idle, longest first) at `cap`; `None` when there is none, and the
    /// newcomer is refused.
    fn shed(&self, table: &mut Table, victim: Option<(Instant, u64)>, cap: Cap) -> Option<()> {
        let Some((_, id)) = victim else {
            self.stats.count(Shed::Refused(cap));
            return None;
        };
        if let Some(entry) = table.remove(id) {
            // The receiver lives in the connection's `Slot`, whose drop removes the entry
            // first, so this reaches it.
            let _ = entry.shed.send(());
        }
        self.stats.count(Shed::Evicted(cap));
        Some(())
    }

    /// Marks a request started on `id`; `None` when the connection was shed meanwhile (the
    /// request must not run: its slot is already someone else's).
    fn begin(self: &Arc<Self>, id: u64) -> Option<Busy> {
        let mut table = self.lock();
        let entry = table.entries.get_mut(&id)?;
        entry.in_flight += 1;
        if entry.in_flight == 1 {
            let (since, client) = (entry.idle_since, entry.client);
            table.idle.remove(&(since, id));
            if let Some(c) = table.clients.get_mut(&client) {
                c.idle.remove(&(since, id));
            }
        }
        Some(Busy {
            slots: Arc::clone(self),
            id,
        })
    }

    /// Marks a request on `id` finished; the connection is idle again when it was the last.
    fn end(&self, id: u64) {
        let mut table = self.lock();
        let Some(entry) = table.entries.get_mut(&id) else {
            return;
        };
        entry.in_flight -= 1;
        if entry.in_flight == 0 {
            let now = Instant::now();
            entry.idle_since = now;
            let client = entry.client;
            table.idle.insert((now, id));
            if let Some(c) = table.clients.get_mut(&client) {
                c.idle.insert((now, id));
            }
        }
    }

    /// Gives `id`'s slot back (the connection ended).
    fn release(&self, id: u64) {
        let mut table = self.lock();
        table.remove(id);
        self.stats
            .open
            .store(table.entries.len() as u64, Ordering::Relaxed);
    }
}

/// One connection's slot; given back when dropped.
pub struct Slot {
    /// The table it belongs to.
    slots: Arc<Slots>,
    /// The connection's id in it.
    id: u64,
    /// Resolves when the connection is shed.
    shed: oneshot::Receiver<()>,
}

impl Slot {
    /// A handle that marks requests started, for hyper's service (which must be `'static`).
    pub fn requests(&self) -> Requests {
        Requests {
            slots: Arc::clone(&self.slots),
            id: self.id,
        }
    }

    /// Resolves once the connection has been shed and must close now.
    pub async fn shed(&mut self) {
        let _ = (&mut self.shed).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.id);
    }
}

/// Marks requests started on one connection (see [`Slot::requests`]).
#[derive(Clone)]
pub struct Requests {
    /// The table.
    slots: Arc<Slots>,
    /// The connection's id in it.
    id: u64,
}

impl Requests {
    /// Marks a request started; `None` when the connection was shed.
    pub fn begin(&self) -> Option<Busy> {
        self.slots.begin(self.id)
    }
}

/// A request in flight on a connection: it cannot be shed until this is dropped.
pub struct Busy {
    /// The table.
    slots: Arc<Slots>,
    /// The connection's id in it.
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slots.end(self.id);
    }
}

#[cfg(test)]
mod tests;
