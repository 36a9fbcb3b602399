//! Criterion benches of the backup agent's persistence path: what it costs to turn a
//! buffer of watch events into a stored delta (encode, gzip or not, SHA-256, write with
//! its sidecar into a local store), and to read one back and check it as a restore does.
//! Throughput is in events; the buffer's memory per event is printed once.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etcd_drill::backup::chain::check_content;
use etcd_drill::backup::record::{decode, encode};
use etcd_drill::backup::{BackupStore, Compression, DeltaEvent, DeltaName, EventKind, StoreLocation, StoredName};

const EVENTS: i64 = 10_000;

/// Events like the drills' workload: 40-byte keys, 128-byte values, one per revision.
fn events() -> Vec<DeltaEvent> {
    (1..=EVENTS)
        .map(|rev| DeltaEvent {
            kind: EventKind::Put,
            revision: rev,
            create_revision: rev,
            version: 1,
            lease: 0,
            key: format!("/etcd-drill/bench/w{:02}/{:016}", rev % 8, rev).into_bytes(),
            value: vec![b'x'; 128],
        })
        .collect()
}

fn persist(c: &mut Criterion) {
    let events = events();
    let footprint: usize = events.iter().map(|e| e.footprint()).sum();
    println!(
        "buffer memory for {EVENTS} events: {footprint} bytes ({} per event)",
        footprint / EVENTS as usize
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BackupStore::open(StoreLocation::Local(dir.path().to_path_buf())).unwrap();
    let mut group = c.benchmark_group("backup_agent");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(20);
    group.bench_function("encode 10k events", |b| {
        b.iter(|| black_box(encode(black_box(&events))))
    });
    for compression in [Compression::None, Compression::Gzip] {
        let name = DeltaName {
            first: 1,
            last: EVENTS,
            compression,
        };
        group.bench_function(format!("persist 10k events ({})", compression.as_str()), |b| {
            b.iter(|| rt.block_on(store.put_delta(&name, black_box(&events))).unwrap())
        });
        let sizes = rt.block_on(store.put_delta(&name, &events)).unwrap();
        println!(
            "a delta of {EVENTS} events: {} bytes encoded, {} stored with {}",
            sizes.0,
            sizes.1,
            compression.as_str()
        );
        group.bench_function(format!("read and check 10k events ({})", compression.as_str()), |b| {
            b.iter(|| {
                let bytes = rt.block_on(store.fetch_verified(&StoredName::Delta(name))).unwrap();
                let decoded = decode(&bytes).unwrap();
                check_content(&name, &decoded).unwrap();
                black_box(decoded.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, persist);
criterion_main!(benches);
