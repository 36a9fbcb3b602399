//! Membership steps of the runbooks: `member remove`, re-adding a wiped member as a new
//! one ([`Rejoin`]: a voter started with `initial-cluster-state=existing`; a learner,
//! awaited until it has caught up with the leader and promoted; or, to drill the mistake,
//! a voter started with `new`), recreating a member's container on its data, and purging
//! a damaged member's `member/snap`.

use std::time::{Duration, Instant};

use super::{Cluster, ClusterState};

/// How a member that lost its data comes back into the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejoin {
    /// `member add`, then a start with `initial-cluster-state=existing`: the runbook.
    Voter,
    /// `member add --learner`, a start with `existing`, a wait until the learner has
    /// caught up with the leader, then `member promote`.
    Learner,
    /// The mistake the learner path guards against: `member add`, then a start with
    /// `initial-cluster-state=new`.
    StartedAsNew,
}
use crate::docker::runtime::{tar_file_names, tar_without};
use crate::error::{Error, Result};
use crate::readiness::{Seen, Wait};

impl Cluster {
    /// The runbook's "purge member persistent state": with the member stopped, keep a copy
    /// of `member/snap` in `backup_dir`, empty it, and start the member again with
    /// `initial-cluster-state=existing`, so it rebuilds from its WAL and the leader. The
    /// emptied data dir goes onto a fresh volume (a new incarnation of the member).
    pub async fn purge_member(&mut self, name: &str, backup_dir: &std::path::Path) -> Result<()> {
        let container = self.container_name(name);
        if self.await_member_verdict(name).await? {
            self.stop(name).await?;
        } else if let Some(code) = self.docker_of(name).exit_code(&container).await? {
            // The evidence that the member could not live with its data.
            let started = Instant::now();
            let (_, stderr) = self.docker_of(name).logs(&container).await?;
            let last = super::fatal_log_line(&stderr).unwrap_or_default();
            self.record(
                format!("{name} is down: it exited with code {code}"),
                self.on_host(name, format!("docker logs {container} 2>&1 | tail -n 20   # {last}")),
                started,
                true,
            );
        }
        let started = Instant::now();
        let (data_dir, data_mount) = (self.image.flavor.data_dir, self.image.flavor.data_mount);
        let snap_dir = format!("{data_dir}/member/snap");
        let backup = backup_dir.join(format!("{name}-member-snap.tar"));
        let saved = async {
            let archive = self.docker_of(name).read_archive(&container, &snap_dir).await?;
            std::fs::write(&backup, &archive).map_err(Error::io(&backup))?;
            tar_file_names(&archive).map_err(Error::io(&backup))
        }
        .await;
        // What etcd left there is evidence: a snapshot file it found damaged is renamed
        // `*.snap.broken` and set aside.
        let held = match &saved {
            Ok(files) => format!(
                "   # holds {}",
                files
                    .iter()
                    .filter(|f| !f.ends_with('/'))
                    .map(|f| f.rsplit('/').next().unwrap_or(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(_) => String::new(),
        };
        let command = self.on_host(
            name,
            format!("docker cp {container}:{snap_dir} - > {name}-member-snap.tar{held}"),
        );
        self.record(format!("back up {name}'s member/snap"), command, started, saved.is_ok());
        saved?;

        let started = Instant::now();
        let data = self.docker_of(name).read_archive(&container, data_dir).await?;
        let purged = tar_without(&data, "data/member/snap/").map_err(Error::io(data_dir))?;
        let old_volume = self.volume_name(name, self.member(name)?.volume_generation);
        self.docker_of(name).remove_container(&container).await?;
        let member = self.member_mut(name)?;
        member.has_container = false;
        member.volume_generation += 1;
        let generation = member.volume_generation;
        let fresh = self.volume_name(name, generation);
        self.docker_of(name).create_volume(&fresh, &self.run_id, name).await?;
        let spec = self.member_container_spec(self.member(name)?, ClusterState::Existing);
        self.create_member_container(&spec).await?;
        self.member_mut(name)?.has_container = true;
        let copied = self.docker_of(name).write_archive(&spec.name, data_mount, purged).await;
        self.record(
            format!("empty {name}'s member/snap"),
            format!(
                "docker cp {container}:{data_dir} {name}-data && rm -rf {name}-data/member/snap/* \\\n  && docker rm {container} && docker volume create {fresh} && docker create ... && docker cp {name}-data {}:{data_mount}/",
                spec.name
            ),
            started,
            copied.is_ok(),
        );
        copied?;
        let started = Instant::now();
        let result = self.docker_of(name).start(&spec.name).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        self.record_member_start(&spec, ClusterState::Existing, started, duration_ms, result.is_ok());
        result?;
        self.docker_of(name).remove_volume(&old_volume).await?;
        self.wait_healthy(&[name.to_string()], Duration::from_secs(60)).await
    }

    /// Before the purge, lets a member that runs show whether it can live with its data:
    /// waits (up to 30 s) until it serves a linearizable read or its container exits. A
    /// member just started on damaged files has then read them (etcd checks its snapshot
    /// files, setting a damaged one aside as `*.snap.broken`, and opens its db before it
    /// serves), so the backup of `member/snap` and the exit code show what etcd found,
    /// however long the fault's own steps took. Returns whether the member still runs.
    async fn await_member_verdict(&mut self, name: &str) -> Result<bool> {
        let container = self.container_name(name);
        if !self.docker_of(name).is_running(&container).await? {
            return Ok(false);
        }
        let started = Instant::now();
        let client = self.member(name)?.client.clone();
        let docker = self.docker_of(name).clone();
        let verdict = Wait::new(
            format!("{name} to serve or exit on its data"),
            Duration::from_millis(200),
            Duration::from_secs(30),
        )
        .until(|| async {
            match docker.is_running(&container).await {
                Ok(false) => Seen::Ready("exited"),
                Err(e) => Seen::NotYet(e.to_string()),
                Ok(true) if client.is_healthy(Duration::from_millis(500)).await => Seen::Ready("serves"),
                Ok(true) => Seen::NotYet("running, not serving".to_string()),
            }
        })
        .await;
        let seen = match &verdict {
            Ok(seen) => *seen,
            Err(_) => "neither serves nor exits",
        };
        self.record(
            format!("watch {name} start on its data: it {seen}"),
            self.on_host(
                name,
                format!("docker logs --follow {container}   # until it serves or exits"),
            ),
            started,
            verdict.is_ok(),
        );
        verdict.map(|seen| seen == "serves").map_err(Error::from)
    }

    /// `member remove` for `name`, if the cluster still lists it.
    pub async fn remove_member(&mut self, name: &str) -> Result<()> {
        let timeout = Duration::from_secs(10);
        let via = self.healthy_member(&[name.to_string()]).await?;
        let peer_url = self.member(name)?.spec.peer_url_in(self.scheme());
        let started = Instant::now();
        let listed = via.member_list(timeout).await?;
        let Some(old) = listed
            .iter()
            .find(|m| m.name == name || m.peer_urls.contains(&peer_url))
        else {
            return Ok(());
        };
        let removed = via.member_remove(old.id, timeout).await;
        let command = format!("etcdctl --endpoints={} member remove {:x}", via.endpoint, old.id);
        self.record(
            format!("remove {name} from the cluster"),
            command,
            started,
            removed.is_ok(),
        );
        removed
    }

    /// Wipes `name`'s data, adds it as a new member (a learner for [`Rejoin::Learner`])
    /// and starts it. etcd refuses `member add` while any voting member has been connected
    /// for less than its health interval (5 s), so a refusal for an unhealthy cluster is
    /// retried for a while. A voter is awaited until it serves; a learner until it has
    /// caught up with the leader, then promoted; a member started as `new` by mistake is
    /// not awaited (the checks find out what became of it).
    pub async fn rejoin_member(&mut self, name: &str, how: Rejoin) -> Result<()> {
        let timeout = Duration::from_secs(10);
        self.wipe(name).await?;
        let via = self.healthy_member(&[name.to_string()]).await?;
        let peer_url = self.member(name)?.spec.peer_url_in(self.scheme());
        let learner = how == Rejoin::Learner;
        let started = Instant::now();
        let refusals = Wait::new(
            format!("etcd to accept `member add {name}`"),
            Duration::from_millis(500),
            Duration::from_secs(30),
        );
        let added = refusals
            .until(|| async {
                match via.member_add(&peer_url, learner, timeout).await {
                    Err(Error::Etcd { message, .. }) if message.contains("unhealthy cluster") => Seen::NotYet(message),
                    other => Seen::Ready(other),
                }
            })
            .await
            .unwrap_or_else(|t| Err(t.into()));
        let command = format!(
            "etcdctl --endpoints={} member add {name} --peer-urls={peer_url}{}",
            via.endpoint,
            if learner { " --learner" } else { "" }
        );
        let what = if learner {
            "as a learner"
        } else {
            "back as a new member"
        };
        self.record(format!("add {name} {what}"), command, started, added.is_ok());
        let (id, members) = added?;
        let initial_cluster = members
            .iter()
            .map(|m| {
                let member_name = if m.name.is_empty() { name } else { m.name.as_str() };
                format!("{member_name}={}", m.peer_urls.first().cloned().unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join(",");

        let state = match how {
            Rejoin::StartedAsNew => ClusterState::New,
            Rejoin::Voter | Rejoin::Learner => ClusterState::Existing,
        };
        let started = Instant::now();
        let spec = self.member_container_spec_with(self.member(name)?, state, &initial_cluster);
        self.create_member_container(&spec).await?;
        self.member_mut(name)?.has_container = true;
        let result = self.docker_of(name).start(&spec.name).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        self.record_member_start(&spec, state, started, duration_ms, result.is_ok());
        result?;
        match how {
            Rejoin::Voter => self.wait_healthy(&[name.to_string()], Duration::from_secs(60)).await,
            Rejoin::Learner => {
                self.wait_caught_up(name).await?;
                self.promote(name, id).await?;
                self.wait_healthy(&[name.to_string()], Duration::from_secs(60)).await
            }
            Rejoin::StartedAsNew => Ok(()),
        }
    }

    /// Waits until learner `name` has applied what the leader had applied when the wait
    /// began, read with `endpoint status` on both, as an operator would before promoting.
    async fn wait_caught_up(&mut self, name: &str) -> Result<()> {
        let timeout = Duration::from_secs(2);
        let learner = self.member(name)?.client.clone();
        let started = Instant::now();
        let leader = match self.leader().await {
            Some(leader) if leader != name => self.member(&leader)?.client.clone(),
            _ => self.healthy_member(&[name.to_string()]).await?,
        };
        let target = leader.status(timeout).await?.raft_applied_index;
        let caught_up = Wait::new(
            format!("learner {name} to apply the leader's index {target}"),
            Duration::from_millis(100),
            Duration::from_secs(60),
        )
        .until(|| async {
            match learner.status(timeout).await {
                Ok(s) if s.raft_applied_index >= target => Seen::Ready(s.raft_applied_index),
                Ok(s) => Seen::NotYet(format!("applied index {}", s.raft_applied_index)),
                Err(e) => Seen::NotYet(e.to_string()),
            }
        })
        .await;
        self.record(
            format!("wait until learner {name} has caught up with the leader (applied index {target})"),
            format!(
                "etcdctl --endpoints={},{} endpoint status -w json   # until {name}'s raftAppliedIndex reaches the leader's",
                learner.endpoint, leader.endpoint
            ),
            started,
            caught_up.is_ok(),
        );
        caught_up.map(|_| ()).map_err(Error::from)
    }

    /// `member promote` of learner `name` (id `id`), retried while etcd says the learner
    /// is not yet in sync with the leader.
    async fn promote(&mut self, name: &str, id: u64) -> Result<()> {
        let timeout = Duration::from_secs(10);
        let via = self.healthy_member(&[name.to_string()]).await?;
        let started = Instant::now();
        let promoted = Wait::new(
            format!("etcd to accept `member promote` of {name}"),
            Duration::from_millis(500),
            Duration::from_secs(30),
        )
        .until(|| async {
            match via.member_promote(id, timeout).await {
                Err(Error::Etcd { message, .. }) if message.contains("in sync") => Seen::NotYet(message),
                other => Seen::Ready(other),
            }
        })
        .await
        .unwrap_or_else(|t| Err(t.into()));
        self.record(
            format!("promote learner {name} to a voting member"),
            format!("etcdctl --endpoints={} member promote {id:x}", via.endpoint),
            started,
            promoted.is_ok(),
        );
        promoted
    }

    /// Moves a member to `image` on its data volume: a graceful stop (SIGTERM, 10 s),
    /// then a new container of `image` with the same configuration.
    pub async fn change_member_image(&mut self, name: &str, image: &str) -> Result<()> {
        let cluster_image = self.image.name.clone();
        self.member_mut(name)?.image = (image != cluster_image).then(|| image.to_string());
        self.recreate_member(name, &[]).await
    }

    /// Stops and removes the member's container and starts a new one on the same data
    /// volume, with `extra_env` added to its configuration.
    pub async fn recreate_member(&mut self, name: &str, extra_env: &[(&str, &str)]) -> Result<()> {
        let started = Instant::now();
        let container = self.container_name(name);
        let removed = async {
            self.docker_of(name).stop(&container, 10).await?;
            self.docker_of(name).remove_container(&container).await
        }
        .await;
        self.record(
            format!("stop {name}"),
            self.on_host(name, format!("docker stop {container} && docker rm {container}")),
            started,
            removed.is_ok(),
        );
        removed?;
        self.member_mut(name)?.has_container = false;
        let started = Instant::now();
        let mut spec = self.member_container_spec(self.member(name)?, ClusterState::Existing);
        spec.env
            .extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.create_member_container(&spec).await?;
        self.member_mut(name)?.has_container = true;
        let result = self.docker_of(name).start(&spec.name).await;
        self.record_member_start(
            &spec,
            ClusterState::Existing,
            started,
            started.elapsed().as_millis() as u64,
            result.is_ok(),
        );
        result
    }
}
