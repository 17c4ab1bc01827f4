#!/usr/bin/env bash
# Side-by-side benchmark of egressd against Dante, microsocks, Squid, HAProxy and a direct
# connection, in one run on this machine, with the same load generator for all.
#
#   bash benches/compare.sh            # writes benches/RESULTS.md's side-by-side section
#   ONLY=perconn bash benches/compare.sh   # only small messages at saturation and serial
#                                          # connections, and wrk against nginx, for every
#                                          # peer (their own section)
#   ONLY=wrk bash benches/compare.sh       # only the wrk rows of that section
#
# The proxy under test is pinned to CPU 0, the load generator and the sinks to CPU 1, the same
# for every proxy. Each proxy leaves from its own egress address (127.0.0.2 ... 127.0.0.6) and a
# check before measuring proves the upstream sees it. Everything started here is stopped on exit.
# Knobs: DURATION (10s), WARMUP (2s), RATE (rr requests/s, 2000), RR_RUNS (3), IDLE_TUNNELS
# (9000: two descriptors per tunnel in the proxy, under this machine's 20,000 open-file hard
# limit, which cannot be raised here), CHURN_CONNS (32).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
RATE=${RATE:-2000}
IDLE_TUNNELS=${IDLE_TUNNELS:-9000}
CHURN_CONNS=${CHURN_CONNS:-32}
RR_RUNS=${RR_RUNS:-3}
PROXY_CPU=0
CLIENT_CPU=1
OUT=target/compare
WORK=$(mktemp -d /tmp/egressd-compare.XXXXXX)
chmod 777 "$WORK"
mkdir -p "$OUT"
# ONLY=idle re-measures the idle rows alone, keeping the other results of the last full run;
# ONLY=perconn measures only the per-message and per-connection rows (perconn_all below).
ONLY=${ONLY:-all}
[ "$ONLY" = all ] && rm -f "$OUT"/*.json "$OUT"/*.txt

PIDS=()
cleanup() {
  [ -n "${PROXY_PID:-}" ] && stop_proxy
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  pkill -f "$WORK" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '== %s\n' "$*" >&2; }

# --- peers, from Debian packages when missing ---------------------------------------------
need=()
command -v danted >/dev/null || need+=(dante-server)
command -v microsocks >/dev/null || need+=(microsocks)
command -v squid >/dev/null || need+=(squid)
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v proxychains4 >/dev/null || need+=(proxychains4)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ -f /usr/share/GeoIP/dbip-country.mmdb ] || bash scripts/install-geoip.sh   # the 10k-rule policy has country rules
log "building"
cargo build --release -q -p egressd -p egressd-loadgen
cargo run --release -q -p egressd-policy --example gen-policy -- 10000 > "$WORK/rules10k.toml"
LG=$PWD/target/release/egressd-loadgen
EGRESSD=$PWD/target/release/egressd
# The compio relay of benches/ceiling (a crate of its own, outside the workspace): the ceiling
# of an io_uring runtime that sets COOP_TASKRUN and SINGLE_ISSUER, which glommio 0.9 cannot.
CEILING=
if cargo build --release -q --manifest-path benches/ceiling/Cargo.toml; then
  CEILING=$PWD/benches/ceiling/target/release/egressd-ceiling
fi

on_client() { taskset -c "$CLIENT_CPU" "$@"; }

# Waits for a line matching $2 in file $1 and prints it.
wait_line() {
  local file=$1 pattern=$2 i
  for i in $(seq 1 400); do
    if grep -q "$pattern" "$file" 2>/dev/null; then grep -m1 "$pattern" "$file"; return 0; fi
    sleep 0.05
  done
  echo "timed out waiting for '$pattern' in $file" >&2
  cat "$file" >&2
  return 1
}

wait_port() {
  local port=$1 i
  for i in $(seq 1 400); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "port $port never opened" >&2
  return 1
}

# Waits (at most 70 s) until the TIME_WAIT sockets of earlier runs have mostly expired, so a
# proxy's churn does not start in the ephemeral-port state the previous proxy left behind.
settle() {
  local i
  for i in $(seq 1 70); do
    [ "$(ss -tan state time-wait | wc -l)" -lt 2000 ] && return 0
    sleep 1
  done
}

# Starts a sink and sets SINK to its address. (Not run in a command substitution: the PID
# must reach PIDS in this shell, or the cleanup would leave the sink running.)
SINK=
start_sink() {
  local name=$1; shift
  taskset -c "$CLIENT_CPU" "$LG" sink --listen 127.0.0.1:0 --threads 1 --cpus "$CLIENT_CPU" "$@" > "$WORK/sink-$name.out" 2>&1 &
  PIDS+=($!)
  SINK=$(wait_line "$WORK/sink-$name.out" '^listening ' | awk '{print $2}')
}

# Resident memory (KiB) of a process and all its descendants.
rss_tree() {
  ps -eo pid=,ppid=,rss= | awk -v root="$1" '
    { parent[$1] = $2; rss[$1] = $3 }
    END {
      for (p in rss) { q = p; while (q != "" && q != root && q in parent && q != parent[q]) q = parent[q]; if (q == root) total += rss[p] }
      print total + 0
    }'
}

start_sink peer --mode peer; PEER=$SINK
start_sink echo --mode echo; ECHO=$SINK
start_sink discard --mode discard; DISCARD=$SINK
start_sink http --mode http --response-size 100; HTTP=$SINK
log "sinks: peer $PEER echo $ECHO discard $DISCARD http $HTTP"

# --- proxies --------------------------------------------------------------------------------
PROXY_PID=
PROXY_ADDR=
HTTP_ADDR=

stop_proxy() {
  if [ -n "$PROXY_PID" ]; then
    pkill -TERM -P "$PROXY_PID" 2>/dev/null || true
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
  fi
  PROXY_PID=
}

egressd_config() {
  local rules=$1
  cat <<CONF
[proxy]
deny_destinations = []
handshake_timeout = "30s"
max_connections = 100000
# every benchmark client connects from 127.0.0.1
max_connections_per_client = 100000

[[listener]]
name = "bench"
bind = "127.0.0.1:0"
auth = "optional"

[[user]]
name = "bench"
password = "$(printf 'bench' | "$EGRESSD" hash-password)"

[[pool]]
name = "bench"
ipv4 = ["127.0.0.2"]

$( [ "$rules" = 10k ] && sed -e '/^\[\[listener\]\]/,/^$/d' -e 's/^action = "default"$/action = "egress"\npool = "bench"/' "$WORK/rules10k.toml" )

[[rule]]
name = "bench catch-all"
action = "egress"
pool = "bench"
CONF
}

start_egressd() {
  settle
  local rules=${1:-1}
  egressd_config "$rules" > "$WORK/egressd-$rules.toml"
  taskset -c "$PROXY_CPU" "$EGRESSD" run -c "$WORK/egressd-$rules.toml" > /dev/null 2> "$WORK/egressd-$rules.log" &
  PROXY_PID=$!
  PROXY_ADDR=$(wait_line "$WORK/egressd-$rules.log" '"listening"' | sed -E 's/.*"addr":"([^"]+)".*/\1/')
  HTTP_ADDR=$PROXY_ADDR
}

start_dante() {
  settle
  cat > "$WORK/danted.conf" <<CONF
logoutput: $WORK/danted.log
internal: 127.0.0.1 port = 21080
external: 127.0.0.3
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 }
socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 command: connect }
CONF
  taskset -c "$PROXY_CPU" danted -f "$WORK/danted.conf" -p "$WORK/danted.pid" &
  PROXY_PID=$!
  PROXY_ADDR=127.0.0.1:21080
  wait_port 21080
}

# microsocks binds without SO_REUSEADDR: a restart on the same port fails while its old
# connections sit in TIME_WAIT, so each start takes the next port.
MICROSOCKS_PORT=21180
start_microsocks() {
  settle
  MICROSOCKS_PORT=$((MICROSOCKS_PORT + 1))
  taskset -c "$PROXY_CPU" microsocks -i 127.0.0.1 -p "$MICROSOCKS_PORT" -b 127.0.0.4 > /dev/null 2>&1 &
  PROXY_PID=$!
  PROXY_ADDR=127.0.0.1:$MICROSOCKS_PORT
  wait_port "$MICROSOCKS_PORT"
  kill -0 "$PROXY_PID"
}

start_squid() {
  settle
  cat > "$WORK/squid.conf" <<CONF
http_port 127.0.0.1:21082
tcp_outgoing_address 127.0.0.5
http_access allow all
cache deny all
cache_mem 8 MB
access_log none
cache_log $WORK/squid-cache.log
pid_filename $WORK/squid.pid
coredump_dir $WORK
workers 1
via off
forwarded_for delete
shutdown_lifetime 0 seconds
max_filedescriptors 20000
CONF
  taskset -c "$PROXY_CPU" squid -N -f "$WORK/squid.conf" > "$WORK/squid.out" 2>&1 &
  PROXY_PID=$!
  PROXY_ADDR=127.0.0.1:21082
  HTTP_ADDR=$PROXY_ADDR
  wait_port 21082
}

# start_ceiling [--no-coop]: the compio ceiling relay (SOCKS5, no authentication), egressing
# from 127.0.0.7; fails when it could not be built.
start_ceiling() {
  [ -n "$CEILING" ] || return 1
  settle
  taskset -c "$PROXY_CPU" "$CEILING" --listen 127.0.0.1:0 --egress 127.0.0.7 "$@" > "$WORK/ceiling.out" 2>&1 &
  PROXY_PID=$!
  PROXY_ADDR=$(wait_line "$WORK/ceiling.out" '^listening ' | awk '{print $2}')
}

# HAProxy relays to one fixed server: a plain TCP relay to the sink of the workload at hand
# (the no-handshake upper bound), and an HTTP-mode listener in front of the HTTP sink.
start_haproxy() {
  settle
  local tcp_target=$1
  cat > "$WORK/haproxy.cfg" <<CONF
global
  maxconn 9900
  nbthread 1
defaults
  timeout connect 10s
  timeout client 1m
  timeout server 1m
listen tcp
  bind 127.0.0.1:21083
  mode tcp
  server sink $tcp_target source 127.0.0.6
listen http
  bind 127.0.0.1:21084
  mode http
  option http-keep-alive
  server sink $HTTP source 127.0.0.6
CONF
  taskset -c "$PROXY_CPU" haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.out" 2>&1 &
  PROXY_PID=$!
  PROXY_ADDR=127.0.0.1:21083
  HTTP_ADDR=127.0.0.1:21084
  wait_port 21083
}

# CPU time (clock ticks, user + system) of a process and all its descendants, with the time of
# children that have exited and been reaped (Dante forks a process per client).
cpu_tree() {
  local p
  ps -eo pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END { for (p in parent) { q = p; while (q != "" && q != root && q in parent && q != parent[q]) q = parent[q]; if (q == root) print p } }' |
  while read -r p; do
    # Fields after "pid (comm) ": utime, stime, cutime and cstime are the 12th to 15th.
    sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}' || true
  done | awk '{s += $1} END {print s + 0}'
}

# Rescheduling interrupts (IPIs, the RES line of /proc/interrupts) taken so far by one CPU.
ipis() {
  awk -v col=$(($1 + 2)) '$1 == "RES:" { print $col }' /proc/interrupts
}

# "busy total" clock ticks of one CPU from /proc/stat.
cpu_ticks() {
  awk -v cpu="cpu$1" '$1 == cpu { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# run NAME PROTO WORKLOAD TARGET [extra loadgen args...]: one measurement into $OUT/NAME.json,
# and the CPU the proxy, CPU 0 and CPU 1 spent over the whole run (warm-up included) into
# $OUT/NAME.cpu.json.
run() {
  local name=$1 proto=$2 workload=$3 target=$4; shift 4
  local proxy_args=()
  [ "$proto" != direct ] && proxy_args=(--proxy "$PROXY_ADDR")
  [ "$proto" = http-forward ] && proxy_args=(--proxy "$HTTP_ADDR")
  log "$name: $proto $workload"
  local p0 c0a c1a p1 c0b c1b i0 i1
  p0=$( [ -n "$PROXY_PID" ] && cpu_tree "$PROXY_PID" || echo 0)
  c0a=$(cpu_ticks "$PROXY_CPU"); c1a=$(cpu_ticks "$CLIENT_CPU"); i0=$(ipis "$PROXY_CPU")
  on_client "$LG" run --target "$target" "${proxy_args[@]}" --proto "$proto" --workload "$workload" \
    --duration "$DURATION" --warmup "$WARMUP" --threads 1 --cpus "$CLIENT_CPU" \
    --json "$OUT/$name.json" "$@" > "$OUT/$name.txt"
  p1=$( [ -n "$PROXY_PID" ] && cpu_tree "$PROXY_PID" || echo 0)
  c0b=$(cpu_ticks "$PROXY_CPU"); c1b=$(cpu_ticks "$CLIENT_CPU"); i1=$(ipis "$PROXY_CPU")
  python3 - "$OUT/$name.cpu.json" "$p0" "$p1" "$c0a" "$c0b" "$c1a" "$c1b" "$(getconf CLK_TCK)" "${PROXY_PID:-}" "$i0" "$i1" <<'PY'
import json, sys
path, p0, p1, c0a, c0b, c1a, c1b, hz, pid, i0, i1 = sys.argv[1:]
busy = lambda a, b: (int(b.split()[0]) - int(a.split()[0])) / max(1, int(b.split()[1]) - int(a.split()[1]))
wall = (int(c0b.split()[1]) - int(c0a.split()[1])) / int(hz)
json.dump({"proxy_cpu_s": (int(p1) - int(p0)) / int(hz) if pid else None, "wall_s": wall,
           "cpu0_busy": busy(c0a, c0b), "cpu1_busy": busy(c1a, c1b),
           # the proxy CPU's rescheduling interrupts over the whole run (warm-up included)
           "proxy_cpu_ipis": int(i1) - int(i0)}, open(path, "w"))
PY
  # A churn leaves its client ports in TIME_WAIT; they may be reused (tcp_tw_reuse) once a
  # second old, so the next run's connects do not fail for want of a port.
  if [ "$workload" = churn ] || [ "$workload" = serial ]; then sleep 2; fi
}

# perconn NAME PROTO TARGET [args...]: small messages on 20 kept-open tunnels at saturation
# (closed loop: requests/s and the proxy's CPU per request), and a serial client (one
# connection at a time: handshake latency apart from the exchange, CPU per connection).
perconn() {
  local name=$1 proto=$2 target=$3; shift 3
  local cpu=()
  [ -n "${PROXY_PID:-}" ] && cpu=(--proxy-pid "$PROXY_PID")
  run "$name-rrsat" "$proto" rr "$target" --connections 20 "${cpu[@]}" "$@"
  run "$name-serial" "$proto" serial "$target" --connections 1 "${cpu[@]}" "$@"
}

# rr NAME PROTO TARGET [args...]: RR_RUNS back-to-back rr runs (NAME, NAME.2, ...); the report
# takes the median of each percentile, since one run's tail on a shared VM is mostly noise.
rr() {
  local name=$1 proto=$2 target=$3; shift 3
  local i
  for i in $(seq 1 "$RR_RUNS"); do
    run "$name$([ "$i" -gt 1 ] && echo ".$i")" "$proto" rr "$target" --connections 50 --rate "$RATE" "$@"
  done
}

# Proves the upstream sees the configured egress address.
check_egress() {
  local proto=$1 ip=$2
  local proxy_args=(--proxy "$PROXY_ADDR")
  [ "$proto" = direct ] && proxy_args=()
  on_client "$LG" run --target "$PEER" "${proxy_args[@]}" --proto "$proto" --workload churn \
    --duration 200ms --warmup 0s --threads 1 --connections 1 --expect-egress "$ip" > "$WORK/check.txt"
}

# idle NAME PROTO TARGET: RSS per idle tunnel with IDLE_TUNNELS open.
idle() {
  local name=$1 proto=$2 target=$3
  local before after
  before=$(rss_tree "$PROXY_PID")
  log "$name: $proto idle x $IDLE_TUNNELS"
  taskset -c "$CLIENT_CPU" "$LG" run --target "$target" --proxy "$PROXY_ADDR" --proto "$proto" --workload idle \
    --connections "$IDLE_TUNNELS" --duration 5s --threads 1 --cpus "$CLIENT_CPU" \
    --json "$OUT/$name.json" > "$WORK/idle-$name.out" 2>&1 &
  local lg=$!
  wait_line "$WORK/idle-$name.out" '^idle: ' > /dev/null || true
  sleep 1
  after=$(rss_tree "$PROXY_PID")
  wait "$lg" || true
  printf '{"name":"%s","rss_before_kib":%s,"rss_after_kib":%s,"tunnels":%s}\n' "$name" "$before" "$after" \
    "$(grep -oE '^idle: [0-9]+' "$WORK/idle-$name.out" | awk '{print $2}' || echo 0)" > "$OUT/$name.rss.json"
}

# Each proxy's churn runs come last: a proxy that binds its outgoing sockets to a port-0
# address (microsocks -b, Squid tcp_outgoing_address, Dante external) leaves ports in
# TIME_WAIT that connect() may not reuse, and for a minute other connections on the machine
# can run out of ephemeral ports. The next proxy starts once they have expired (settle).
steady() {
  local who=$1 proto=$2
  rr "$who-rr" "$proto" "$ECHO" --request-size 100 --response-size 100
  run "$who-bulk1" "$proto" bulk "$DISCARD" --streams 1
  run "$who-bulk4" "$proto" bulk "$DISCARD" --streams 4
}

churn() {
  local who=$1 proto=$2
  run "$who-churn" "$proto" churn "$ECHO" --connections "$CHURN_CONNS" --request-size 100 --response-size 100
}

if [ "$ONLY" = all ]; then
log "direct"
settle
PROXY_ADDR=
check_egress direct 127.0.0.1
steady direct direct
churn direct direct

start_egressd 1
check_egress socks5 127.0.0.2
steady egressd-socks5 socks5
rr egressd-http-rr http-forward "$HTTP"
churn egressd-socks5 socks5
run egressd-socks5auth-churn socks5 churn "$ECHO" --connections "$CHURN_CONNS" --user bench --password bench
run egressd-connect-churn http-connect churn "$ECHO" --connections "$CHURN_CONNS"
run egressd-http-churn http-forward churn "$HTTP" --connections "$CHURN_CONNS"
stop_proxy

start_egressd 10k
check_egress socks5 127.0.0.2
run egressd10k-churn socks5 churn "$ECHO" --connections "$CHURN_CONNS" --request-size 100 --response-size 100
stop_proxy
start_egressd 1
run egressd1-churn socks5 churn "$ECHO" --connections "$CHURN_CONNS" --request-size 100 --response-size 100
stop_proxy

start_dante
check_egress socks5 127.0.0.3
steady dante socks5
churn dante socks5
stop_proxy

start_microsocks
check_egress socks5 127.0.0.4
steady microsocks socks5
churn microsocks socks5
stop_proxy

start_squid
check_egress http-connect 127.0.0.5
steady squid http-connect
rr squid-http-rr http-forward "$HTTP"
churn squid http-connect
run squid-http-churn http-forward churn "$HTTP" --connections "$CHURN_CONNS"
stop_proxy

# HAProxy: a TCP relay to the peer sink to check the address, then one per workload's sink.
start_haproxy "$PEER"
on_client "$LG" run --target "$PROXY_ADDR" --proto direct --workload churn --duration 200ms --warmup 0s \
  --threads 1 --connections 1 --expect-egress 127.0.0.6 > "$WORK/check.txt"
stop_proxy
start_haproxy "$DISCARD"
run haproxy-bulk1 direct bulk "$PROXY_ADDR" --streams 1
run haproxy-bulk4 direct bulk "$PROXY_ADDR" --streams 4
stop_proxy
start_haproxy "$ECHO"
rr haproxy-rr direct "$PROXY_ADDR" --request-size 100 --response-size 100
rr haproxy-http-rr http-forward "$HTTP"
run haproxy-churn direct churn "$PROXY_ADDR" --connections "$CHURN_CONNS" --request-size 100 --response-size 100
run haproxy-http-churn http-forward churn "$HTTP" --connections "$CHURN_CONNS"
stop_proxy
fi

# Per-message and per-connection cost for every peer, each freshly started.
perconn_all() {
  local small=(--request-size 100 --response-size 100)
  settle
  PROXY_ADDR=
  PROXY_PID=
  perconn direct direct "$ECHO" "${small[@]}"
  start_egressd 1
  perconn egressd-socks5 socks5 "$ECHO" "${small[@]}"
  perconn egressd-connect http-connect "$ECHO" "${small[@]}"
  perconn egressd-http http-forward "$HTTP"
  stop_proxy
  if start_ceiling; then
    check_egress socks5 127.0.0.7
    perconn ceiling socks5 "$ECHO" "${small[@]}"
    stop_proxy
    start_ceiling --no-coop
    perconn ceiling-nocoop socks5 "$ECHO" "${small[@]}"
    stop_proxy
  fi
  settle
  start_dante
  perconn dante socks5 "$ECHO" "${small[@]}"
  stop_proxy
  settle
  start_microsocks
  perconn microsocks socks5 "$ECHO" "${small[@]}"
  stop_proxy
  settle
  start_squid
  perconn squid http-connect "$ECHO" "${small[@]}"
  perconn squid-http http-forward "$HTTP"
  stop_proxy
  settle
  start_haproxy "$ECHO"
  perconn haproxy direct "$PROXY_ADDR" "${small[@]}"
  perconn haproxy-http http-forward "$HTTP"
  stop_proxy
}

# --- wrk against nginx, as users measure a proxy -------------------------------------------
# nginx (one worker, CPU 1) answers every request with a 98-byte body; wrk (one thread, 20
# connections, WRK_DURATION, best of two) on CPU 1 asks with keep-alive and with `Connection:
# close` (a new connection, and through a proxy a new handshake, per request): directly, through
# proxychains4 for SOCKS5 proxies, and with absolute-form request lines (a wrk script) for HTTP
# forward proxies.
WRK_DURATION=${WRK_DURATION:-5s}
NGINX_PORT=21090
NGINX=127.0.0.1:$NGINX_PORT
start_nginx() {
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx;
  scgi_temp_path $WORK/nginx;
  keepalive_requests 100000000;
  server {
    listen $NGINX reuseport;
    location / { default_type text/plain; return 200 "$(printf '%097d' 0)\n"; }
  }
}
CONF
  taskset -c "$CLIENT_CPU" nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
  PIDS+=($!)
  wait_port "$NGINX_PORT"
  printf 'wrk.path = "http://%s/"\n' "$NGINX" > "$WORK/forward.lua"
}

# wrk_run NAME HOW: HOW is direct (to nginx, or to PROXY_ADDR when a TCP relay is running),
# socks5 (proxychains4 to PROXY_ADDR) or http-forward (absolute-form to HTTP_ADDR). Writes
# $OUT/wrk-NAME-keepalive.json and $OUT/wrk-NAME-close.json: requests/s (best of two), errors,
# latency, the proxy's CPU and its CPU's IPIs per request.
wrk_run() {
  local name=$1 how=$2 conn try
  local cmd=(wrk -t1 -c20 -d"$WRK_DURATION" --latency)
  case $how in
    direct) cmd+=("http://${PROXY_ADDR:-$NGINX}/") ;;
    socks5)
      printf 'strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 %s %s\n' \
        "${PROXY_ADDR%:*}" "${PROXY_ADDR##*:}" > "$WORK/proxychains.conf"
      cmd=(proxychains4 -q -f "$WORK/proxychains.conf" "${cmd[@]}" "http://$NGINX/") ;;
    http-forward) cmd+=(-s "$WORK/forward.lua" "http://$HTTP_ADDR/") ;;
  esac
  for conn in keepalive close; do
    local hdr=()
    [ "$conn" = close ] && hdr=(-H "Connection: close")
    log "wrk-$name-$conn"
    for try in 1 2; do
      local p0 p1 i0 i1
      p0=$( [ -n "${PROXY_PID:-}" ] && cpu_tree "$PROXY_PID" || echo 0); i0=$(ipis "$PROXY_CPU")
      on_client "${cmd[@]}" "${hdr[@]}" > "$WORK/wrk.out" 2>&1 || true
      p1=$( [ -n "${PROXY_PID:-}" ] && cpu_tree "$PROXY_PID" || echo 0); i1=$(ipis "$PROXY_CPU")
      python3 - "$WORK/wrk.out" "$OUT/wrk-$name-$conn.json" "$p0" "$p1" "$i0" "$i1" "$(getconf CLK_TCK)" "${PROXY_PID:-}" <<'PY'
import json, os, re, sys
text, path = open(sys.argv[1]).read(), sys.argv[2]
p0, p1, i0, i1, hz = (int(x) for x in sys.argv[3:8])
pid = sys.argv[8]
m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
n = re.search(r"(\d+) requests in", text)
if not m or not n:
    sys.exit("wrk printed no result:\n" + text)
rps, requests = float(m.group(1)), int(n.group(1))
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errs += int(bad.group(1)) if bad else 0
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
r = {"requests_per_s": rps, "requests": requests, "errors": errs, "p50": lat.get("50"), "p99": lat.get("99"),
     "proxy_cpu_us_per_request": (p1 - p0) / hz * 1e6 / requests if pid else None,
     "ipis_per_request": (i1 - i0) / requests}
old = json.load(open(path)) if os.path.exists(path) else None
if not old or old["requests_per_s"] < rps:
    json.dump(r, open(path, "w"))
PY
    done
  done
}

wrk_all() {
  rm -f "$OUT"/wrk-*.json
  start_nginx
  settle
  PROXY_ADDR=; PROXY_PID=
  wrk_run direct direct
  start_egressd 1
  wrk_run egressd-socks5 socks5
  wrk_run egressd-http http-forward
  stop_proxy
  if start_ceiling; then
    wrk_run ceiling socks5
    stop_proxy
  fi
  start_dante
  wrk_run dante socks5
  stop_proxy
  start_microsocks
  wrk_run microsocks socks5
  stop_proxy
  start_squid
  wrk_run squid-http http-forward
  stop_proxy
  start_haproxy "$NGINX"
  wrk_run haproxy direct
  stop_proxy
  PROXY_ADDR=
}

# write_section NAME FILE: puts FILE between benches/RESULTS.md's <!-- NAME:start --> and
# <!-- NAME:end --> markers (appended with them when absent).
write_section() {
  python3 - "$1" "$2" <<'PY'
import re, sys
name, section = sys.argv[1], open(sys.argv[2]).read()
path = "benches/RESULTS.md"
text = open(path).read()
start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
block = f"{start}\n{section}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
}

if [ "$ONLY" = perconn ] || [ "$ONLY" = wrk ]; then
  if [ "$ONLY" = perconn ]; then
    rm -f "$OUT"/*-rrsat.* "$OUT"/*-serial.*
    perconn_all
  fi
  wrk_all
  log "report"
  python3 benches/report.py "$OUT" "ONLY=$ONLY bash benches/compare.sh" perconn > "$WORK/perconn.md"
  write_section perconn "$WORK/perconn.md"
  log "done: benches/RESULTS.md (per-connection section)"
  exit 0
fi
if [ "$ONLY" = all ]; then
  perconn_all
  wrk_all
fi

# Idle: each proxy freshly started, RSS of its whole process tree before and with the tunnels.
start_egressd 1
idle egressd-idle socks5 "$ECHO"
stop_proxy
start_dante
idle dante-idle socks5 "$ECHO"
stop_proxy
start_microsocks
idle microsocks-idle socks5 "$ECHO"
stop_proxy
start_squid
idle squid-idle http-connect "$ECHO"
stop_proxy

log "report"
python3 benches/report.py "$OUT" "bash benches/compare.sh" > "$WORK/section.md"
write_section compare "$WORK/section.md"
python3 benches/report.py "$OUT" "bash benches/compare.sh" perconn > "$WORK/perconn.md"
write_section perconn "$WORK/perconn.md"
log "done: benches/RESULTS.md"
