#!/usr/bin/env bash
# Five hubs as one (issue 14 item 5): a throw-away redis-server and five
# release hubs on it (loopback, fresh data dirs, each hub on its own
# 127.0.0.x address so every hub has a full ephemeral port range), one
# `loadgen idle` process per hub holding CONNS idle /chat connections, all
# in ONE room, then MESSAGES marked broadcasts from a sixth connection
# (`loadgen send`, on hub 1) that must reach every member on every hub.
#
# Measured per run: time to last delivery of each message (machine
# monotonic clock, sender to receiver), CPU per delivery per hub (the sum
# of its threads' schedstat run time over the broadcast window, less the
# same hub's idle rate measured just before), redis-server CPU in the
# same window, RSS per hub and per connection, joining time.
#
#   cargo build --release --example hub --example loadgen
#   scripts/bench-five.sh                    # 5 x 19,000 = 95,000 connections, 5 messages, 3 runs
#   CONNS=2000 RUNS=1 scripts/bench-five.sh  # a quick check
#
# Results: $OUT (default target/bench-five/<time>/), run-N/*.json and summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${CONNS:-19000}"       # per hub
HUBS="${HUBS:-5}"
MESSAGES="${MESSAGES:-5}"
INTERVAL_MS="${INTERVAL_MS:-1000}"
RUNS="${RUNS:-3}"
IDLE_WINDOW="${IDLE_WINDOW:-10}"   # s of idle CPU measured before the broadcasts
TARGET="${CARGO_TARGET_DIR:-target}"
HUB="$TARGET/release/examples/hub"
LG="$TARGET/release/examples/loadgen"
OUT="${OUT:-target/bench-five/$(date -u +%Y%m%dT%H%M%SZ)}"
SECRET=measure-secret-0123456789abcdef0123456789
ROOM=five-0
for b in "$HUB" "$LG"; do
  [ -x "$b" ] || { echo "missing $b: cargo build --release --example hub --example loadgen" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "no redis-server (scripts/ensure-redis.sh)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
  echo "open files limit $(ulimit -n) is below CONNS+200 ($((CONNS + 200)))" >&2; exit 1
fi
mkdir -p "$OUT"

free_port() { # free_port ADDR
  python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"
}
cpu_ns() { # run time of all threads of PID, ns
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s}'
}
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }
wait_lines() { # wait_lines PATTERN SECONDS FILE...: until every FILE has a line matching PATTERN
  local pat=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    local n=0
    for f in "$@"; do grep -q "$pat" "$f" 2>/dev/null && n=$((n + 1)); done
    [ "$n" -eq "$#" ] && return 0
    sleep 0.1
  done
  return 1
}

one_run() { # one_run DIR
  local dir=$1 pids=() lgs=() data
  data=$(mktemp -d)
  mkdir -p "$dir"
  local rport; rport=$(free_port 127.0.0.1)
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$data" >"$dir/redis.log" 2>&1 &
  local redis=$!
  cleanup() {
    for p in "${lgs[@]}" "${pids[@]}" "$redis"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$data"
  }
  trap cleanup RETURN
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  local addrs=() ports=()
  for i in $(seq 0 $((HUBS - 1))); do
    local addr=127.0.0.$((11 + i)) port
    port=$(free_port "$addr")
    addrs+=("$addr"); ports+=("$port")
    mkdir -p "$data/hub$i"
    "$HUB" --listen "$addr:$port" --jwt-secret "$SECRET" --data-dir "$data/hub$i" \
      --redis-url "redis://127.0.0.1:$rport/" --node-name "n$i" --threads 1 \
      --messages-per-second 0 --max-room-members 1000000 --join-notices-max-users 100 \
      >"$dir/hub$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 0 $((HUBS - 1))); do
    for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/${addrs[$i]}/${ports[$i]}") 2>/dev/null && break; sleep 0.1
    done
  done
  local -a j0 j1 rss0
  for i in "${!pids[@]}"; do j0[$i]=$(cpu_ns "${pids[$i]}"); rss0[$i]=$(rss_kb "${pids[$i]}"); done
  local rj0; rj0=$(cpu_ns "$redis")
  local t0; t0=$(date +%s.%N)
  for i in $(seq 0 $((HUBS - 1))); do
    "$LG" idle --url "ws://${addrs[$i]}:${ports[$i]}" --jwt-secret "$SECRET" --conns "$CONNS" \
      --rooms 1 --room-prefix five- --user-prefix "h${i}u" --hold-secs 900 --timeout 1200 \
      --expect-marked "$MESSAGES" --stop-file "$data/stop" --server-pid "${pids[$i]}" --quiet \
      >"$dir/idle$i.json" 2>"$dir/idle$i.err" &
    lgs+=($!)
  done
  local errs=(); for i in $(seq 0 $((HUBS - 1))); do errs+=("$dir/idle$i.err"); done
  if ! wait_lines 'joined' 900 "${errs[@]}"; then echo "joining did not finish" >&2; return 1; fi
  local t1; t1=$(date +%s.%N)
  sleep 5
  for i in "${!pids[@]}"; do j1[$i]=$(cpu_ns "${pids[$i]}"); done
  local rj1; rj1=$(cpu_ns "$redis")
  # Idle rate, then the broadcast window.
  local -a a0 a1 b0 b1 rss
  for i in "${!pids[@]}"; do a0[$i]=$(cpu_ns "${pids[$i]}"); done
  local ra0; ra0=$(cpu_ns "$redis"); local ta0; ta0=$(date +%s.%N)
  sleep "$IDLE_WINDOW"
  for i in "${!pids[@]}"; do a1[$i]=$(cpu_ns "${pids[$i]}"); rss[$i]=$(rss_kb "${pids[$i]}"); done
  local ra1; ra1=$(cpu_ns "$redis"); local ta1; ta1=$(date +%s.%N)
  for i in "${!pids[@]}"; do b0[$i]=$(cpu_ns "${pids[$i]}"); done
  local rb0; rb0=$(cpu_ns "$redis"); local tb0; tb0=$(date +%s.%N)
  "$LG" send --url "ws://${addrs[0]}:${ports[0]}" --jwt-secret "$SECRET" --room "$ROOM" \
    --user sender --messages "$MESSAGES" --interval-ms "$INTERVAL_MS" --timeout 120 --quiet \
    >"$dir/send.json" 2>"$dir/send.err" || true
  wait_lines 'marked complete' 120 "${errs[@]}" || echo "not every member got every message" >&2
  for i in "${!pids[@]}"; do b1[$i]=$(cpu_ns "${pids[$i]}"); done
  local rb1; rb1=$(cpu_ns "$redis"); local tb1; tb1=$(date +%s.%N)
  touch "$data/stop"
  for p in "${lgs[@]}"; do wait "$p" || true; done
  lgs=()
  {
    echo "hubs=$HUBS conns_per_hub=$CONNS messages=$MESSAGES interval_ms=$INTERVAL_MS"
    echo "join_wall_s=$(echo "$t1 - $t0" | bc)"
    echo "idle_window_s=$(echo "$ta1 - $ta0" | bc) broadcast_window_s=$(echo "$tb1 - $tb0" | bc)"
    for i in "${!pids[@]}"; do
      echo "hub$i pid=${pids[$i]} rss0_kb=${rss0[$i]} rss_kb=${rss[$i]} join_cpu_ns=$((j1[i] - j0[i])) idle_cpu_ns=$((a1[i] - a0[i])) bcast_cpu_ns=$((b1[i] - b0[i]))"
    done
    echo "redis join_cpu_ns=$((rj1 - rj0)) idle_cpu_ns=$((ra1 - ra0)) bcast_cpu_ns=$((rb1 - rb0))"
    echo "load: $(cat /proc/loadavg)"
  } >"$dir/samples.txt"
  python3 - "$dir" <<'PY'
import json, sys, re, glob, os
d = sys.argv[1]
s = open(os.path.join(d, "samples.txt")).read()
kv = lambda line: dict(re.findall(r"(\w+)=([\d.]+)", line))
lines = s.splitlines()
head = kv(lines[0]); conns = int(head["conns_per_hub"]); msgs = int(head["messages"])
win = kv(lines[2]); idle_s = float(win["idle_window_s"]); b_s = float(win["broadcast_window_s"])
idles = [json.loads(open(f).read().strip().splitlines()[-1]) for f in sorted(glob.glob(os.path.join(d, "idle*.json")))]
per_msg = {}
recv = 0; joined = 0; complete = 0
for r in idles:
    joined += r.get("conns", 0)
    m = r.get("marked") or {}
    recv += m.get("received", 0); complete += m.get("conns_complete", 0)
    for e in m.get("per_message", []):
        n, last = per_msg.get(e["seq"], (0, 0.0))
        per_msg[e["seq"]] = (n + e["received"], max(last, e["last_ms"]))
out = [f"joined {joined} of {conns * len(idles)}; marked deliveries {recv} of {joined * msgs}; "
       f"members with every message {complete}; join wall {float(head.get('join_wall_s', kv(lines[1])['join_wall_s'])):.1f} s"]
for seq in sorted(per_msg):
    n, last = per_msg[seq]
    out.append(f"message {seq}: {n} deliveries, last after {last:.1f} ms")
for line in lines[3:]:
    if line.startswith("hub"):
        h = kv(line); name = line.split()[0]
        idle_ns = int(h["idle_cpu_ns"]); b_ns = int(h["bcast_cpu_ns"])
        net = b_ns - idle_ns * b_s / idle_s
        deliveries = conns * msgs
        out.append(f"{name}: rss {int(h['rss_kb'])/1024:.0f} MiB ({(int(h['rss_kb'])-int(h['rss0_kb']))*1024/conns:.0f} B/conn over the idle hub); "
                   f"joins {int(h['join_cpu_ns'])/conns/1e3:.0f} us CPU each; "
                   f"idle {idle_ns/idle_s/1e6:.2f} ms CPU/s; broadcast window {b_ns/1e6:.1f} ms CPU; "
                   f"less idle {net/1e6:.1f} ms = {net/deliveries:.0f} ns per delivery")
    elif line.startswith("redis"):
        h = kv(line)
        out.append(f"redis: joins {int(h['join_cpu_ns'])/conns/len(idles)/1e3:.1f} us CPU each; idle {int(h['idle_cpu_ns'])/idle_s/1e6:.2f} ms CPU/s; broadcast window "
                   f"{int(h['bcast_cpu_ns'])/1e6:.1f} ms CPU ({int(h['bcast_cpu_ns'])/1e3/msgs:.0f} us per message, idle included)")
    elif line.startswith("load"):
        out.append(line)
open(os.path.join(d, "summary.txt"), "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
}

for r in $(seq 1 "$RUNS"); do
  echo "== run $r ($(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg))"
  one_run "$OUT/run-$r"
done
echo "results in $OUT"
