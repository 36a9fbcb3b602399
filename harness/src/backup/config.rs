//! The agent's settings. The config file of `etcd-drill backup` (and the `[agent]` table of
//! a scenario) is parsed raw with serde, then compiled into a validated [`AgentConfig`];
//! errors name the file and the key.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::naming::Compression;
use crate::error::{Error, Result};

/// Which full snapshots the store keeps (deltas go with the fulls that need them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionPolicy {
    KeepAll,
    KeepLast(usize),
    Exponential,
}

/// The config file of `etcd-drill backup`, as written. Command-line flags override it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgentConfig {
    /// Client URLs of the members, e.g. `["http://10.0.0.1:2379"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// A directory, or `s3://bucket/prefix`.
    pub store: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub full_interval_ms: Option<i64>,
    /// 0 turns deltas off.
    pub delta_period_ms: Option<i64>,
    pub compression: Option<String>,
    pub memory_limit_bytes: Option<i64>,
    /// `keep-last` (with `keep_fulls`), `exponential` or `keep-all`.
    pub retention: Option<String>,
    pub keep_fulls: Option<i64>,
    /// 0 (default) turns scheduled defragmentation off.
    pub defrag_interval_ms: Option<i64>,
    /// The image whose `etcdutl snapshot status` verifies each full snapshot.
    pub image: Option<String>,
}

/// The `[agent]` table of a scenario: the agent the drill runs beside its cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDrillAgent {
    pub full_interval_ms: Option<i64>,
    pub delta_period_ms: Option<i64>,
    pub compression: Option<String>,
    pub memory_limit_bytes: Option<i64>,
    /// The member the agent watches first (default: the first member).
    pub watch: Option<String>,
    /// The agent dies together with the faults' hosts: what it had not written out is lost.
    pub lost_at_fault: Option<bool>,
}

/// The agent's validated settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentConfig {
    pub full_interval_ms: u64,
    /// None: no deltas, full snapshots only.
    pub delta_period_ms: Option<u64>,
    pub compression: Compression,
    /// Buffered events beyond this many bytes are written out before the period ends.
    pub memory_limit_bytes: u64,
    pub retention: RetentionPolicy,
    pub defrag_interval_ms: Option<u64>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            full_interval_ms: 3_600_000,
            delta_period_ms: Some(10_000),
            compression: Compression::Gzip,
            memory_limit_bytes: 64 << 20,
            retention: RetentionPolicy::KeepLast(3),
            defrag_interval_ms: None,
        }
    }
}

impl AgentConfig {
    pub fn full_interval(&self) -> Duration {
        Duration::from_millis(self.full_interval_ms)
    }

    /// The most writes a restore from this agent's store can lose, by design: the delta
    /// period (or, without deltas, the full interval).
    pub fn rpo_bound_ms(&self) -> u64 {
        self.delta_period_ms.unwrap_or(self.full_interval_ms)
    }
}

/// The agent of a drill: its settings and its place in the drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillAgent {
    pub config: AgentConfig,
    pub watch: Option<String>,
    pub lost_at_fault: bool,
}

struct Keys<'a> {
    path: &'a Path,
    section: &'a str,
}

impl Keys<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> Error {
        Error::ScenarioKey {
            path: self.path.to_path_buf(),
            key: format!("{}{key}", self.section),
            message: message.into(),
        }
    }

    fn ms(&self, key: &str, value: Option<i64>, default: u64, min: u64) -> Result<u64> {
        match value {
            None => Ok(default),
            Some(v) if v >= min as i64 && v <= 31 * 24 * 3_600_000 => Ok(v as u64),
            Some(v) => Err(self.err(key, format!("must be between {min} and 2678400000 (31 days), got {v}"))),
        }
    }

    fn compression(&self, value: Option<&str>) -> Result<Compression> {
        match value {
            None => Ok(Compression::Gzip),
            Some(text) => Compression::parse(text)
                .ok_or_else(|| self.err("compression", format!("unknown compression `{text}`; use gzip or none"))),
        }
    }

    fn memory(&self, value: Option<i64>) -> Result<u64> {
        match value {
            None => Ok(AgentConfig::default().memory_limit_bytes),
            Some(v) if (4096..=(1 << 34)).contains(&v) => Ok(v as u64),
            Some(v) => Err(self.err(
                "memory_limit_bytes",
                format!("must be between 4096 and 17179869184, got {v}"),
            )),
        }
    }

    fn delta_period(&self, value: Option<i64>, default: Option<u64>) -> Result<Option<u64>> {
        match value {
            None => Ok(default),
            Some(0) => Ok(None),
            Some(_) => self.ms("delta_period_ms", value, 0, 100).map(Some),
        }
    }
}

impl RawAgentConfig {
    /// Compiles the file's settings; `path` names the file in errors.
    pub fn compile(&self, path: &Path) -> Result<AgentConfig> {
        let k = Keys { path, section: "" };
        let defaults = AgentConfig::default();
        let retention = match (self.retention.as_deref(), self.keep_fulls) {
            (Some("exponential"), None) => RetentionPolicy::Exponential,
            (Some("exponential"), Some(_)) => {
                return Err(k.err("keep_fulls", "goes with retention = \"keep-last\", not \"exponential\""))
            }
            (Some("keep-all"), _) => RetentionPolicy::KeepAll,
            (Some("keep-last") | None, Some(n)) if (1..=10_000).contains(&n) => RetentionPolicy::KeepLast(n as usize),
            (Some("keep-last") | None, Some(n)) => {
                return Err(k.err("keep_fulls", format!("must be between 1 and 10000, got {n}")))
            }
            (Some("keep-last") | None, None) => defaults.retention,
            (Some(other), _) => {
                return Err(k.err(
                    "retention",
                    format!("unknown policy `{other}`; use keep-last, exponential or keep-all"),
                ))
            }
        };
        let defrag = k.ms("defrag_interval_ms", self.defrag_interval_ms, 0, 0)?;
        Ok(AgentConfig {
            full_interval_ms: k.ms(
                "full_interval_ms",
                self.full_interval_ms,
                defaults.full_interval_ms,
                500,
            )?,
            delta_period_ms: k.delta_period(self.delta_period_ms, defaults.delta_period_ms)?,
            compression: k.compression(self.compression.as_deref())?,
            memory_limit_bytes: k.memory(self.memory_limit_bytes)?,
            retention,
            defrag_interval_ms: (defrag > 0).then_some(defrag),
        })
    }
}

impl RawDrillAgent {
    /// Compiles a scenario's `[agent]` table; `members` are the topology's names.
    pub fn compile(&self, path: &Path, members: &[String]) -> Result<DrillAgent> {
        let k = Keys {
            path,
            section: "agent.",
        };
        if let Some(m) = &self.watch {
            if !members.contains(m) {
                return Err(k.err(
                    "watch",
                    format!("no member named `{m}`; members are {}", members.join(", ")),
                ));
            }
        }
        let defaults = AgentConfig::default();
        Ok(DrillAgent {
            config: AgentConfig {
                full_interval_ms: k.ms("full_interval_ms", self.full_interval_ms, 60_000, 500)?,
                delta_period_ms: k.delta_period(self.delta_period_ms, Some(1_000))?,
                compression: k.compression(self.compression.as_deref())?,
                memory_limit_bytes: k.memory(self.memory_limit_bytes)?,
                retention: RetentionPolicy::KeepAll,
                defrag_interval_ms: defaults.defrag_interval_ms,
            },
            watch: self.watch.clone(),
            lost_at_fault: self.lost_at_fault.unwrap_or(false),
        })
    }
}

impl DrillAgent {
    pub fn to_raw(&self) -> RawDrillAgent {
        let c = &self.config;
        RawDrillAgent {
            full_interval_ms: Some(c.full_interval_ms as i64),
            delta_period_ms: Some(c.delta_period_ms.unwrap_or(0) as i64),
            compression: Some(c.compression.as_str().to_string()),
            memory_limit_bytes: Some(c.memory_limit_bytes as i64),
            watch: self.watch.clone(),
            lost_at_fault: Some(self.lost_at_fault),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<AgentConfig> {
        let raw: RawAgentConfig = toml::from_str(text).unwrap();
        raw.compile(Path::new("agent.toml"))
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(compile("").unwrap(), AgentConfig::default());
        let c = compile("delta_period_ms = 0\ncompression = \"none\"\nretention = \"exponential\"\n").unwrap();
        assert_eq!(c.delta_period_ms, None);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.retention, RetentionPolicy::Exponential);
        assert_eq!(c.rpo_bound_ms(), c.full_interval_ms);
        assert_eq!(
            compile("keep_fulls = 7").unwrap().retention,
            RetentionPolicy::KeepLast(7)
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("compression = \"zip\"", "compression"),
            ("delta_period_ms = 5", "delta_period_ms"),
            ("retention = \"forever\"", "retention"),
            ("keep_fulls = 0", "keep_fulls"),
            ("retention = \"exponential\"\nkeep_fulls = 2", "keep_fulls"),
        ] {
            let e = compile(text).unwrap_err().to_string();
            assert!(e.contains("agent.toml") && e.contains(key), "{text}: {e}");
        }
        let raw = RawDrillAgent {
            watch: Some("etcd9".into()),
            ..Default::default()
        };
        let e = raw
            .compile(Path::new("s.toml"), &["etcd1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent.watch") && e.contains("etcd9"), "{e}");
    }
}
