//! The verdict of `etcdctl check perf`, rule for rule and line for line: any error fails;
//! throughput fails at or below 90 % of the rate limit; the slowest request fails above
//! 0.5 s; the standard deviation fails above 0.1 s.

use std::collections::BTreeMap;

use serde::Serialize;

/// Throughput must be strictly above this share of the rate limit.
pub const MIN_THROUGHPUT_RATIO: f64 = 0.9;
/// The slowest successful request may take at most this long.
pub const MAX_SLOWEST_S: f64 = 0.5;
/// The population standard deviation of successful latencies may be at most this.
pub const MAX_STDDEV_S: f64 = 0.1;

/// The figures the rules look at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictInput {
    /// The rate the run asked for; None when there was no limit (no throughput rule).
    pub rate_limit: Option<f64>,
    /// Successful writes per second over the whole run.
    pub throughput: f64,
    pub slowest_s: f64,
    pub stddev_s: f64,
    /// Failed requests by kind, each with one example message.
    pub errors: BTreeMap<String, (u64, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub pass: bool,
    pub errors_ok: bool,
    pub throughput_ok: bool,
    pub slowest_ok: bool,
    pub stddev_ok: bool,
    /// The lines etcdctl prints, in its order, ending with PASS or FAIL.
    pub lines: Vec<String>,
}

pub fn judge(input: &VerdictInput) -> Verdict {
    let mut lines = Vec::new();
    let errors_ok = input.errors.is_empty();
    if !errors_ok {
        lines.push("FAIL: too many errors".to_string());
        for (kind, (count, example)) in &input.errors {
            lines.push(format!("FAIL: ERROR({kind}: {example}) -> {count}"));
        }
    }
    // etcdctl prints int(RPS)+1.
    let shown = input.throughput as i64 + 1;
    let throughput_ok = match input.rate_limit {
        Some(limit) => input.throughput / limit > MIN_THROUGHPUT_RATIO,
        None => true,
    };
    if throughput_ok {
        lines.push(format!("PASS: Throughput is {shown} writes/s"));
    } else {
        lines.push(format!("FAIL: Throughput too low: {shown} writes/s"));
    }
    let slowest_ok = input.slowest_s <= MAX_SLOWEST_S;
    if slowest_ok {
        lines.push(format!("PASS: Slowest request took {:.6}s", input.slowest_s));
    } else {
        lines.push(format!("Slowest request took too long: {:.6}s", input.slowest_s));
    }
    let stddev_ok = input.stddev_s <= MAX_STDDEV_S;
    if stddev_ok {
        lines.push(format!("PASS: Stddev is {:.6}s", input.stddev_s));
    } else {
        lines.push(format!("Stddev too high: {:.6}s", input.stddev_s));
    }
    let pass = errors_ok && throughput_ok && slowest_ok && stddev_ok;
    lines.push(if pass { "PASS" } else { "FAIL" }.to_string());
    Verdict {
        pass,
        errors_ok,
        throughput_ok,
        slowest_ok,
        stddev_ok,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(throughput: f64, slowest_s: f64, stddev_s: f64) -> VerdictInput {
        VerdictInput {
            rate_limit: Some(150.0),
            throughput,
            slowest_s,
            stddev_s,
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn a_clean_run_passes_with_etcdctls_lines() {
        let v = judge(&input(149.6, 0.11, 0.0046));
        assert!(v.pass);
        assert_eq!(
            v.lines,
            vec![
                "PASS: Throughput is 150 writes/s",
                "PASS: Slowest request took 0.110000s",
                "PASS: Stddev is 0.004600s",
                "PASS",
            ]
        );
    }

    #[test]
    fn throughput_at_exactly_ninety_percent_fails() {
        // 135 / 150 == 0.9 exactly in f64.
        assert_eq!(135.0 / 150.0, 0.9);
        let v = judge(&input(135.0, 0.01, 0.001));
        assert!(!v.throughput_ok && !v.pass);
        assert_eq!(v.lines[0], "FAIL: Throughput too low: 136 writes/s");
        assert_eq!(v.lines.last().map(String::as_str), Some("FAIL"));
        let just_above = judge(&input(135.0 + 1e-9, 0.01, 0.001));
        assert!(just_above.throughput_ok && just_above.pass);
    }

    #[test]
    fn slowest_at_exactly_half_a_second_passes() {
        let v = judge(&input(150.0, 0.5, 0.01));
        assert!(v.slowest_ok && v.pass, "{:?}", v.lines);
        let v = judge(&input(150.0, 0.500_000_001, 0.01));
        assert!(!v.slowest_ok && !v.pass);
        assert_eq!(v.lines[1], "Slowest request took too long: 0.500000s");
    }

    #[test]
    fn stddev_at_exactly_a_tenth_passes() {
        let v = judge(&input(150.0, 0.3, 0.1));
        assert!(v.stddev_ok && v.pass, "{:?}", v.lines);
        let v = judge(&input(150.0, 0.3, 0.100_000_001));
        assert!(!v.stddev_ok && !v.pass);
        assert_eq!(v.lines[2], "Stddev too high: 0.100000s");
    }

    #[test]
    fn a_single_error_fails_a_fast_run() {
        let mut i = input(150.0, 0.01, 0.001);
        i.errors
            .insert("timeout".into(), (1, "timed out after 10000 ms".into()));
        let v = judge(&i);
        assert!(!v.errors_ok && !v.pass);
        assert!(v.throughput_ok && v.slowest_ok && v.stddev_ok);
        assert_eq!(v.lines[0], "FAIL: too many errors");
        assert_eq!(v.lines[1], "FAIL: ERROR(timeout: timed out after 10000 ms) -> 1");
    }

    #[test]
    fn no_rate_limit_means_no_throughput_rule() {
        let mut i = input(1.0, 0.01, 0.001);
        i.rate_limit = None;
        assert!(judge(&i).pass);
    }
}
