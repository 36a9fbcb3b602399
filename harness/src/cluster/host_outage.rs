//! A whole host going down and coming back (`host-down`, `host-up`). Down, every member
//! container on it is SIGKILLed at the same moment (and, with `wipe`, its data volumes
//! destroyed), the harness refuses every Docker verb on its members, and on host
//! networking the network-fault tool drops every packet to or from its members' ports on
//! its address, so that peers and clients time out on it instead of being refused. On a
//! bridge network a killed member's address leaves the network, which already does that
//! for its peers; clients reach members through ports published on this machine, and are
//! refused there. Up again, the tool goes and the members whose data survived start.

use std::time::{Duration, Instant};

use super::Cluster;
use crate::docker::netfault::{BlackholeRules, SPLIT_MARK};
use crate::error::{Error, Result};
use crate::topology::NetworkMode;

/// How long a connection to a downed host's member must hang to count as unreachable.
const UNREACHABLE_AFTER: Duration = Duration::from_millis(500);

impl Cluster {
    /// The network-fault tool's container that keeps `host` unreachable.
    fn outage_container(&self, host: &str) -> String {
        format!("etcd-drill-{}{SPLIT_MARK}{host}-down", self.run_id)
    }

    /// The members on `host`, in topology order.
    fn members_on(&self, host: &str) -> Vec<String> {
        self.topology
            .members
            .iter()
            .filter(|m| m.host == host)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Takes `host` down: kills its running members at once, destroys their data when
    /// `wipe` is set, and makes it unreachable until [`Cluster::host_up`].
    pub async fn host_down(&mut self, host: &str, wipe: bool) -> Result<()> {
        if self.down_hosts.iter().any(|h| h == host) {
            return Err(Error::Procedure {
                step: format!("host-down {host}"),
                message: format!("host {host} is already down; a `host-up` must bring it back first"),
            });
        }
        let members = self.members_on(host);
        let running = self.running().await?;
        let alive: Vec<String> = members.iter().filter(|m| running.contains(m)).cloned().collect();
        self.kill_all(&alive).await?;
        if wipe {
            for member in &members {
                self.wipe(member).await?;
            }
        }
        if self.topology.network_mode() == NetworkMode::Host {
            let address = self
                .topology
                .host(host)
                .and_then(|h| h.address.clone())
                .ok_or_else(|| Error::Procedure {
                    step: format!("host-down {host}"),
                    message: format!("host {host} has no address to make unreachable"),
                })?;
            let ports: Vec<u16> = self
                .topology
                .members
                .iter()
                .filter(|m| m.host == host)
                .flat_map(|m| [m.client_port, m.peer_port])
                .collect();
            let rules = BlackholeRules {
                address,
                ports,
                tag: format!("etcd-drill-{}", self.run_id),
            };
            let name = self.outage_container(host);
            let probe = format!("{}:{}", rules.address, rules.ports.first().copied().unwrap_or(2379));
            self.start_netfault(
                host,
                &name,
                &rules.script(),
                &rules.iptables_args(true),
                format!("make host {host} unreachable: its members' ports drop every packet"),
                None,
            )
            .await?;
            self.check_unreachable(host, &probe).await?;
        }
        self.down_hosts.push(host.to_string());
        Ok(())
    }

    /// Checks that a connection to `probe` (a member's client port on the downed host)
    /// times out, as on a machine that is off, rather than being accepted or refused.
    async fn check_unreachable(&mut self, host: &str, probe: &str) -> Result<()> {
        let started = Instant::now();
        let attempt = tokio::time::timeout(UNREACHABLE_AFTER, tokio::net::TcpStream::connect(probe)).await;
        let verdict = match attempt {
            Err(_) => Ok(()),
            Ok(Ok(_)) => Err("a connection was accepted".to_string()),
            Ok(Err(e)) => Err(format!("the connection failed at once ({e}) instead of timing out")),
        };
        let (address, port) = probe.rsplit_once(':').unwrap_or((probe, ""));
        self.record(
            format!("check that host {host} is unreachable"),
            format!(
                "timeout {} bash -c '</dev/tcp/{address}/{port}'; test $? -eq 124   # a connection times out",
                UNREACHABLE_AFTER.as_secs_f32()
            ),
            started,
            verdict.is_ok(),
        );
        verdict.map_err(|why| Error::Procedure {
            step: format!("host-down {host}"),
            message: format!("{probe} is still reachable after the network-fault tool put its rules in place: {why}"),
        })
    }

    /// Brings `host` back: reachable again, and its members that still have their data
    /// started. Returns the members it started.
    pub async fn host_up(&mut self, host: &str) -> Result<Vec<String>> {
        if !self.down_hosts.iter().any(|h| h == host) {
            return Err(Error::Procedure {
                step: format!("host-up {host}"),
                message: format!("host {host} is not down: a `host-up` follows a `host-down` of the same host"),
            });
        }
        if self.topology.network_mode() == NetworkMode::Host {
            let name = self.outage_container(host);
            self.stop_netfault(host, &name, format!("host {host} is reachable again"))
                .await?;
        }
        self.down_hosts.retain(|h| h != host);
        let mut started = Vec::new();
        for member in self.members_on(host) {
            if self.member(&member)?.has_container {
                self.start(&member).await?;
                started.push(member);
            }
        }
        Ok(started)
    }

    /// Refuses a Docker verb (`verb`) on `member` while its host is down.
    pub(super) fn refuse_on_down_host(&self, member: &str, verb: &str) -> Result<()> {
        let host = self
            .topology
            .member(member)
            .map(|m| m.host.as_str())
            .unwrap_or_default();
        match self.down_hosts.iter().any(|h| h == host) {
            false => Ok(()),
            true => Err(Error::Procedure {
                step: format!("{verb} {member}"),
                message: format!(
                    "host {host} is down (`host-down`): its daemon and members are unreachable until a `host-up` fault brings it back"
                ),
            }),
        }
    }
}
