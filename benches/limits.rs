//! Cost of the limit checks on the request path (memory backend): one quota decision for a
//! known key, for a new key, and the lockout shield's check; and, with a `redis-server`
//! installed, one quota decision of the Redis backend (a round trip to a local Redis and its
//! GCRA script). Without the binary the Redis bench is skipped with a message.
//!
//! Run with `cargo bench --bench limits`. Numbers are in docs/performance.md.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sipgw::limits::lockout::{LockoutPolicy, LockoutShield};
use sipgw::limits::quota::{KeyedQuota, QuotaSpec};
use sipgw::limits::redis::Shared;

fn bench_quota(c: &mut Criterion) {
    // A quota that never binds, so every decision walks the "allowed" path.
    let spec = QuotaSpec {
        burst: NonZeroU32::new(1_000_000).unwrap(),
        per: Duration::from_secs(1),
    };
    let quota = KeyedQuota::new(spec);
    let agents: Vec<String> = (0..10_000).map(|i| format!("agent{i:05}")).collect();
    for agent in &agents {
        quota.check(agent);
    }
    let mut i = 0usize;
    c.bench_function("quota/decision/known_key", |b| {
        b.iter(|| {
            i = (i + 1) % agents.len();
            black_box(quota.check(black_box(&agents[i])))
        })
    });
    let fresh = KeyedQuota::new(spec);
    let mut n = 0u64;
    c.bench_function("quota/decision/new_key", |b| {
        b.iter(|| {
            n += 1;
            black_box(fresh.check(&n))
        })
    });
    let refused = KeyedQuota::new(QuotaSpec {
        burst: NonZeroU32::new(1).unwrap(),
        per: Duration::from_secs(3600),
    });
    refused.check(&"a1001".to_owned());
    c.bench_function("quota/decision/limited", |b| {
        b.iter(|| black_box(refused.check(black_box(&"a1001".to_owned()))))
    });
}

fn bench_lockout(c: &mut Criterion) {
    let shield = LockoutShield::new(LockoutPolicy {
        max_consecutive_failures: 2,
        cooldown: Duration::from_secs(1800),
    });
    let now = tokio::time::Instant::now();
    for i in 0..1000 {
        shield.record_rejection(&format!("agent{i}"), now);
    }
    c.bench_function("lockout/check", |b| {
        b.iter(|| black_box(shield.check(black_box("agent500"), now)))
    });
}

/// A throw-away `redis-server` on a free loopback port, killed on drop.
struct RedisServer(std::process::Child, u16);

impl RedisServer {
    fn start() -> Option<Self> {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = Self(child, port);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench_redis_quota(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        eprintln!("skipped quota/decision/redis: redis-server not installed");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("redis://127.0.0.1:{}", server.1);
    let shared = runtime.block_on(async { Shared::new(&url, "bench:".into()).unwrap() });
    let spec = QuotaSpec {
        burst: NonZeroU32::new(1_000_000).unwrap(),
        per: Duration::from_secs(1),
    };
    // The first call loads the script (EVALSHA falls back to EVAL once).
    runtime
        .block_on(shared.quota("agent:a1001", spec))
        .expect("redis answers");
    c.bench_function("quota/decision/redis", |b| {
        b.iter(|| black_box(runtime.block_on(shared.quota(black_box("agent:a1001"), spec))))
    });
    drop(server);
}

criterion_group!(benches, bench_quota, bench_lockout, bench_redis_quota);
criterion_main!(benches);
