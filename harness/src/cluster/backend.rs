//! Steps on the members' backends (the bbolt database under `member/snap/db`): filling
//! the backend quota until etcd raises NOSPACE, growing a history of overwritten values
//! for compaction and defragmentation to work on, and reading every member's database
//! size as `etcdctl endpoint status` shows it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Cluster;
use crate::error::{Error, Result};

/// Size of each value the quota filler writes.
pub const FILL_VALUE_BYTES: usize = 256 * 1024;
/// How many keys the filler overwrites in turn.
const FILL_KEYS: usize = 16;

impl Cluster {
    /// Overwrites [`FILL_KEYS`] keys with values of [`FILL_VALUE_BYTES`] through `via`
    /// until etcd refuses a write with "database space exceeded" (and raises the NOSPACE
    /// alarm): the fault takes effect at that refusal. Fails if etcd accepted four times
    /// the quota without refusing, or if a write fails for another reason.
    pub async fn fill_quota(&mut self, via: &str) -> Result<()> {
        let client = self.member(via)?.client.clone();
        let quota = self.settings.quota_backend_bytes.unwrap_or(2 << 30) as usize;
        let most = quota * 4 / FILL_VALUE_BYTES + FILL_KEYS;
        // Beside the workload's prefix, not under it: the checks read the workload's keys
        // back in one response, which the filler's megabytes would overflow.
        let prefix = format!("/etcd-drill/{}-fill/", self.run_id);
        let value = "q".repeat(FILL_VALUE_BYTES);
        let started = Instant::now();
        let mut accepted = 0usize;
        let mut refused = None;
        for i in 0..most {
            let key = format!("{prefix}{:02}", i % FILL_KEYS);
            match client.put(key, value.clone(), Duration::from_secs(10)).await {
                Ok(_) => accepted += 1,
                Err(message) if message.contains("database space exceeded") => {
                    refused = Some(message);
                    break;
                }
                Err(message) => {
                    self.record(
                        format!("fill the backend quota through {via}"),
                        fill_command(&client.endpoint, &prefix),
                        started,
                        false,
                    );
                    return Err(Error::Etcd {
                        action: "put",
                        member: via.to_string(),
                        message: format!("while filling the quota, after {accepted} accepted writes: {message}"),
                    });
                }
            }
        }
        self.record(
            format!(
                "fill the backend quota through {via}: {accepted} writes of {} KiB accepted, then refused",
                FILL_VALUE_BYTES / 1024
            ),
            fill_command(&client.endpoint, &prefix),
            started,
            refused.is_some(),
        );
        if refused.is_none() {
            return Err(Error::Procedure {
                step: format!("fill the backend quota through {via}"),
                message: format!(
                    "etcd accepted {accepted} writes of {} KiB ({} MiB) without refusing one; is --quota-backend-bytes ({quota} bytes) in effect?",
                    FILL_VALUE_BYTES / 1024,
                    (accepted * FILL_VALUE_BYTES) >> 20
                ),
            });
        }
        Ok(())
    }

    /// Writes `bytes` of values over `keys` keys (`value_size` bytes each, several writers
    /// at once) before the workload, so that the backend holds a long history of which a
    /// compaction frees all but the last value of each key. Returns the puts made.
    pub async fn grow_history(&mut self, bytes: u64, keys: u64, value_size: u64) -> Result<u64> {
        const WRITERS: u64 = 4;
        let prefix = format!("/etcd-drill/{}-history/", self.run_id);
        let puts = bytes.div_ceil(value_size);
        let value = "h".repeat(value_size as usize);
        let clients: Vec<_> = self.members.iter().map(|m| m.client.clone()).collect();
        let started = Instant::now();
        let writers = (0..WRITERS).map(|w| {
            let (prefix, value, clients) = (prefix.clone(), value.clone(), clients.clone());
            async move {
                let mut i = w;
                let mut failures = 0;
                while i < puts {
                    let client = &clients[(i as usize + failures) % clients.len()];
                    match client
                        .put(
                            format!("{prefix}{:05}", i % keys),
                            value.clone(),
                            Duration::from_secs(10),
                        )
                        .await
                    {
                        Ok(_) => i += WRITERS,
                        Err(message) if failures < 20 => {
                            failures += 1;
                            tracing::debug!(%message, "history put failed; trying the next member");
                        }
                        Err(message) => return Err(message),
                    }
                }
                Ok(())
            }
        });
        let written: std::result::Result<Vec<()>, String> =
            futures_util::future::join_all(writers).await.into_iter().collect();
        self.record(
            format!(
                "write a history of {} MiB: {puts} values of {} KiB over {keys} keys",
                bytes >> 20,
                value_size / 1024
            ),
            format!(
                "v=$(head -c {value_size} /dev/zero | tr '\\0' h); for i in $(seq 0 {}); do etcdctl put {prefix}$(printf %05d $((i % {keys}))) \"$v\"; done",
                puts - 1
            ),
            started,
            written.is_ok(),
        );
        written.map_err(|message| Error::Procedure {
            step: "write the history".into(),
            message,
        })?;
        Ok(puts)
    }

    /// Every member's database size in bytes, as `endpoint status` reports it; members
    /// that do not answer are left out.
    pub async fn db_sizes(&self) -> BTreeMap<String, i64> {
        let mut sizes = BTreeMap::new();
        for m in &self.members {
            if let Ok(status) = m.client.status(Duration::from_secs(5)).await {
                sizes.insert(m.spec.name.clone(), status.db_size);
            }
        }
        sizes
    }
}

/// The shell loop an operator would run to fill the quota the same way.
fn fill_command(endpoint: &str, prefix: &str) -> String {
    format!(
        "v=$(head -c {FILL_VALUE_BYTES} /dev/zero | tr '\\0' q); i=0; \\\n  while etcdctl --endpoints={endpoint} put {prefix}$(printf %02d $((i % {FILL_KEYS}))) \"$v\"; do i=$((i+1)); done   # until \"database space exceeded\""
    )
}
