//! Progress on the terminal while a drill runs: a spinner for the step under way and one
//! line per event, then the verdict with the headline figures.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::drill::event::{Event, Reporter};

/// A figure in milliseconds, or `-` when there is none.
fn ms(value: Option<u64>) -> String {
    value.map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into())
}

pub struct TerminalReporter {
    spinner: ProgressBar,
}

impl Default for TerminalReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalReporter {
    pub fn new() -> Self {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("a valid template"));
        spinner.enable_steady_tick(Duration::from_millis(120));
        TerminalReporter { spinner }
    }

    /// Prints above the spinner, or plainly when output is not a terminal (CI logs).
    fn say(&self, text: String) {
        if self.spinner.is_hidden() {
            println!("{text}");
        } else {
            self.spinner.println(text);
        }
    }

    fn line(&self, at_ms: u64, text: String) {
        self.say(format!("{:>7.2}s  {text}", at_ms as f64 / 1000.0));
    }
}

impl Reporter for TerminalReporter {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id,
                scenario,
                image,
                seed,
                out_dir,
                ..
            } => {
                self.say(format!(
                    "etcd-drill: scenario {} | run {run_id} | image {image} | seed {seed} (replay with --seed {seed})\n  reports: {}",
                    scenario.name,
                    out_dir.display()
                ));
                self.spinner.set_message("starting the cluster");
            }
            Event::ImageInspected {
                etcd_version,
                known_bugs,
                ..
            } => {
                for bug in known_bugs {
                    self.say(format!(
                        "  known bug of etcd {etcd_version}: {} (fixed in {}): {}",
                        bug.reference, bug.fixed_in, bug.summary
                    ));
                }
            }
            Event::Phase { at_ms, name, detail } => {
                self.line(*at_ms, format!("{name}: {detail}"));
                self.spinner.set_message(name.clone());
            }
            Event::FaultInjected {
                at_ms,
                action,
                target,
                members,
            } => {
                self.line(*at_ms, format!("fault {action} ({target}): {}", members.join(", ")));
            }
            Event::QuorumProbed { at_ms, writable } => {
                self.line(
                    *at_ms,
                    format!(
                        "quorum probe: {}",
                        if *writable {
                            "writable"
                        } else {
                            "quorum lost, puts time out"
                        }
                    ),
                );
                self.spinner.set_message("outage");
            }
            Event::RecoveryStarted { at_ms, procedure } => {
                self.line(*at_ms, format!("recovery: {procedure}"));
                self.spinner.set_message(format!("running {procedure}"));
            }
            Event::Command(c) if c.phase == "recovery" => {
                self.line(
                    c.at_ms,
                    format!(
                        "  $ {} ({} ms{})",
                        c.step,
                        c.duration_ms,
                        if c.ok { "" } else { ", FAILED" }
                    ),
                );
            }
            Event::Command(_) => {}
            Event::WorkloadSeries(series) => {
                self.line(
                    series.workload_stopped_ms,
                    format!(
                        "workload: {:.1} acknowledged writes/s, latency p50 {}, p99 {}, max {}",
                        series.mean_acked_per_s,
                        ms(series.latency_p50_ms),
                        ms(series.latency_p99_ms),
                        ms(series.latency_max_ms)
                    ),
                );
            }
            Event::RecoveryFinished { at_ms, ok } => {
                self.line(
                    *at_ms,
                    format!("recovery {}", if *ok { "done: writes accepted" } else { "FAILED" }),
                );
            }
            Event::AllHealthy { at_ms } => self.line(*at_ms, "every member healthy".into()),
            Event::Measured {
                recovery,
                data,
                consistency,
            } => {
                self.say(format!(
                    "\n  RTO (fault -> writes back)     {}\n  fault -> first write           {}\n  procedure -> first write       {}\n  fault -> all healthy           {}\n  longest write gap              {} ms\n  acknowledged writes            {}\n  lost acknowledged writes       {}\n  RPO (span of lost writes)      {} ms\n  HashKV equal                   {}",
                    ms(recovery.rto_ms),
                    ms(recovery.first_write_ms),
                    ms(recovery.procedure_ms),
                    ms(recovery.healthy_ms),
                    recovery.max_write_gap_ms,
                    data.acked_writes,
                    data.lost_acked_writes,
                    data.rpo_ms,
                    consistency.as_ref().map(|c| c.hashkv_equal.to_string()).unwrap_or_else(|| "-".into()),
                ));
                for (label, value) in super::agent_summary(recovery, data.rpo_ms) {
                    self.say(format!("  {label:<30} {value}"));
                }
            }
            Event::Check(c) => {
                self.say(format!(
                    "  [{}] {}: {} (expected {})",
                    if c.passed { "pass" } else { "FAIL" },
                    c.name,
                    c.actual,
                    c.expected
                ));
            }
            Event::RunFinished {
                outcome,
                error,
                skip_reason,
                kept,
                ..
            } => {
                self.spinner.finish_and_clear();
                if let Some(e) = error {
                    eprintln!("error: {e}");
                }
                if let Some(kept) = kept {
                    println!("cluster kept running; endpoints:");
                    for (name, endpoint) in kept {
                        println!("  {name}  {endpoint}");
                    }
                }
                if let Some(reason) = skip_reason {
                    println!("skipped: {reason}");
                }
                println!("verdict: {}", outcome.verdict());
            }
        }
    }
}
