//! The report files of a run, without Docker: a drill's events (recorded from the shape of
//! a real `server-b-loss` run) go through the same `ReportBuilder` the CLI uses, and the
//! files it writes are checked: schema, JUnit, runbook, HTML in headless Chromium. Also
//! `report compare` and the suite report on such folders, through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_drill::cluster::RecordedCommand;
use etcd_drill::drill::check::{CheckResult, Consistency, DataLoss};
use etcd_drill::drill::event::{Event, Outcome, Reporter};
use etcd_drill::drill::measure::RecoveryFigures;
use etcd_drill::drill::series::WorkloadSeries;
use etcd_drill::report::{render_junit, suite, DrillReport, ReportBuilder};
use etcd_drill::scenario;
use etcd_drill::workload::{AckedWrite, FailedWrite, Ledger};

/// A drill's worth of events: 100 writes/s, host B lost at 5 s, restore from 7 s to 9.5 s.
/// `slowdown_ms` delays the restore's end (and so RTO); `lost` writes go missing.
fn drill_events(run_id: &str, out_dir: &Path, slowdown_ms: u64, lost: u64, failing_check: bool) -> Vec<Event> {
    let scenario = scenario::load("server-b-loss").expect("the built-in scenario");
    let fault_at = 5_000;
    let recovered = 9_500 + slowdown_ms;
    let mut ledger = Ledger {
        prefix: format!("/etcd-drill/{run_id}/"),
        value_size: 128,
        ..Ledger::default()
    };
    for i in 0..1_500u64 {
        let sent = 2_000 + i * 10;
        if sent >= fault_at && sent < recovered {
            if sent % 500 == 0 {
                ledger.failed.push(FailedWrite {
                    writer: (i % 4) as u32,
                    seq: i,
                    sent_ms: sent,
                    failed_ms: sent + 500,
                    kind: "timeout".into(),
                });
            }
            continue;
        }
        ledger.acked.push(AckedWrite {
            writer: (i % 4) as u32,
            seq: i,
            revision: i as i64 + 2,
            sent_ms: sent,
            acked_ms: sent + 2 + (i % 7) * 3,
            member: format!("etcd{}", i % 5 + 1),
        });
    }
    let stopped = 2_000 + 1_500 * 10;
    let command = |phase: &str, step: &str, command: &str, at_ms: u64, duration_ms: u64| {
        Event::Command(RecordedCommand {
            phase: phase.into(),
            step: step.into(),
            command: command.into(),
            at_ms,
            duration_ms,
            ok: true,
        })
    };
    let token = format!("etcd-drill-{run_id}-restored-4242");
    let mut events = vec![
        Event::RunStarted {
            run_id: run_id.into(),
            scenario: Box::new(scenario.clone()),
            image: "etcd-drill/etcd:3.5.1".into(),
            seed: 13,
            out_dir: out_dir.to_path_buf(),
            started_at: "2026-11-21T06:00:00Z".into(),
        },
        Event::Phase {
            at_ms: 1_500,
            name: "cluster-ready".into(),
            detail: "every member answers a linearizable read".into(),
        },
        command("setup", "create the cluster network", &format!("docker network create etcd-drill-{run_id}"), 10, 40),
        Event::Phase {
            at_ms: 2_000,
            name: "workload-started".into(),
            detail: "4 writers".into(),
        },
        command("fault", "kill etcd3", &format!("docker kill --signal SIGKILL etcd-drill-{run_id}-etcd3"), 4_990, 10),
        Event::FaultInjected {
            at_ms: fault_at,
            action: "kill".into(),
            target: "host B".into(),
            members: vec!["etcd3".into(), "etcd4".into(), "etcd5".into()],
        },
        Event::QuorumProbed {
            at_ms: 8_000,
            writable: false,
        },
        Event::RecoveryStarted {
            at_ms: 7_000,
            procedure: "snapshot-restore".into(),
        },
        command("recovery", "save a snapshot from etcd1", "etcdctl --endpoints=http://127.0.0.1:40001 snapshot save snapshot.db", 7_000, 300),
        command(
            "recovery",
            "restore etcd3's data dir",
            &format!("docker run --rm --name etcd-drill-{run_id}-restore-etcd3 --network none -v etcd-drill-{run_id}-etcd3-data2:/var/lib/etcd -v \"$PWD/snapshot.db\":/snapshot.db:ro etcd-drill/etcd:3.5.1 /usr/local/bin/etcdutl snapshot restore /snapshot.db --name=etcd3 --initial-cluster=etcd1=http://etcd1:2380,etcd2=http://etcd2:2380,etcd3=http://etcd3:2380,etcd4=http://etcd4:2380,etcd5=http://etcd5:2380 --initial-cluster-token={token} --initial-advertise-peer-urls=http://etcd3:2380 --data-dir=/var/lib/etcd/data"),
            7_400,
            1_300,
        ),
        command("recovery", "wait until the cluster takes a write", "until etcdctl --endpoints=http://127.0.0.1:40001 put /probe p; do sleep 0.05; done", 8_800, 700 + slowdown_ms),
        Event::RecoveryFinished {
            at_ms: recovered,
            ok: true,
        },
        Event::AllHealthy { at_ms: recovered + 300 },
        Event::WorkloadSeries(Box::new(WorkloadSeries::from_ledger(&ledger, 2_000, stopped))),
        Event::Measured {
            recovery: Box::new(RecoveryFigures {
                procedure: "snapshot-restore".into(),
                fault_at_ms: fault_at,
                started_at_ms: Some(7_000),
                finished_at_ms: Some(recovered),
                rto_ms: Some(recovered + 5 - fault_at),
                first_write_ms: Some(recovered + 5 - fault_at),
                procedure_ms: Some(recovered + 5 - 7_000),
                healthy_ms: Some(recovered + 300 - fault_at),
                max_write_gap_ms: recovered - fault_at,
                max_write_gap_at_ms: (fault_at, recovered),
                quorum_lost: Some(true),
                outcome: None,
                fault_done_ms: fault_at + 200,
                backups: Vec::new(),
                watch: None,
                agent: None,
                unhealthy: None,
                leases: None,
            }),
            data: Box::new(DataLoss {
                acked_writes: ledger.acked.len() as u64,
                failed_writes: ledger.failed.len() as u64,
                lost_acked_writes: lost,
                lost_keys_sample: (0..lost.min(20)).map(|i| format!("/etcd-drill/{run_id}/w00/{i:010}")).collect(),
                ..DataLoss::default()
            }),
            consistency: Some(Box::new(Consistency {
                hashkv_equal: true,
                revision: 1_200,
                ..Consistency::default()
            })),
        },
        Event::Check(CheckResult::new("quorum_lost", true, "quorum lost: true", "quorum lost: true")),
        Event::Check(CheckResult::new(
            "lost_acked_writes",
            !failing_check,
            "<= 0",
            format!("{lost} of {}", ledger.acked.len()),
        )),
    ];
    events.push(Event::RunFinished {
        at_ms: stopped + 2_000,
        outcome: if failing_check { Outcome::Fail } else { Outcome::Pass },
        error: None,
        skip_reason: None,
        kept: None,
    });
    events
}

/// Feeds the events to a ReportBuilder writing into `dir`, like a run does.
fn build(dir: &Path, run_id: &str, slowdown_ms: u64, lost: u64, failing_check: bool) -> DrillReport {
    std::fs::create_dir_all(dir).unwrap();
    let mut builder = ReportBuilder::new();
    for e in drill_events(run_id, dir, slowdown_ms, lost, failing_check) {
        builder.on_event(&e);
    }
    assert_eq!(builder.write_error(), None);
    builder.report().cloned().expect("a report")
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_file_of_a_run_is_written_and_sound() {
    let dir = tempfile::tempdir().unwrap();
    let report = build(dir.path(), "0a1b2c3d", 0, 0, false);
    common::check_report_folder(dir.path(), &report, &screenshot_dir().join("synthetic.png")).unwrap();

    let runbook = std::fs::read_to_string(dir.path().join("runbook.sh")).unwrap();
    assert!(runbook.starts_with("#!/usr/bin/env bash"), "{runbook}");
    assert!(
        runbook.contains("# Step 2: restore etcd3's data dir (at 7.40 s, took 1300 ms)"),
        "{runbook}"
    );
    assert!(
        runbook.contains("--initial-cluster-token=etcd-drill-0a1b2c3d-restored-4242"),
        "{runbook}"
    );
    assert!(
        runbook.contains("#   etcd3  B  http://etcd3:2379  http://etcd3:2380"),
        "{runbook}"
    );
    assert!(
        !runbook.contains("docker kill"),
        "fault commands are not part of the runbook"
    );

    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for part in [
        "chart-throughput",
        "chart-latency",
        "chart-histogram",
        "outage",
        "snapshot-restore procedure",
    ] {
        assert!(html.contains(part), "report.html has no {part}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["series"]["bucket_ms"], 250);
    assert!(json["series"]["mean_acked_per_s"].as_f64().unwrap() > 50.0);
    assert_eq!(
        json["files"],
        serde_json::json!(["report.json", "report.md", "junit.xml", "report.html", "runbook.sh"])
    );
}

/// The (suite, class, test case) names of a `junit.xml`.
fn junit_names(xml: &str) -> Vec<(String, String, String)> {
    let parsed = quick_junit::Report::deserialize_from_str(xml).unwrap();
    let mut names = Vec::new();
    for suite in &parsed.test_suites {
        for case in &suite.test_cases {
            let class = case.classname.as_ref().map(|c| c.to_string()).unwrap_or_default();
            names.push((suite.name.to_string(), class, case.name.to_string()));
        }
    }
    names
}

#[test]
fn junit_names_line_up_across_runs_and_differ_between_images() {
    let (night1, night2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = build(night1.path(), "0a1b2c40", 0, 0, false);
    let second = build(night2.path(), "0a1b2c41", 300, 0, false);
    assert_ne!(first.run_id, second.run_id);
    let names = |r: &DrillReport| junit_names(&render_junit("nightly", &[r]));
    assert_eq!(names(&first), names(&second), "the run id must not be in a name");
    let xml = render_junit("nightly", &[&first]);
    assert!(xml.contains("0a1b2c40"), "the run id is a property: {xml}");
    let other_image = DrillReport {
        image: "quay.io/coreos/etcd:v3.5.30".into(),
        ..first.clone()
    };
    let (a, b) = (names(&first), names(&other_image));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.2, y.2, "test case names stay the scenario's and its checks'");
        assert_ne!((&x.0, &x.1), (&y.0, &y.1), "two images must not collide");
    }
    assert!(
        b.iter()
            .all(|n| n.1 == "etcd-drill.quay-io-coreos-etcd-v3-5-30.server-b-loss"),
        "{b:?}"
    );
}

#[test]
fn a_failed_check_is_a_junit_failure_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let report = build(dir.path(), "0a1b2c3e", 0, 7, true);
    let parsed = common::check_junit(&dir.path().join("junit.xml"), &[&report]).unwrap();
    let suite = &parsed.test_suites[0];
    assert_eq!(suite.test_cases.len(), 3);
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(
        xml.contains("failures=\"2\""),
        "the scenario case and the check fail: {xml}"
    );
    assert!(xml.contains("expected &lt;= 0, got 7 of"), "{xml}");
    common::validate_report_json(&dir.path().join("report.json")).unwrap();
}

#[test]
fn the_schema_rejects_a_report_that_breaks_it() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "0a1b2c3f", 0, 0, false);
    let path = dir.path().join("report.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["outcome"] = "maybe".into();
    json["data"].as_object_mut().unwrap().remove("lost_acked_writes");
    std::fs::write(&path, json.to_string()).unwrap();
    let err = common::validate_report_json(&path).unwrap_err();
    assert!(err.contains("/outcome") && err.contains("lost_acked_writes"), "{err}");
}

#[test]
fn the_browser_check_catches_script_errors_and_external_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let chart = r#"<svg class="chart"><rect class="mark" width="10" height="10"/></svg>"#;
    let broken = dir.path().join("broken.html");
    std::fs::write(
        &broken,
        format!("<html><body>{chart}{chart}{chart}<script>notDefined();</script></body></html>"),
    )
    .unwrap();
    let err = common::check_html_in_browser(&broken, &shot).unwrap_err();
    assert!(err.contains("console output") && err.contains("notDefined"), "{err}");
    let fetching = dir.path().join("fetching.html");
    std::fs::write(
        &fetching,
        format!("<html><body>{chart}<img src=\"https://example.org/x.png\"></body></html>"),
    )
    .unwrap();
    let err = common::check_html_in_browser(&fetching, &shot).unwrap_err();
    assert!(err.contains("references outside the file"), "{err}");
    let undrawn = dir.path().join("undrawn.html");
    std::fs::write(&undrawn, format!("<html><body>{chart}{chart}{chart}</body></html>")).unwrap();
    let err = common::check_html_in_browser(&undrawn, &shot).unwrap_err();
    assert!(err.contains("charts have drawn marks"), "{err}");
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etcd-drill"))
}

#[test]
fn compare_flags_a_slower_restore_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    build(&old, "1a1b2c3d", 0, 0, false);
    build(&new, "2a1b2c3d", 3_000, 0, false);
    let out = binary()
        .args(["report", "compare"])
        .arg(&old)
        .arg(&new)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| RTO | 4505 ms | 7505 ms | +3000 (+66.6%) | **REGRESSION**"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| lost acknowledged writes | 0 | 0 | +0 | ok |"),
        "{stdout}"
    );

    // The same run against itself: no regression. A budgets file can allow the slowdown
    // (fewer writes are acknowledged during the longer outage, so throughput fell too).
    let out = binary()
        .args(["report", "compare"])
        .arg(&old)
        .arg(old.join("report.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let budgets = dir.path().join("budgets.toml");
    std::fs::write(
        &budgets,
        "rto_worse_pct = 100\nprocedure_worse_pct = 200\nthroughput_worse_pct = 50\n",
    )
    .unwrap();
    let out = binary()
        .args(["report", "compare", "--budgets"])
        .arg(&budgets)
        .arg(&old)
        .arg(&new)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn compare_names_bad_input_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    build(&old, "3a1b2c3d", 0, 0, false);
    let out = binary()
        .args(["report", "compare"])
        .arg(&old)
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("nope") && stderr.contains("no such file or folder"),
        "{stderr}"
    );
    let budgets = dir.path().join("budgets.toml");
    std::fs::write(&budgets, "rto_worse = 10\n").unwrap();
    let out = binary()
        .args(["report", "compare", "--budgets"])
        .arg(&budgets)
        .arg(&old)
        .arg(&old)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("budgets.toml") && stderr.contains("rto_worse"),
        "{stderr}"
    );
}

#[test]
fn a_suite_report_has_one_junit_suite_per_run_and_compares_by_folder() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(&dir.path().join("server-b-loss"), "4a1b2c3d", 0, 0, false);
    let mut b = build(&dir.path().join("other"), "5a1b2c3d", 0, 3, true);
    b.scenario.name = "other".into();
    let suite = suite::write_suite_files(
        "6a1b2c3d",
        "2026-11-21T06:00:00Z",
        "etcd-drill/etcd:3.5.1",
        &[(a.clone(), "server-b-loss".into()), (b.clone(), "other".into())],
        dir.path(),
    )
    .unwrap();
    assert_eq!(suite.outcome, Outcome::Fail);
    common::check_junit(&dir.path().join("junit.xml"), &[&a, &b]).unwrap();
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("1 of 2 scenarios passed"), "{md}");
    assert!(
        md.contains("[server-b-loss/report.html](server-b-loss/report.html)"),
        "{md}"
    );
    // index.html links every drill's page; the failing drill's page lists its lost keys.
    let index = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    for folder in ["server-b-loss", "other"] {
        assert!(index.contains(&format!("href=\"{folder}/report.html\"")), "{index}");
    }
    let other = std::fs::read_to_string(dir.path().join("other/report.html")).unwrap();
    assert!(
        other.contains("<h2>Lost keys</h2>") && other.contains("/etcd-drill/5a1b2c3d/w00/0000000002"),
        "the lost keys are not listed"
    );
    // A suite folder compares with itself: report.json files are found below it.
    let out = binary()
        .args(["report", "compare"])
        .arg(dir.path())
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn run_all_refuses_a_broken_scenario_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.toml"), scenario::BUILTIN[0].1).unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[[faults]]\naction = \"explode\"\n").unwrap();
    let out = binary()
        .args(["run", "--all", "--scenarios-dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml") && stderr.contains("faults[0].action"),
        "{stderr}"
    );
    let out = binary().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "run without a scenario or --all");
}

/// The schema lists exactly the procedures the scenarios can name.
#[test]
fn the_schema_knows_every_procedure() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/schema/report.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut listed: Vec<String> = schema
        .pointer("/$defs/procedure/enum")
        .and_then(|v| v.as_array())
        .expect("the schema has $defs/procedure/enum")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    listed.sort();
    let mut known: Vec<String> = etcd_drill::scenario::ProcedureSpec::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    known.sort();
    assert_eq!(listed, known);
}

/// The events of a drill cut off after its fault: what a stopped run has heard.
fn events_until_the_fault(run_id: &str, dir: &Path) -> Vec<Event> {
    drill_events(run_id, dir, 0, 0, false)
        .into_iter()
        .take_while(|e| !matches!(e, Event::RecoveryStarted { .. }))
        .collect()
}

#[test]
fn a_run_in_progress_is_on_disk_and_a_signal_is_recorded_as_an_interruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = ReportBuilder::new();
    for e in events_until_the_fault("0a1b2c50", dir.path()) {
        builder.on_event(&e);
    }
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(on_disk["outcome"], "running", "{on_disk}");
    assert_eq!(
        on_disk["timeline"].as_array().unwrap().last().unwrap()["what"],
        "quorum-probe"
    );

    let report = builder
        .interrupted("SIGTERM", Ok("5 containers, 2 networks, 5 volumes".into()))
        .cloned()
        .unwrap();
    assert_eq!(report.outcome, Outcome::Interrupted);
    let interruption = report.interruption.as_ref().unwrap();
    assert_eq!(interruption.phase, "quorum-probe");
    assert_eq!(interruption.signal.as_deref(), Some("SIGTERM"));
    assert!(interruption.cleanup_ok);
    common::validate_report_json(&dir.path().join("report.json")).unwrap();
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(
        xml.contains("errors=\"1\"") && xml.contains("interrupted by SIGTERM"),
        "an interruption is a JUnit error, not a failure: {xml}"
    );
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("INTERRUPTED"), "{md}");
}

#[test]
fn the_watchdog_records_a_run_whose_harness_vanished_and_leaves_finished_runs_alone() {
    use etcd_drill::docker::reaper::Reaped;
    use etcd_drill::docker::runtime::RunObjects;
    let dir = tempfile::tempdir().unwrap();
    let mut builder = ReportBuilder::new();
    for e in events_until_the_fault("0a1b2c51", dir.path()) {
        builder.on_event(&e);
    }
    drop(builder); // the harness is gone: SIGKILL
    let reaped = Reaped {
        removed: Some(RunObjects {
            containers: vec!["a".into(), "b".into()],
            networks: vec!["n".into()],
            volumes: vec![],
        }),
        attempts: 1,
        error: None,
    };
    etcd_drill::report::record_unannounced_end(dir.path(), &reaped).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["outcome"], "interrupted");
    assert_eq!(json["interruption"]["recorded_by"], "watchdog");
    assert_eq!(json["interruption"]["signal"], serde_json::Value::Null);
    assert_eq!(json["interruption"]["phase"], "quorum-probe");
    assert_eq!(json["interruption"]["removed"], "2 containers, 1 networks, 0 volumes");
    common::validate_report_json(&dir.path().join("report.json")).unwrap();
    assert!(std::fs::read_to_string(dir.path().join("junit.xml"))
        .unwrap()
        .contains("errors=\"1\""));

    // A finished run's report is not touched.
    let finished = tempfile::tempdir().unwrap();
    let report = build(finished.path(), "0a1b2c52", 0, 0, false);
    etcd_drill::report::record_unannounced_end(finished.path(), &reaped).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(finished.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["outcome"], "pass");
    assert_eq!(report.outcome, Outcome::Pass);
}
