//! Cost of the limit checks on the request path (memory backend): one quota decision for a
//! known key, for a new key, and the lockout shield's check.
//!
//! Run with `cargo bench --bench limits`. Numbers are in the README ("Performance").

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sipgw::limits::lockout::{LockoutPolicy, LockoutShield};
use sipgw::limits::quota::{KeyedQuota, QuotaSpec};

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

criterion_group!(benches, bench_quota, bench_lockout);
criterion_main!(benches);
