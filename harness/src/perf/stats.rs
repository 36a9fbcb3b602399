//! Latency figures of a run: an HDR histogram (microseconds, 3 significant digits) for the
//! percentiles, and exact running figures (count, mean, population standard deviation,
//! slowest) so the verdict sees the same numbers etcdctl computes from every latency.
//! Also the run's timeline: completions, errors, p99 and slowest per second.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency the histograms hold; anything slower is clamped to it (the exact
/// slowest is kept apart).
const HISTOGRAM_MAX_US: u64 = 600_000_000;

fn new_histogram(significant_digits: u8) -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; a failure here is a programming error.
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, significant_digits).expect("valid histogram bounds")
}

fn micros(latency: Duration) -> u64 {
    (latency.as_micros() as u64).clamp(1, HISTOGRAM_MAX_US)
}

/// Successful requests' latencies.
#[derive(Debug, Clone)]
pub struct LatencyStats {
    histogram: Histogram<u64>,
    count: u64,
    /// Welford's running mean and sum of squared deviations, in seconds.
    mean_s: f64,
    m2: f64,
    slowest: Duration,
    fastest: Duration,
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats {
            histogram: new_histogram(3),
            count: 0,
            mean_s: 0.0,
            m2: 0.0,
            slowest: Duration::ZERO,
            fastest: Duration::MAX,
        }
    }
}

/// The summary that goes into reports, in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub fastest_s: f64,
    pub mean_s: f64,
    pub stddev_s: f64,
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
    pub p999_s: f64,
    pub slowest_s: f64,
}

impl LatencyStats {
    pub fn record(&mut self, latency: Duration) {
        let _ = self.histogram.record(micros(latency));
        self.count += 1;
        let x = latency.as_secs_f64();
        let delta = x - self.mean_s;
        self.mean_s += delta / self.count as f64;
        self.m2 += delta * (x - self.mean_s);
        self.slowest = self.slowest.max(latency);
        self.fastest = self.fastest.min(latency);
    }

    /// Adds another run's latencies (Chan et al.'s parallel update for the variance).
    pub fn merge(&mut self, other: &LatencyStats) {
        if other.count == 0 {
            return;
        }
        let _ = self.histogram.add(&other.histogram);
        let n = self.count + other.count;
        let delta = other.mean_s - self.mean_s;
        self.m2 += other.m2 + delta * delta * (self.count as f64) * (other.count as f64) / n as f64;
        self.mean_s += delta * other.count as f64 / n as f64;
        self.count = n;
        self.slowest = self.slowest.max(other.slowest);
        self.fastest = self.fastest.min(other.fastest);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn slowest(&self) -> Duration {
        self.slowest
    }

    /// Population standard deviation, as etcd's report computes it.
    pub fn stddev_s(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.m2 / self.count as f64).max(0.0).sqrt()
        }
    }

    /// A percentile (0..=100) from the histogram, in seconds.
    pub fn percentile_s(&self, percentile: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.histogram.value_at_percentile(percentile) as f64 / 1e6
    }

    pub fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.count,
            fastest_s: self.fastest.as_secs_f64(),
            mean_s: self.mean_s,
            stddev_s: self.stddev_s(),
            p50_s: self.percentile_s(50.0),
            p90_s: self.percentile_s(90.0),
            p99_s: self.percentile_s(99.0),
            p999_s: self.percentile_s(99.9),
            slowest_s: self.slowest.as_secs_f64(),
        }
    }
}

/// One second of a run, by completion time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Interval {
    /// Seconds since the load started: this entry covers [second, second + 1).
    pub second: u64,
    pub successes: u64,
    pub errors: u64,
    pub p99_s: f64,
    pub slowest_s: f64,
}

/// Completions per second, with each second's p99 and slowest.
pub struct Timeline {
    current: Interval,
    histogram: Histogram<u64>,
    done: Vec<Interval>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            current: Interval::default(),
            histogram: new_histogram(2),
            done: Vec::new(),
        }
    }
}

impl Timeline {
    /// Records one completion `since_start` into the load; `latency` is None for an error.
    /// Returns the seconds that this completion closed (for progress output).
    pub fn record(&mut self, since_start: Duration, latency: Option<Duration>) -> &[Interval] {
        let second = since_start.as_secs();
        let closed_from = self.done.len();
        while self.current.second < second {
            self.close_current();
        }
        match latency {
            Some(l) => {
                self.current.successes += 1;
                let _ = self.histogram.record(micros(l));
                self.current.slowest_s = self.current.slowest_s.max(l.as_secs_f64());
            }
            None => self.current.errors += 1,
        }
        &self.done[closed_from..]
    }

    fn close_current(&mut self) {
        if self.current.successes > 0 {
            self.current.p99_s = self.histogram.value_at_percentile(99.0) as f64 / 1e6;
        }
        self.histogram.reset();
        let next = Interval {
            second: self.current.second + 1,
            ..Interval::default()
        };
        self.done.push(std::mem::replace(&mut self.current, next));
    }

    /// Every second, the last (partial) one included if anything completed in it.
    pub fn finish(mut self) -> Vec<Interval> {
        if self.current.successes + self.current.errors > 0 {
            self.close_current();
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn figures_match_a_direct_computation() {
        let lats: Vec<u64> = (1..=1000).collect();
        let mut s = LatencyStats::default();
        for l in &lats {
            s.record(ms(*l));
        }
        let xs: Vec<f64> = lats.iter().map(|l| *l as f64 / 1000.0).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!((s.stddev_s() - var.sqrt()).abs() < 1e-12);
        assert_eq!(s.slowest(), ms(1000));
        let sum = s.summary();
        assert!((sum.p50_s - 0.5).abs() < 0.001, "{}", sum.p50_s);
        assert!((sum.p99_s - 0.99).abs() < 0.001, "{}", sum.p99_s);
        // 99.9 % of 1000 is 999.0000000000001 counts in f64, so the 1000th value answers.
        assert!((sum.p999_s - 0.999).abs() < 0.002, "{}", sum.p999_s);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (
            LatencyStats::default(),
            LatencyStats::default(),
            LatencyStats::default(),
        );
        for i in 0..500u64 {
            let l = ms(1 + (i * 37) % 200);
            if i % 3 == 0 {
                a.record(l)
            } else {
                b.record(l)
            }
            all.record(l);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert!((a.stddev_s() - all.stddev_s()).abs() < 1e-12);
        assert_eq!(a.summary().p99_s, all.summary().p99_s);
        assert_eq!(a.slowest(), all.slowest());
    }

    #[test]
    fn a_silent_second_shows_as_zero() {
        let mut t = Timeline::default();
        t.record(ms(100), Some(ms(5)));
        t.record(ms(900), None);
        let closed = t.record(ms(3_200), Some(ms(7))).to_vec();
        assert_eq!(closed.len(), 3);
        assert_eq!((closed[0].successes, closed[0].errors), (1, 1));
        assert_eq!(closed[1].successes + closed[1].errors, 0);
        let all = t.finish();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].second, 3);
        assert!((all[3].slowest_s - 0.007).abs() < 1e-9);
    }
}
