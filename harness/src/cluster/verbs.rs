//! The Docker-level verbs on members that faults are made of: kill, stop, start, pause,
//! resume, partition, heal, wipe and corrupt, each recorded as its docker command.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::damage::{damage_bytes, Damage, DamageKind, DamagedFile};
use super::Cluster;
use crate::docker::runtime::{tar_archive, tar_file_names, NetworkAttachment};
use crate::error::{Error, Result};
use crate::readiness::{Seen, Wait};

/// Docker verbs on one member's container.
#[derive(Debug, Clone, Copy)]
enum ContainerVerb {
    Stop,
    Start,
    Pause,
    Resume,
}

impl ContainerVerb {
    fn word(self) -> &'static str {
        match self {
            ContainerVerb::Stop => "stop",
            ContainerVerb::Start => "start",
            ContainerVerb::Pause => "pause",
            ContainerVerb::Resume => "resume",
        }
    }
}

impl Cluster {
    /// Damages a file in the member's data dir, stopping the member first if it runs. A
    /// running member asked to lose its newest raft snapshot file is first given the time
    /// to write one (up to a minute), so that the fault is certain on a slow machine.
    pub async fn corrupt(&mut self, name: &str, damage: Damage) -> Result<()> {
        self.refuse_on_down_host(name, "corrupt")?;
        let container = self.container_name(name);
        if self.docker_of(name).is_running(&container).await? {
            if damage.file == DamagedFile::Snap {
                self.await_snapshot_file(name).await?;
            }
            self.stop(name).await?;
        }
        let started = Instant::now();
        let data_dir = self.image.flavor.data_dir;
        let newest = match damage.file {
            DamagedFile::Db => None,
            DamagedFile::Wal => Some(("wal", ".wal", "")),
            DamagedFile::Snap => Some((
                "snap",
                ".snap",
                "; etcd writes one every snapshot-count applied entries (100000 by default): lower it with [etcd] snapshot_count",
            )),
        };
        let (dir, file_name) = match newest {
            None => (format!("{data_dir}/member/snap"), "db".to_string()),
            Some((sub_dir, suffix, hint)) => {
                // File names sort by sequence and index, so the greatest is the newest.
                let dir = format!("{data_dir}/member/{sub_dir}");
                let listing = self.docker_of(name).read_archive(&container, &dir).await?;
                let newest = tar_file_names(&listing)
                    .map_err(Error::io(&dir))?
                    .into_iter()
                    .filter(|f| f.ends_with(suffix))
                    .max()
                    .ok_or_else(|| Error::Procedure {
                        step: format!("corrupt {name}'s {}", damage.file.as_str()),
                        message: format!("no {suffix} file in {dir}{hint}"),
                    })?;
                let file = newest.rsplit('/').next().unwrap_or(&newest).to_string();
                (dir, file)
            }
        };
        let path = format!("{dir}/{file_name}");
        let mut bytes = self.docker_of(name).read_file(&container, &path).await?;
        if !damage_bytes(&mut bytes, damage) {
            return Err(Error::Procedure {
                step: format!("corrupt {path} of {name}"),
                message: format!("the file has only {} bytes: nothing to damage", bytes.len()),
            });
        }
        let archive = tar_archive(&[(file_name.as_str(), &bytes)]).map_err(Error::io(&path))?;
        let result = self.docker_of(name).write_archive(&container, &dir, archive).await;
        let how = match damage.how {
            DamageKind::Flip => format!("flip bytes in {file_name}"),
            DamageKind::Truncate => format!("truncate -s {} {file_name}", bytes.len()),
        };
        self.record(
            format!("corrupt {name}'s {} ({})", damage.file.as_str(), damage.how.as_str()),
            self.on_host(
                name,
                format!("docker cp {container}:{path} . && {how} && docker cp {file_name} {container}:{dir}/"),
            ),
            started,
            result.is_ok(),
        );
        result
    }

    /// Waits until a running member has written a raft snapshot file (`member/snap/*.snap`),
    /// and records the wait.
    async fn await_snapshot_file(&mut self, name: &str) -> Result<()> {
        let container = self.container_name(name);
        let dir = format!("{}/member/snap", self.image.flavor.data_dir);
        let started = Instant::now();
        let docker = self.docker_of(name).clone();
        let written = Wait::new(
            format!("{name} to write a raft snapshot file in {dir}"),
            Duration::from_millis(500),
            Duration::from_secs(60),
        )
        .until(|| async {
            let names = match docker.read_archive(&container, &dir).await {
                Ok(listing) => tar_file_names(&listing).unwrap_or_default(),
                Err(e) => return Seen::NotYet(e.to_string()),
            };
            match names.iter().any(|f| f.ends_with(".snap")) {
                true => Seen::Ready(()),
                false => Seen::NotYet(format!("it holds {}", names.join(", "))),
            }
        })
        .await;
        self.record(
            format!("wait until {name} has written a raft snapshot file"),
            self.on_host(
                name,
                format!("docker exec {container} ls {dir}   # until a *.snap is there"),
            ),
            started,
            written.is_ok(),
        );
        written.map_err(|timed_out| Error::Procedure {
            step: format!("corrupt {name}'s snap"),
            message: format!(
                "{}; etcd writes one every snapshot-count applied entries (100000 by default): lower it with [etcd] snapshot_count",
                Error::from(timed_out)
            ),
        })
    }

    /// SIGKILLs several members at once, as when a host dies.
    pub async fn kill_all(&mut self, names: &[String]) -> Result<()> {
        for name in names {
            self.refuse_on_down_host(name, "kill")?;
        }
        let started = Instant::now();
        let containers: Vec<String> = names.iter().map(|n| self.container_name(n)).collect();
        let results = join_all(
            names
                .iter()
                .zip(&containers)
                .map(|(n, c)| self.docker_of(n).kill(c, "SIGKILL")),
        )
        .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        for ((name, container), result) in names.iter().zip(&containers).zip(&results) {
            let command = self.on_host(name, format!("docker kill --signal SIGKILL {container}"));
            self.record_span(format!("kill {name}"), command, started, duration_ms, result.is_ok());
        }
        results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    /// Runs one container-level verb on a member and records it as its docker command.
    async fn container_verb(&mut self, name: &str, verb: ContainerVerb) -> Result<()> {
        self.refuse_on_down_host(name, verb.word())?;
        let started = Instant::now();
        let container = self.container_name(name);
        let (result, command) = match verb {
            ContainerVerb::Stop => (
                self.docker_of(name).stop(&container, 10).await,
                format!("docker stop --time 10 {container}"),
            ),
            ContainerVerb::Start => (
                self.docker_of(name).start(&container).await,
                format!("docker start {container}"),
            ),
            ContainerVerb::Pause => (
                self.docker_of(name).pause(&container).await,
                format!("docker pause {container}"),
            ),
            ContainerVerb::Resume => (
                self.docker_of(name).unpause(&container).await,
                format!("docker unpause {container}"),
            ),
        };
        let command = self.on_host(name, command);
        self.record(format!("{} {name}", verb.word()), command, started, result.is_ok());
        result
    }

    pub async fn stop(&mut self, name: &str) -> Result<()> {
        self.container_verb(name, ContainerVerb::Stop).await
    }

    pub async fn start(&mut self, name: &str) -> Result<()> {
        if !self.member(name)?.has_container {
            return Err(Error::Procedure {
                step: format!("start {name}"),
                message: format!(
                    "{name} lost its data volume; it cannot rejoin under its old identity (replace the member instead)"
                ),
            });
        }
        self.container_verb(name, ContainerVerb::Start).await
    }

    /// One member alone cannot be cut off on host networking: there is no Docker network
    /// of the run, and a split between hosts ([`Cluster::split_hosts`]) takes whole hosts.
    pub(super) fn refuse_on_host_networking(&self, fault: &str) -> Result<()> {
        match self.topology.network_mode() {
            crate::topology::NetworkMode::Bridge => Ok(()),
            crate::topology::NetworkMode::Host => Err(Error::Procedure {
                step: fault.to_string(),
                message: format!(
                    "`{fault}` of one member cuts it off the run's Docker network, and with `network = \"host\"` there is none; partition a whole host (`host = ...`) instead"
                ),
            }),
        }
    }

    pub async fn pause(&mut self, name: &str) -> Result<()> {
        self.container_verb(name, ContainerVerb::Pause).await?;
        self.member_mut(name)?.paused = true;
        Ok(())
    }

    pub async fn resume(&mut self, name: &str) -> Result<()> {
        self.container_verb(name, ContainerVerb::Resume).await?;
        self.member_mut(name)?.paused = false;
        Ok(())
    }

    /// Cuts the member off the peer network; its client port stays reachable.
    pub async fn partition(&mut self, name: &str) -> Result<()> {
        self.refuse_on_host_networking("partition")?;
        self.refuse_on_down_host(name, "partition")?;
        let started = Instant::now();
        let container = self.container_name(name);
        let result = self
            .docker_of(name)
            .disconnect_network(&container, &self.peer_network)
            .await;
        let command = format!("docker network disconnect --force {} {container}", self.peer_network);
        self.record(format!("partition {name}"), command, started, result.is_ok());
        result?;
        self.member_mut(name)?.partitioned = true;
        Ok(())
    }

    /// Reconnects a partitioned member to the peer network at its old address. On host
    /// networking, takes the split between hosts out (which heals every member it cut off).
    pub async fn heal(&mut self, name: &str) -> Result<()> {
        if self.member(name)?.peer_degraded {
            self.restore_peer_traffic(name).await?;
            return self.confirm_snapshot_received(name).await;
        }
        if self.topology.network_mode() == crate::topology::NetworkMode::Host {
            return match self.member(name)?.partitioned {
                true => self.heal_splits().await,
                false => Ok(()),
            };
        }
        self.refuse_on_down_host(name, "heal")?;
        let started = Instant::now();
        let container = self.container_name(name);
        let member = self.member(name)?;
        let attachment = NetworkAttachment {
            network: self.peer_network.clone(),
            alias: name.to_string(),
            ipv4: Some(member.ip.clone()),
        };
        let result = self.docker_of(name).connect_network(&container, &attachment).await;
        let command = format!(
            "docker network connect --ip {} --alias {name} {} {container}",
            member.ip, self.peer_network
        );
        self.record(format!("heal {name}"), command, started, result.is_ok());
        result?;
        self.member_mut(name)?.partitioned = false;
        self.confirm_snapshot_received(name).await
    }

    /// Destroys the member's container and data volume, and prepares an empty volume for
    /// whatever brings the member back.
    pub async fn wipe(&mut self, name: &str) -> Result<()> {
        self.refuse_on_down_host(name, "wipe")?;
        if self.member(name)?.peer_degraded {
            // The tool lives in the member's namespace: it goes before the member does.
            self.restore_peer_traffic(name).await?;
        }
        let started = Instant::now();
        let container = self.container_name(name);
        let generation = self.member(name)?.volume_generation;
        let volume = self.volume_name(name, generation);
        let removed = async {
            self.docker_of(name).remove_container(&container).await?;
            self.docker_of(name).remove_volume(&volume).await
        }
        .await;
        self.record(
            format!("wipe {name}'s data"),
            self.on_host(name, format!("docker rm -f {container} && docker volume rm {volume}")),
            started,
            removed.is_ok(),
        );
        removed?;
        let member = self.member_mut(name)?;
        member.has_container = false;
        member.paused = false;
        member.partitioned = false;
        member.peer_degraded = false;
        member.awaits_snapshot = None;
        member.volume_generation += 1;
        let fresh = self.volume_name(name, generation + 1);
        self.docker_of(name).create_volume(&fresh, &self.run_id, name).await
    }
}
