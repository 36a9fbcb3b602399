//! `etcd-drill backup` and `etcd-drill restore-backup`: the incremental backup agent and
//! the restore from its store.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use etcd_drill::perf::parse_duration;
use etcd_drill::{Error, Result};

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
    fn args(&self) -> etcd_drill::backup::command::StoreArgs {
        etcd_drill::backup::command::StoreArgs {
            store: self.store.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
        }
    }
}

#[derive(Args)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    mode: Option<BackupMode>,
    /// A TOML file with the agent's settings (the flags override it); see docs/backups.md.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The members' client URLs, comma-separated (http:// or https://).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    #[command(flatten)]
    access: crate::AccessArgs,
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
pub(crate) struct RestoreBackupArgs {
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

fn backup_request(args: BackupArgs) -> Result<etcd_drill::backup::command::BackupRequest> {
    use etcd_drill::backup::command::BackupRequest;
    if let Some(BackupMode::Compact { store, full, image }) = args.mode {
        return Ok(BackupRequest::Compact {
            store: store.args(),
            full,
            image,
        });
    }
    let (mut raw, path) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(Error::input(path))?;
            let raw: etcd_drill::backup::RawAgentConfig = toml::from_str(&text).map_err(|e| Error::ScenarioFile {
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
        access: Box::new(args.access.resolve()?),
    })
}

/// `backup`: the long-lived agent, or `backup compact`.
pub(crate) async fn backup_command(args: BackupArgs) -> Result<u8> {
    etcd_drill::backup::command::dispatch_backup(backup_request(args)?).await
}

/// `restore-backup`: data dirs for a new cluster from the newest (or a chosen) full
/// snapshot and the deltas after it.
pub(crate) async fn restore_backup_command(args: RestoreBackupArgs) -> Result<u8> {
    let request = etcd_drill::backup::command::RestoreRequest {
        store: args.store.args(),
        full_revision: args.full,
        stop_at_last_good: args.stop_at_last_good,
        check_only: args.check_only,
        members: etcd_drill::backup::command::parse_members(args.initial_cluster.as_deref())?,
        token: args.initial_cluster_token,
        out: args.out,
        image: args.image,
    };
    etcd_drill::backup::command::print_restore(&request).await
}
