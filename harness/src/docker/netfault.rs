//! The network-fault tool: a partition between hosts, or a downed host, on host
//! networking, where members have no Docker network of the run to be cut off. A container
//! of the tool image runs on a host (`--network host`, `NET_ADMIN`), puts iptables rules
//! in place, and takes them out again when it is stopped (`heal`, `host-up`, the run's
//! cleanup and the watchdog stop it before removing it). A split ([`SplitRules`]) drops
//! the peer traffic between that host's address and the other side's, both ways (clients
//! still reach every member); a downed host ([`BlackholeRules`]) drops every packet to or
//! from its members' ports on its address, so that peers and clients time out on it as on
//! a machine that is off, instead of being refused by its live kernel. A member's peer
//! traffic ([`PeerFaultRules`]: blackhole, loss, delay) is degraded from inside its own
//! network namespace (`--network container:<member>`), leaving its client port alone.
//!
//! The image (`etcd-drill/netfault`) is built FROM scratch from this machine's own
//! iptables (the legacy backend's multi-call binary, the libraries `ldd` lists and the
//! xtables extensions) and Debian's static busybox for the shell that waits and cleans up:
//! no registry, and the same kernel interface Docker itself uses here.

use std::path::Path;

use crate::error::{Error, Result};

/// The tool image, built by `etcd-drill image build --netfault` (2: with `tc` and `ip`).
pub const NETFAULT_IMAGE: &str = "etcd-drill/netfault:2";
pub use super::runtime::SPLIT_MARK;
/// What the tool prints once its rules are in place.
pub const RULES_IN_PLACE: &str = "etcd-drill netfault: rules in place";
/// How long a split stays at most when nobody heals it (a harness that died without a
/// watchdog): the tool then takes its rules out by itself.
pub const SPLIT_MAX_SECONDS: u64 = 3600;

/// Where the multi-call binary lives on Debian, and where its extensions are looked up.
const XTABLES_BINARY: &str = "/usr/sbin/xtables-legacy-multi";
/// iproute2's `tc` (netem) and `ip` (to find the peer interface), from the machine.
const IPROUTE_BINARIES: [&str; 2] = ["/usr/sbin/tc", "/usr/sbin/ip"];
const XTABLES_EXTENSIONS: &str = "/usr/lib/x86_64-linux-gnu/xtables";

/// The peer traffic one host drops to split it from the hosts of the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRules {
    /// The peer ports of the members on the host the rules go on.
    pub local_peer_ports: Vec<u16>,
    /// Each host of the other side: its address and its members' peer ports.
    pub remote: Vec<(String, Vec<u16>)>,
    /// The comment every rule carries (`etcd-drill-<run>`), so that they can be found.
    pub tag: String,
}

impl SplitRules {
    /// The iptables arguments (after `iptables -w`) that put the rules in (`-I`) or take
    /// them out (`-D`): every TCP packet between this host and a host of the other side
    /// with a peer port of either at one end, in both directions. Raft's streams run on
    /// connections either side opened, so both ends' ports count; client ports (and the
    /// ephemeral ports clients use) are left alone.
    pub fn iptables_args(&self, insert: bool) -> Vec<Vec<String>> {
        let verb = if insert { "-I" } else { "-D" };
        let mut rules = Vec::new();
        for (address, remote_ports) in &self.remote {
            let mut ports: Vec<u16> = self.local_peer_ports.iter().chain(remote_ports).copied().collect();
            ports.sort_unstable();
            ports.dedup();
            let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
            for (chain, direction) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                rules.push(drop_rule(
                    verb,
                    chain,
                    Some((direction, address)),
                    "--ports",
                    &ports,
                    &[],
                    &self.tag,
                ));
            }
        }
        rules
    }

    /// The tool's shell script for these rules (see [`tool_script`]).
    pub fn script(&self) -> String {
        tool_script(&self.iptables_args(true), &self.iptables_args(false))
    }
}

/// The traffic a downed host drops: everything to or from its members' client and peer
/// ports on its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlackholeRules {
    /// The host's address.
    pub address: String,
    /// Its members' client and peer ports.
    pub ports: Vec<u16>,
    /// The comment every rule carries (`etcd-drill-<run>`).
    pub tag: String,
}

impl BlackholeRules {
    /// The iptables arguments (after `iptables -w`) that put the rules in (`-I`) or take
    /// them out (`-D`): TCP packets coming in to one of the ports on the address, and going
    /// out from one. Traffic to the host's other services (its Docker daemon, ssh) passes.
    pub fn iptables_args(&self, insert: bool) -> Vec<Vec<String>> {
        let verb = if insert { "-I" } else { "-D" };
        let mut ports = self.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        [("INPUT", "-d", "--dports"), ("OUTPUT", "-s", "--sports")]
            .iter()
            .map(|(chain, direction, match_ports)| {
                drop_rule(
                    verb,
                    chain,
                    Some((direction, &self.address)),
                    match_ports,
                    &ports,
                    &[],
                    &self.tag,
                )
            })
            .collect()
    }

    /// The tool's shell script for these rules (see [`tool_script`]).
    pub fn script(&self) -> String {
        tool_script(&self.iptables_args(true), &self.iptables_args(false))
    }
}

/// What happens to one member's peer traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PeerTraffic {
    /// Every packet to or from the peer port dropped: connections hang.
    Blackhole,
    /// This share of the packets (percent) dropped at random, both ways.
    Loss { percent: u8 },
    /// Every packet leaving the peer interface held this long (`tc netem`).
    Delay { ms: u32 },
}

/// A member's peer traffic degraded from inside its network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFaultRules {
    pub traffic: PeerTraffic,
    /// The member's peer port: traffic with it at either end is the raft traffic (the
    /// member's own listener and its connections to the others' peer ports).
    pub peer_port: u16,
    /// The member's address on the peer network, which names the interface to delay.
    pub peer_ip: String,
    /// The comment every rule carries (`etcd-drill-<run>`).
    pub tag: String,
}

impl PeerFaultRules {
    /// The iptables arguments (after `iptables -w`) for a blackhole or a loss: TCP with the
    /// peer port at either end, dropped (at random for a loss), in and out. None for a
    /// delay, which is `tc`'s.
    pub fn iptables_args(&self, insert: bool) -> Vec<Vec<String>> {
        let verb = if insert { "-I" } else { "-D" };
        let probability = match self.traffic {
            PeerTraffic::Blackhole => None,
            PeerTraffic::Loss { percent } => Some(format!("{:.2}", f64::from(percent.min(100)) / 100.0)),
            PeerTraffic::Delay { .. } => return Vec::new(),
        };
        let random: Vec<String> = match &probability {
            Some(p) => ["-m", "statistic", "--mode", "random", "--probability", p]
                .map(String::from)
                .to_vec(),
            None => Vec::new(),
        };
        let port = self.peer_port.to_string();
        ["INPUT", "OUTPUT"]
            .iter()
            .map(|chain| drop_rule(verb, chain, None, "--ports", &port, &random, &self.tag))
            .collect()
    }

    /// The tool's script: the iptables rules of a blackhole or loss ([`tool_script`]), or
    /// for a delay a `netem` qdisc on the interface that holds the peer address, taken
    /// out again when the tool is stopped. A kernel without `sch_netem` refuses the qdisc
    /// ("Specified qdisc kind is unknown"): the tool then ends with exit code 1 and says so.
    pub fn script(&self) -> String {
        let PeerTraffic::Delay { ms } = self.traffic else {
            return tool_script(&self.iptables_args(true), &self.iptables_args(false));
        };
        let ip = self.peer_ip.replace('.', "\\.");
        format!(
            "dev=$(ip -o -4 addr show | awk '$4 ~ /^{ip}\\// {{print $2}}')\n\
             [ -n \"$dev\" ] || {{ echo 'no interface holds {peer}' >&2; exit 1; }}\n\
             remove() {{ tc qdisc del dev \"$dev\" root 2>/dev/null; }}\n\
             trap 'remove; exit 0' TERM INT\n\
             tc qdisc add dev \"$dev\" root netem delay {ms}ms || {{ echo 'tc netem refused: this kernel may lack sch_netem (CONFIG_NET_SCH_NETEM)' >&2; exit 1; }}\n\
             echo '{RULES_IN_PLACE}'\n\
             sleep {SPLIT_MAX_SECONDS} & wait $!\n\
             remove\n",
            peer = self.peer_ip
        )
    }
}

/// One iptables rule (the arguments after `iptables -w`): TCP packets in `chain` matched
/// by an address (`-s`/`-d` and the address) when given, by `ports_flag ports`, and by
/// `extra`, carrying `tag` as their comment, dropped.
fn drop_rule(
    verb: &str,
    chain: &str,
    address: Option<(&str, &str)>,
    ports_flag: &str,
    ports: &str,
    extra: &[String],
    tag: &str,
) -> Vec<String> {
    let mut rule: Vec<String> = vec![verb.into(), chain.into()];
    if let Some((direction, address)) = address {
        rule.extend([direction.to_string(), address.to_string()]);
    }
    rule.extend(["-p", "tcp", "-m", "multiport", ports_flag, ports].map(String::from));
    rule.extend(extra.iter().cloned());
    rule.extend(["-m", "comment", "--comment", tag, "-j", "DROP"].map(String::from));
    rule
}

/// The tool's shell script: put the rules in (`insert`), say so, wait to be stopped (or
/// for [`SPLIT_MAX_SECONDS`]), take them out (`remove`); a rule that cannot be put in takes
/// out those that were and ends the tool with exit code 1.
pub fn tool_script(insert: &[Vec<String>], remove: &[Vec<String>]) -> String {
    let lines = |rules: &[Vec<String>]| {
        rules
            .iter()
            .map(|args| format!("iptables -w {}", args.join(" ")))
            .collect::<Vec<_>>()
    };
    let remove = lines(remove)
        .iter()
        .map(|l| format!("{l} 2>/dev/null"))
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "remove() {{ {remove}; }}\n\
         trap 'remove; exit 0' TERM INT\n\
         {} || {{ remove; exit 1; }}\n\
         echo '{RULES_IN_PLACE}'\n\
         sleep {SPLIT_MAX_SECONDS} & wait $!\n\
         remove\n",
        lines(insert).join(" && ")
    )
}

/// Builds the tool image ([`NETFAULT_IMAGE`]) from this machine's iptables and Debian's
/// static busybox.
pub async fn build_image(docker: &crate::docker::runtime::DockerRuntime) -> Result<String> {
    let busybox = super::debian::static_busybox(&super::image::cache_dir().join("debs"))?;
    let context = build_context(&busybox)?;
    super::image::build_tagged(docker, context, NETFAULT_IMAGE).await?;
    Ok(NETFAULT_IMAGE.to_string())
}

/// The tool image's build context: busybox (sh, sleep), the multi-call iptables binary of
/// this machine under the name `iptables`, its libraries and extensions, and /run for its
/// lock file.
pub fn build_context(busybox: &[u8]) -> Result<Vec<u8>> {
    let missing = |what: &str| {
        Error::ImageBuild {
        message: format!(
            "{what} is missing on this machine; the netfault image is built from the machine's own iptables and iproute2 (Debian's `iptables` and `iproute2` packages)"
        ),
    }
    };
    if !Path::new(XTABLES_BINARY).is_file() {
        return Err(missing(XTABLES_BINARY));
    }
    let mut files: Vec<(String, Vec<u8>, u32)> = Vec::new();
    let mut read = |path: &str, mode: u32| -> Result<()> {
        if files.iter().any(|(p, _, _)| p == path) {
            return Ok(());
        }
        let bytes = std::fs::read(path).map_err(Error::io(path))?;
        files.push((path.to_string(), bytes, mode));
        Ok(())
    };
    read(XTABLES_BINARY, 0o755)?;
    for binary in IPROUTE_BINARIES {
        if !Path::new(binary).is_file() {
            return Err(missing(binary));
        }
        read(binary, 0o755)?;
    }
    let extensions: Vec<String> = std::fs::read_dir(XTABLES_EXTENSIONS)
        .map_err(|_| missing(XTABLES_EXTENSIONS))?
        .flatten()
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".so"))
        .collect();
    let mut loaded = vec![XTABLES_BINARY.to_string()];
    loaded.extend(IPROUTE_BINARIES.iter().map(|b| b.to_string()));
    loaded.extend(extensions.iter().cloned());
    for object in &loaded {
        let ldd = std::process::Command::new("ldd")
            .arg(object)
            .output()
            .map_err(Error::io("ldd"))?;
        for library in super::debian::ldd_paths(&String::from_utf8_lossy(&ldd.stdout)) {
            // The libraries under their own names and, for the loader's sake, as resolved.
            read(&library, 0o755)?;
            let resolved = std::fs::canonicalize(&library).map_err(Error::io(&library))?;
            read(&resolved.to_string_lossy(), 0o755)?;
        }
    }
    for extension in &extensions {
        read(extension, 0o644)?;
    }
    let dockerfile = concat!(
        "FROM scratch\n",
        "COPY rootfs/ /\n",
        "ENV PATH=/usr/sbin:/bin\n",
        "LABEL io.etcd-drill.image=netfault\n",
        "ENTRYPOINT [\"/bin/sh\", \"-c\"]\n"
    );
    let mut tar = tar::Builder::new(Vec::new());
    let io = |e: std::io::Error| Error::io("<netfault build context>")(e);
    super::image::add_entry(
        &mut tar,
        "Dockerfile",
        dockerfile.as_bytes(),
        0o644,
        tar::EntryType::Regular,
    )
    .map_err(io)?;
    super::image::add_entry(&mut tar, "rootfs/bin/busybox", busybox, 0o755, tar::EntryType::Regular).map_err(io)?;
    for (link, target) in [
        ("rootfs/bin/sh", "busybox"),
        ("rootfs/bin/sleep", "busybox"),
        ("rootfs/bin/awk", "busybox"),
        ("rootfs/usr/sbin/iptables", "xtables-legacy-multi"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        tar.append_link(&mut header, link, target).map_err(io)?;
    }
    super::image::add_entry(&mut tar, "rootfs/run/", &[], 0o755, tar::EntryType::Directory).map_err(io)?;
    for (path, bytes, mode) in &files {
        super::image::add_entry(
            &mut tar,
            &format!("rootfs{path}"),
            bytes,
            *mode,
            tar::EntryType::Regular,
        )
        .map_err(io)?;
    }
    tar.into_inner().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> SplitRules {
        SplitRules {
            local_peer_ports: vec![2380, 3380, 4380],
            remote: vec![("10.231.0.1".into(), vec![2380, 3380, 2480])],
            tag: "etcd-drill-ab12cd34".into(),
        }
    }

    #[test]
    fn the_rules_drop_peer_traffic_on_either_end_and_leave_clients_alone() {
        let insert = rules().iptables_args(true);
        let lines: Vec<String> = insert.iter().map(|a| a.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "-I INPUT -s 10.231.0.1 -p tcp -m multiport --ports 2380,2480,3380,4380 -m comment --comment etcd-drill-ab12cd34 -j DROP",
                "-I OUTPUT -d 10.231.0.1 -p tcp -m multiport --ports 2380,2480,3380,4380 -m comment --comment etcd-drill-ab12cd34 -j DROP",
            ]
        );
        assert!(!lines.iter().any(|l| l.contains("2379")));
        let remove = rules().iptables_args(false);
        assert!(remove.iter().all(|a| a[0] == "-D"));
        assert_eq!(
            remove.iter().map(|a| &a[1..]).collect::<Vec<_>>(),
            insert.iter().map(|a| &a[1..]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_script_removes_its_rules_when_stopped_or_when_it_fails() {
        let script = rules().script();
        let trap = script.lines().find(|l| l.starts_with("trap")).unwrap();
        assert_eq!(trap, "trap 'remove; exit 0' TERM INT");
        assert!(script.contains("|| { remove; exit 1; }"), "{script}");
        assert!(script.contains(RULES_IN_PLACE));
        assert!(script.trim_end().ends_with("remove"), "{script}");
        assert_eq!(script.matches("iptables -w -D").count(), 2);
    }

    #[test]
    fn a_downed_host_drops_its_members_ports_on_its_address_and_nothing_else() {
        let rules = BlackholeRules {
            address: "10.231.1.2".into(),
            ports: vec![4379, 2379, 2380, 3379, 3380, 4380],
            tag: "etcd-drill-ab12cd34".into(),
        };
        let lines: Vec<String> = rules.iptables_args(true).iter().map(|a| a.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "-I INPUT -d 10.231.1.2 -p tcp -m multiport --dports 2379,2380,3379,3380,4379,4380 -m comment --comment etcd-drill-ab12cd34 -j DROP",
                "-I OUTPUT -s 10.231.1.2 -p tcp -m multiport --sports 2379,2380,3379,3380,4379,4380 -m comment --comment etcd-drill-ab12cd34 -j DROP",
            ]
        );
        let script = rules.script();
        assert_eq!(script.matches("iptables -w -D").count(), 2, "{script}");
        assert!(script.contains("trap 'remove; exit 0' TERM INT"));
    }

    fn peer(traffic: PeerTraffic) -> PeerFaultRules {
        PeerFaultRules {
            traffic,
            peer_port: 2380,
            peer_ip: "10.213.7.12".into(),
            tag: "etcd-drill-ab12cd34".into(),
        }
    }

    #[test]
    fn a_member_loses_its_peer_traffic_all_or_at_random_and_keeps_its_clients() {
        let lines = |r: &PeerFaultRules| r.iptables_args(true).iter().map(|a| a.join(" ")).collect::<Vec<_>>();
        assert_eq!(
            lines(&peer(PeerTraffic::Blackhole)),
            [
                "-I INPUT -p tcp -m multiport --ports 2380 -m comment --comment etcd-drill-ab12cd34 -j DROP",
                "-I OUTPUT -p tcp -m multiport --ports 2380 -m comment --comment etcd-drill-ab12cd34 -j DROP",
            ]
        );
        let loss = lines(&peer(PeerTraffic::Loss { percent: 30 }));
        assert!(
            loss.iter()
                .all(|l| l.contains("-m statistic --mode random --probability 0.30")),
            "{loss:?}"
        );
        assert!(!loss.iter().any(|l| l.contains("2379")));
        let script = peer(PeerTraffic::Loss { percent: 30 }).script();
        assert_eq!(script.matches("iptables -w -D").count(), 2, "{script}");
    }

    #[test]
    fn a_delay_is_a_netem_qdisc_on_the_peer_interface_taken_out_when_stopped() {
        let rules = peer(PeerTraffic::Delay { ms: 200 });
        assert!(rules.iptables_args(true).is_empty());
        let script = rules.script();
        assert!(
            script.contains("awk '$4 ~ /^10\\.213\\.7\\.12\\// {print $2}'"),
            "{script}"
        );
        assert!(
            script.contains("tc qdisc add dev \"$dev\" root netem delay 200ms"),
            "{script}"
        );
        assert!(script.contains("trap 'remove; exit 0' TERM INT"));
        assert!(script.contains("sch_netem"));
        assert!(script.trim_end().ends_with("remove"));
    }
}
