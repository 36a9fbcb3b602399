//! The workload over time, for charts and trends: acknowledged and failed puts and latency
//! percentiles per time bucket, a latency histogram, and the mean throughput, all computed
//! from the ledger (pure). The runner emits it as an event; reporters only read it.

use serde::{Deserialize, Serialize};

use crate::workload::Ledger;

/// Upper bounds (inclusive, ms) of the latency histogram's bins; a last bin holds the rest.
pub const HISTOGRAM_BOUNDS_MS: &[u64] = &[1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000];

/// Charts stay readable with at most this many buckets.
const MAX_BUCKETS: u64 = 150;
/// The smallest bucket, and the step bucket sizes are rounded up to.
const BUCKET_STEP_MS: u64 = 250;

/// One slice of the drill's time line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesBucket {
    /// Start of the bucket, in run milliseconds.
    pub at_ms: u64,
    /// Puts acknowledged within the bucket.
    pub acked: u64,
    /// Puts that failed or timed out within the bucket.
    pub failed: u64,
    /// Latency (send to acknowledgement) of the puts acknowledged in the bucket.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    pub latency_max_ms: Option<u64>,
}

/// One bin of the latency histogram: acknowledged puts with `latency <= le_ms` that did
/// not fit an earlier bin; `le_ms` is None for the last, open bin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramBin {
    pub le_ms: Option<u64>,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSeries {
    pub workload_started_ms: u64,
    pub workload_stopped_ms: u64,
    pub bucket_ms: u64,
    pub buckets: Vec<SeriesBucket>,
    pub latency_histogram: Vec<HistogramBin>,
    /// Acknowledged puts per second over the whole time the workload ran.
    pub mean_acked_per_s: f64,
    /// Over every acknowledged put of the run.
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    pub latency_max_ms: Option<u64>,
}

/// The `pct`-th percentile (nearest rank) of `sorted`, which must be sorted ascending.
pub fn percentile(sorted: &[u64], pct: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Bucket width for a span: `BUCKET_STEP_MS` multiples, at most `MAX_BUCKETS` buckets.
fn bucket_width(span_ms: u64) -> u64 {
    let raw = span_ms.div_ceil(MAX_BUCKETS).max(1);
    raw.div_ceil(BUCKET_STEP_MS) * BUCKET_STEP_MS
}

impl WorkloadSeries {
    /// The series of `ledger` for a workload that ran from `started_ms` to `stopped_ms`.
    pub fn from_ledger(ledger: &Ledger, started_ms: u64, stopped_ms: u64) -> WorkloadSeries {
        let stopped_ms = stopped_ms.max(started_ms);
        let span = stopped_ms - started_ms;
        let width = bucket_width(span);
        let count = span.div_ceil(width).max(1) as usize;
        let index = |t: u64| ((t.saturating_sub(started_ms) / width) as usize).min(count - 1);

        let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); count];
        let mut failed = vec![0u64; count];
        for w in &ledger.acked {
            latencies[index(w.acked_ms)].push(w.acked_ms.saturating_sub(w.sent_ms));
        }
        for f in &ledger.failed {
            failed[index(f.failed_ms)] += 1;
        }
        let buckets = latencies
            .iter_mut()
            .zip(failed)
            .enumerate()
            .map(|(i, (lat, failed))| {
                lat.sort_unstable();
                SeriesBucket {
                    at_ms: started_ms + i as u64 * width,
                    acked: lat.len() as u64,
                    failed,
                    latency_p50_ms: percentile(lat, 50.0),
                    latency_p99_ms: percentile(lat, 99.0),
                    latency_max_ms: lat.last().copied(),
                }
            })
            .collect();

        let mut all: Vec<u64> = latencies.into_iter().flatten().collect();
        all.sort_unstable();
        let mut latency_histogram: Vec<HistogramBin> = HISTOGRAM_BOUNDS_MS
            .iter()
            .map(|b| HistogramBin {
                le_ms: Some(*b),
                count: 0,
            })
            .chain([HistogramBin { le_ms: None, count: 0 }])
            .collect();
        for l in &all {
            let bin = HISTOGRAM_BOUNDS_MS
                .iter()
                .position(|b| l <= b)
                .unwrap_or(HISTOGRAM_BOUNDS_MS.len());
            latency_histogram[bin].count += 1;
        }
        let mean_acked_per_s = if span == 0 {
            0.0
        } else {
            // Two decimals are plenty, and keep the JSON short.
            (ledger.acked.len() as f64 * 1000.0 / span as f64 * 100.0).round() / 100.0
        };
        WorkloadSeries {
            workload_started_ms: started_ms,
            workload_stopped_ms: stopped_ms,
            bucket_ms: width,
            buckets,
            latency_histogram,
            mean_acked_per_s,
            latency_p50_ms: percentile(&all, 50.0),
            latency_p99_ms: percentile(&all, 99.0),
            latency_max_ms: all.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{AckedWrite, FailedWrite};
    use proptest::prelude::*;

    fn acked(sent_ms: u64, acked_ms: u64) -> AckedWrite {
        AckedWrite {
            writer: 0,
            seq: sent_ms,
            revision: 1,
            sent_ms,
            acked_ms,
            member: "etcd1".into(),
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn buckets_count_acks_failures_and_latency_where_they_fell() {
        let ledger = Ledger {
            acked: vec![
                acked(1_000, 1_002),
                acked(1_100, 1_110),
                acked(1_300, 1_800),
                acked(3_900, 3_901),
            ],
            failed: vec![FailedWrite {
                writer: 1,
                seq: 1,
                sent_ms: 1_200,
                failed_ms: 1_700,
                kind: "timeout".into(),
            }],
            ..Ledger::default()
        };
        let s = WorkloadSeries::from_ledger(&ledger, 1_000, 4_000);
        assert_eq!(s.bucket_ms, 250);
        assert_eq!(s.buckets.len(), 12);
        assert_eq!(s.buckets[0].at_ms, 1_000);
        assert_eq!((s.buckets[0].acked, s.buckets[0].latency_max_ms), (2, Some(10)));
        assert_eq!(s.buckets[0].latency_p50_ms, Some(2));
        // 1_700 falls in [1_500, 1_750), 1_800 in [1_750, 2_000).
        assert_eq!(s.buckets[2].failed, 1);
        assert_eq!(s.buckets[3].latency_p99_ms, Some(500));
        assert_eq!(s.buckets[11].acked, 1);
        assert_eq!(s.mean_acked_per_s, 1.33);
        let bins: Vec<u64> = s.latency_histogram.iter().map(|b| b.count).collect();
        // 2 ms -> le 2, 10 ms -> le 10, 500 ms -> le 500, 1 ms -> le 1.
        assert_eq!(bins, vec![1, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(s.latency_max_ms, Some(500));
    }

    #[test]
    fn an_empty_workload_still_has_one_bucket() {
        let s = WorkloadSeries::from_ledger(&Ledger::default(), 500, 500);
        assert_eq!(s.buckets.len(), 1);
        assert_eq!(s.mean_acked_per_s, 0.0);
        assert_eq!(s.latency_p50_ms, None);
    }

    proptest! {
        #[test]
        fn every_put_lands_in_exactly_one_bucket_and_bin(
            start in 0u64..10_000,
            span in 0u64..2_000_000,
            times in proptest::collection::vec((0u64..2_000_000, 0u64..10_000), 0..200),
        ) {
            let ledger = Ledger {
                acked: times.iter().map(|(t, lat)| {
                    let at = start + t % (span + 1);
                    acked(at.saturating_sub(*lat), at)
                }).collect(),
                ..Ledger::default()
            };
            let s = WorkloadSeries::from_ledger(&ledger, start, start + span);
            prop_assert!(s.buckets.len() as u64 <= MAX_BUCKETS);
            prop_assert_eq!(s.buckets.iter().map(|b| b.acked).sum::<u64>(), times.len() as u64);
            prop_assert_eq!(s.latency_histogram.iter().map(|b| b.count).sum::<u64>(), times.len() as u64);
            for (i, b) in s.buckets.iter().enumerate() {
                prop_assert_eq!(b.at_ms, start + i as u64 * s.bucket_ms);
            }
        }
    }
}
