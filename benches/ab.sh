#!/usr/bin/env bash
# A/B of two egressd binaries on small messages over kept-open tunnels, interleaved in one run:
# for each round and each binary, a fresh egressd (pinned to CPU 1) relays `egressd-loadgen run
# --workload rr` at saturation (closed loop) from the load generator and an echo or HTTP sink
# (both on CPU 0). Prints requests/s, the proxy's CPU per request (--proxy-pid), latency and
# the rescheduling interrupts (IPIs) CPU 1 took per request (/proc/interrupts, RES).
#
#   bash benches/ab.sh OLD_BINARY NEW_BINARY [PROTO [WORKLOAD [ROUNDS [LOADGEN ARGS...]]]]
#   PROTO: socks5 (default) | http-connect | http-forward; WORKLOAD: rr (default) | serial | churn
#   | bulk (uploads to a discard sink; add e.g. --streams 1; reports Gbit/s) | idle (CONNECTIONS
#   idle tunnels held open; reports the proxy's resident memory per tunnel)
#   CONNECTIONS=N in the environment: tunnels or workers (default 20)
#
# Traffic stays on 127.0.0.1. Needs two CPUs and the release build of egressd-loadgen.
set -euo pipefail
cd "$(dirname "$0")/.."

A=$1
B=$2
PROTO=${3:-socks5}
WORKLOAD=${4:-rr}
ROUNDS=${5:-3}
shift $(($# < 5 ? $# : 5))
LOADGEN=${LOADGEN:-target/release/egressd-loadgen}
[ -x "$LOADGEN" ] || cargo build --release -q -p egressd-loadgen
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/egressd.toml" <<'CONF'
[proxy]
deny_destinations = []
max_connections_per_client = 100000

[[listener]]
name = "ab"
bind = "127.0.0.1:0"

[[rule]]
name = "all"
action = "default"
CONF

mode=echo
[ "$PROTO" = http-forward ] && mode=http
[ "$WORKLOAD" = bulk ] && mode=discard
taskset -c 0 "$LOADGEN" sink --listen 127.0.0.1:0 --mode "$mode" --response-size 100 >"$WORK/sink.out" &
PIDS+=($!)
until grep -q listening "$WORK/sink.out" 2>/dev/null; do sleep 0.05; done
SINK=$(awk '/listening/ {print $2}' "$WORK/sink.out")

ipis() { awk '/RES:/ {print $3}' /proc/interrupts; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

one() {
  local bin=$1 tag=$2
  shift 2
  : >"$WORK/px.err"
  taskset -c 1 "$bin" run -c "$WORK/egressd.toml" >/dev/null 2>"$WORK/px.err" &
  local px=$!
  until grep -q '"listening"' "$WORK/px.err" 2>/dev/null; do sleep 0.05; done
  local addr
  addr=$(grep -o '"addr":"[^"]*"' "$WORK/px.err" | head -1 | cut -d'"' -f4)
  local before after
  if [ "$WORKLOAD" = idle ]; then
    before=$(rss_kib "$px")
    : >"$WORK/idle.out"
    taskset -c 0 "$LOADGEN" run --proxy "$addr" --target "$SINK" --proto "$PROTO" --workload idle \
      --connections "${CONNECTIONS:-20}" --duration 5s --threads 1 >"$WORK/idle.out" 2>&1 &
    local lg=$!
    until grep -q '^idle: ' "$WORK/idle.out" 2>/dev/null; do sleep 0.05; done
    sleep 1
    after=$(rss_kib "$px")
    local open
    open=$(grep -oE '^idle: [0-9]+' "$WORK/idle.out" | awk '{print $2}')
    wait "$lg" || true
    kill "$px"
    wait "$px" 2>/dev/null || true
    echo "$tag  $open idle tunnels  $(( (after - before) * 1024 / (open > 0 ? open : 1) )) B per tunnel (RSS $before -> $after KiB)"
    return
  fi
  before=$(ipis)
  taskset -c 0 "$LOADGEN" run --proxy "$addr" --target "$SINK" --proto "$PROTO" \
    --workload "$WORKLOAD" --connections "${CONNECTIONS:-20}" --duration 3s --warmup 1s \
    --proxy-pid "$px" --json "$WORK/r.json" "$@" >/dev/null
  after=$(ipis)
  kill "$px"
  wait "$px" 2>/dev/null || true
  python3 - "$WORK/r.json" "$before" "$after" "$tag" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n = r["completed"] or 1
ipi = (int(sys.argv[3]) - int(sys.argv[2])) / n
l = r["latency_us"]
if r["workload"] == "bulk":
    cpu = r.get("proxy_cpu_s") or 0
    print(f"{sys.argv[4]:>3}  {r['gbit_per_s']:6.2f} Gbit/s  proxy CPU {cpu / r['duration_s']:4.0%}"
          f"  {cpu * 1e3 / max(r['bytes'] / 2**30, 1e-9):6.1f} ms CPU per GiB")
    sys.exit(0)
print(f"{sys.argv[4]:>3}  {r['requests_per_s']:9.0f} req/s  {r.get('proxy_cpu_us_per_request') or 0:6.1f} us CPU/req"
      f"  p50 {l['p50']:7.1f} us  p99 {l['p99']:7.1f} us  {ipi:5.2f} IPIs/req")
PY
}

echo "$PROTO $WORKLOAD, ${CONNECTIONS:-20} connections, 100 B; A = $A, B = $B"
for _ in $(seq "$ROUNDS"); do
  one "$A" A "$@"
  one "$B" B "$@"
done
