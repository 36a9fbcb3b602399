//! `perf --max`: the highest rate at which a run still passes every rule of the verdict
//! (throughput over 90 % of the rate, slowest at most 0.5 s, stddev at most 0.1 s, no
//! errors). First an unlimited run measures the ceiling; then short runs bisect between
//! the highest passing rate and the lowest failing one.

use serde::Serialize;

use crate::error::Result;
use crate::perf::report::PerfReport;
use crate::perf::stats::Interval;
use crate::perf::{Bench, RunSettings};

/// Stop bisecting when the failing rate is within this share of the passing one.
const RESOLUTION: f64 = 0.05;

/// One trial of the search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// None: no rate limit (the ceiling run).
    pub rate: Option<f64>,
    pub throughput: f64,
    pub p99_s: f64,
    pub slowest_s: f64,
    pub stddev_s: f64,
    pub errors: u64,
    pub pass: bool,
}

impl Trial {
    fn from_report(report: &PerfReport) -> Trial {
        Trial {
            rate: report.config.rate_limit,
            throughput: report.results.throughput,
            p99_s: report.results.latency.p99_s,
            slowest_s: report.results.latency.slowest_s,
            stddev_s: report.results.latency.stddev_s,
            errors: report.results.errors,
            pass: report.verdict.pass,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaxSearch {
    pub trials: Vec<Trial>,
    /// The highest passing trial.
    pub best: Option<Trial>,
}

/// The next rate to try, given the highest passing and lowest failing rates so far.
/// None when the bracket is narrow enough.
pub fn next_rate(passing: Option<f64>, failing: f64) -> Option<f64> {
    match passing {
        None => Some(failing * 0.8),
        Some(lo) if (failing - lo) / failing <= RESOLUTION => None,
        Some(lo) => Some((lo + failing) / 2.0),
    }
}

/// Runs the search with `base`'s clients and key shapes, each trial lasting as `base` says,
/// at most `max_trials` trials. `on_trial` sees each finished trial.
pub async fn find_max(
    bench: &Bench,
    base: &RunSettings,
    max_trials: usize,
    on_trial: &mut dyn FnMut(&Trial),
) -> Result<MaxSearch> {
    let mut trials = Vec::new();
    let mut quiet = |_: &Interval| {};
    let settings_at = |rate: Option<f64>, index: usize| {
        let mut settings = base.clone();
        settings.spec.rate = rate;
        settings.spec.seed = base.spec.seed.wrapping_add(index as u64);
        // Trials follow each other; compacting keeps the key space from growing.
        settings.auto_compact = true;
        settings
    };
    let ceiling_settings = settings_at(None, 0);
    let ceiling = Trial::from_report(&bench.run(&ceiling_settings, &mut quiet).await?);
    on_trial(&ceiling);
    trials.push(ceiling.clone());
    if ceiling.pass {
        return Ok(MaxSearch {
            best: Some(ceiling),
            trials,
        });
    }
    let mut passing: Option<Trial> = None;
    let mut failing = ceiling.throughput.max(1.0);
    while trials.len() < max_trials.max(2) {
        let Some(rate) = next_rate(passing.as_ref().and_then(|t| t.rate), failing) else {
            break;
        };
        let settings = settings_at(Some(rate.round().max(1.0)), trials.len());
        let trial = Trial::from_report(&bench.run(&settings, &mut quiet).await?);
        on_trial(&trial);
        if trial.pass {
            passing = Some(trial.clone());
        } else {
            failing = trial.rate.unwrap_or(failing);
        }
        trials.push(trial);
    }
    Ok(MaxSearch { trials, best: passing })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_narrows_and_stops() {
        assert_eq!(next_rate(None, 1000.0), Some(800.0));
        assert_eq!(next_rate(Some(800.0), 1000.0), Some(900.0));
        assert_eq!(next_rate(Some(960.0), 1000.0), None);
        // A simulated cluster that passes up to 870 writes/s.
        let mut passing = None;
        let mut failing = 1000.0;
        let mut steps = 0;
        while let Some(r) = next_rate(passing, failing) {
            if r <= 870.0 {
                passing = Some(r)
            } else {
                failing = r
            }
            steps += 1;
        }
        let found = passing.unwrap();
        assert!((870.0 * 0.95..=870.0).contains(&found), "{found}");
        assert!(steps <= 6, "{steps}");
    }
}
