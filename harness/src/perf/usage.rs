//! What the load generator itself costs: CPU time (user and system) and peak resident
//! memory of this process, from `getrusage(RUSAGE_SELF)`.

use std::time::Duration;

use serde::Serialize;

/// This process's resource use at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessUsage {
    pub user: Duration,
    pub system: Duration,
    /// The high-water mark of resident memory since the process started.
    pub peak_rss_bytes: u64,
}

/// The generator's cost over a run, for reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GeneratorCost {
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub cpu_total_s: f64,
    /// CPU seconds per 1000 requests sent.
    pub cpu_ms_per_request: f64,
    /// Peak RSS of the whole etcd-drill process (it includes the harness around the load).
    pub peak_rss_bytes: u64,
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// Reads this process's usage. None if the kernel refuses (it does not on Linux).
pub fn current() -> Option<ProcessUsage> {
    // SAFETY: getrusage writes a plain C struct that we zero-initialise and own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return None;
    }
    Some(ProcessUsage {
        user: timeval(usage.ru_utime),
        system: timeval(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        peak_rss_bytes: (usage.ru_maxrss.max(0) as u64) * 1024,
    })
}

/// The cost between two readings, for `requests` requests.
pub fn cost_between(before: Option<ProcessUsage>, after: Option<ProcessUsage>, requests: u64) -> GeneratorCost {
    let (Some(before), Some(after)) = (before, after) else {
        return GeneratorCost::default();
    };
    let user = after.user.saturating_sub(before.user).as_secs_f64();
    let system = after.system.saturating_sub(before.system).as_secs_f64();
    let total = user + system;
    GeneratorCost {
        cpu_user_s: user,
        cpu_system_s: system,
        cpu_total_s: total,
        cpu_ms_per_request: if requests == 0 {
            0.0
        } else {
            total * 1000.0 / requests as f64
        },
        peak_rss_bytes: after.peak_rss_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burning_cpu_shows_in_the_cost() {
        let before = current();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let cost = cost_between(before, current(), 100);
        assert!(cost.cpu_total_s >= 0.1, "{cost:?}");
        assert!(cost.peak_rss_bytes > 1 << 20, "{cost:?}");
        assert!((cost.cpu_ms_per_request - cost.cpu_total_s * 10.0).abs() < 1e-9);
    }
}
