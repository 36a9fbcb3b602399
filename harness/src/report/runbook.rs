//! `runbook.sh`: the recovery procedure's commands as an operator would type them
//! (`etcdctl`, `etcdutl`, `docker`), with the drill's real member names, URLs and token,
//! secrets masked, and a comment giving each step's time in the drill.

use std::fmt::Write;

use super::DrillReport;
use crate::docker::shell::wrap_command;

/// Lines longer than this are wrapped before their options.
const WRAP_WIDTH: usize = 100;

pub fn render_runbook(r: &DrillReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "#!/usr/bin/env bash");
    let _ = writeln!(
        s,
        "# Runbook: {} — the `{}` procedure, as it ran in etcd-drill run {} ({}).",
        r.scenario.name, r.recovery.procedure, r.run_id, r.started_at
    );
    let verdict = match r.outcome {
        crate::drill::event::Outcome::Pass => "passed every check",
        crate::drill::event::Outcome::Fail => "FAILED",
        crate::drill::event::Outcome::Skipped => "was skipped (no procedure ran)",
        crate::drill::event::Outcome::Running => "had not finished when this was written",
        crate::drill::event::Outcome::Interrupted => "was INTERRUPTED (the runbook stops where the drill did)",
    };
    let _ = writeln!(s, "# The drill {verdict}; image {}.", r.image);
    let _ = writeln!(s, "#");
    let scheme = super::member_scheme(r);
    let _ = writeln!(s, "# Members (name  host  client URL  peer URL):");
    for m in &r.topology.members {
        let _ = writeln!(
            s,
            "#   {}  {}  {}  {}",
            m.name,
            m.host,
            m.client_url_in(scheme),
            m.peer_url_in(scheme)
        );
    }
    let _ = writeln!(s, "# --initial-cluster {}", r.topology.initial_cluster_in(scheme));
    for host in &r.topology.hosts {
        let _ = match host.docker.is_some() {
            true => writeln!(
                s,
                "# Host {}'s docker commands start with {}(its Docker daemon).",
                host.name,
                host.docker_prefix()
            ),
            false => writeln!(
                s,
                "# Host {}'s docker commands have no DOCKER_HOST: they run on the daemon the harness used by itself.",
                host.name
            ),
        };
    }
    if let (Some(started), Some(finished)) = (r.recovery.started_at_ms, r.recovery.finished_at_ms) {
        let _ = writeln!(
            s,
            "# The procedure started {:.2} s into the drill, {} ms after the fault, and took {} ms;",
            started as f64 / 1000.0,
            started.saturating_sub(r.recovery.fault_at_ms),
            finished.saturating_sub(started)
        );
    }
    if let Some(rto) = r.recovery.rto_ms {
        let _ = writeln!(s, "# writes were accepted again {rto} ms after the fault (RTO).");
    }
    let _ = writeln!(
        s,
        "# Secrets are masked as ***: put yours in before running a line. Steps that ran\n# concurrently in the drill are listed one after the other.\n"
    );
    let _ = writeln!(s, "set -euo pipefail\n");
    let steps: Vec<_> = r.commands.iter().filter(|c| c.phase == "recovery").collect();
    if steps.is_empty() {
        let _ = writeln!(
            s,
            "# The drill recorded no recovery commands (it broke down before the procedure)."
        );
    }
    for (i, c) in steps.iter().enumerate() {
        let failed = if c.ok { "" } else { " — FAILED in the drill" };
        let _ = writeln!(
            s,
            "# Step {}: {} (at {:.2} s, took {} ms){failed}",
            i + 1,
            c.step,
            c.at_ms as f64 / 1000.0,
            c.duration_ms
        );
        let _ = writeln!(s, "{}\n", wrap_command(&c.command, WRAP_WIDTH));
    }
    s
}
