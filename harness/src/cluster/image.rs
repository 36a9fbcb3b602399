//! What a cluster runs: the image, how to run it (its flavor), what its tools can do, and
//! whether auth and TLS are on.

use crate::cluster::flavor::Flavor;
use crate::cluster::tools::ImageTools;
use crate::docker::runtime::{ContainerSpec, DockerRuntime};
use crate::error::Result;
use crate::etcd::security::RootPassword;

/// The image a cluster runs, how to run it (its [`Flavor`]) and what its tools can do
/// (probed once per run; None where no procedure needs them, e.g. `perf`).
#[derive(Debug, Clone)]
pub struct ClusterImage {
    pub name: String,
    pub flavor: Flavor,
    pub tools: Option<ImageTools>,
    /// Turn authentication on with this root password once the cluster is up.
    pub root_password: Option<RootPassword>,
    /// TLS on client and peer URLs, with certificates made for the run.
    pub tls: bool,
}
impl ClusterImage {
    /// How to run `name` and what its tools can do, read from the image itself: its
    /// flavor (`kind` when given, else detected; `user` on top) and its tools' abilities
    /// (probed in one-off containers labelled with `run_id`). No auth, no TLS.
    pub async fn inspect(
        docker: &DockerRuntime,
        name: &str,
        kind: Option<crate::cluster::flavor::FlavorKind>,
        user: Option<String>,
        run_id: &str,
    ) -> Result<ClusterImage> {
        let flavor = crate::cluster::flavor::resolve(docker, name, kind, user).await?;
        let tools = crate::cluster::tools::probe(docker, name, &flavor, run_id).await?;
        Ok(ClusterImage {
            name: name.to_string(),
            flavor,
            tools: Some(tools),
            root_password: None,
            tls: false,
        })
    }

    /// The tool that saves, checks and restores snapshots: `etcdutl`, or `etcdctl` on
    /// images that have no `etcdutl` (3.4); `etcdutl` when the tools were not probed.
    pub fn snapshot_tool(&self) -> crate::cluster::tools::SnapshotTool {
        self.tools
            .as_ref()
            .map(|t| t.snapshot_tool)
            .unwrap_or(crate::cluster::tools::SnapshotTool::Etcdutl)
    }

    /// A one-off container of the image running its snapshot tool with `args`.
    pub fn snapshot_tool_container(
        &self,
        name: String,
        args: Vec<String>,
        volumes: Vec<(String, String)>,
    ) -> ContainerSpec {
        crate::cluster::tools::tool_container(
            &self.name,
            &self.flavor,
            name,
            self.snapshot_tool().binary(),
            args,
            volumes,
        )
    }

    /// An image of the upstream layout, run with its defaults, tools not probed.
    pub fn upstream(name: &str) -> ClusterImage {
        ClusterImage {
            name: name.to_string(),
            flavor: Flavor::upstream(),
            tools: None,
            root_password: None,
            tls: false,
        }
    }
}
