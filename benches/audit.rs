//! Cost of the audit trail: sealing one record (CPU), appending through the writer thread
//! without fsync, and appending with `fsync = "always"` from 1 and from 64 concurrent
//! writers (group commit: the 64 share fsyncs).
//!
//! Run with `cargo bench --bench audit`. Numbers are in docs/performance.md. The
//! fsync figures depend on the disk under the system's temp directory.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sipgw::audit::chain::MacKey;
use sipgw::audit::record::{
    CallerInfo, Envelope, Event, Kind, VendorInfo, seal_in_place, write_unsealed,
};
use sipgw::audit::writer::{AuditWriter, Fsync, WriterConfig};

fn event() -> Event {
    Event {
        kind: Kind::Outcome,
        request_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        caller: CallerInfo {
            iss: Some("https://sso.example.com/realms/corp".into()),
            sub: Some("f:1234:alice".into()),
            client_ip: "10.1.2.3".into(),
        },
        agent: Some("a1001".into()),
        code: "ok".into(),
        http_status: Some(200),
        vendor: Some(VendorInfo {
            status: Some(200),
            result_code: Some("0".into()),
            latency_ms: 41,
        }),
        latency_ms: Some(43),
        caller_name: None,
        forwarded_for: None,
        grant: None,
        replay_of: None,
        trace_id: None,
        suppressed: None,
        flood: None,
    }
}

fn key() -> MacKey {
    MacKey::from_file_bytes(b"bench-hmac-key-0123456789abcdef").unwrap()
}

fn writer(fsync: Fsync) -> AuditWriter {
    let dir = std::env::temp_dir().join(format!(
        "sipgw-bench-audit-{}-{fsync:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    AuditWriter::open(WriterConfig {
        path: dir.join("audit.jsonl"),
        max_bytes: 1 << 30,
        fsync,
        stdout: false,
        key: key(),
        file_mode: 0o600,
        allow_new_chain: false,
        instance: "test-gw".into(),
        checkpoint_every: None,
        checkpoint_interval: None,
    })
    .unwrap()
}

/// What the writer thread does per record: serialise it into the batch buffer, MAC it,
/// seal it in place (the buffer is reused, as the writer reuses its own).
fn bench_seal(c: &mut Criterion) {
    let (key, event, prev) = (key(), event(), "0".repeat(64));
    let mut lines = Vec::with_capacity(1024);
    c.bench_function("audit/seal_record", |b| {
        b.iter(|| {
            let envelope = Envelope {
                seq: 42,
                ts: "2026-11-27T20:00:00.000Z",
                instance: "gw-1",
            };
            lines.clear();
            write_unsealed(&mut lines, envelope, black_box(&event), &prev);
            let mac = key.digest(prev.as_bytes(), &lines);
            black_box(seal_in_place(&mut lines, &mac));
        })
    });
}

/// Time per record when `writers` tasks append concurrently, `per_writer` records each.
async fn append_concurrently(
    writer: &Arc<AuditWriter>,
    writers: usize,
    per_writer: usize,
) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let writer = Arc::clone(writer);
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    writer.append(event()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed() / (writers * per_writer) as u32
}

fn bench_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Without fsync: one writer waits for the writer thread's answer each time (a thread
    // hand-off, mostly wake-up latency); 64 writers show the throughput per record.
    for (fsync, name) in [
        (Fsync::Never, "fsync_never"),
        (Fsync::Always, "fsync_always"),
    ] {
        let writer = Arc::new(writer(fsync));
        let mut group = c.benchmark_group(format!("audit/append/{name}"));
        group.sample_size(10);
        for writers in [1usize, 64] {
            group.bench_function(format!("{writers}_writers"), |b| {
                b.iter_custom(|iters| {
                    let per_writer = (iters as usize).div_ceil(writers).max(1);
                    let per_record =
                        runtime.block_on(append_concurrently(&writer, writers, per_writer));
                    per_record * iters as u32
                })
            });
        }
        group.finish();
    }
}
criterion_group!(benches, bench_seal, bench_append);
criterion_main!(benches);
