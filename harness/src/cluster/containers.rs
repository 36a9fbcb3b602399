//! Member containers: the spec each member runs with (through the image's flavor), and
//! creating and starting them, concurrently, on their current data volumes.

use std::time::Instant;

use futures_util::future::join_all;

use super::{Cluster, ClusterState, Member};
use crate::cluster::flavor::MemberLaunch;
use crate::docker::runtime::{ContainerSpec, MEMBER_LABEL};
use crate::error::Result;
use crate::etcd::security::RootPassword;

impl Cluster {
    /// The container of `member`, configured through etcd's `ETCD_*` environment.
    pub fn member_container_spec(&self, member: &Member, state: ClusterState) -> ContainerSpec {
        self.member_container_spec_with(member, state, &self.initial_cluster())
    }

    /// Creates a member's container and, with TLS on, puts its certificates into it.
    pub async fn create_member_container(&self, spec: &ContainerSpec) -> Result<()> {
        let member = member_of(spec);
        self.refuse_on_down_host(member, "create the container of")?;
        let docker = self.docker_of(member);
        docker.create_container(spec, &self.run_id).await?;
        if let Some(tls) = &self.tls {
            docker
                .write_archive(&spec.name, "/", tls.member_archive(member)?)
                .await?;
        }
        Ok(())
    }

    /// The container of `member`, bootstrapping from `initial_cluster` (for a member that
    /// joins, the list `member add` printed).
    pub fn member_container_spec_with(
        &self,
        member: &Member,
        state: ClusterState,
        initial_cluster: &str,
    ) -> ContainerSpec {
        let name = &member.spec.name;
        self.image.flavor.member_container(&MemberLaunch {
            image: member.image.as_deref().unwrap_or(&self.image.name),
            container: self.container_name(name),
            member: &member.spec,
            ip: &member.ip,
            host_port: member.host_port,
            volume: self.volume_name(name, member.volume_generation),
            network: &self.network,
            peer_network: &self.peer_network,
            // Every peer's name resolves from /etc/hosts. Through Docker's DNS, the names
            // of dead peers are forwarded to outside resolvers, and a member that keeps
            // asking for them (any survivor of a quorum loss) takes seconds to stop.
            hosts: self
                .members
                .iter()
                .map(|m| format!("{}:{}", m.spec.name, m.ip))
                .collect(),
            initial_cluster,
            token: &self.token,
            state,
            root_password: self.image.root_password.as_ref().map(RootPassword::expose),
            tls: self.tls.is_some(),
            settings: &self.settings,
            host_network: self.topology.network_mode() == crate::topology::NetworkMode::Host,
        })
    }

    /// Creates and starts the containers of `names` (concurrently), on their current volumes.
    pub async fn launch_members(&mut self, names: &[String], state: ClusterState) -> Result<()> {
        let started = Instant::now();
        let specs = self.create_members(names, state).await?;
        self.start_members(&specs, state, started).await
    }

    /// Creates (without starting) the containers of `names`, concurrently.
    pub async fn create_members(&self, names: &[String], state: ClusterState) -> Result<Vec<ContainerSpec>> {
        let specs: Vec<ContainerSpec> = names
            .iter()
            .map(|n| self.member(n).map(|m| self.member_container_spec(m, state)))
            .collect::<Result<_>>()?;
        let created = join_all(specs.iter().map(|spec| self.create_member_container(spec))).await;
        created.into_iter().collect::<Result<Vec<()>>>()?;
        Ok(specs)
    }

    /// Starts containers made by [`Cluster::create_members`], concurrently, and records each
    /// as the `docker run` an operator would type.
    pub async fn start_members(
        &mut self,
        specs: &[ContainerSpec],
        state: ClusterState,
        started: Instant,
    ) -> Result<()> {
        let results = join_all(
            specs
                .iter()
                .map(|spec| self.docker_of(member_of(spec)).start(&spec.name)),
        )
        .await;
        let duration_ms = started.elapsed().as_millis() as u64;
        for (spec, result) in specs.iter().zip(results) {
            self.record_member_start(spec, state, started, duration_ms, result.is_ok());
            result?;
            let member = member_of(spec).to_string();
            self.member_mut(&member)?.has_container = true;
        }
        Ok(())
    }
}

/// The member a member container's spec is for (its member label).
pub fn member_of(spec: &ContainerSpec) -> &str {
    spec.labels
        .iter()
        .find(|(k, _)| k == MEMBER_LABEL)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}
