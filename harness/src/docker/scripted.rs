//! The scripted test image: etcd in the Bitnami layout (`/opt/bitnami/etcd/bin`, a data
//! dir created root-owned in the image at `/bitnami/etcd/data`, uid 1001) started by a
//! shell script of our own that reproduces the start-up behaviours of images whose scripts
//! start etcd, so that the tests meet the same traps without pulling such an image:
//! - a fresh first member given `ETCD_ROOT_PASSWORD` runs etcd in the background until
//!   authentication is on, stops it, and starts etcd again for good;
//! - a member with data first spends a few seconds on `etcdctl` calls to 127.0.0.1 that
//!   time out, then serves for a moment from a temporary etcd, stops it and starts etcd
//!   again;
//! - `ETCD_START_FROM_SNAPSHOT=yes` restores `$ETCD_INIT_SNAPSHOTS_DIR/$ETCD_INIT_SNAPSHOT_FILENAME`
//!   into an empty data dir before the first start.
//!
//! The script is written for etcd-drill and imitates behaviour only; no image's scripts are
//! copied. Its shell is Debian's static busybox, so the image stays `FROM scratch`.

/// The image's entrypoint, under /opt/bitnami so that layout detection takes the image
/// for the Bitnami flavor, as it would the real one.
pub const ENTRYPOINT: &str = "/opt/bitnami/scripts/etcd/entrypoint.sh";
/// Where the binaries go.
pub const BIN_DIR: &str = "/opt/bitnami/etcd/bin";
/// The data dir the image creates (root-owned, mode 775), inside the data mount.
pub const DATA_DIR: &str = "/bitnami/etcd/data";
/// The uid the image runs as.
pub const UID: u32 = 1001;
/// The busybox applets the script uses, linked to /bin/busybox.
pub const APPLETS: [&str; 6] = ["sh", "sleep", "kill", "cat", "ls", "echo"];
/// What the script says before each step, so that a test can find its steps in the logs.
pub const LOG_PREFIX: &str = "scripted-etcd:";

/// The entrypoint script.
pub const SCRIPT: &str = r#"#!/bin/sh
# etcd-drill's scripted test image: etcd started by a script, with the traps such
# scripts set for a harness. See harness/src/docker/scripted.rs.
set -u
bin=/opt/bitnami/etcd/bin
export ETCD_DATA_DIR=/bitnami/etcd/data
say() { echo "scripted-etcd: $*"; }

scheme=http
tls_flags=""
if [ -n "${ETCD_CERT_FILE:-}" ]; then
  scheme=https
  tls_flags="--cacert=${ETCD_TRUSTED_CA_FILE:-} --cert=${ETCD_CERT_FILE} --key=${ETCD_KEY_FILE:-}"
fi
local_ctl() { "$bin/etcdctl" --endpoints="$scheme://127.0.0.1:2379" $tls_flags "$@"; }
# Healthy, or refused for want of credentials (the read went through raft first).
serving() {
  case "$(local_ctl --dial-timeout=1s --command-timeout=2s endpoint health 2>&1)" in
    *"is healthy"* | *"user name is empty"*) return 0 ;;
    *) return 1 ;;
  esac
}
wait_serving() {
  tries=0
  while [ "$tries" -lt "$1" ]; do
    serving && return 0
    sleep 0.5
    tries=$((tries + 1))
  done
  return 1
}
start_in_background() { "$bin/etcd" & background=$!; }
stop_background() { kill "$background" 2>/dev/null; wait "$background" 2>/dev/null; }

if [ -z "${ETCD_ROOT_PASSWORD:-}" ] && [ "${ALLOW_NONE_AUTHENTICATION:-no}" != "yes" ]; then
  say "no ETCD_ROOT_PASSWORD: set one, or ALLOW_NONE_AUTHENTICATION=yes"
  exit 1
fi

first_member="${ETCD_INITIAL_CLUSTER%%=*}"
if [ -d "$ETCD_DATA_DIR/member" ]; then
  say "data found in $ETCD_DATA_DIR: probing the local member first"
  local_ctl --dial-timeout=1s --command-timeout=1s endpoint status >/dev/null 2>&1
  local_ctl --dial-timeout=1s --command-timeout=1s member list >/dev/null 2>&1
  say "starting a temporary etcd to check membership"
  start_in_background
  if wait_serving 20; then
    say "membership checked"
    sleep 1
  else
    say "the temporary etcd did not serve; starting anyway"
  fi
  stop_background
  say "temporary etcd stopped"
elif [ "${ETCD_START_FROM_SNAPSHOT:-no}" = "yes" ]; then
  snapshot="${ETCD_INIT_SNAPSHOTS_DIR:-/init-snapshot}/${ETCD_INIT_SNAPSHOT_FILENAME:-}"
  if [ ! -f "$snapshot" ]; then
    say "ETCD_START_FROM_SNAPSHOT=yes but no snapshot at $snapshot"
    exit 1
  fi
  say "restoring $snapshot into $ETCD_DATA_DIR"
  "$bin/etcdutl" snapshot restore "$snapshot" --name="$ETCD_NAME" \
    --initial-cluster="$ETCD_INITIAL_CLUSTER" --initial-cluster-token="$ETCD_INITIAL_CLUSTER_TOKEN" \
    --initial-advertise-peer-urls="$ETCD_INITIAL_ADVERTISE_PEER_URLS" --data-dir="$ETCD_DATA_DIR" || exit 1
elif [ -n "${ETCD_ROOT_PASSWORD:-}" ] && [ "$first_member" = "${ETCD_NAME:-}" ] \
  && [ "${ETCD_INITIAL_CLUSTER_STATE:-new}" = "new" ]; then
  say "starting etcd in the background to turn on authentication"
  start_in_background
  if wait_serving 120; then
    sleep 2
    say "enabling authentication"
    local_ctl user add "root:$ETCD_ROOT_PASSWORD" >/dev/null \
      && local_ctl role add root >/dev/null \
      && local_ctl user grant-role root root >/dev/null \
      && local_ctl auth enable >/dev/null \
      || say "turning on authentication failed"
  else
    say "etcd did not serve: authentication left off"
  fi
  stop_background
  say "temporary etcd stopped"
fi
say "starting etcd"
exec "$bin/etcd"
"#;

/// The image's Dockerfile: the rootfs (busybox, its applets, the binaries, the script and
/// the root-owned data dir), run as uid 1001 through the script.
pub fn dockerfile(version: &str) -> String {
    format!(
        "FROM scratch\n\
         COPY rootfs/ /\n\
         ENV PATH={BIN_DIR}:/bin ETCDCTL_API=3\n\
         LABEL io.etcd-drill.image=scripted org.opencontainers.image.version={version}\n\
         EXPOSE 2379 2380\n\
         USER {UID}\n\
         ENTRYPOINT [\"{ENTRYPOINT}\"]\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_starts_etcd_for_good_with_exec() {
        assert!(SCRIPT.starts_with("#!/bin/sh\n"));
        assert!(SCRIPT.trim_end().ends_with("exec \"$bin/etcd\""));
        assert!(SCRIPT.contains(&format!("export ETCD_DATA_DIR={DATA_DIR}")));
        assert!(SCRIPT.contains(&format!("bin={BIN_DIR}")));
        assert!(SCRIPT.contains(&format!("say() {{ echo \"{LOG_PREFIX} $*\"; }}")));
    }

    #[test]
    fn the_dockerfile_runs_the_script_as_uid_1001() {
        let file = dockerfile("3.5.1");
        assert!(file.contains(&format!("ENTRYPOINT [\"{ENTRYPOINT}\"]")), "{file}");
        assert!(file.contains("USER 1001"), "{file}");
    }
}
