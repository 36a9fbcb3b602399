//! One verdict for a release: the candidate image against the baseline (the version in
//! production). Every drill the baseline passes must pass on the candidate, within the
//! scenario's regression budget (`report compare`'s rules: RTO, procedure time, lost
//! writes, throughput); every perf profile the baseline passes must pass on the candidate,
//! with its throughput no more than the budget below the baseline's. Pure: it judges
//! finished reports, it runs nothing.

use std::fmt::Write;

use serde::Serialize;

use super::compare::Comparison;

/// One perf run, as the verdict needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfSide {
    pub throughput: f64,
    pub pass: bool,
    /// The verdict's lines (`PASS: Throughput is 150 writes/s`...).
    pub lines: Vec<String>,
}

/// One perf profile on both images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfPair {
    pub load: String,
    pub baseline: PerfSide,
    pub candidate: PerfSide,
    /// Why the candidate is worse, if it is.
    pub regression: Option<String>,
}

/// Judges a profile: the candidate fails where the baseline passes, or its throughput is
/// more than `worse_pct` percent below the baseline's.
pub fn judge_perf(load: &str, baseline: PerfSide, candidate: PerfSide, worse_pct: u64) -> PerfPair {
    let floor = baseline.throughput * (1.0 - worse_pct as f64 / 100.0);
    let regression = if baseline.pass && !candidate.pass {
        Some("the baseline passes etcdctl's rules, the candidate does not".to_string())
    } else if candidate.throughput < floor {
        Some(format!(
            "{:.1} writes/s is more than {worse_pct}% below the baseline's {:.1} (budget {floor:.1})",
            candidate.throughput, baseline.throughput
        ))
    } else {
        None
    };
    PerfPair {
        load: load.to_string(),
        baseline,
        candidate,
        regression,
    }
}

/// The release's verdict.
#[derive(Debug, Clone)]
pub struct ReleaseVerdict {
    pub baseline: String,
    pub candidate: String,
    pub drills: Comparison,
    pub perf: Vec<PerfPair>,
}

/// What `release.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseSummary {
    pub baseline: String,
    pub candidate: String,
    pub pass: bool,
    pub drill_regressions: Vec<DrillRegression>,
    /// Scenarios that ran on only one of the two images (a breakdown on the other).
    pub unmatched: Vec<String>,
    pub perf: Vec<PerfPair>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillRegression {
    pub scenario: String,
    pub figure: String,
    pub detail: String,
}

impl ReleaseVerdict {
    /// Every drill and profile held up, and every drill ran on both images.
    pub fn pass(&self) -> bool {
        self.drills.regressions().is_empty()
            && self.perf.iter().all(|p| p.regression.is_none())
            && self.drills.only_old.is_empty()
    }

    pub fn summary(&self) -> ReleaseSummary {
        ReleaseSummary {
            baseline: self.baseline.clone(),
            candidate: self.candidate.clone(),
            pass: self.pass(),
            drill_regressions: self
                .drills
                .regressions()
                .into_iter()
                .map(|(scenario, change)| DrillRegression {
                    scenario: scenario.to_string(),
                    figure: change.figure.to_string(),
                    detail: change.regression.clone().unwrap_or_default(),
                })
                .collect(),
            unmatched: self
                .drills
                .only_old
                .iter()
                .chain(&self.drills.only_new)
                .cloned()
                .collect(),
            perf: self.perf.clone(),
        }
    }
}

/// The verdict as Markdown: the verdict, what broke it, then the drills' comparison and
/// the perf table.
pub fn render_release_markdown(v: &ReleaseVerdict) -> String {
    let mut s = String::new();
    let verdict = if v.pass() { "PASS" } else { "FAIL" };
    let _ = writeln!(
        s,
        "# etcd-drill release: `{}` against `{}` — {verdict}\n",
        v.candidate, v.baseline
    );
    let summary = v.summary();
    if v.pass() {
        let _ = writeln!(
            s,
            "No regression: every drill and profile the baseline passes, the candidate passes within budget.\n"
        );
    }
    for r in &summary.drill_regressions {
        let _ = writeln!(s, "- **{}**, {}: {}", r.scenario, r.figure, r.detail);
    }
    for p in summary.perf.iter().filter(|p| p.regression.is_some()) {
        let _ = writeln!(
            s,
            "- **perf --load {}**: {}",
            p.load,
            p.regression.clone().unwrap_or_default()
        );
    }
    for name in &v.drills.only_old {
        let _ = writeln!(s, "- **{name}**: no report from the candidate (the run broke down)");
    }
    if !v.perf.is_empty() {
        let _ = writeln!(
            s,
            "\n## Write throughput (etcdctl check perf rules)\n\n| load | baseline | candidate | verdict |\n|---|---|---|---|"
        );
        for p in &v.perf {
            let side = |p: &PerfSide| format!("{:.1} writes/s, {}", p.throughput, if p.pass { "PASS" } else { "FAIL" });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                p.load,
                side(&p.baseline),
                side(&p.candidate),
                p.regression.as_deref().unwrap_or("ok")
            );
        }
    }
    let _ = writeln!(s, "\n{}", super::compare::render_comparison(&v.drills));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(throughput: f64, pass: bool) -> PerfSide {
        PerfSide {
            throughput,
            pass,
            lines: Vec::new(),
        }
    }

    #[test]
    fn perf_fails_on_a_lost_pass_or_a_throughput_drop_beyond_the_budget() {
        assert!(judge_perf("s", side(150.0, true), side(149.0, true), 20)
            .regression
            .is_none());
        assert!(judge_perf("s", side(150.0, true), side(121.0, true), 20)
            .regression
            .is_none());
        let drop = judge_perf("s", side(150.0, true), side(119.0, true), 20);
        assert!(drop.regression.unwrap().contains("20%"));
        let lost = judge_perf("l", side(7000.0, true), side(7100.0, false), 20);
        assert!(lost.regression.unwrap().contains("does not"));
        // Both fail the rules: the candidate is no worse.
        assert!(judge_perf("l", side(5000.0, false), side(5000.0, false), 20)
            .regression
            .is_none());
    }

    #[test]
    fn a_drill_missing_on_the_candidate_fails_the_release() {
        let mut v = ReleaseVerdict {
            baseline: "a".into(),
            candidate: "b".into(),
            drills: Comparison::default(),
            perf: vec![judge_perf("s", side(150.0, true), side(150.0, true), 20)],
        };
        assert!(v.pass());
        v.drills.only_old.push("server-b-loss".into());
        assert!(!v.pass());
        assert!(render_release_markdown(&v).contains("FAIL"));
    }
}
