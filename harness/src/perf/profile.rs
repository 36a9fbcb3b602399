//! The load profiles of `etcdctl check perf` and `etcdctl check datascale` (s, m, l, xl),
//! with etcdctl's aliases, and the fixed shapes of their keys and values.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Key prefix of `check perf`.
pub const PERF_PREFIX: &str = "/etcdctl-check-perf/";
/// Key prefix of `check datascale`.
pub const DATASCALE_PREFIX: &str = "/etcdctl-check-datascale/";

/// One of etcdctl's four workload models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Load {
    S,
    M,
    L,
    Xl,
}

/// What `check perf` does at one load: a rate limit shared by `clients` concurrent
/// requests, for `duration_s`, with 256-byte keys (after the prefix) and 1 KiB values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PerfProfile {
    pub load: Load,
    pub rate_limit: u32,
    pub clients: usize,
    pub duration_s: u64,
    pub key_bytes: usize,
    pub value_bytes: usize,
}

/// What `check datascale` does at one load: `keys` puts with no rate limit, 512-byte keys
/// (after the prefix) and 512-byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DatascaleProfile {
    pub load: Load,
    pub keys: u64,
    pub clients: usize,
    pub key_bytes: usize,
    pub value_bytes: usize,
}

impl Load {
    pub const ALL: [Load; 4] = [Load::S, Load::M, Load::L, Load::Xl];

    pub fn name(self) -> &'static str {
        match self {
            Load::S => "s",
            Load::M => "m",
            Load::L => "l",
            Load::Xl => "xl",
        }
    }

    pub fn perf(self) -> PerfProfile {
        let (rate_limit, clients) = match self {
            Load::S => (150, 50),
            Load::M => (1_000, 200),
            Load::L => (8_000, 500),
            Load::Xl => (15_000, 1_000),
        };
        PerfProfile {
            load: self,
            rate_limit,
            clients,
            duration_s: 60,
            key_bytes: 256,
            value_bytes: 1024,
        }
    }

    pub fn datascale(self) -> DatascaleProfile {
        let (keys, clients) = match self {
            Load::S => (10_000, 50),
            Load::M => (100_000, 200),
            Load::L => (1_000_000, 500),
            Load::Xl => (3_000_000, 1_000),
        };
        DatascaleProfile {
            load: self,
            keys,
            clients,
            key_bytes: 512,
            value_bytes: 512,
        }
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Load {
    type Err = String;

    /// The names etcdctl accepts: s/small, m/medium, l/large, xl/xLarge.
    fn from_str(s: &str) -> Result<Load, String> {
        match s {
            "s" | "small" => Ok(Load::S),
            "m" | "medium" => Ok(Load::M),
            "l" | "large" => Ok(Load::L),
            "xl" | "xLarge" => Ok(Load::Xl),
            other => Err(format!(
                "unknown load `{other}`; use s (small), m (medium), l (large) or xl (xLarge)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_match_etcdctl() {
        let got: Vec<(u32, usize)> = Load::ALL
            .iter()
            .map(|l| (l.perf().rate_limit, l.perf().clients))
            .collect();
        assert_eq!(got, vec![(150, 50), (1000, 200), (8000, 500), (15000, 1000)]);
        assert!(Load::ALL.iter().all(|l| l.perf().duration_s == 60));
        assert_eq!(Load::Xl.datascale().keys, 3_000_000);
    }

    #[test]
    fn aliases_parse_and_typos_are_named() {
        assert_eq!("xLarge".parse::<Load>(), Ok(Load::Xl));
        assert_eq!("medium".parse::<Load>(), Ok(Load::M));
        let err = "xxl".parse::<Load>().unwrap_err();
        assert!(err.contains("`xxl`"), "{err}");
    }
}
