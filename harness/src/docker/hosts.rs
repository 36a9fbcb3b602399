//! The Docker daemons of one run: a runtime per host the topology names (a host without a
//! daemon of its own shares the harness's), and the harness's own daemon as home for the
//! run-wide objects (tool containers that only read files, the kept-run marker).

use std::collections::BTreeMap;

use crate::docker::runtime::{DockerRuntime, RunObjects};
use crate::error::Result;
use crate::topology::{DockerEndpoint, Topology};

#[derive(Clone)]
pub struct HostRuntimes {
    home: DockerRuntime,
    /// Host name to its runtime, for hosts with a daemon of their own.
    by_host: BTreeMap<String, DockerRuntime>,
    /// Every distinct daemon of the run: ("" for home, else the endpoint URL).
    daemons: Vec<(String, DockerRuntime)>,
}

impl HostRuntimes {
    /// Every member on `home`.
    pub fn single(home: DockerRuntime) -> Self {
        HostRuntimes {
            daemons: vec![(String::new(), home.clone())],
            home,
            by_host: BTreeMap::new(),
        }
    }

    /// Connects to the daemon of every host of `topology` that names one, once per endpoint.
    pub async fn connect(home: DockerRuntime, topology: &Topology) -> Result<Self> {
        let mut hosts = HostRuntimes::single(home);
        for endpoint in remote_endpoints(topology) {
            let runtime = DockerRuntime::connect_to(Some(&endpoint)).await?;
            hosts.daemons.push((endpoint.url, runtime));
        }
        for host in &topology.hosts {
            let Some(endpoint) = &host.docker else { continue };
            if let Some((_, runtime)) = hosts.daemons.iter().find(|(url, _)| url == &endpoint.url) {
                hosts.by_host.insert(host.name.clone(), runtime.clone());
            }
        }
        Ok(hosts)
    }

    /// The harness's own daemon.
    pub fn home(&self) -> &DockerRuntime {
        &self.home
    }

    /// The daemon `host`'s members run on.
    pub fn of(&self, host: &str) -> &DockerRuntime {
        self.by_host.get(host).unwrap_or(&self.home)
    }

    /// Every distinct daemon of the run, home first, with its endpoint ("" for home).
    pub fn daemons(&self) -> &[(String, DockerRuntime)] {
        &self.daemons
    }

    /// Makes sure `image` is on every daemon of the run.
    pub async fn ensure_image(&self, image: &str, local_image: &str) -> Result<()> {
        for (_, runtime) in &self.daemons {
            runtime.ensure_image(image, local_image).await?;
        }
        Ok(())
    }

    /// Copies `image` from the harness's own daemon to every other daemon of the run that
    /// lacks it, as `docker save | DOCKER_HOST=... docker load` would; returns the
    /// endpoints it went to. For hosts that cannot pull it (`run --copy-images`).
    pub async fn copy_image_where_missing(&self, image: &str) -> Result<Vec<String>> {
        let mut archive: Option<Vec<u8>> = None;
        let mut copied = Vec::new();
        for (endpoint, runtime) in self.daemons.iter().skip(1) {
            if runtime.image_exists(image).await? {
                continue;
            }
            if archive.is_none() {
                if !self.home.image_exists(image).await? {
                    return Err(crate::error::Error::ImageUnusable {
                        image: image.to_string(),
                        message: format!(
                            "it is missing on {endpoint} and on the harness's own daemon too, so it cannot be copied; build or pull it here first"
                        ),
                    });
                }
                archive = Some(self.home.save_image(image).await?);
            }
            runtime.load_image(image, archive.clone().unwrap_or_default()).await?;
            copied.push(endpoint.clone());
        }
        Ok(copied)
    }

    /// Removes the run's objects from every daemon; what was removed, all daemons together.
    pub async fn remove_run(&self, run_id: Option<&str>) -> Result<RunObjects> {
        let mut removed = RunObjects::default();
        for (_, runtime) in &self.daemons {
            removed.absorb(&runtime.remove_run(run_id).await?);
        }
        Ok(removed)
    }
}

/// The daemons of `topology` other than the harness's own, each once: what a run guard or
/// watchdog must reach besides it.
pub fn remote_endpoints(topology: &Topology) -> Vec<DockerEndpoint> {
    let mut out: Vec<DockerEndpoint> = Vec::new();
    for endpoint in topology.hosts.iter().filter_map(|h| h.docker.clone()) {
        if !out.iter().any(|e| e.url == endpoint.url) {
            out.push(endpoint);
        }
    }
    out
}

/// The harness's own daemon (`None`) followed by `daemons`: every daemon a run's cleanup
/// must reach.
pub fn with_home(daemons: &[DockerEndpoint]) -> impl Iterator<Item = Option<&DockerEndpoint>> {
    std::iter::once(None).chain(daemons.iter().map(Some))
}
