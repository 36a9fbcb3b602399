//! The harness's memory over a long drill: the acknowledgement ledger of a 30-minute run at
//! 1,000 writes/s (1.8 million acknowledged puts, filled the way the writers fill it), the
//! cluster's content read back for the data-loss check, and the check itself. Prints bytes
//! held (counted by a wrapping global allocator: live and peak) and times; not a criterion
//! bench, since the figure is memory. `cargo bench --bench ledger_memory` (about a minute).
//! `LEDGER_WRITES=N` changes the size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use etcd_drill::drill::check::{account_data_loss, ReadBack};
use etcd_drill::workload::{key_for, value_for, AckedWrite, Ledger};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// Resets the peak to what is live now, runs `f`, and returns its result with the bytes it
/// added (live after minus live before) and its peak above the start.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, usize, f64) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let out = f();
    let secs = start.elapsed().as_secs_f64();
    let after = LIVE.load(Ordering::Relaxed);
    (
        out,
        after.saturating_sub(before),
        PEAK.load(Ordering::Relaxed) - before,
        secs,
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run small then.
    let benching = std::env::args().any(|a| a == "--bench");
    let writes: u64 = std::env::var("LEDGER_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1_800_000 } else { 10_000 });
    let writers = 8u32;
    let value_size = 128;
    let members = ["etcd1", "etcd2", "etcd3", "etcd4", "etcd5"];
    let prefix = "/etcd-drill/0a1b2c3d/".to_string();

    let (ledger, ledger_bytes, ledger_peak, ledger_s) = measured(|| {
        let mut ledger = Ledger {
            prefix: prefix.clone(),
            value_size,
            ..Ledger::default()
        };
        for i in 0..writes {
            ledger.acked.push(AckedWrite {
                writer: (i % writers as u64) as u32,
                seq: i / writers as u64,
                revision: i as i64 + 2,
                sent_ms: i,
                acked_ms: i + 3,
                member: members[(i % 5) as usize].to_string(),
            });
        }
        ledger
    });
    let (present, read_bytes, read_peak, read_s) = measured(|| {
        // What `check::read_back` keeps of each key the cluster returns.
        let mut present = ReadBack::default();
        for w in &ledger.acked {
            present.insert(
                key_for(&prefix, w.writer, w.seq).as_bytes(),
                value_for(w.writer, w.seq, value_size).as_bytes(),
            );
        }
        present
    });
    let (loss, _, check_peak, check_s) = measured(|| account_data_loss(&ledger, &present));
    assert_eq!(loss.lost_acked_writes, 0);
    println!(
        "ledger memory, {writes} acknowledged writes ({} writers, {value_size}-byte values):",
        writers
    );
    println!(
        "  ledger (acknowledged writes)        {:>10} live, {:>10} peak while filling, {:.2} s, {:.0} bytes a write",
        mib(ledger_bytes),
        mib(ledger_peak),
        ledger_s,
        ledger_bytes as f64 / writes as f64
    );
    println!(
        "  cluster content read back           {:>10} live, {:>10} peak, {:.2} s, {:.0} bytes a key",
        mib(read_bytes),
        mib(read_peak),
        read_s,
        read_bytes as f64 / writes as f64
    );
    println!(
        "  data-loss check                     {:>10} peak above both, {:.2} s",
        mib(check_peak),
        check_s
    );
    println!(
        "  total held at the check             {:>10}",
        mib(ledger_bytes + read_bytes + check_peak)
    );
}
