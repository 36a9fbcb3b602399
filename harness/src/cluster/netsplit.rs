//! A partition between hosts on host networking, and its heal: the network-fault tool
//! (`docker::netfault`) runs on one side's hosts and drops the peer traffic between the
//! two sides' addresses, both ways; every member keeps running and keeps its client port.
//! On a bridge network the same faults cut members off the run's peer network instead
//! (`verbs`); this is the one place where that differs. Also the tool's start and stop,
//! which a downed host (`host_outage`) uses too.

use std::time::{Duration, Instant};

use super::Cluster;
use crate::docker::netfault::{SplitRules, NETFAULT_IMAGE, RULES_IN_PLACE, SPLIT_MARK};
use crate::docker::runtime::{ContainerSpec, ROLE_LABEL};
use crate::error::{Error, Result};
use crate::readiness::{Seen, Wait};

impl Cluster {
    /// Splits the hosts of `cut` (whole hosts: every member on them) from the hosts of the
    /// other members. The rules go on the hosts of one side: the cut side when each of its
    /// hosts has a daemon of its own, else the other side when each of its hosts has one,
    /// else the cut side (rules on the harness's own machine).
    pub async fn split_hosts(&mut self, cut: &[String]) -> Result<()> {
        let mut cut_hosts: Vec<String> = Vec::new();
        for host in cut
            .iter()
            .filter_map(|m| self.topology.member(m).map(|s| s.host.clone()))
        {
            if !cut_hosts.contains(&host) {
                cut_hosts.push(host);
            }
        }
        let other_hosts: Vec<String> = self
            .topology
            .hosts()
            .into_iter()
            .filter(|h| !cut_hosts.contains(h))
            .collect();
        if let Some(shared) = self
            .topology
            .members
            .iter()
            .find(|m| cut_hosts.contains(&m.host) && !cut.contains(&m.name))
        {
            return Err(Error::Procedure {
                step: "split the hosts".into(),
                message: format!(
                    "on host networking a partition splits whole hosts, but {} on host {} is on neither side; partition `host = \"{}\"`",
                    shared.name, shared.host, shared.host
                ),
            });
        }
        let own_daemon = |hosts: &[String]| {
            hosts
                .iter()
                .all(|h| self.topology.host(h).is_some_and(|s| s.docker.is_some()))
        };
        let (here, there) = match (own_daemon(&cut_hosts), own_daemon(&other_hosts)) {
            (false, true) => (other_hosts, cut_hosts),
            _ => (cut_hosts, other_hosts),
        };
        let peer_ports = |host: &str| -> Vec<u16> {
            self.topology
                .members
                .iter()
                .filter(|m| m.host == host)
                .map(|m| m.peer_port)
                .collect()
        };
        let remote: Vec<(String, Vec<u16>)> = there
            .iter()
            .filter_map(|h| Some((self.topology.host(h)?.address.clone()?, peer_ports(h))))
            .collect();
        let plans: Vec<(String, SplitRules)> = here
            .iter()
            .map(|host| {
                let rules = SplitRules {
                    local_peer_ports: peer_ports(host),
                    remote: remote.clone(),
                    tag: format!("etcd-drill-{}", self.run_id),
                };
                (host.clone(), rules)
            })
            .collect();
        for (host, rules) in &plans {
            let name = format!("etcd-drill-{}{SPLIT_MARK}{host}", self.run_id);
            let step = format!("split host {host} from {} at the network level", there.join(", "));
            self.start_netfault(host, &name, &rules.script(), &rules.iptables_args(true), step, None)
                .await?;
        }
        for name in cut {
            self.member_mut(name)?.partitioned = true;
        }
        Ok(())
    }

    /// Starts the network-fault tool as container `name` on `host` with `script`, on the
    /// host's network or in the network namespace of container `joins`, waits until it
    /// says its rules (`rules`, the iptables arguments it inserts, shown in the runbook)
    /// are in place, and records the step as `step`.
    pub(super) async fn start_netfault(
        &mut self,
        host: &str,
        name: &str,
        script: &str,
        rules: &[Vec<String>],
        step: String,
        joins: Option<&str>,
    ) -> Result<()> {
        let started = Instant::now();
        let spec = ContainerSpec {
            name: name.to_string(),
            image: NETFAULT_IMAGE.into(),
            cmd: vec![script.to_string()],
            labels: vec![(ROLE_LABEL.into(), "netfault".into())],
            host_network: joins.is_none(),
            network_of: joins.map(String::from),
            cap_add: vec!["NET_ADMIN".into()],
            ..ContainerSpec::default()
        };
        let docker = self.hosts.of(host).clone();
        let result = async {
            docker.create_container(&spec, &self.run_id).await?;
            docker.start(name).await?;
            Wait::new(
                format!("the network-fault tool on host {host} to put its rules in place"),
                Duration::from_millis(100),
                Duration::from_secs(20),
            )
            .until(|| async {
                let (out, err) = docker.logs(name).await.unwrap_or_default();
                if out.contains(RULES_IN_PLACE) {
                    return Seen::Ready(Ok(()));
                }
                match docker.is_running(name).await {
                    Ok(false) => Seen::Ready(Err(Error::Procedure {
                        step: step.clone(),
                        message: format!("the network-fault tool ended without its rules: {}", err.trim()),
                    })),
                    _ => Seen::NotYet("the tool has not said its rules are in place".to_string()),
                }
            })
            .await
            .map_err(Error::from)?
        }
        .await;
        let rule_lines: Vec<String> = rules.iter().map(|a| format!("iptables -w {}", a.join(" "))).collect();
        let command = self.on_host_named(
            host,
            format!(
                "docker run -d --name {name} --network {} --cap-add NET_ADMIN {NETFAULT_IMAGE} '{}'   # on host {host}: {}",
                joins.map(|c| format!("container:{c}")).unwrap_or_else(|| "host".into()),
                script.replace('\n', " "),
                match rule_lines.is_empty() {
                    true => "tc netem on the peer interface".to_string(),
                    false => rule_lines.join("; "),
                }
            ),
        );
        self.record(step, command, started, result.is_ok());
        result
    }

    /// Stops the network-fault tool `name` on `host` if it is there (its rules go with
    /// it), removes it, and records `step`; false when there was none. The tool must end
    /// with exit code 0, or its rules may still be in place.
    pub(super) async fn stop_netfault(&mut self, host: &str, name: &str, step: String) -> Result<bool> {
        let started = Instant::now();
        let docker = self.hosts.of(host).clone();
        let exists = docker.is_running(name).await? || docker.exit_code(name).await?.is_some();
        if !exists {
            return Ok(false);
        }
        docker.stop(name, 10).await?;
        let code = docker.exit_code(name).await?;
        let (_, err) = docker.logs(name).await.unwrap_or_default();
        docker.remove_container(name).await?;
        let ok = code == Some(0);
        self.record(
            step.clone(),
            self.on_host_named(
                host,
                format!("docker stop {name} && docker rm {name}   # its rules go with it"),
            ),
            started,
            ok,
        );
        match ok {
            true => Ok(true),
            false => Err(Error::Procedure {
                step,
                message: format!("the network-fault tool ended with {code:?}: {}", err.trim()),
            }),
        }
    }

    /// Takes every split of the run out: each tool is stopped, which removes its rules,
    /// and must end with exit code 0. Members are no longer partitioned.
    pub async fn heal_splits(&mut self) -> Result<()> {
        for host in self.topology.hosts() {
            let name = format!("etcd-drill-{}{SPLIT_MARK}{host}", self.run_id);
            self.stop_netfault(&host, &name, format!("heal the split on host {host}"))
                .await?;
        }
        for member in &mut self.members {
            member.partitioned = false;
        }
        Ok(())
    }
}
