//! Drills on two Docker daemons in the operators' layout: server A is this machine's
//! daemon, server B the two-host lab's (`scripts/lab`: a network namespace with its own
//! address and dockerd), every member on host networking with the ports of the reference
//! deployment. Each test runs the CLI with the lab's hosts file (`run --hosts`), checks the
//! report (RTO, lost writes, the members' hosts and addresses), that runbook.sh names host
//! B's daemon on B's commands, and that neither daemon keeps an object of the run.

use std::path::Path;

use etcd_drill::docker::image::DEFAULT_IMAGE;
use etcd_drill::docker::netfault::NETFAULT_IMAGE;
use etcd_drill::report::DrillReport;
use libtest_mimic::Failed;

use super::lab::Lab;
use super::{assert_no_objects, binary, common, common_assertions, ensure, TestResult};

/// Server B's address in these tests, apart from the daemon-restart test's lab.
const LAB_ADDRESS: &str = "10.231.1.2";
/// Server A's: this machine's side of the lab's veth pair.
const SERVER_A: &str = "10.231.1.1";

/// How server B gets its images.
#[derive(Clone, Copy, PartialEq)]
enum Images {
    /// Loaded by `scripts/lab up --image`.
    LoadedByTheLab,
    /// Copied by the run itself (`run --copy-images`) onto a lab that has none.
    CopiedByTheRun,
}

/// Runs `scenario` with `--hosts` pointing at a fresh lab, checks what every two-host drill
/// must show, and returns the report and its folder for the test's own checks.
fn two_host_drill(scenario: &str, seed: u64, images: Images) -> Result<(DrillReport, tempfile::TempDir), Failed> {
    let loaded: &[&str] = match images {
        Images::LoadedByTheLab => &[DEFAULT_IMAGE, NETFAULT_IMAGE],
        Images::CopiedByTheRun => &[],
    };
    let lab = Lab::up_at("drhosts", Some(LAB_ADDRESS), loaded)?;
    let out = tempfile::tempdir()?;
    let mut command = binary();
    command.args([
        "run",
        scenario,
        "--hosts",
        &lab.hosts_file,
        "--seed",
        &seed.to_string(),
        "--out",
    ]);
    command.arg(out.path());
    if images == Images::CopiedByTheRun {
        command.arg("--copy-images");
    }
    let output = command.stdout(std::process::Stdio::null()).output()?;
    let status = output.status;
    if images == Images::CopiedByTheRun {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for image in [DEFAULT_IMAGE, NETFAULT_IMAGE] {
            let line = format!("copied {image} to the daemon at unix:///run/etcd-drill-lab/drhosts/docker.sock");
            ensure(stderr.contains(&line), || format!("no `{line}` in:\n{stderr}"))?;
        }
    }
    let report_path = out.path().join("report.json");
    let report: DrillReport = serde_json::from_str(&std::fs::read_to_string(&report_path)?)?;
    common::validate_report_json(&report_path)?;
    ensure(status.success(), || {
        format!(
            "etcd-drill run {scenario} --hosts exited with {status}: {:?}",
            report.error
        )
    })?;
    common_assertions(&report, out.path())?;
    members_on_their_hosts(&report)?;
    runbook_names_host_b(&report, out.path())?;
    // Nothing of the run on either daemon.
    assert_no_objects(Some(&report.run_id))?;
    let left = lab.labelled()?;
    ensure(left.is_empty(), || {
        format!("objects left on server B's daemon: {left:?}")
    })?;
    // No rule of a split between the hosts is left on either side.
    for netns in [None, Some(lab.name.as_str())] {
        let rules = iptables_rules(netns)?;
        let ours: Vec<&str> = rules.lines().filter(|l| l.contains("etcd-drill-")).collect();
        ensure(ours.is_empty(), || format!("iptables rules left ({netns:?}): {ours:?}"))?;
    }
    Ok((report, out))
}

/// The legacy iptables rules of the machine (`None`) or of a lab's network namespace.
fn iptables_rules(netns: Option<&str>) -> Result<String, Failed> {
    let mut command = match netns {
        Some(name) => {
            let mut c = std::process::Command::new("nsenter");
            c.arg(format!("--net=/var/run/netns/{name}")).arg("iptables-legacy");
            c
        }
        None => std::process::Command::new("iptables-legacy"),
    };
    let out = command.arg("-S").output()?;
    ensure(out.status.success(), || {
        format!("iptables-legacy -S failed: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The report's topology: etcd1 and etcd2 on A, etcd3 to etcd5 on B, on host networking
/// with the servers' addresses and the ports 2379/2380, 3379/3380, 4379/4380.
fn members_on_their_hosts(report: &DrillReport) -> TestResult {
    let expected = [
        ("etcd1", "A", SERVER_A, 2379, 2380),
        ("etcd2", "A", SERVER_A, 3379, 3380),
        ("etcd3", "B", LAB_ADDRESS, 2379, 2380),
        ("etcd4", "B", LAB_ADDRESS, 3379, 3380),
        ("etcd5", "B", LAB_ADDRESS, 4379, 4380),
    ];
    for (m, (name, host, address, client, peer)) in report.topology.members.iter().zip(expected) {
        let seen = (
            m.name.as_str(),
            m.host.as_str(),
            m.address.as_deref().unwrap_or(""),
            m.client_port,
            m.peer_port,
        );
        ensure(seen == (name, host, address, client, peer), || {
            format!(
                "member {seen:?} in the report, want {:?}",
                (name, host, address, client, peer)
            )
        })?;
    }
    let b = report.topology.host("B").ok_or("no host B in the report")?;
    ensure(b.docker.is_some() && b.network.as_str() == "host", || {
        format!("host B in the report: {b:?}")
    })
}

/// Every command of runbook.sh, and of the report's fault steps, that acts on a member of
/// host B (or on its split or outage) names B's daemon; there is at least one.
fn runbook_names_host_b(report: &DrillReport, out: &Path) -> TestResult {
    let runbook = std::fs::read_to_string(out.join("runbook.sh"))?;
    let fault_steps = report
        .commands
        .iter()
        .filter(|c| c.phase == "fault")
        .map(|c| format!("{}\n{}\n", c.step, c.command));
    let mut on_b = 0;
    let daemon = "DOCKER_HOST=unix:///run/etcd-drill-lab/drhosts/docker.sock docker ";
    for step in runbook.split("\n# Step ").skip(1).map(String::from).chain(fault_steps) {
        // Each docker command of the step: an assignment holds for one command only, so
        // every one acting on B needs B's daemon.
        let body: String = step.lines().skip(1).collect::<Vec<_>>().join(" ");
        for command in body.split(" && ").flat_map(|c| c.split("; ")) {
            let on_b_objects = ["etcd3", "etcd4", "etcd5"]
                .iter()
                .any(|m| command.contains(&format!("-{m} ")) || command.contains(&format!("-{m}-")))
                || command.contains("-netsplit-B");
            let runs_docker = command.trim_start().starts_with("docker ") || command.contains(" docker ");
            if on_b_objects && runs_docker {
                ensure(command.contains(daemon), || {
                    format!("a docker command on host B without its daemon: {command}\nin:\n{step}")
                })?;
                on_b += 1;
            }
        }
    }
    ensure(on_b > 0, || format!("no step acts on host B:\n{runbook}"))
}

/// Server B really dies: its daemon's three members are SIGKILLed and their volumes
/// removed, and its address stops answering on their ports until the replacement is up;
/// the cluster is restored from etcd1's snapshot across both daemons.
pub fn server_b_loss_on_two_hosts() -> TestResult {
    let (report, _out) = two_host_drill("server-b-loss", 91, Images::LoadedByTheLab)?;
    ensure(report.recovery.rto_ms.is_some(), || "no RTO in the report".into())?;
    ensure(report.data.lost_acked_writes <= 200, || {
        format!("{} acknowledged writes lost", report.data.lost_acked_writes)
    })?;
    host_b_went_down_and_came_back(&report)?;
    // Host B's daemon cannot bind a file of this machine: its restores copy the snapshot in.
    for member in ["etcd3", "etcd4", "etcd5"] {
        let label = format!("restore {member}'s data dir");
        let step = report
            .commands
            .iter()
            .find(|c| c.step == label)
            .ok_or_else(|| format!("no step `{label}`"))?;
        ensure(
            step.command.contains("docker cp \"$PWD/snapshot.db\"") && !step.command.contains("-v \"$PWD"),
            || format!("{label} binds a file of this machine on host B: {}", step.command),
        )?;
    }
    Ok(())
}

/// The runbook's fault steps took host B off the network and put it back: the tool's
/// rules dropped B's member ports on its address, a connection to it timed out, and the
/// tool was stopped (its rules with it) when B came up.
fn host_b_went_down_and_came_back(report: &DrillReport) -> TestResult {
    let step = |label: &str| report.commands.iter().find(|c| c.step.contains(label));
    let down = step("make host B unreachable").ok_or("no step took host B off the network")?;
    ensure(
        down.ok
            && down.command.contains(&format!(
                "-d {LAB_ADDRESS} -p tcp -m multiport --dports 2379,2380,3379,3380,4379,4380"
            )),
        || format!("host B's unreachable step: {down:?}"),
    )?;
    let checked = step("check that host B is unreachable").ok_or("host B's unreachability was not checked")?;
    ensure(checked.ok, || format!("host B was still reachable: {checked:?}"))?;
    let up = step("host B is reachable again").ok_or("host B was not brought back")?;
    ensure(up.ok, || format!("host B's tool did not end cleanly: {up:?}"))
}

/// Server B loses power for ten seconds and comes back with its data: unreachable while
/// down (a connection to it times out), its members started again by the host's return,
/// nothing acknowledged lost.
pub fn server_b_outage_on_two_hosts() -> TestResult {
    let (report, _out) = two_host_drill("server-b-outage", 95, Images::LoadedByTheLab)?;
    ensure(report.recovery.quorum_lost == Some(true), || {
        "host B's outage did not cost quorum".into()
    })?;
    ensure(report.data.lost_acked_writes == 0, || {
        format!("{} acknowledged writes lost", report.data.lost_acked_writes)
    })?;
    host_b_went_down_and_came_back(&report)?;
    let started: Vec<&str> = report
        .commands
        .iter()
        .filter(|c| c.phase == "fault" && c.command.contains("docker start"))
        .map(|c| c.command.as_str())
        .collect();
    ensure(started.len() == 3, || {
        format!("host B's return should start its three members: {started:?}")
    })
}

/// One member of server B loses its data: removed, wiped, added back and started with
/// `existing`, on B's daemon.
pub fn member_data_loss_on_two_hosts() -> TestResult {
    let (report, _out) = two_host_drill("member-data-loss", 92, Images::LoadedByTheLab)?;
    ensure(report.data.lost_acked_writes == 0, || {
        format!("{} acknowledged writes lost", report.data.lost_acked_writes)
    })
}

/// The second cluster beside the first, on both servers: the same addresses, ports of its
/// own (2479/2480, ...), the workload switched over.
pub fn restore_beside_on_two_hosts() -> TestResult {
    let (report, out) = two_host_drill("restore-beside", 93, Images::LoadedByTheLab)?;
    let runbook = std::fs::read_to_string(out.path().join("runbook.sh"))?;
    let switched = format!("export ETCDCTL_ENDPOINTS=http://{SERVER_A}:2479");
    ensure(
        runbook.contains(&switched) && runbook.contains(&format!("http://{LAB_ADDRESS}:4479")),
        || format!("the application was not switched to the beside ports:\n{runbook}"),
    )?;
    ensure(report.recovery.rto_ms.is_some(), || "no RTO in the report".into())?;
    // The report says where the members serve after the move, in JSON and Markdown.
    let moved: Vec<(u16, u16)> = report
        .recovery
        .outcome
        .as_ref()
        .map(|o| o.moved_to.iter().map(|m| (m.client_port, m.peer_port)).collect())
        .unwrap_or_default();
    ensure(
        moved == [(2479, 2480), (3479, 3480), (2479, 2480), (3479, 3480), (4479, 4480)],
        || format!("moved_to in report.json: {moved:?}"),
    )?;
    let markdown = std::fs::read_to_string(out.path().join("report.md"))?;
    ensure(
        markdown.contains(&format!(
            "| etcd5 | http://{LAB_ADDRESS}:4479 | http://{LAB_ADDRESS}:4480 |"
        )),
        || "report.md does not show the ports after the move".into(),
    )
}

/// Server A split from server B at the network level: the tool on B's daemon drops the
/// peer traffic between the two addresses both ways; B's majority keeps writing, A's two
/// members catch up once the split is healed, and the tool's rules go with it. Server B
/// starts with no image: the run copies both (`--copy-images`).
pub fn host_partition_on_two_hosts() -> TestResult {
    let (report, _out) = two_host_drill("host-partition", 94, Images::CopiedByTheRun)?;
    let split: Vec<_> = report
        .commands
        .iter()
        .filter(|c| c.step.starts_with("split host"))
        .collect();
    ensure(split.len() == 1 && split[0].ok, || format!("split steps: {split:?}"))?;
    ensure(
        split[0].step == "split host B from A at the network level"
            && split[0]
                .command
                .starts_with("DOCKER_HOST=unix:///run/etcd-drill-lab/drhosts/docker.sock docker run")
            && split[0]
                .command
                .contains(&format!("-s {SERVER_A} -p tcp -m multiport --ports 2380,3380,4380 ")),
        || format!("the split ran elsewhere or cut other ports: {:?}", split[0]),
    )?;
    let healed = report
        .commands
        .iter()
        .any(|c| c.step == "heal the split on host B" && c.ok);
    ensure(healed, || "the split was not healed on host B".into())?;
    ensure(report.data.lost_acked_writes == 0, || {
        format!("{} acknowledged writes lost", report.data.lost_acked_writes)
    })
}

/// `clean --hosts FILE` reaches the daemons of the hosts file besides the harness's own;
/// plain `clean` leaves them alone.
pub fn clean_reaches_every_daemon_of_a_hosts_file() -> TestResult {
    let lab = Lab::up_at("drclean", Some("10.231.3.2"), &[])?;
    let run_id = format!("c1ea{:04x}", std::process::id() % 0x10000);
    let volume = format!("etcd-drill-{run_id}-etcd3-data0");
    let label = format!("io.etcd-drill.run={run_id}");
    let local = std::process::Command::new("docker")
        .args(["volume", "create", "--label", &label, &volume])
        .output()?;
    ensure(local.status.success(), || {
        format!("docker volume create: {}", String::from_utf8_lossy(&local.stderr))
    })?;
    lab.docker(&["volume", "create", "--label", &label, &volume])?;
    let clean = |hosts: bool| -> Result<serde_json::Value, Failed> {
        let mut command = binary();
        command.args(["clean", "--run", &run_id, "-o", "json"]);
        if hosts {
            command.args(["--hosts", &lab.hosts_file]);
        }
        let out = command.output()?;
        ensure(out.status.success(), || {
            format!("clean failed: {}", String::from_utf8_lossy(&out.stderr))
        })?;
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let daemons = |cleaned: &serde_json::Value| -> Vec<String> {
        cleaned["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter_map(|r| r["daemon"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = clean(false)?;
    ensure(daemons(&first) == ["local"], || format!("plain clean: {first}"))?;
    ensure(lab.labelled()? == [volume.clone()], || {
        "plain clean touched the lab's daemon".into()
    })?;
    let second = clean(true)?;
    let lab_socket = "unix:///run/etcd-drill-lab/drclean/docker.sock";
    ensure(daemons(&second) == [lab_socket], || format!("clean --hosts: {second}"))?;
    let left = lab.labelled()?;
    ensure(left.is_empty(), || format!("left on the lab's daemon: {left:?}"))
}
