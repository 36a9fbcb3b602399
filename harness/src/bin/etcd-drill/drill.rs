//! `etcd-drill run`: one drill, or several (scenarios × images) with a combined suite
//! report.

use std::path::PathBuf;

use clap::Args;
use etcd_drill::cluster::flavor::FlavorKind;
use etcd_drill::docker::image::DEFAULT_IMAGE;
use etcd_drill::drill::runner::{self, RunOptions};
use etcd_drill::report::{suite, ReportBuilder, TerminalReporter};
use etcd_drill::{scenario, Error, Result};

use crate::shutdown_signal;

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Scenario file (path to .toml) or name. Several run one after the other and are
    /// reported side by side (e.g. two procedures for the same fault).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    scenarios: Vec<String>,
    /// Run every scenario in --scenarios-dir, one after the other, and write one combined
    /// report (suite.json, report.md, junit.xml) beside the runs' folders.
    #[arg(long, conflicts_with = "keep")]
    all: bool,
    /// Where --all finds its scenarios.
    #[arg(long, default_value = "scenarios", requires = "all")]
    scenarios_dir: PathBuf,
    /// The etcd image to run (upstream or Bitnami layout). Repeat it to run the same drill
    /// on several images, reported side by side.
    #[arg(long = "image", default_value = DEFAULT_IMAGE)]
    images: Vec<String>,
    /// The image's layout, when detection from the image gets it wrong.
    #[arg(long, value_parser = ["upstream", "bitnami"])]
    flavor: Option<String>,
    /// Run the members and the restore tools as this uid[:gid] (e.g. 1001), not the image's
    /// default user.
    #[arg(long)]
    user: Option<String>,
    /// A file whose first line is the root password, for scenarios with
    /// `[security] auth = true` (default: the ETCD_DRILL_ROOT_PASSWORD variable). There is
    /// no flag for the password itself.
    #[arg(long)]
    root_password_file: Option<PathBuf>,
    /// Folder for this run's reports (default: reports/<scenario>-<run id>, or
    /// reports/suite-<suite id> with --all or several images).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Leave the final cluster running and print its endpoints.
    #[arg(long)]
    keep: bool,
    /// Seed for every random choice of the run; printed at the start of each run.
    #[arg(long)]
    seed: Option<u64>,
    /// A TOML file of `[hosts.NAME]` tables (Docker endpoint, address, network) put in
    /// place of the scenario's own: the same drills on other hosts, such as two real
    /// servers or the two-host lab (`scripts/lab up` writes one).
    #[arg(long)]
    hosts: Option<PathBuf>,
    /// Copy the run's images (the etcd image, and the network-fault tool where hosts are
    /// split) from this machine's daemon to every host's daemon that lacks them, as
    /// `docker save | docker load` would, before the run.
    #[arg(long, requires = "hosts")]
    copy_images: bool,
}

impl RunArgs {
    /// `scenario` on the hosts of `--hosts`, when given.
    fn placed(&self, scenario: scenario::Scenario) -> Result<scenario::Scenario> {
        match &self.hosts {
            Some(path) => scenario::with_hosts_file(&scenario, path),
            None => Ok(scenario),
        }
    }
}

impl RunArgs {
    /// One run of an already placed scenario on `image` (a chaos run and its shrinking).
    pub(crate) fn single(image: &str, out: PathBuf, seed: u64, root_password_file: Option<PathBuf>) -> Self {
        RunArgs {
            all: false,
            scenarios: Vec::new(),
            scenarios_dir: PathBuf::from("scenarios"),
            images: vec![image.to_string()],
            flavor: None,
            user: None,
            root_password_file,
            out: Some(out),
            keep: false,
            seed: Some(seed),
            hosts: None,
            copy_images: false,
        }
    }

    /// A suite on one image: `scenarios` (none: every scenario in `scenarios_dir`).
    pub(crate) fn suite_on(
        image: &str,
        scenarios: Vec<String>,
        scenarios_dir: PathBuf,
        root_password_file: Option<PathBuf>,
        out: PathBuf,
        seed: Option<u64>,
    ) -> Self {
        RunArgs {
            all: scenarios.is_empty(),
            scenarios,
            scenarios_dir,
            seed,
            ..RunArgs::single(image, out, 0, root_password_file)
        }
    }
}

/// Runs every scenario of the suite (--all, or the one scenario) on every image, each in
/// `<out>/<scenario>/` (`<out>/<scenario>/<image>/` with several images), then writes the
/// combined report. A run that fails does not stop the suite; an unusable environment does.
pub(crate) async fn run_suite(args: RunArgs) -> Result<u8> {
    if args.keep {
        return Err(Error::InvalidArgument {
            argument: "--keep".into(),
            message: "keeps the cluster of a single run; give one scenario and one --image".into(),
        });
    }
    let scenarios = match args.all {
        false => args
            .scenarios
            .iter()
            .map(|name| args.placed(scenario::load(name)?))
            .collect::<Result<Vec<_>>>()?,
        true => suite::suite_scenarios(&args.scenarios_dir)?
            .into_iter()
            .map(|s| args.placed(s))
            .collect::<Result<Vec<_>>>()?,
    };
    // A scenario that turns auth on and has no password stops the suite before it starts.
    let password = etcd_drill::etcd::security::load_root_password(args.root_password_file.as_deref())?;
    for s in &scenarios {
        etcd_drill::etcd::security::password_for(&s.name, s.security.auth, password.clone())?;
    }
    let suite_id = etcd_drill::docker::runtime::new_run_id();
    let default_name = match scenarios.len() {
        1 => format!("{}-images-{suite_id}", scenarios[0].name),
        _ => format!("suite-{suite_id}"),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(default_name));
    std::fs::create_dir_all(&out).map_err(|e| Error::InvalidArgument {
        argument: "--out".into(),
        message: format!("cannot create {}: {e}", out.display()),
    })?;
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    println!(
        "etcd-drill suite {suite_id}: {} scenarios on {}: {}",
        scenarios.len(),
        args.images.join(", "),
        scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let mut runs = Vec::new();
    let mut codes = Vec::new();
    let total = scenarios.len() * args.images.len();
    let mut step = 0;
    for scenario in &scenarios {
        for image in &args.images {
            step += 1;
            println!("\n[{step}/{total}] {} on {image}", scenario.name);
            let folder = suite::run_folder(&scenario.name, image, args.images.len() > 1);
            let (code, report) = run_one(
                scenario,
                &args,
                image,
                out.join(&folder),
                etcd_drill::docker::runtime::new_run_id(),
            )
            .await?;
            codes.push(code);
            match report {
                Some(report) => runs.push((report, folder)),
                None => return Ok(suite_exit_code(&codes)),
            }
            // An interrupted suite stops here; its report holds the runs so far, the
            // interrupted one last, and it exits 4 whatever the runs before found.
            if code == etcd_drill::ExitClass::Interrupted as u8 {
                suite::write_suite_files(&suite_id, &started_at, &args.images.join(", "), &runs, &out)?;
                println!(
                    "suite interrupted after {step} of {total} runs; suite reports: {}",
                    out.display()
                );
                return Ok(code);
            }
        }
    }
    let suite = suite::write_suite_files(&suite_id, &started_at, &args.images.join(", "), &runs, &out)?;
    println!("\n{}", suite::render_suite_markdown(&suite));
    println!("suite reports: {}", out.display());
    Ok(suite_exit_code(&codes))
}

/// A suite's exit code: 1 when any drill failed a check (a finding about etcd comes
/// first), else the highest code of a run that broke down, else 0.
fn suite_exit_code(codes: &[u8]) -> u8 {
    match codes.contains(&1) {
        true => 1,
        false => codes.iter().copied().max().unwrap_or(0),
    }
}

async fn run(args: RunArgs) -> Result<u8> {
    let name = args.scenarios.first().cloned().ok_or_else(|| Error::InvalidArgument {
        argument: "SCENARIO".into(),
        message: "give a scenario name or file, or --all".into(),
    })?;
    let scenario = args.placed(scenario::load(&name)?)?;
    let out_dir = args.out.clone();
    let run_id = etcd_drill::docker::runtime::new_run_id();
    let out_dir = out_dir.unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-{run_id}", scenario.name)));
    let (code, _) = run_one(&scenario, &args, &args.images[0], out_dir, run_id).await?;
    Ok(code)
}

/// `run --copy-images`: the run's images onto every host's daemon that lacks them.
async fn copy_images(scenario: &scenario::Scenario, image: &str) -> Result<()> {
    use etcd_drill::docker::{hosts::HostRuntimes, netfault::NETFAULT_IMAGE, runtime::DockerRuntime};
    let hosts = HostRuntimes::connect(DockerRuntime::connect().await?, &scenario.topology).await?;
    let mut images = vec![image];
    if scenario.splits_hosts() {
        images.push(NETFAULT_IMAGE);
    }
    for image in images {
        for endpoint in hosts.copy_image_where_missing(image).await? {
            eprintln!("etcd-drill: copied {image} to the daemon at {endpoint}");
        }
    }
    Ok(())
}

/// Runs one drill with the terminal and report reporters. Returns the exit code and the
/// report (None when writing the report failed).
pub(crate) async fn run_one(
    scenario: &scenario::Scenario,
    args: &RunArgs,
    image: &str,
    out_dir: PathBuf,
    run_id: String,
) -> Result<(u8, Option<etcd_drill::report::DrillReport>)> {
    let seed = args.seed.unwrap_or_else(runner::new_seed);
    let options = RunOptions {
        image: image.to_string(),
        out_dir,
        keep: args.keep,
        seed,
        run_id: Some(run_id.clone()),
        flavor: args.flavor.as_deref().map(FlavorKind::parse).transpose()?,
        user: args.user.clone(),
        root_password: etcd_drill::etcd::security::load_root_password(args.root_password_file.as_deref())?,
    };
    let mut terminal = TerminalReporter::new();
    let mut builder = ReportBuilder::new();
    if args.copy_images {
        copy_images(scenario, image).await?;
    }
    // The run's other daemons (hosts with a Docker endpoint of their own) are reaped too.
    let daemons = etcd_drill::docker::hosts::remote_endpoints(&scenario.topology);
    let watchdog = crate::cleanup::prepare_run(&run_id, Some(&options.out_dir), &daemons).await;
    let mut run = Box::pin(runner::run(scenario, &options, vec![&mut terminal, &mut builder]));
    let finished = tokio::select! {
        summary = &mut run => Ok(summary),
        signal = shutdown_signal() => Err(signal),
    };
    let summary = match finished {
        Ok(summary) => {
            drop(run);
            // The runner has removed the run (and said so when it could not); this only
            // makes sure, and lets the watchdog go.
            let _ = crate::cleanup::settle(&run_id, args.keep, watchdog, &daemons).await;
            summary?
        }
        Err(signal) => {
            let had = crate::cleanup::objects_of(&run_id, &daemons).await;
            // Dropping the run drops its RunGuard, which removes the run's objects.
            drop(run);
            let cleanup = crate::cleanup::settle(&run_id, false, watchdog, &daemons)
                .await
                .map(|()| had.map(|o| o.summary()).unwrap_or_default());
            let cleaned = match &cleanup {
                Ok(_) => "its containers, networks and volumes were removed".to_string(),
                Err(e) => format!("its objects could not all be removed ({e})"),
            };
            let phase = builder
                .interrupted(signal, cleanup)
                .and_then(|r| r.interruption.as_ref().map(|i| i.phase.clone()))
                .unwrap_or_else(|| "its start".into());
            eprintln!(
                "etcd-drill: run {run_id} interrupted by {signal} during {phase}; {cleaned}; report: {}",
                options.out_dir.join("report.md").display()
            );
            return Ok((etcd_drill::ExitClass::Interrupted as u8, builder.report().cloned()));
        }
    };
    if let Some(e) = builder.write_error() {
        eprintln!("error: writing the report failed: {e}");
        return Ok((etcd_drill::ExitClass::HarnessBroken as u8, None));
    }
    println!("reports: {}", summary.out_dir.join("report.md").display());
    let code = summary.exit_code();
    Ok((code, builder.report().cloned()))
}

/// `run`: one drill, or a suite when several scenarios or images (or --all) are given.
pub(crate) async fn run_command(args: RunArgs) -> Result<u8> {
    if args.all || args.images.len() > 1 || args.scenarios.len() > 1 {
        run_suite(args).await
    } else {
        run(args).await
    }
}
