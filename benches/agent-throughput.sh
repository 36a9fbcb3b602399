#!/usr/bin/env bash
# The backup agent at a high write rate, against real etcd: starts a 3-member cluster,
# runs `etcd-drill backup` beside it (1 s deltas, gzip) under /usr/bin/time -v, drives it
# with `etcd-drill perf --load LOAD` for DURATION, and prints the events per second the
# agent persisted, its peak RSS and CPU, and what the store holds. Run it under the
# machine's Docker lock: flock /tmp/etcd-drill-docker.lock benches/agent-throughput.sh l 30s
set -euo pipefail
cd "$(dirname "$0")/.."
LOAD=${1:-l}
DURATION=${2:-30s}
SECS=${DURATION%s}
BIN=${ETCD_DRILL:-target/release/etcd-drill}
[ -x "$BIN" ] || cargo build --release --quiet --bin etcd-drill
OUT=$(mktemp -d /tmp/agent-throughput-XXXX)

"$BIN" perf --members 3 --load s --duration 2s --keep --out "$OUT/setup" >"$OUT/setup.log"
EP=$(sed -n 's/.*kept the cluster: --endpoints //p' "$OUT/setup.log")
PORT=${EP##*:}
RUN=$(docker ps --filter "publish=$PORT" --format '{{.Label "io.etcd-drill.run"}}' | head -n 1)
trap '"$BIN" clean --run "$RUN" >/dev/null' EXIT

/usr/bin/time -v "$BIN" backup --endpoints "$EP" --store "$OUT/store" --delta-period-ms 1000 \
  --full-interval-ms 3600000 --compression gzip --run-for "$((SECS + 10))s" \
  >"$OUT/agent.log" 2>"$OUT/agent.time" &
AGENT=$!
sleep 5
"$BIN" perf --endpoints "$EP" --load "$LOAD" --duration "$DURATION" --out "$OUT/load" >"$OUT/load.log" || true
wait "$AGENT"

grep -E "throughput|requests" "$OUT/load.log" | head -n 2
grep -A6 "backup agent stopped" "$OUT/agent.log"
EVENTS=$(grep "backup agent stopped" "$OUT/agent.log" | sed -n "s/.*deltas (\([0-9]*\) events.*/\1/p")
echo "agent: $EVENTS events persisted in $((SECS + 10)) s of run ($(( EVENTS / (SECS + 10) )) events/s on average; the load ran $SECS s)"
grep -E "Maximum resident set size|User time|System time" "$OUT/agent.time"
du -sb "$OUT/store" | awk '{print "store: " $1 " bytes"}'
echo "files in $OUT"
