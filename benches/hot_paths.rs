//! Criterion benches of the harness's own hot paths: the data-loss accounting of a
//! million acknowledged writes, latency recording and merging, report rendering, the
//! perf generator's key generation and token bucket, and the linearizability check of a
//! chaos run's register history. `cargo bench` runs them in a few
//! minutes (small sample counts for the slow ones).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etcd_drill::drill::check::{account_data_loss, ReadBack};
use etcd_drill::perf::load::{KeyGenerator, TokenBucket};
use etcd_drill::perf::report::{render_terminal, PerfReport};
use etcd_drill::perf::stats::LatencyStats;
use etcd_drill::workload::{AckedWrite, Ledger};

const WRITES: u64 = 1_000_000;

/// A ledger of a million acknowledged writes from 8 writers, and the cluster's content
/// with every one of them present but the last thousand.
fn million_writes() -> (Ledger, ReadBack) {
    let mut ledger = Ledger {
        prefix: "/etcd-drill/bench/".into(),
        value_size: 16,
        ..Ledger::default()
    };
    ledger.acked = (0..WRITES)
        .map(|i| AckedWrite {
            writer: (i % 8) as u32,
            seq: i / 8,
            revision: i as i64 + 2,
            sent_ms: i / 10,
            acked_ms: i / 10 + 3,
            member: "etcd1".into(),
        })
        .collect();
    let mut present = ReadBack::default();
    for w in ledger.acked.iter().take((WRITES - 1_000) as usize) {
        present.insert(ledger.key(w).as_bytes(), ledger.value(w).as_bytes());
    }
    (ledger, present)
}

fn ledger_accounting(c: &mut Criterion) {
    let (ledger, present) = million_writes();
    let mut group = c.benchmark_group("ledger");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(WRITES));
    group.bench_function("account_data_loss of 1M acknowledged writes", |b| {
        b.iter(|| {
            let loss = account_data_loss(black_box(&ledger), black_box(&present));
            assert_eq!(loss.lost_acked_writes, 1_000);
            loss
        })
    });
    group.finish();
}

fn latencies(n: u64) -> Vec<Duration> {
    // Spread over 0.5 ms .. 200 ms, deterministic.
    (0..n)
        .map(|i| Duration::from_micros(500 + (i.wrapping_mul(2_654_435_761) % 200_000)))
        .collect()
}

fn histogram(c: &mut Criterion) {
    let lats = latencies(100_000);
    let mut group = c.benchmark_group("latency stats");
    group.throughput(Throughput::Elements(lats.len() as u64));
    group.bench_function("record 100k latencies", |b| {
        b.iter(|| {
            let mut s = LatencyStats::default();
            for l in &lats {
                s.record(*l);
            }
            s
        })
    });
    let mut one = LatencyStats::default();
    let mut other = LatencyStats::default();
    for (i, l) in lats.iter().enumerate() {
        if i % 2 == 0 {
            one.record(*l)
        } else {
            other.record(*l)
        }
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("merge two histograms", |b| {
        b.iter_batched(
            || one.clone(),
            |mut a| {
                a.merge(black_box(&other));
                a
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("summary (percentiles)", |b| b.iter(|| black_box(&one).summary()));
    group.finish();
}

fn report_rendering(c: &mut Criterion) {
    let report = PerfReport::example();
    let mut group = c.benchmark_group("report");
    group.bench_function("terminal", |b| b.iter(|| render_terminal(black_box(&report))));
    group.bench_function("json", |b| {
        b.iter(|| serde_json::to_string_pretty(black_box(&report)).map(|s| s.len()))
    });
    group.finish();
}

fn key_generation(c: &mut Criterion) {
    let mut group = c.benchmark_group("generator");
    group.throughput(Throughput::Elements(1));
    let mut keys = KeyGenerator::new("/etcdctl-check-perf/", 256, 1);
    group.bench_function("next_key (20+256 bytes)", |b| b.iter(|| keys.next_key()));
    let start = Instant::now();
    let mut bucket = TokenBucket::new(15_000.0, start);
    let mut now = start;
    group.bench_function("token bucket take at 15000/s", |b| {
        b.iter(|| {
            now += Duration::from_micros(67);
            bucket.take(black_box(now), false)
        })
    });
    group.finish();
}

/// A register history shaped like a 10-minute chaos run's: 16 000 operations by 4 clients
/// on 4 registers, each taking effect at a point inside its call window (windows of
/// different clients overlap), one write in ten without an answer. Linearizable by
/// construction, so the check must search the whole history.
fn chaos_history() -> Vec<etcd_drill::history::Operation> {
    use etcd_drill::history::{Operation, Request, Response};
    let mut values: Vec<Option<String>> = vec![None; 4];
    let mut history = Vec::new();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..16_000u64 {
        let point = i * 40_000; // every 40 ms a linearization point
        let (client, register) = ((i % 4) as u32, (next() % 4) as usize);
        let called_us = point - next() % 30_000;
        let returned_us = point + next() % 30_000;
        let fresh = format!("c{client}-{i}");
        let (request, response) = match next() % 10 {
            0..=2 => (
                Request::Get,
                Response::Read {
                    value: values[register].clone(),
                },
            ),
            3..=6 => {
                let expected = if next() % 2 == 0 {
                    values[register].clone()
                } else {
                    Some("stale".into())
                };
                let succeeded = expected == values[register];
                if succeeded {
                    values[register] = Some(fresh.clone());
                }
                (
                    Request::CompareAndSet { expected, new: fresh },
                    Response::Swapped { succeeded },
                )
            }
            7..=8 => {
                values[register] = Some(fresh.clone());
                (Request::Put { value: fresh }, Response::Done)
            }
            _ => {
                values[register] = None;
                (Request::Delete, Response::Done)
            }
        };
        let unknown = next() % 10 == 0 && !matches!(request, Request::Get);
        history.push(Operation {
            client,
            key: format!("r{register}"),
            request,
            response: if unknown { Response::Unknown } else { response },
            called_us,
            returned_us,
        });
    }
    history
}

fn linearizability(c: &mut Criterion) {
    let history = chaos_history();
    let mut group = c.benchmark_group("history");
    group.sample_size(10);
    group.throughput(Throughput::Elements(history.len() as u64));
    group.bench_function("linearizability of 16000 operations on 4 registers", |b| {
        b.iter(|| {
            let verdict = etcd_drill::history::linearizability::check(black_box(&history), &Default::default());
            assert!(verdict.linearizable());
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    ledger_accounting,
    histogram,
    report_rendering,
    key_generation,
    linearizability
);
criterion_main!(benches);
