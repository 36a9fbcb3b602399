//! What an image's etcd tools can do, read from their own help output (never guessed from
//! the tag): which tool restores and inspects snapshots (`etcdutl` from 3.5; `etcdctl` in
//! 3.4, whose 3.6 successor no longer has `snapshot restore/status`), and whether the
//! restore knows `--bump-revision`. Probed once per image per run.

use serde::Serialize;

use crate::cluster::flavor::Flavor;
use crate::docker::runtime::{ContainerSpec, DockerRuntime, ToolOutput, ROLE_LABEL};
use crate::error::{Error, Result};

/// The tool that restores and inspects snapshot files offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotTool {
    Etcdutl,
    Etcdctl,
}

impl SnapshotTool {
    pub fn binary(self) -> &'static str {
        match self {
            SnapshotTool::Etcdutl => "etcdutl",
            SnapshotTool::Etcdctl => "etcdctl",
        }
    }
}

/// What the image's tools support.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageTools {
    pub snapshot_tool: SnapshotTool,
    /// `snapshot restore --bump-revision N --mark-compacted` (3.5.10 / 3.4.27 on).
    pub bump_revision: bool,
    /// `etcd --version` of the server binary.
    pub version: String,
}

/// Whether `snapshot restore --help` output describes a working restore command.
fn describes_restore(output: &ToolOutput) -> bool {
    output.exit_code == 0 && (output.stdout.contains("--data-dir") || output.stderr.contains("--data-dir"))
}

fn mentions(output: &ToolOutput, flag: &str) -> bool {
    output.stdout.contains(flag) || output.stderr.contains(flag)
}

/// Reads the tools' capabilities from the help of `snapshot restore` of etcdutl, then of
/// etcdctl, in one-off containers of `image`.
pub async fn probe(docker: &DockerRuntime, image: &str, flavor: &Flavor, run_id: &str) -> Result<ImageTools> {
    let run = |tool: &'static str, args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (entrypoint, cmd) = flavor.tool_invocation(tool, &args);
        async move { docker.image_command(image, run_id, entrypoint, cmd).await }
    };
    let help = ["snapshot", "restore", "--help"];
    let mut found = None;
    for tool in [SnapshotTool::Etcdutl, SnapshotTool::Etcdctl] {
        // A missing binary makes the container fail to start, which is an answer too.
        match run(tool.binary(), &help).await {
            Ok(output) if describes_restore(&output) => {
                found = Some((tool, mentions(&output, "--bump-revision")));
                break;
            }
            Ok(_) | Err(Error::Docker { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    let Some((snapshot_tool, bump_revision)) = found else {
        return Err(Error::ImageUnusable {
            image: image.to_string(),
            message: format!(
                "neither {} nor {} answers `snapshot restore --help`; is this an etcd image of the {} layout (try --flavor)?",
                flavor.bin("etcdutl"),
                flavor.bin("etcdctl"),
                flavor.kind.as_str()
            ),
        });
    };
    let version = run("etcd", &["--version"]).await?;
    let version = crate::docker::image::parse_etcd_version(&version.stdout).unwrap_or_else(|| "unknown".into());
    Ok(ImageTools {
        snapshot_tool,
        bump_revision,
        version,
    })
}

/// A one-off tool container of `image`: `tool args...`, run as the flavor's user, without
/// a network unless the caller gives it one.
pub fn tool_container(
    image: &str,
    flavor: &Flavor,
    name: String,
    tool: &str,
    args: Vec<String>,
    volumes: Vec<(String, String)>,
) -> ContainerSpec {
    let (entrypoint, cmd) = flavor.tool_invocation(tool, &args);
    ContainerSpec {
        name,
        image: image.to_string(),
        user: flavor.user.clone(),
        entrypoint,
        cmd,
        labels: vec![(ROLE_LABEL.into(), "tool".into())],
        volumes,
        isolated: true,
        ..ContainerSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(exit_code: i64, stdout: &str) -> ToolOutput {
        ToolOutput {
            exit_code,
            elapsed_ms: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn a_restore_is_recognised_from_its_help() {
        assert!(describes_restore(&output(
            0,
            "      --data-dir=\"\"  Path to the data directory"
        )));
        assert!(!describes_restore(&output(1, "Error: unknown command \"restore\"")));
        assert!(!describes_restore(&output(0, "Usage: etcdctl snapshot save")));
    }

    /// etcd 3.6 (not runnable here: no 3.6 binary is available to the project's machines)
    /// removed `snapshot restore` and `snapshot status` from etcdctl. Cobra then answers
    /// `etcdctl snapshot restore --help` with the help of `etcdctl snapshot` (exit 0),
    /// which names only `save` and no `--data-dir`: etcdctl is not taken for a restore
    /// tool, and etcdutl, probed first, is the one used.
    #[test]
    fn etcd_3_6_etcdctl_without_restore_is_not_taken_for_a_restore_tool() {
        let etcdctl_3_6 = "NAME:\n\tsnapshot - Manages etcd node snapshots\n\nUSAGE:\n\tetcdctl snapshot <subcommand> [flags]\n\n\
                           API VERSION:\n\t3.6\n\nCOMMANDS:\n\tsave\tStores an etcd node backend snapshot to a given file\n\n\
                           OPTIONS:\n  -h, --help[=false]\thelp for snapshot\n\n\
                           GLOBAL OPTIONS:\n      --endpoints=[127.0.0.1:2379]\tgRPC endpoints\n";
        assert!(!describes_restore(&output(0, etcdctl_3_6)));
        let etcdutl_3_6 = "      --bump-revision=0\tHow much to increase the latest revision after restore\n\
                           --data-dir=\"\"\tPath to the output data directory\n\
                           --mark-compacted[=false]\tMark the latest revision after restore as the point of scheduled compaction\n";
        let restore = output(0, etcdutl_3_6);
        assert!(describes_restore(&restore) && mentions(&restore, "--bump-revision"));
    }

    #[test]
    fn bitnami_restore_runs_its_tool_as_1001_into_the_fixed_data_dir() {
        let flavor = Flavor::bitnami();
        let args = vec![
            "snapshot".into(),
            "restore".into(),
            "/snapshot.db".into(),
            format!("--data-dir={}", flavor.data_dir),
        ];
        let spec = tool_container(
            "bitnamilegacy/etcd:3.5.18",
            &flavor,
            "restore-etcd1".into(),
            "etcdutl",
            args,
            vec![("vol".into(), flavor.data_mount.into())],
        );
        assert_eq!(
            crate::docker::shell::docker_run_line(&spec, false, &[]),
            "docker run --rm --name restore-etcd1 --network none --user 1001 --entrypoint /opt/bitnami/etcd/bin/etcdutl \
             -v vol:/bitnami/etcd bitnamilegacy/etcd:3.5.18 snapshot restore /snapshot.db --data-dir=/bitnami/etcd/data"
        );
    }
}
