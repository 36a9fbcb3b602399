//! `report.md`: the verdict and figures first, then the timeline, the checks, and the
//! commands of the procedure as a runbook an operator could follow.

use std::fmt::Write;

use super::DrillReport;

/// A figure in milliseconds, or `—` when there is none.
pub(super) fn ms(value: Option<u64>) -> String {
    value.map(|v| format!("{v} ms")).unwrap_or_else(|| "—".into())
}

pub fn render_markdown(r: &DrillReport) -> String {
    let mut s = String::new();
    let verdict = r.outcome.verdict();
    let _ = writeln!(s, "# etcd-drill: {} — {verdict}\n", r.scenario.name);
    if let Some(reason) = &r.skip_reason {
        let _ = writeln!(s, "**Skipped:** {reason}\n");
    }
    if !r.scenario.description.is_empty() {
        let _ = writeln!(s, "{}\n", r.scenario.description);
    }
    let _ = writeln!(
        s,
        "Run `{}`, image `{}`, seed {}, started {}, took {:.1} s.\n",
        r.run_id,
        r.image,
        r.seed,
        r.started_at,
        r.duration_ms as f64 / 1000.0
    );
    if let Some(e) = &r.error {
        let _ = writeln!(s, "**The drill broke down:** {e}\n");
    }
    if let Some(version) = &r.etcd_version {
        if r.known_bugs.is_empty() {
            let _ = writeln!(
                s,
                "etcd {version}: no known bug of this release in etcd-drill's table.\n"
            );
        } else {
            let _ = writeln!(s, "## Known bugs of etcd {version}\n");
            let _ = writeln!(
                s,
                "A failure these explain is a defect of this release; newer releases fix them.\n"
            );
            let _ = writeln!(
                s,
                "| bug | releases | fixed in | what a drill sees |\n|---|---|---|---|"
            );
            for bug in &r.known_bugs {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    bug.reference, bug.affects, bug.fixed_in, bug.summary
                );
            }
            let _ = writeln!(s);
        }
    }
    let rec = &r.recovery;
    let d = &r.data;
    let _ = writeln!(s, "## Figures\n");
    let _ = writeln!(s, "| figure | value |\n|---|---|");
    let _ = writeln!(s, "| procedure | {} |", rec.procedure);
    let quorum = match rec.quorum_lost {
        Some(true) => "lost",
        Some(false) => "kept",
        None => "not probed",
    };
    let _ = writeln!(s, "| quorum after the faults | {quorum} |");
    let _ = writeln!(s, "| RTO: fault to writes resumed for good | {} |", ms(rec.rto_ms));
    let _ = writeln!(s, "| fault to first acknowledged write | {} |", ms(rec.first_write_ms));
    let _ = writeln!(
        s,
        "| procedure start to first acknowledged write | {} |",
        ms(rec.procedure_ms)
    );
    let _ = writeln!(s, "| fault to every member healthy | {} |", ms(rec.healthy_ms));
    let _ = writeln!(
        s,
        "| longest gap between acknowledged writes | {} ms |",
        rec.max_write_gap_ms
    );
    let _ = writeln!(s, "| acknowledged writes | {} |", d.acked_writes);
    let _ = writeln!(s, "| lost acknowledged writes | {} |", d.lost_acked_writes);
    let _ = writeln!(
        s,
        "| acknowledged writes with another value | {} |",
        d.wrong_value_writes
    );
    let _ = writeln!(s, "| RPO: time span of the lost writes | {} ms |", d.rpo_ms);
    let _ = writeln!(s, "| failed puts (outcome unknown) | {} |", d.failed_writes);
    let _ = writeln!(
        s,
        "| failed puts the cluster applied anyway | {} |",
        d.failed_but_applied
    );
    if d.app_keys_expected > 0 {
        let _ = writeln!(
            s,
            "| seeded application keys missing | {} of {} |",
            d.app_keys_missing, d.app_keys_expected
        );
    }
    if let Some(series) = &r.series {
        let _ = writeln!(
            s,
            "| mean throughput | {:.1} acknowledged writes/s |",
            series.mean_acked_per_s
        );
        let _ = writeln!(
            s,
            "| write latency p50 / p99 / max | {} / {} / {} |",
            ms(series.latency_p50_ms),
            ms(series.latency_p99_ms),
            ms(series.latency_max_ms)
        );
    }
    if let Some(c) = &r.consistency {
        let _ = writeln!(
            s,
            "| HashKV equal on every member | {} (revision {}) |",
            c.hashkv_equal, c.revision
        );
    }
    if let Some(snap) = rec.outcome.as_ref().and_then(|o| o.snapshot.as_ref()) {
        let _ = writeln!(
            s,
            "| snapshot used | from {} at {} ms: revision {}, {} keys, {} bytes, hash {} |",
            snap.from, snap.taken_ms, snap.revision, snap.total_keys, snap.total_size, snap.hash
        );
    }
    for (label, value) in super::agent_summary(rec, d.rpo_ms) {
        let _ = writeln!(s, "| {label} | {value} |");
    }
    if !d.lost_keys_sample.is_empty() {
        let _ = writeln!(
            s,
            "\nLost keys (first {}): `{}`",
            d.lost_keys_sample.len(),
            d.lost_keys_sample.join("`, `")
        );
    }

    if let Some(why) = &rec.unhealthy {
        let _ = writeln!(s, "\nNot every member was healthy after the procedure: {why}");
    }
    for table in super::incident_tables(rec) {
        let _ = writeln!(s, "\n## {}\n", table.heading);
        if let Some(note) = &table.note {
            let _ = writeln!(s, "{note}\n");
        }
        let _ = writeln!(s, "| {} |", table.columns.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(table.columns.len()));
        for row in &table.rows {
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
    }
    if let Some(upgrade) = rec.outcome.as_ref().and_then(|o| o.upgrade.as_ref()) {
        upgrade_section(&mut s, upgrade);
    }
    topology_section(&mut s, r);
    let _ = writeln!(
        s,
        "\n## Checks\n\n| check | result | expected | actual |\n|---|---|---|---|"
    );
    for c in &r.checks {
        let mark = if c.passed { "pass" } else { "**FAIL**" };
        let _ = writeln!(s, "| {} | {mark} | {} | {} |", c.name, c.expected, c.actual);
    }

    let _ = writeln!(s, "\n## Timeline\n\n| at | event | detail |\n|---|---|---|");
    for t in &r.timeline {
        let _ = writeln!(s, "| {} | {} | {} |", super::seconds(t.at_ms), t.what, t.detail);
    }

    let _ = writeln!(s, "\n## Runbook: the commands the recovery ran\n");
    let _ = writeln!(
        s,
        "Each step as an operator would type it, with the time it took in this drill.\n\n```sh"
    );
    for c in r.commands.iter().filter(|c| c.phase == "recovery") {
        let status = if c.ok { "" } else { " (FAILED)" };
        let _ = writeln!(s, "# {} — {} ms{status}\n{}\n", c.step, c.duration_ms, c.command);
    }
    let _ = writeln!(s, "```");
    let faults: Vec<_> = r.commands.iter().filter(|c| c.phase == "fault").collect();
    if !faults.is_empty() {
        let _ = writeln!(s, "\nThe faults were injected with:\n\n```sh");
        for c in faults {
            let _ = writeln!(s, "{}", c.command);
        }
        let _ = writeln!(s, "```");
    }
    if let Some(kept) = &r.kept_endpoints {
        let _ = writeln!(
            s,
            "\nThe cluster was kept running: {}",
            kept.iter()
                .map(|(n, e)| format!("{n} {e}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s
}

/// Where each member ran: its host, that host's Docker daemon and networking, and the
/// URLs it served on (after a recovery that moved it, those too).
fn topology_section(s: &mut String, r: &DrillReport) {
    let scheme = super::member_scheme(r);
    let _ = writeln!(
        s,
        "\n## Topology\n\n| member | host | Docker daemon | network | client URL | peer URL |\n|---|---|---|---|---|---|"
    );
    for m in &r.topology.members {
        let host = r.topology.host(&m.host);
        let daemon = host
            .and_then(|h| h.docker.as_ref())
            .map(|d| format!("`{}`", d.url))
            .unwrap_or_else(|| "the harness's".into());
        let network = host.map(|h| h.network.as_str()).unwrap_or("bridge");
        let _ = writeln!(
            s,
            "| {} | {} | {daemon} | {network} | {} | {} |",
            m.name,
            m.host,
            m.client_url_in(scheme),
            m.peer_url_in(scheme)
        );
    }
    let moved = r
        .recovery
        .outcome
        .as_ref()
        .map(|o| o.moved_to.as_slice())
        .unwrap_or_default();
    if !moved.is_empty() {
        let _ = writeln!(
            s,
            "\nAfter the recovery (a cluster restored beside the old one) the members serve on:\n\n| member | client URL | peer URL |\n|---|---|---|"
        );
        for m in moved {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                m.name,
                m.client_url_in(scheme),
                m.peer_url_in(scheme)
            );
        }
    }
}

/// A rolling upgrade, member by member, with the cluster version as it moved.
fn upgrade_section(s: &mut String, u: &crate::procedure::UpgradeFigures) {
    let unread = |v: &Option<String>| v.clone().unwrap_or_else(|| "unread".into());
    let _ = writeln!(
        s,
        "\n## Rolling upgrade\n\nFrom `{}` (etcd {}) to `{}` (etcd {}), {}. Cluster version before: {}; after: {}.\n",
        u.from_image,
        u.from_version,
        u.to_image,
        u.to_version,
        u.order,
        unread(&u.cluster_version_before),
        unread(&u.cluster_version_after)
    );
    let learners = match &u.learners_before {
        None => "unread".to_string(),
        Some(l) if l.is_empty() => "none".to_string(),
        Some(l) => l.join(", "),
    };
    let _ = writeln!(s, "Pre-upgrade check, learners in the member list: {learners}.\n");
    let storage = |v: &Option<String>| v.clone().unwrap_or_else(|| "not reported (before etcd 3.6)".into());
    let _ = writeln!(
        s,
        "Storage version before: {}; after: {}.\n",
        storage(&u.storage_version_before),
        storage(&u.storage_version_after)
    );
    if let Some(check) = &u.v2store_check {
        let verdict = match (check.available, check.passed) {
            (false, _) => "not available in this etcdutl (3.5.18 and later have it)",
            (true, true) => "passed",
            (true, false) => "FAILED",
        };
        let _ = writeln!(
            s,
            "Pre-upgrade check, `etcdutl check v2store` of `{}` on {}'s stopped data dir: {verdict} ({}).\n",
            check.image,
            check.member,
            check.output.lines().last().unwrap_or_default()
        );
    }
    let _ = writeln!(
        s,
        "| member | step | image | led | stop to healthy | longest write gap | member version | cluster version |\n|---|---|---|---|---|---|---|---|"
    );
    for step in &u.steps {
        let _ = writeln!(
            s,
            "| {} | {} | `{}` | {} | {} | {} ms | {} | {} |",
            step.member,
            step.action,
            step.image,
            if step.was_leader { "yes" } else { "no" },
            ms(step.healthy_after_ms),
            step.longest_write_gap_ms,
            unread(&step.server_version),
            unread(&step.cluster_version)
        );
    }
    if let Some(attempt) = &u.old_image_on_upgraded_data {
        let what = match (attempt.served, attempt.exit_code) {
            (true, _) => "it served".to_string(),
            (false, Some(code)) => format!("it exited with code {code}"),
            (false, None) => "it did not serve".to_string(),
        };
        let _ = writeln!(
            s,
            "\nThe way back: with the cluster version at {}, {} started on `{}` with the data the upgrade wrote: {what}. Its last log lines:\n\n```\n{}\n```\n\nThe cluster then went back to `{}` through a restore of the snapshot saved before the upgrade (the row \"snapshot used\"): the writes acknowledged between that snapshot and the restore are lost by design, and counted in this report's lost acknowledged writes.",
            unread(&attempt.cluster_version),
            attempt.member,
            attempt.image,
            attempt.last_log_lines,
            u.from_image
        );
    }
}
