//! `etcd-drill release`: the same drills and perf profiles on the baseline image (the
//! release in production) and on the candidate, then one verdict (`report::release`):
//! exit 0 when the candidate holds up everywhere the baseline does, 1 when it does not.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use etcd_drill::drill::runner;
use etcd_drill::perf::{parse_duration, Load};
use etcd_drill::report::compare;
use etcd_drill::report::release::{judge_perf, render_release_markdown, PerfSide, ReleaseVerdict};
use etcd_drill::{Error, Result};

use crate::drill::{run_suite, RunArgs};
use crate::perf::perf_on_image;

#[derive(Args)]
pub(crate) struct ReleaseArgs {
    /// The image in production today, e.g. etcd-drill/etcd:3.5.16.
    #[arg(long)]
    baseline: String,
    /// The image about to be rolled out, e.g. etcd-drill/etcd:3.5.30.
    #[arg(long)]
    candidate: String,
    /// Scenarios (names or files); default every scenario in --scenarios-dir.
    scenarios: Vec<String>,
    /// Where the scenarios are found when none is named.
    #[arg(long, default_value = "scenarios")]
    scenarios_dir: PathBuf,
    /// perf load profiles to run on both images, comma-separated (s, m, l, xl).
    #[arg(long = "perf-load", value_delimiter = ',', default_value = "s")]
    perf_loads: Vec<Load>,
    /// No perf runs: drills only.
    #[arg(long, conflicts_with = "perf_loads")]
    no_perf: bool,
    /// Length of each perf run (default: the profile's, 60 s).
    #[arg(long, value_parser = parse_duration)]
    perf_duration: Option<Duration>,
    /// The candidate's perf throughput may be at most this many percent below the
    /// baseline's.
    #[arg(long, default_value_t = 10)]
    perf_budget_pct: u64,
    /// Regression budgets for the drills, as for `report compare --budgets`.
    #[arg(long)]
    budgets: Option<PathBuf>,
    /// The root password file for scenarios with auth on (as for `run`).
    #[arg(long)]
    root_password_file: Option<PathBuf>,
    /// Seed of every drill and perf run on both images (default: a new one, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Folder for baseline/, candidate/, perf-<load>-<side>/, release.md and release.json
    /// (default: reports/release-<id>).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) async fn release_command(args: ReleaseArgs) -> Result<u8> {
    if args.baseline == args.candidate {
        return Err(Error::InvalidArgument {
            argument: "--candidate".into(),
            message: format!(
                "names the baseline image {} again; give the image to roll out",
                args.baseline
            ),
        });
    }
    if args.perf_budget_pct >= 100 {
        return Err(Error::InvalidArgument {
            argument: "--perf-budget-pct".into(),
            message: format!(
                "{} leaves no budget; give a percentage below 100, e.g. 10",
                args.perf_budget_pct
            ),
        });
    }
    let overrides = args.budgets.as_deref().map(compare::load_budgets).transpose()?;
    let seed = args.seed.unwrap_or_else(runner::new_seed);
    let id = etcd_drill::docker::runtime::new_run_id();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("release-{id}")));
    println!(
        "etcd-drill release {id}: candidate {} against baseline {} (seed {seed}; replay with --seed {seed})",
        args.candidate, args.baseline
    );

    // The drills: one suite per image. A failed drill does not stop anything; an unusable
    // environment (no image, no Docker) does, with its own exit code.
    for (side, image) in [("baseline", &args.baseline), ("candidate", &args.candidate)] {
        println!("\n== drills on the {side}: {image}");
        let suite = RunArgs::suite_on(
            image,
            args.scenarios.clone(),
            args.scenarios_dir.clone(),
            args.root_password_file.clone(),
            out.join(side),
            Some(seed),
        );
        let code = run_suite(suite).await?;
        // An unusable environment or an interruption stops the validation; failed drills
        // and broken-down runs are judged with the rest.
        if code == etcd_drill::ExitClass::Environment as u8 || code == etcd_drill::ExitClass::Interrupted as u8 {
            return Ok(code);
        }
    }
    let baseline = compare::load_reports(&out.join("baseline"))?;
    let candidate = compare::load_reports(&out.join("candidate"))?;
    let drills = compare::compare(&baseline, &candidate, overrides.as_ref().zip(args.budgets.as_deref()))?;

    let mut perf = Vec::new();
    if !args.no_perf {
        for load in &args.perf_loads {
            let mut sides = Vec::new();
            for (side, image) in [("baseline", &args.baseline), ("candidate", &args.candidate)] {
                println!("\n== perf --load {} on the {side}: {image}", load.name());
                let dir = out.join(format!("perf-{}-{side}", load.name()));
                std::fs::create_dir_all(&dir).map_err(|e| Error::InvalidArgument {
                    argument: "--out".into(),
                    message: format!("cannot create {}: {e}", dir.display()),
                })?;
                let report = perf_on_image(image, *load, args.perf_duration, seed, &dir).await?;
                sides.push(PerfSide {
                    throughput: report.results.throughput,
                    pass: report.verdict.pass,
                    lines: report.verdict.lines.clone(),
                });
            }
            let candidate = sides.pop().unwrap_or_else(|| unreachable!("two sides were run"));
            let baseline = sides.pop().unwrap_or_else(|| unreachable!("two sides were run"));
            perf.push(judge_perf(load.name(), baseline, candidate, args.perf_budget_pct));
        }
    }

    let verdict = ReleaseVerdict {
        baseline: args.baseline.clone(),
        candidate: args.candidate.clone(),
        drills,
        perf,
    };
    let text = render_release_markdown(&verdict);
    println!("\n{text}");
    etcd_drill::report::write_file(&out.join("release.md"), &text)?;
    let json = serde_json::to_string_pretty(&verdict.summary()).map_err(|e| Error::InvalidArgument {
        argument: "--out".into(),
        message: format!("cannot encode release.json: {e}"),
    })?;
    etcd_drill::report::write_file(&out.join("release.json"), &json)?;
    println!("release reports: {}", out.display());
    Ok(if verdict.pass() { 0 } else { 1 })
}
