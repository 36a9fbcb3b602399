//! `etcd-drill perf`: the write benchmark, its `--max` search, `sweep` and `datascale`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Subcommand};
use etcd_drill::docker::image::DEFAULT_IMAGE;
use etcd_drill::drill::runner::{self};
use etcd_drill::etcd::parse_endpoints;
use etcd_drill::perf::profile::{DATASCALE_PREFIX, PERF_PREFIX};
use etcd_drill::perf::report::{render_header, render_terminal, PerfReport};
use etcd_drill::perf::search::{find_max, MaxSearch, Trial};
use etcd_drill::perf::stats::Interval;
use etcd_drill::perf::sweep::{markdown_table, run_sweep, write_chart, SweepRow};
use etcd_drill::perf::{parse_duration, Bench, Load, RunSettings, Target};
use etcd_drill::{Error, Result};

use crate::{print_json, until_signal, OutputArgs};

/// Set by `-o json`: the figures and progress for people go to stderr, and stdout carries
/// one JSON document, the report.
static JSON_ON_STDOUT: AtomicBool = AtomicBool::new(false);

/// A line for people: on stdout, or on stderr when stdout carries JSON.
macro_rules! human {
    ($($arg:tt)*) => {
        if JSON_ON_STDOUT.load(Ordering::Relaxed) {
            eprintln!($($arg)*)
        } else {
            println!($($arg)*)
        }
    };
}

/// Text for people (already ending in a newline), routed like [`human!`].
macro_rules! human_text {
    ($($arg:tt)*) => {
        if JSON_ON_STDOUT.load(Ordering::Relaxed) {
            eprint!($($arg)*)
        } else {
            print!($($arg)*)
        }
    };
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct PerfArgs {
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
    /// Client URLs of an existing cluster, comma-separated (http:// or https://). Default:
    /// start a cluster of --members members and remove it afterwards.
    #[arg(long, value_delimiter = ',', conflicts_with = "members")]
    endpoints: Vec<String>,
    #[command(flatten)]
    access: crate::AccessArgs,
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
    #[command(flatten)]
    output: OutputArgs,
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

fn perf_target(args: &TargetArgs) -> Result<Target> {
    if args.endpoints.is_empty() {
        etcd_drill::perf::local_topology(args.members)?;
        Ok(Target::Members(args.members))
    } else {
        Ok(Target::Endpoints {
            endpoints: parse_endpoints(&args.endpoints)?,
            access: args.access.resolve()?,
        })
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

/// The settings of a perf mode: `make` builds them from the seed (given or drawn), then the
/// load options every mode shares are applied.
fn load_settings(args: &LoadArgs, prefix: &str, make: impl FnOnce(u64) -> RunSettings) -> Result<RunSettings> {
    let mut settings = make(args.seed.unwrap_or_else(runner::new_seed));
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
    Ok(settings)
}

/// Prints one line every `every` seconds of the run; on a terminal, a progress bar on
/// stderr counts the seconds of a run of `seconds` (a spinner when the length is not
/// known in advance). Off a terminal (CI) the bar draws nothing.
fn progress_printer(every: u64, seconds: Option<u64>) -> impl FnMut(&Interval) {
    let mut window: Vec<Interval> = Vec::new();
    let bar = ClearedOnDrop(match seconds {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template("  {bar:40} {pos}/{len} s  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    });
    move |i: &Interval| {
        window.push(i.clone());
        bar.0.set_position(i.second + 1);
        bar.0.set_message(format!("{} writes in the last second", i.successes));
        if (i.second + 1) % every == 0 {
            let ok: u64 = window.iter().map(|w| w.successes).sum();
            let errors: u64 = window.iter().map(|w| w.errors).sum();
            let p99 = window.iter().map(|w| w.p99_s).fold(0.0, f64::max);
            bar.0.suspend(|| {
                human!(
                    "  {:>4} s  {:>8.0} writes/s  worst p99 of a second {:>7.1} ms  errors {errors}",
                    i.second + 1,
                    ok as f64 / window.len() as f64,
                    p99 * 1e3
                )
            });
            window.clear();
        }
    }
}

/// A progress bar that leaves nothing on the terminal once the run is over.
struct ClearedOnDrop(indicatif::ProgressBar);

impl Drop for ClearedOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

fn report_dir(out: Option<PathBuf>, name: &str, run_id: &str) -> PathBuf {
    out.unwrap_or_else(|| PathBuf::from("reports").join(format!("perf-{name}-{run_id}")))
}

/// Prints the run's figures and verdict, writes report.json; the exit code of the verdict.
fn finish_report(report: &PerfReport, dir: &Path) -> Result<u8> {
    human_text!("{}", render_terminal(report));
    let path = dir.join("report.json");
    report.write_json(&path)?;
    etcd_drill::perf::report::write_summaries(report, dir)?;
    human!("report: {} (and report.md, junit.xml)", path.display());
    if JSON_ON_STDOUT.load(Ordering::Relaxed) {
        print_json(report)?;
    }
    Ok(if report.verdict.pass { 0 } else { 1 })
}

/// Opens the bench (a cluster of its own, or the user's endpoints), runs `body` on it (the
/// body hands the bench back with its outcome) and closes it (or, with `keep`, leaves the harness's cluster running and says how to remove
/// it), all under [`until_signal`]; after a signal against an existing cluster, it also
/// deletes what the run wrote under `prefix` (best effort).
async fn on_bench<T, F>(
    target: &Target,
    image: &str,
    run_id: &str,
    prefix: &str,
    keep: bool,
    body: impl FnOnce(Bench) -> F,
) -> Result<T>
where
    F: Future<Output = (Bench, Result<T>)>,
{
    let own_cluster = matches!(target, Target::Members(_));
    let watchdog = match own_cluster {
        true => crate::cleanup::prepare_run(run_id, None, &[]).await,
        false => None,
    };
    let work = async {
        let bench = Bench::open(target, image, run_id).await?;
        let (bench, outcome) = body(bench).await;
        if keep && own_cluster {
            human!("kept the cluster: --endpoints {}", bench.keep().await?.join(","));
            human!("remove it with: etcd-drill clean --run {run_id}");
        } else {
            bench.close().await?;
        }
        outcome
    };
    let result = until_signal(work).await;
    if own_cluster {
        let _ = crate::cleanup::settle(run_id, keep && result.is_ok(), watchdog, &[]).await;
    }
    if let (Err(Error::Interrupted { .. }), Target::Endpoints { endpoints, access }) = (&result, target) {
        if let Some(first) = endpoints.first() {
            if let Ok(client) = access.connect(first, first).await {
                let _ = client.delete_prefix(prefix, Duration::from_secs(10)).await;
            }
        }
    }
    result
}

async fn perf(args: PerfRunArgs) -> Result<u8> {
    let target = perf_target(&args.target)?;
    let run_id = etcd_drill::docker::runtime::new_run_id();
    let mut settings = load_settings(&args.load_args, &args.prefix, |seed| {
        RunSettings::perf(args.load, args.duration, seed)
    })?;
    if let Some(rate) = args.rate {
        check_positive("--rate", rate)?;
        settings.spec.rate = Some(rate);
    }
    apply_clients(&mut settings, args.clients)?;
    let out_dir = report_dir(args.load_args.out.clone(), args.load.name(), &run_id);
    let seconds = args.duration.unwrap_or(Duration::from_secs(60)).as_secs();
    let mut progress = progress_printer(if seconds > 20 { 5 } else { 1 }, Some(seconds));
    let (image, prefix, settings, run_id) = (&args.target.image, &settings.spec.prefix, &settings, &run_id);
    let report = on_bench(&target, image, run_id, prefix, args.keep, |bench| async move {
        let header_config = settings.config(bench.target.endpoints.len());
        human!("{}", render_header(&header_config, &bench.target, run_id));
        let outcome = bench.run(settings, &mut progress).await;
        (bench, outcome)
    })
    .await?;
    finish_report(&report, &out_dir)
}

/// `perf --load LOAD` on a cluster of 5 members from `image`, with the defaults of the
/// command; writes report.json into `out` and returns the report.
pub(crate) async fn perf_on_image(
    image: &str,
    load: Load,
    duration: Option<Duration>,
    seed: u64,
    out: &Path,
) -> Result<PerfReport> {
    let target = Target::Members(5);
    let run_id = etcd_drill::docker::runtime::new_run_id();
    let mut settings = RunSettings::perf(load, duration, seed);
    settings.spec.prefix = PERF_PREFIX.to_string();
    let seconds = duration.unwrap_or(Duration::from_secs(60)).as_secs();
    let mut progress = progress_printer(if seconds > 20 { 5 } else { 1 }, Some(seconds));
    let (settings, run_id_ref) = (&settings, &run_id);
    let report = on_bench(&target, image, run_id_ref, PERF_PREFIX, false, |bench| async move {
        human!(
            "{}",
            render_header(
                &settings.config(bench.target.endpoints.len()),
                &bench.target,
                run_id_ref
            )
        );
        let outcome = bench.run(settings, &mut progress).await;
        (bench, outcome)
    })
    .await?;
    human_text!("{}", render_terminal(&report));
    report.write_json(&out.join("report.json"))?;
    Ok(report)
}

fn print_trial(trial: &Trial) {
    let rate = trial
        .rate
        .map(|r| format!("{r:>7.0}"))
        .unwrap_or_else(|| "no limit".into());
    human!(
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
    let run_id = etcd_drill::docker::runtime::new_run_id();
    let mut settings = load_settings(&args.load_args, &args.prefix, |seed| {
        RunSettings::perf(args.load, Some(args.duration.unwrap_or(Duration::from_secs(10))), seed)
    })?;
    apply_clients(&mut settings, args.clients)?;
    let out_dir = report_dir(args.load_args.out.clone(), &format!("max-{}", args.load), &run_id);
    let (image, prefix, settings, args) = (&args.target.image, &settings.spec.prefix, &settings, &args);
    let search: MaxSearch = on_bench(&target, image, &run_id, prefix, false, |bench| async move {
        human!(
            "etcd-drill perf --max | run {} | {} clients, {} s a trial, at most {} trials | {}",
            bench.run_id,
            settings.spec.clients,
            args.duration.unwrap_or(Duration::from_secs(10)).as_secs(),
            args.max_trials,
            bench.target.endpoints.join(",")
        );
        let outcome = find_max(&bench, settings, args.max_trials, &mut print_trial).await;
        (bench, outcome)
    })
    .await?;
    std::fs::create_dir_all(&out_dir).map_err(Error::io(&out_dir))?;
    let path = out_dir.join("max.json");
    let json = serde_json::to_string_pretty(&search).map_err(|e| Error::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, json).map_err(Error::io(&path))?;
    human!("report: {}", path.display());
    if JSON_ON_STDOUT.load(Ordering::Relaxed) {
        print_json(&search)?;
    }
    match &search.best {
        Some(best) => {
            let rate = best
                .rate
                .map(|r| format!("{r:.0} writes/s"))
                .unwrap_or_else(|| "no rate limit".into());
            human!(
                "highest passing rate: {rate} (throughput {:.1} writes/s, p99 {:.1} ms)",
                best.throughput,
                best.p99_s * 1e3
            );
            Ok(0)
        }
        None => {
            human!("no trial passed the latency rules");
            Ok(1)
        }
    }
}

async fn perf_sweep(args: SweepArgs) -> Result<u8> {
    for &m in &args.members {
        etcd_drill::perf::local_topology(m)?;
    }
    let run_id = etcd_drill::docker::runtime::new_run_id();
    let out_dir = report_dir(args.out.clone(), "sweep", &run_id);
    let seed = args.seed.unwrap_or_else(runner::new_seed);
    human!(
        "etcd-drill perf sweep | run {run_id} | members {:?} × loads {} | {} s a run",
        args.members,
        args.loads.iter().map(|l| l.name()).collect::<Vec<_>>().join(","),
        args.duration.as_secs()
    );
    let mut print_row = |r: &SweepRow| {
        human!(
            "  {} members  load {:<2}  throughput {:>8.1}  p99 {:>7.1} ms  slowest {:>7.1} ms  {}",
            r.members,
            r.load,
            r.throughput,
            r.p99_s * 1e3,
            r.slowest_s * 1e3,
            if r.pass { "PASS" } else { "FAIL" }
        )
    };
    let watchdog = crate::cleanup::prepare_run(&run_id, None, &[]).await;
    let rows = until_signal(run_sweep(
        &args.members,
        &args.loads,
        args.duration,
        &args.image,
        &run_id,
        seed,
        &mut print_row,
    ))
    .await;
    let _ = crate::cleanup::settle(&run_id, false, watchdog, &[]).await;
    let rows = rows?;
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
    human_text!("{table}");
    human!("reports: {} {} {}", md.display(), svg.display(), json.display());
    Ok(0)
}

async fn perf_datascale(args: DatascaleArgs) -> Result<u8> {
    let target = perf_target(&args.target)?;
    if let Target::Endpoints { endpoints, .. } = &target {
        if endpoints.iter().any(|e| e.starts_with("https://")) {
            return Err(Error::InvalidArgument {
                argument: "--endpoints".into(),
                message: "datascale reads each member's memory from /metrics, which etcd-drill reads over plain HTTP only: give http:// endpoints".into(),
            });
        }
    }
    let run_id = etcd_drill::docker::runtime::new_run_id();
    let settings = load_settings(&args.load_args, &args.prefix, |seed| {
        RunSettings::datascale(args.load, args.keys, seed)
    })?;
    if let Some(keys) = args.keys {
        check_positive("--keys", keys as f64)?;
    }
    let out_dir = report_dir(args.load_args.out.clone(), &format!("datascale-{}", args.load), &run_id);
    let mut progress = progress_printer(5, None);
    let (image, prefix, settings, args) = (&args.target.image, &settings.spec.prefix, &settings, &args);
    let report = on_bench(&target, image, &run_id, prefix, false, |bench| async move {
        let p = args.load.datascale();
        human!(
            "etcd-drill perf datascale | run {} | {} keys of {}+{} bytes, {} clients | memory of {}",
            bench.run_id,
            args.keys.unwrap_or(p.keys),
            settings.spec.prefix.len() + p.key_bytes,
            p.value_bytes,
            p.clients,
            bench.target.endpoints[0]
        );
        let outcome = bench.run(settings, &mut progress).await;
        (bench, outcome)
    })
    .await?;
    finish_report(&report, &out_dir)
}

/// `perf`, `perf --max`, `perf sweep` and `perf datascale`.
pub(crate) async fn perf_command(args: PerfArgs) -> Result<u8> {
    let json = match &args.mode {
        None => args.run.load_args.output.json(),
        Some(PerfMode::Datascale(d)) => d.load_args.output.json(),
        Some(PerfMode::Sweep(_)) => false,
    };
    JSON_ON_STDOUT.store(json, Ordering::Relaxed);
    match args.mode {
        None if args.run.max => perf_max(args.run).await,
        None => perf(args.run).await,
        Some(PerfMode::Sweep(sweep)) => perf_sweep(sweep).await,
        Some(PerfMode::Datascale(datascale)) => perf_datascale(datascale).await,
    }
}
