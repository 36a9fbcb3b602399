//! A member's peer traffic degraded from inside its own network namespace: the
//! network-fault tool joins the member's container (`--network container:<member>`) and
//! drops its raft traffic (all of it, or a share at random) with iptables, or holds it
//! with a `tc netem` delay on its peer interface; its client port is left alone. `heal`
//! stops the tool, which takes its rules out. The fault holds while the member's
//! container runs: a restarted container gets a new namespace without the rules.

use super::Cluster;
use crate::docker::netfault::{PeerFaultRules, PeerTraffic, SPLIT_MARK};
use crate::error::Result;

impl Cluster {
    /// The tool's container that degrades `member`'s peer traffic.
    pub(super) fn peer_fault_container(&self, member: &str) -> String {
        format!("etcd-drill-{}{SPLIT_MARK}peer-{member}", self.run_id)
    }

    /// Degrades `member`'s peer traffic as `traffic` says, until `heal`.
    pub async fn degrade_peer_traffic(&mut self, member: &str, traffic: PeerTraffic) -> Result<()> {
        let fault = match traffic {
            PeerTraffic::Blackhole => "peer-blackhole",
            PeerTraffic::Loss { .. } => "peer-loss",
            PeerTraffic::Delay { .. } => "peer-delay",
        };
        self.refuse_on_host_networking(fault)?;
        self.refuse_on_down_host(member, fault)?;
        let spec = self.member(member)?.spec.clone();
        let rules = PeerFaultRules {
            traffic,
            peer_port: spec.peer_port,
            peer_ip: self.member(member)?.ip.clone(),
            tag: format!("etcd-drill-{}", self.run_id),
        };
        let what = match traffic {
            PeerTraffic::Blackhole => "drop every peer packet".to_string(),
            PeerTraffic::Loss { percent } => format!("drop {percent}% of the peer packets"),
            PeerTraffic::Delay { ms } => format!("delay every peer packet by {ms} ms"),
        };
        let tool = self.peer_fault_container(member);
        let target = self.container_name(member);
        self.start_netfault(
            &spec.host,
            &tool,
            &rules.script(),
            &rules.iptables_args(true),
            format!("{what} of {member}"),
            Some(&target),
        )
        .await?;
        let m = self.member_mut(member)?;
        m.partitioned = true;
        m.peer_degraded = true;
        Ok(())
    }

    /// Stops the tool that degrades `member`'s peer traffic; its rules go with it.
    pub(super) async fn restore_peer_traffic(&mut self, member: &str) -> Result<()> {
        let host = self.member(member)?.spec.host.clone();
        let tool = self.peer_fault_container(member);
        self.stop_netfault(&host, &tool, format!("restore {member}'s peer traffic"))
            .await?;
        let m = self.member_mut(member)?;
        m.partitioned = false;
        m.peer_degraded = false;
        Ok(())
    }
}
