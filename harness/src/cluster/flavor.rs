//! How to run an etcd image: where its binaries live, where the data volume is mounted and
//! the data dir inside it, the uid the server runs as, whether the image's own entrypoint
//! starts etcd, and the environment it needs. Two layouts: `upstream` (the official images
//! and the local one) and `bitnami` (`bitnamilegacy/etcd`), detected from the image's
//! configuration or chosen with `--flavor`.

use serde::Serialize;

use crate::docker::runtime::{ContainerSpec, DockerRuntime, NetworkAttachment, MEMBER_LABEL, ROLE_LABEL};
use crate::error::{Error, Result};
use crate::topology::{ClusterState, MemberSpec, ServerSettings, CLIENT_PORT, PEER_PORT};

/// The layouts etcd-drill knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlavorKind {
    Upstream,
    Bitnami,
}

impl FlavorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlavorKind::Upstream => "upstream",
            FlavorKind::Bitnami => "bitnami",
        }
    }

    /// `--flavor upstream|bitnami`.
    pub fn parse(word: &str) -> Result<FlavorKind> {
        match word {
            "upstream" => Ok(FlavorKind::Upstream),
            "bitnami" => Ok(FlavorKind::Bitnami),
            other => Err(Error::InvalidArgument {
                argument: "--flavor".into(),
                message: format!("unknown flavor `{other}`; use upstream or bitnami"),
            }),
        }
    }
}

/// How to run one image's etcd and its tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flavor {
    pub kind: FlavorKind,
    /// The directory holding etcd, etcdctl and (from 3.5) etcdutl.
    pub bin_dir: &'static str,
    /// Where a member's data volume is mounted.
    pub data_mount: &'static str,
    /// The data dir, inside the volume: a sub-directory, so that restore tools (which
    /// refuse an existing data dir) can create it.
    pub data_dir: &'static str,
    /// Whether `ETCD_DATA_DIR` is honoured (Bitnami's scripts overwrite it).
    pub data_dir_movable: bool,
    /// `uid[:gid]` the server and the restore tools run as; None: the image's default.
    pub user: Option<String>,
    /// The image's entrypoint starts etcd (Bitnami's scripts); otherwise the member's
    /// command is the etcd binary itself.
    pub image_entrypoint_starts_etcd: bool,
}

/// Where an image that restores a snapshot at start-up looks for it (Bitnami's default).
pub const INIT_SNAPSHOTS_DIR: &str = "/init-snapshot";

/// The uid Bitnami images run as.
pub const BITNAMI_UID: &str = "1001";

impl Flavor {
    /// The official images (`gcr.io/etcd-development/etcd`, `quay.io/coreos/etcd`) and the
    /// local one: binaries in /usr/local/bin, no entrypoint, root by default.
    pub fn upstream() -> Flavor {
        Flavor {
            kind: FlavorKind::Upstream,
            bin_dir: "/usr/local/bin",
            data_mount: crate::docker::image::DATA_MOUNT,
            data_dir: "/var/lib/etcd/data",
            data_dir_movable: true,
            user: None,
            image_entrypoint_starts_etcd: false,
        }
    }

    /// `bitnamilegacy/etcd`: binaries in /opt/bitnami/etcd/bin, the data dir fixed at
    /// /bitnami/etcd/data under a volume at /bitnami/etcd, uid 1001, started by the image's
    /// entrypoint and run scripts.
    pub fn bitnami() -> Flavor {
        Flavor {
            kind: FlavorKind::Bitnami,
            bin_dir: "/opt/bitnami/etcd/bin",
            data_mount: "/bitnami/etcd",
            data_dir: "/bitnami/etcd/data",
            data_dir_movable: false,
            user: Some(BITNAMI_UID.into()),
            image_entrypoint_starts_etcd: true,
        }
    }

    pub fn of_kind(kind: FlavorKind) -> Flavor {
        match kind {
            FlavorKind::Upstream => Flavor::upstream(),
            FlavorKind::Bitnami => Flavor::bitnami(),
        }
    }

    /// The same layout, run as `user` (`uid[:gid]`).
    pub fn with_user(mut self, user: Option<String>) -> Flavor {
        if user.is_some() {
            self.user = user;
        }
        self
    }

    /// The path of one of the image's binaries (`etcd`, `etcdctl`, `etcdutl`).
    pub fn bin(&self, tool: &str) -> String {
        format!("{}/{tool}", self.bin_dir)
    }

    /// The member container's command: the etcd binary, or nothing when the image's own
    /// entrypoint and command start etcd.
    pub fn server_command(&self) -> Vec<String> {
        if self.image_entrypoint_starts_etcd {
            Vec::new()
        } else {
            vec![self.bin("etcd")]
        }
    }

    /// Environment the image needs beyond etcd's own `ETCD_*` settings. Bitnami's scripts
    /// refuse to start without a root password unless told that none is wanted, and they
    /// turn on authentication themselves when given one (`ETCD_ROOT_PASSWORD`).
    /// `ETCDCTL_ENDPOINTS` is never set: with it the scripts would do their own member
    /// remove/add, which the harness does itself.
    pub fn server_env(&self, root_password: Option<&str>) -> Vec<(String, String)> {
        match (self.kind, root_password) {
            (FlavorKind::Upstream, _) => Vec::new(),
            (FlavorKind::Bitnami, None) => vec![("ALLOW_NONE_AUTHENTICATION".into(), "yes".into())],
            (FlavorKind::Bitnami, Some(password)) => vec![("ETCD_ROOT_PASSWORD".into(), password.into())],
        }
    }

    /// The environment that makes the image's own start-up restore `file` (a snapshot in
    /// [`INIT_SNAPSHOTS_DIR`]) into an empty data dir: Bitnami's `ETCD_START_FROM_SNAPSHOT`.
    /// None for an image whose start-up cannot restore (upstream: etcd is the command).
    pub fn start_from_snapshot_env(&self, file: &str) -> Option<Vec<(String, String)>> {
        match self.kind {
            FlavorKind::Upstream => None,
            FlavorKind::Bitnami => Some(vec![
                ("ETCD_START_FROM_SNAPSHOT".into(), "yes".into()),
                ("ETCD_INIT_SNAPSHOTS_DIR".into(), INIT_SNAPSHOTS_DIR.into()),
                ("ETCD_INIT_SNAPSHOT_FILENAME".into(), file.into()),
            ]),
        }
    }

    /// Entrypoint and command of a one-off tool container running `tool args...`. An image
    /// whose entrypoint is a script gets the tool as its entrypoint instead.
    pub fn tool_invocation(&self, tool: &str, args: &[String]) -> (Option<Vec<String>>, Vec<String>) {
        if self.image_entrypoint_starts_etcd {
            (Some(vec![self.bin(tool)]), args.to_vec())
        } else {
            let mut cmd = vec![self.bin(tool)];
            cmd.extend(args.iter().cloned());
            (None, cmd)
        }
    }
}

/// Whether a container whose scripts start etcd has finished with them: it runs one
/// process, and that process is etcd. While the scripts run, the etcd that answers may be a
/// temporary one they stop again; once they `exec` etcd for good, nothing else is left.
pub fn setup_finished(commands: &[String]) -> std::result::Result<(), String> {
    let is_etcd = |command: &String| {
        let program = command.split_whitespace().next().unwrap_or_default();
        program.rsplit('/').next() == Some("etcd")
    };
    match commands {
        [only] if is_etcd(only) => Ok(()),
        [] => Err("no process runs".into()),
        _ => Err(format!("start-up still running: {}", commands.join("; "))),
    }
}

/// Everything about one member's container that does not depend on the image's layout.
#[derive(Debug, Clone)]
pub struct MemberLaunch<'a> {
    pub image: &'a str,
    pub container: String,
    pub member: &'a MemberSpec,
    /// Its fixed address on the peer network.
    pub ip: &'a str,
    /// Its client port, published on 127.0.0.1.
    pub host_port: u16,
    pub volume: String,
    pub network: &'a str,
    pub peer_network: &'a str,
    /// `name:ip` of every member, for /etc/hosts.
    pub hosts: Vec<String>,
    pub initial_cluster: &'a str,
    pub token: &'a str,
    pub state: ClusterState,
    /// The root password, for an image that turns on authentication itself (Bitnami).
    pub root_password: Option<&'a str>,
    /// TLS on client and peer URLs (the certificates are in [`crate::etcd::tls::CERT_DIR`]).
    pub tls: bool,
    /// Server settings the scenario changes from etcd's defaults.
    pub settings: &'a ServerSettings,
    /// On its host's network, listening on the host's address and its own ports.
    pub host_network: bool,
}

impl Flavor {
    /// The member's container, configured through etcd's `ETCD_*` environment (which both
    /// layouts pass straight to etcd) plus what the layout needs.
    pub fn member_container(&self, launch: &MemberLaunch) -> ContainerSpec {
        let name = &launch.member.name;
        let scheme = if launch.tls { "https" } else { "http" };
        let member = launch.member;
        let (listen_client, listen_peer) = match (launch.host_network, &member.address) {
            // Its host's address, and loopback for the scripts and tools on that host.
            (true, Some(address)) => (
                format!("{scheme}://{address}:{0},{scheme}://127.0.0.1:{0}", member.client_port),
                format!("{scheme}://{address}:{}", member.peer_port),
            ),
            _ => (
                format!("{scheme}://0.0.0.0:{CLIENT_PORT}"),
                format!("{scheme}://0.0.0.0:{PEER_PORT}"),
            ),
        };
        let mut env = vec![
            ("ETCD_NAME".to_string(), name.clone()),
            ("ETCD_DATA_DIR".into(), self.data_dir.into()),
            ("ETCD_LISTEN_CLIENT_URLS".into(), listen_client),
            ("ETCD_ADVERTISE_CLIENT_URLS".into(), member.client_url_in(scheme)),
            ("ETCD_LISTEN_PEER_URLS".into(), listen_peer),
            ("ETCD_INITIAL_ADVERTISE_PEER_URLS".into(), member.peer_url_in(scheme)),
            ("ETCD_INITIAL_CLUSTER".into(), launch.initial_cluster.to_string()),
            ("ETCD_INITIAL_CLUSTER_TOKEN".into(), launch.token.to_string()),
            ("ETCD_INITIAL_CLUSTER_STATE".into(), launch.state.as_str().into()),
        ];
        if launch.tls {
            env.extend(crate::etcd::tls::ClusterTls::member_env());
        }
        env.extend(launch.settings.env());
        ContainerSpec {
            name: launch.container.clone(),
            image: launch.image.to_string(),
            hostname: Some(name.clone()),
            user: self.user.clone(),
            entrypoint: None,
            cmd: self.server_command(),
            env: env.into_iter().chain(self.server_env(launch.root_password)).collect(),
            labels: vec![
                (MEMBER_LABEL.into(), name.clone()),
                (ROLE_LABEL.into(), "member".into()),
                ("io.etcd-drill.host".into(), launch.member.host.clone()),
            ],
            volumes: vec![(launch.volume.clone(), self.data_mount.into())],
            ..match launch.host_network {
                true => ContainerSpec {
                    host_network: true,
                    ..ContainerSpec::default()
                },
                false => ContainerSpec {
                    network: Some((launch.network.to_string(), name.clone())),
                    peer_network: Some(NetworkAttachment {
                        network: launch.peer_network.to_string(),
                        alias: name.clone(),
                        ipv4: Some(launch.ip.to_string()),
                    }),
                    extra_hosts: launch.hosts.clone(),
                    publish: Some((CLIENT_PORT, launch.host_port)),
                    ..ContainerSpec::default()
                },
            }
        }
    }
}

/// What an image's configuration says about its layout (from `docker image inspect`).
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// The layout an image's configuration points to: Bitnami's entrypoint, its `BITNAMI_*`
/// variables, /opt/bitnami on its PATH or a Bitnami label; anything else is upstream.
pub fn detect_from_config(config: &ImageConfig) -> FlavorKind {
    let bitnami = config.entrypoint.iter().any(|e| e.starts_with("/opt/bitnami/"))
        || config
            .env
            .iter()
            .any(|e| e.starts_with("BITNAMI_") || (e.starts_with("PATH=") && e.contains("/opt/bitnami/")))
        || config
            .labels
            .iter()
            .any(|(k, v)| k.contains("bitnami") || v.to_ascii_lowercase().contains("bitnami"));
    if bitnami {
        FlavorKind::Bitnami
    } else {
        FlavorKind::Upstream
    }
}

/// Reads `image`'s configuration and tells its layout.
pub async fn detect(docker: &DockerRuntime, image: &str) -> Result<FlavorKind> {
    let inspected = docker
        .client()
        .inspect_image(image)
        .await
        .map_err(Error::docker("inspect image", image))?;
    let config = inspected.config.unwrap_or_default();
    let found = ImageConfig {
        entrypoint: config.entrypoint.unwrap_or_default(),
        env: config.env.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
    };
    Ok(detect_from_config(&found))
}

/// The flavor to run `image` with: `--flavor` if given, else detected; `--user` on top.
pub async fn resolve(
    docker: &DockerRuntime,
    image: &str,
    kind: Option<FlavorKind>,
    user: Option<String>,
) -> Result<Flavor> {
    let kind = match kind {
        Some(k) => k,
        None => detect(docker, image).await?,
    };
    Ok(Flavor::of_kind(kind).with_user(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitnami_is_detected_from_its_entrypoint_env_or_labels() {
        let bitnami = ImageConfig {
            entrypoint: vec!["/opt/bitnami/scripts/etcd/entrypoint.sh".into()],
            ..ImageConfig::default()
        };
        assert_eq!(detect_from_config(&bitnami), FlavorKind::Bitnami);
        let by_env = ImageConfig {
            env: vec!["PATH=/opt/bitnami/etcd/bin:/usr/bin".into()],
            ..ImageConfig::default()
        };
        assert_eq!(detect_from_config(&by_env), FlavorKind::Bitnami);
        let local = ImageConfig {
            labels: vec![("io.etcd-drill.image".into(), "local".into())],
            ..ImageConfig::default()
        };
        assert_eq!(detect_from_config(&local), FlavorKind::Upstream);
        assert_eq!(detect_from_config(&ImageConfig::default()), FlavorKind::Upstream);
    }

    #[test]
    fn setup_is_finished_only_when_etcd_runs_alone() {
        let etcd = "/opt/bitnami/etcd/bin/etcd".to_string();
        assert_eq!(setup_finished(std::slice::from_ref(&etcd)), Ok(()));
        assert_eq!(setup_finished(&["etcd --config-file /x".into()]), Ok(()));
        let script = "/bin/sh /opt/bitnami/scripts/etcd/entrypoint.sh".to_string();
        let seen = setup_finished(&[script.clone(), etcd.clone()]).unwrap_err();
        assert!(
            seen.contains("entrypoint.sh") && seen.contains("still running"),
            "{seen}"
        );
        assert!(setup_finished(&[script]).is_err());
        assert!(setup_finished(&["/usr/bin/etcdctl endpoint health".into()]).is_err());
        assert!(setup_finished(&[]).is_err());
    }

    #[test]
    fn the_scripted_test_image_is_taken_for_the_bitnami_layout() {
        let config = ImageConfig {
            entrypoint: vec![crate::docker::scripted::ENTRYPOINT.into()],
            ..ImageConfig::default()
        };
        assert_eq!(detect_from_config(&config), FlavorKind::Bitnami);
        let bitnami = Flavor::bitnami();
        assert_eq!(bitnami.bin_dir, crate::docker::scripted::BIN_DIR);
        assert_eq!(bitnami.data_dir, crate::docker::scripted::DATA_DIR);
        assert_eq!(
            bitnami.user.as_deref(),
            Some(crate::docker::scripted::UID.to_string().as_str())
        );
    }

    #[test]
    fn flavors_parse_by_name() {
        assert_eq!(FlavorKind::parse("bitnami").unwrap(), FlavorKind::Bitnami);
        let err = FlavorKind::parse("alpine").unwrap_err().to_string();
        assert!(err.contains("--flavor") && err.contains("upstream or bitnami"), "{err}");
    }

    #[test]
    fn tools_of_a_scripted_image_replace_its_entrypoint() {
        let args = vec!["snapshot".to_string(), "status".into()];
        let (entrypoint, cmd) = Flavor::bitnami().tool_invocation("etcdutl", &args);
        assert_eq!(entrypoint, Some(vec!["/opt/bitnami/etcd/bin/etcdutl".to_string()]));
        assert_eq!(cmd, args);
        let (entrypoint, cmd) = Flavor::upstream().tool_invocation("etcdutl", &args);
        assert_eq!(entrypoint, None);
        assert_eq!(cmd, vec!["/usr/local/bin/etcdutl", "snapshot", "status"]);
    }

    fn launch<'a>(member: &'a MemberSpec, root_password: Option<&'a str>) -> MemberLaunch<'a> {
        MemberLaunch {
            image: "bitnamilegacy/etcd:3.5.18",
            container: "etcd-drill-r1-etcd3".into(),
            member,
            ip: "10.213.7.12",
            host_port: 40003,
            volume: "etcd-drill-r1-etcd3-data0".into(),
            network: "etcd-drill-r1",
            peer_network: "etcd-drill-r1-peer",
            hosts: vec!["etcd1:10.213.7.10".into(), "etcd3:10.213.7.12".into()],
            initial_cluster: "etcd1=http://etcd1:2380,etcd3=http://etcd3:2380",
            token: "etcd-drill-r1",
            state: ClusterState::New,
            root_password,
            tls: false,
            settings: &NO_SETTINGS,
            host_network: false,
        }
    }

    #[test]
    fn a_host_networked_member_listens_on_its_host_address_and_ports() {
        let mut member = MemberSpec::new("etcd4", "B");
        member.address = Some("10.231.0.2".into());
        member.client_port = 3379;
        member.peer_port = 3380;
        let spec = Flavor::upstream().member_container(&MemberLaunch {
            host_network: true,
            ..launch(&member, None)
        });
        let env = |k: &str| {
            spec.env
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(
            env("ETCD_LISTEN_CLIENT_URLS"),
            "http://10.231.0.2:3379,http://127.0.0.1:3379"
        );
        assert_eq!(env("ETCD_ADVERTISE_CLIENT_URLS"), "http://10.231.0.2:3379");
        assert_eq!(env("ETCD_LISTEN_PEER_URLS"), "http://10.231.0.2:3380");
        assert_eq!(env("ETCD_INITIAL_ADVERTISE_PEER_URLS"), "http://10.231.0.2:3380");
        assert!(spec.host_network);
        assert!(spec.network.is_none() && spec.peer_network.is_none() && spec.publish.is_none());
        assert!(spec.extra_hosts.is_empty());
        let line = crate::docker::shell::docker_run_line(&spec, true, &[]);
        assert!(line.contains("--network host"), "{line}");
        assert!(!line.contains(" -p "), "{line}");
    }

    static NO_SETTINGS: ServerSettings = ServerSettings {
        snapshot_count: None,
        quota_backend_bytes: None,
    };

    #[test]
    fn scenario_settings_reach_the_server_environment() {
        let member = MemberSpec::new("etcd3", "B");
        let settings = ServerSettings {
            snapshot_count: Some(300),
            quota_backend_bytes: None,
        };
        let spec = Flavor::upstream().member_container(&MemberLaunch {
            settings: &settings,
            ..launch(&member, None)
        });
        assert!(spec
            .env
            .contains(&("ETCD_SNAPSHOT_COUNT".to_string(), "300".to_string())));
        let spec = Flavor::bitnami().member_container(&launch(&member, None));
        assert!(!spec.env.iter().any(|(k, _)| k == "ETCD_SNAPSHOT_COUNT"));
    }

    fn env_of(spec: &ContainerSpec) -> std::collections::BTreeMap<String, String> {
        spec.env.iter().cloned().collect()
    }

    /// The Bitnami image cannot be pulled here: its container spec is pinned instead.
    #[test]
    fn bitnami_member_container_is_pinned() {
        let member = MemberSpec::new("etcd3", "B");
        let spec = Flavor::bitnami().member_container(&launch(&member, None));
        assert_eq!(spec.user.as_deref(), Some("1001"));
        assert_eq!(spec.entrypoint, None, "the image's entrypoint.sh must run");
        assert!(spec.cmd.is_empty(), "the image's run.sh must run: {:?}", spec.cmd);
        assert_eq!(
            spec.volumes,
            vec![("etcd-drill-r1-etcd3-data0".to_string(), "/bitnami/etcd".to_string())]
        );
        let env = env_of(&spec);
        let expected = [
            ("ETCD_NAME", "etcd3"),
            ("ETCD_DATA_DIR", "/bitnami/etcd/data"),
            ("ETCD_LISTEN_CLIENT_URLS", "http://0.0.0.0:2379"),
            ("ETCD_ADVERTISE_CLIENT_URLS", "http://etcd3:2379"),
            ("ETCD_LISTEN_PEER_URLS", "http://0.0.0.0:2380"),
            ("ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://etcd3:2380"),
            (
                "ETCD_INITIAL_CLUSTER",
                "etcd1=http://etcd1:2380,etcd3=http://etcd3:2380",
            ),
            ("ETCD_INITIAL_CLUSTER_TOKEN", "etcd-drill-r1"),
            ("ETCD_INITIAL_CLUSTER_STATE", "new"),
            ("ALLOW_NONE_AUTHENTICATION", "yes"),
        ];
        assert_eq!(
            env,
            expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        );
        assert!(!env.contains_key("ETCDCTL_ENDPOINTS"));
        assert_eq!(spec.publish, Some((2379, 40003)));
        assert_eq!(spec.extra_hosts.len(), 2);
        let line = crate::docker::shell::docker_run_line(&spec, true, &[]);
        assert!(
            line.contains("--user 1001") && line.contains("-v etcd-drill-r1-etcd3-data0:/bitnami/etcd"),
            "{line}"
        );
        assert!(line.ends_with("bitnamilegacy/etcd:3.5.18 && docker network connect --ip 10.213.7.12 --alias etcd3 etcd-drill-r1-peer etcd-drill-r1-etcd3 && docker start etcd-drill-r1-etcd3"), "{line}");
    }

    #[test]
    fn bitnami_turns_on_auth_with_its_root_password_variable() {
        let member = MemberSpec::new("etcd1", "A");
        let spec = Flavor::bitnami().member_container(&launch(&member, Some("s3cret")));
        let env = env_of(&spec);
        assert_eq!(env.get("ETCD_ROOT_PASSWORD").map(String::as_str), Some("s3cret"));
        assert!(!env.contains_key("ALLOW_NONE_AUTHENTICATION"));
        let recorded = crate::docker::shell::mask_secrets(&crate::docker::shell::docker_run_line(&spec, true, &[]));
        assert!(
            !recorded.contains("s3cret") && recorded.contains("ETCD_ROOT_PASSWORD=***"),
            "{recorded}"
        );
    }

    #[test]
    fn upstream_member_runs_the_etcd_binary() {
        let member = MemberSpec::new("etcd3", "B");
        let spec = Flavor::upstream().member_container(&launch(&member, Some("ignored")));
        assert_eq!(spec.cmd, vec!["/usr/local/bin/etcd"]);
        assert_eq!(spec.user, None);
        assert_eq!(spec.volumes[0].1, "/var/lib/etcd");
        let env = env_of(&spec);
        assert_eq!(env.get("ETCD_DATA_DIR").map(String::as_str), Some("/var/lib/etcd/data"));
        assert!(!env.contains_key("ETCD_ROOT_PASSWORD") && !env.contains_key("ALLOW_NONE_AUTHENTICATION"));
    }

    #[test]
    fn a_user_overrides_the_image_default() {
        let f = Flavor::upstream().with_user(Some("1001".into()));
        assert_eq!(f.user.as_deref(), Some("1001"));
        assert_eq!(Flavor::bitnami().with_user(None).user.as_deref(), Some("1001"));
    }
}
