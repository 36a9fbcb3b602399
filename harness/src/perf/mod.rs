//! `etcd-drill perf`: a write-throughput benchmark that offers the same load as
//! `etcdctl check perf` and judges it by the same rules, then reports what etcdctl does
//! not: latency percentiles, throughput per second, errors by kind, what the generator
//! itself cost (CPU, peak memory) and what the members did (CPU, fsyncs, from /metrics).
//! Also `datascale` (memory growth for N keys), `--max` (the highest rate that still
//! passes) and `sweep` (cluster sizes × loads, as a table and a chart).
//!
//! A [`Bench`] is the target: an existing cluster's endpoints, or a 1-, 3- or 5-member
//! cluster the harness starts (labelled with the run id and removed afterwards, also on a
//! panic through [`RunGuard`]). [`Bench::run`] does one measured run: refuse a non-empty
//! prefix, offer the load ([`load::drive`]), delete the prefix, optionally compact and
//! defragment, and return a [`PerfReport`].

pub mod load;
pub mod metrics;
pub mod profile;
pub mod report;
pub mod search;
pub mod stats;
pub mod sweep;
pub mod usage;
pub mod verdict;

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, KvClient};
use futures_util::future::join_all;

use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::docker::image::DEFAULT_IMAGE;
use crate::docker::runtime::{DockerRuntime, RunGuard};
use crate::error::{Error, Result};
use crate::etcd::MemberClient;
use crate::topology::{MemberSpec, ServerSettings, Topology};

pub use load::{LoadSpec, StopAfter};
pub use profile::Load;
pub use report::{Cleanup, DatascaleFigures, PerfReport, RunConfig, RunResults, TargetSummary};
pub use verdict::{judge, Verdict, VerdictInput};

/// How long cleanup, compaction, defragmentation and metric reads may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);
const METRICS_TIMEOUT: Duration = Duration::from_secs(5);
/// A put slower than this counts as an error (etcdctl waits forever).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An existing cluster's client URLs (`http://host:port` or `https://`), reached with
    /// `access` (TLS files, a user).
    Endpoints {
        endpoints: Vec<String>,
        access: crate::etcd::access::ClientAccess,
    },
    /// A cluster of this many members (1, 3 or 5) that the harness starts and removes.
    Members(usize),
}

/// The topology for `--members n`: etcd1..etcdN on one host.
pub fn local_topology(members: usize) -> Result<Topology> {
    if ![1, 3, 5].contains(&members) {
        return Err(Error::InvalidArgument {
            argument: "--members".into(),
            message: format!("{members}: a perf cluster has 1, 3 or 5 members"),
        });
    }
    Ok(Topology::new(
        (1..=members)
            .map(|i| MemberSpec::new(format!("etcd{i}"), "A"))
            .collect(),
    ))
}

/// How one run is set up.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// `perf` or `datascale`.
    pub mode: Mode,
    pub load: Option<Load>,
    pub spec: LoadSpec,
    /// Load connections per endpoint (HTTP/2, each carrying many concurrent requests).
    pub connections_per_endpoint: usize,
    pub auto_compact: bool,
    pub auto_defrag: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Perf,
    Datascale,
}

impl RunSettings {
    /// The settings as the report shows them, for a target with `endpoints` endpoints.
    pub fn config(&self, endpoints: usize) -> RunConfig {
        RunConfig {
            load: self.load,
            rate_limit: self.spec.rate,
            clients: self.spec.clients,
            connections: endpoints * self.connections_per_endpoint.max(1),
            duration_s: match self.spec.stop {
                StopAfter::Duration(d) => Some(d.as_secs_f64()),
                StopAfter::Requests(_) => None,
            },
            keys: match self.spec.stop {
                StopAfter::Requests(n) => Some(n),
                StopAfter::Duration(_) => None,
            },
            prefix: self.spec.prefix.clone(),
            key_bytes: self.spec.prefix.len() + self.spec.key_bytes,
            value_bytes: self.spec.value_bytes,
            request_timeout_ms: self.spec.request_timeout.as_millis() as u64,
            seed: self.spec.seed,
        }
    }

    fn new(
        mode: Mode,
        load: Load,
        rate: Option<f64>,
        stop: StopAfter,
        shape: (usize, usize, usize),
        prefix: &str,
        seed: u64,
    ) -> RunSettings {
        let (clients, key_bytes, value_bytes) = shape;
        RunSettings {
            mode,
            load: Some(load),
            spec: LoadSpec {
                rate,
                clients,
                stop,
                prefix: prefix.into(),
                key_bytes,
                value_bytes,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                seed,
            },
            connections_per_endpoint: 1,
            auto_compact: false,
            auto_defrag: false,
        }
    }

    /// `check perf` at `load`, optionally shortened.
    pub fn perf(load: Load, duration: Option<Duration>, seed: u64) -> RunSettings {
        let p = load.perf();
        let stop = StopAfter::Duration(duration.unwrap_or(Duration::from_secs(p.duration_s)));
        let shape = (p.clients, p.key_bytes, p.value_bytes);
        RunSettings::new(
            Mode::Perf,
            load,
            Some(p.rate_limit as f64),
            stop,
            shape,
            profile::PERF_PREFIX,
            seed,
        )
    }

    /// `check datascale` at `load`; `keys` overrides the profile's key count.
    pub fn datascale(load: Load, keys: Option<u64>, seed: u64) -> RunSettings {
        let p = load.datascale();
        let stop = StopAfter::Requests(keys.unwrap_or(p.keys));
        let shape = (p.clients, p.key_bytes, p.value_bytes);
        RunSettings::new(
            Mode::Datascale,
            load,
            None,
            stop,
            shape,
            profile::DATASCALE_PREFIX,
            seed,
        )
    }
}

/// The cluster under test, and what it takes to remove it afterwards.
pub struct Bench {
    pub run_id: String,
    pub target: TargetSummary,
    /// One admin client per member / endpoint (cleanup, metrics, compaction).
    pub members: Vec<MemberClient>,
    /// How the load's own connections reach an existing cluster (TLS, a user).
    access: crate::etcd::access::ClientAccess,
    docker: Option<DockerRuntime>,
    guard: Option<RunGuard>,
    cluster: Option<Cluster>,
}

impl Bench {
    /// Connects to `target`, starting the cluster first if the harness is to run it.
    pub async fn open(target: &Target, image: &str, run_id: &str) -> Result<Bench> {
        match target {
            Target::Endpoints { endpoints, access } => {
                let mut members = Vec::new();
                for endpoint in endpoints {
                    members.push(access.connect(endpoint, endpoint).await?);
                }
                Ok(Bench {
                    run_id: run_id.to_string(),
                    target: TargetSummary {
                        endpoints: endpoints.clone(),
                        members: None,
                        image: None,
                    },
                    members,
                    access: access.clone(),
                    docker: None,
                    guard: None,
                    cluster: None,
                })
            }
            Target::Members(n) => {
                let topology = local_topology(*n)?;
                let docker = DockerRuntime::connect().await?;
                docker.ensure_image(image, DEFAULT_IMAGE).await?;
                let guard = RunGuard::new(run_id);
                let cluster = Cluster::create(
                    crate::docker::hosts::HostRuntimes::single(docker.clone()),
                    run_id,
                    &crate::cluster::ClusterImage::upstream(image),
                    &topology,
                    &ServerSettings::default(),
                    Clock::start(),
                    crate::cluster::CommandSink::discard(),
                )
                .await?;
                let endpoints = cluster.endpoints().into_iter().map(|(_, e)| e).collect();
                Ok(Bench {
                    run_id: run_id.to_string(),
                    target: TargetSummary {
                        endpoints,
                        members: Some(*n),
                        image: Some(image.to_string()),
                    },
                    members: cluster.clients(),
                    access: Default::default(),
                    docker: Some(docker),
                    guard: Some(guard),
                    cluster: Some(cluster),
                })
            }
        }
    }

    /// The cluster the harness started, if it did.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Leaves the cluster the harness started running (no cleanup, also not on a panic);
    /// returns its endpoints. Remove it later with `etcd-drill clean --run <run id>`.
    pub async fn keep(mut self) -> Result<Vec<String>> {
        if let Some(docker) = &self.docker {
            docker.mark_kept(&self.run_id).await?;
        }
        if let Some(guard) = self.guard.as_mut() {
            guard.disarm();
        }
        Ok(std::mem::take(&mut self.target.endpoints))
    }

    /// Removes the cluster the harness started (nothing for `--endpoints`).
    pub async fn close(mut self) -> Result<()> {
        self.members.clear();
        self.cluster = None;
        if let Some(docker) = &self.docker {
            docker.remove_run(Some(&self.run_id)).await?;
        }
        if let Some(guard) = self.guard.as_mut() {
            guard.disarm();
        }
        Ok(())
    }

    /// Fresh connections for the load, `per_endpoint` to each endpoint.
    async fn load_connections(&self, per_endpoint: usize) -> Result<Vec<KvClient>> {
        let mut out = Vec::new();
        for endpoint in &self.target.endpoints {
            for _ in 0..per_endpoint.max(1) {
                let options = self.access.connect_options(
                    endpoint,
                    ConnectOptions::new()
                        .with_connect_timeout(Duration::from_secs(2))
                        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5)),
                );
                let client = Client::connect([endpoint.as_str()], Some(options))
                    .await
                    .map_err(Error::etcd("connect", endpoint.clone()))?;
                out.push(client.kv_client());
            }
        }
        Ok(out)
    }

    async fn sample_servers(&self) -> Vec<Result<metrics::ServerSample, String>> {
        join_all(
            self.members
                .iter()
                .map(|m| metrics::sample(&m.endpoint, METRICS_TIMEOUT)),
        )
        .await
    }

    /// Deletes the prefix, then compacts and defragments if asked.
    async fn clean_up(&self, settings: &RunSettings) -> Result<Cleanup> {
        let first = self.members.first().ok_or_else(|| Error::InvalidArgument {
            argument: "--endpoints".into(),
            message: "no endpoint".into(),
        })?;
        let (deleted, revision) = first.delete_prefix(&settings.spec.prefix, ADMIN_TIMEOUT).await?;
        let mut cleanup = Cleanup {
            deleted_keys: deleted.max(0) as u64,
            compacted_at: None,
            defragmented: Vec::new(),
        };
        if settings.auto_compact {
            first.compact(revision, ADMIN_TIMEOUT).await?;
            cleanup.compacted_at = Some(revision);
        }
        if settings.auto_defrag {
            for m in &self.members {
                m.defragment(ADMIN_TIMEOUT).await?;
                cleanup.defragmented.push(m.name.clone());
            }
        }
        Ok(cleanup)
    }

    /// One measured run. Refuses to start when the prefix holds keys; deletes it after.
    pub async fn run(&self, settings: &RunSettings, on_second: &mut dyn FnMut(&stats::Interval)) -> Result<PerfReport> {
        let first = self.members.first().ok_or_else(|| Error::InvalidArgument {
            argument: "--endpoints".into(),
            message: "no endpoint".into(),
        })?;
        let prefix = &settings.spec.prefix;
        if first.has_keys_under(prefix, ADMIN_TIMEOUT).await? {
            return Err(Error::PrefixNotEmpty {
                prefix: prefix.clone(),
                endpoint: first.endpoint.clone(),
            });
        }
        let connections = self.load_connections(settings.connections_per_endpoint).await?;
        let started_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let before = self.sample_servers().await;
        let usage_before = usage::current();
        let outcome = load::drive(&settings.spec, &connections, on_second).await;
        let usage_after = usage::current();
        let after = self.sample_servers().await;
        drop(connections);
        let cleanup = self.clean_up(settings).await?;

        let successes = outcome.latencies.count();
        let failed: u64 = outcome.errors.values().map(|e| e.count).sum();
        let elapsed_s = outcome.elapsed.as_secs_f64();
        let throughput = if elapsed_s > 0.0 {
            successes as f64 / elapsed_s
        } else {
            0.0
        };
        let server = self
            .members
            .iter()
            .zip(before.iter().zip(&after))
            .filter_map(|(m, (b, a))| match (b, a) {
                (Ok(b), Ok(a)) => Some(metrics::activity(&m.name, b, a, outcome.elapsed)),
                _ => None,
            })
            .collect();
        let metrics_problems: Vec<String> = before
            .iter()
            .chain(&after)
            .filter_map(|r| r.as_ref().err().cloned())
            .collect();
        let latency = outcome.latencies.summary();
        let verdict_input = VerdictInput {
            rate_limit: settings.spec.rate,
            throughput,
            slowest_s: latency.slowest_s,
            stddev_s: latency.stddev_s,
            errors: outcome
                .errors
                .iter()
                .map(|(k, t)| (k.clone(), (t.count, t.example.clone())))
                .collect(),
        };
        let (verdict, datascale) = match settings.mode {
            Mode::Perf => (judge(&verdict_input), None),
            Mode::Datascale => {
                let memory = |samples: &[Result<metrics::ServerSample, String>]| {
                    samples
                        .first()
                        .and_then(|s| s.as_ref().ok())
                        .map(|s| s.resident_memory_bytes)
                };
                let figures = DatascaleFigures {
                    member: first.name.clone(),
                    memory_before_bytes: memory(&before),
                    memory_after_bytes: memory(&after),
                };
                (report::datascale_verdict(&verdict_input, &figures), Some(figures))
            }
        };
        Ok(PerfReport {
            format_version: report::PERF_REPORT_FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            mode: settings.mode,
            run_id: self.run_id.clone(),
            started_at,
            target: self.target.clone(),
            config: settings.config(self.target.endpoints.len()),
            results: RunResults {
                requests: outcome.issued,
                successes,
                errors: failed,
                elapsed_s,
                throughput,
                latency,
                errors_by_kind: outcome.errors,
                timeline: outcome.timeline,
            },
            generator: usage::cost_between(usage_before, usage_after, outcome.issued),
            server,
            metrics_problems,
            cleanup,
            datascale,
            verdict,
        })
    }
}

/// Parses a duration for the command line: `60`, `60s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: write a number with s, ms or m (e.g. 5s)"))?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        other => return Err(format!("`{text}`: unknown unit `{other}`; use s, ms or m")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("`{text}`: must be longer than zero"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}`: too long; give a duration in minutes or less"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("99999999999999999999m")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn only_odd_small_clusters() {
        assert_eq!(local_topology(3).unwrap().names(), vec!["etcd1", "etcd2", "etcd3"]);
        let err = local_topology(4).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }));
        assert_eq!(err.exit_class(), crate::error::ExitClass::InvalidInput);
    }
}
