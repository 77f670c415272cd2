#!/usr/bin/env bash
# Latency at 100 msg/s (issue 14 item 6, scenario b: 1 room x 1000
# members, 100 messages a second for 10 s) with a load generator that is
# not the bottleneck: the 1000 members are split over PROCS `loadgen idle`
# processes (one thread each, so they run on whichever core is free), the
# messages come from a separate `loadgen send` process, and every message
# is stamped with the machine's CLOCK_MONOTONIC, so receive time minus send
# time is measured across processes. Each receiver process reports its own
# percentiles; the run's p99 is at most the highest of them (if no process
# has more than 1% of its deliveries above x, neither has the whole run).
# The load generator's CPU is reported beside the hub's.
#
#   cargo build --release --example hub --example loadgen
#   scripts/bench-latency.sh                 # 1000 members, 4 processes, 1000 messages at 10 ms, 3 runs
#   SUBS=1000 PROCS=4 MESSAGES=1000 INTERVAL_MS=10 RUNS=3 scripts/bench-latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS="${SUBS:-1000}"; PROCS="${PROCS:-4}"; MESSAGES="${MESSAGES:-1000}"
INTERVAL_MS="${INTERVAL_MS:-10}"; RUNS="${RUNS:-3}"
HUB_ARGS="${HUB_ARGS:-}"
TARGET="${CARGO_TARGET_DIR:-target}"
HUB="$TARGET/release/examples/hub"; LG="$TARGET/release/examples/loadgen"
OUT="${OUT:-target/bench-latency/$(date -u +%Y%m%dT%H%M%SZ)}"
SECRET=measure-secret-0123456789abcdef0123456789
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cpu_ns() { { cat /proc/"$1"/task/*/schedstat 2>/dev/null || true; } | awk '{s+=$1} END {printf "%.0f\n", s}'; }

for r in $(seq 1 "$RUNS"); do
  dir="$OUT/run-$r"; mkdir -p "$dir"
  data=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # shellcheck disable=SC2086
  "$HUB" --port "$port" --jwt-secret "$SECRET" --data-dir "$data" --messages-per-second 0 \
    $HUB_ARGS >"$dir/hub.log" 2>&1 &
  hub=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  lgs=()
  per=$(( (SUBS + PROCS - 1) / PROCS ))
  for i in $(seq 0 $((PROCS - 1))); do
    n=$(( i == PROCS - 1 ? SUBS - per * (PROCS - 1) : per ))
    "$LG" idle --url "ws://127.0.0.1:$port" --jwt-secret "$SECRET" --conns "$n" --rooms 1 \
      --room-prefix lat- --user-prefix "p${i}u" --hold-secs 120 --timeout 300 \
      --expect-marked "$MESSAGES" --stop-file "$data/stop" --quiet >"$dir/idle$i.json" 2>"$dir/idle$i.err" &
    lgs+=($!)
  done
  for _ in $(seq 1200); do
    n=0; for i in $(seq 0 $((PROCS - 1))); do grep -q joined "$dir/idle$i.err" 2>/dev/null && n=$((n + 1)); done
    [ "$n" -eq "$PROCS" ] && break; sleep 0.1
  done
  sleep 2
  h0=$(cpu_ns "$hub"); l0=0; for p in "${lgs[@]}"; do l0=$((l0 + $(cpu_ns "$p"))); done
  "$LG" send --url "ws://127.0.0.1:$port" --jwt-secret "$SECRET" --room lat-0 --user sender \
    --messages "$MESSAGES" --interval-ms "$INTERVAL_MS" --timeout 120 --quiet \
    >"$dir/send.json" 2>"$dir/send.err" &
  snd=$!
  sent_cpu=0
  while kill -0 "$snd" 2>/dev/null; do sent_cpu=$(cpu_ns "$snd" || echo "$sent_cpu"); sleep 0.2; done
  wait "$snd" || true
  for _ in $(seq 100); do
    n=0; for i in $(seq 0 $((PROCS - 1))); do grep -q 'marked complete' "$dir/idle$i.err" 2>/dev/null && n=$((n + 1)); done
    [ "$n" -eq "$PROCS" ] && break; sleep 0.1
  done
  h1=$(cpu_ns "$hub"); l1=0; for p in "${lgs[@]}"; do l1=$((l1 + $(cpu_ns "$p"))); done
  touch "$data/stop"
  for p in "${lgs[@]}"; do wait "$p" || true; done
  kill "$hub" 2>/dev/null || true; wait "$hub" 2>/dev/null || true
  rm -rf "$data"
  python3 - "$dir" "$SUBS" "$MESSAGES" "$((h1 - h0))" "$((l1 - l0))" "$sent_cpu" <<'PY' | tee "$dir/summary.txt"
import json, sys, glob, os
d, subs, msgs, hub_ns, lg_ns, snd_ns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6] or 0)
rs = [json.loads(open(f).read().strip().splitlines()[-1]) for f in sorted(glob.glob(os.path.join(d, "idle*.json")))]
m = [r.get("marked") or {} for r in rs]
recv = sum(x.get("received", 0) for x in m)
p50 = [x.get("lat_p50_ms") for x in m]; p99 = [x.get("lat_p99_ms") for x in m]; mx = [x.get("lat_max_ms") for x in m]
print(f"deliveries {recv} of {subs * msgs} (lost {subs * msgs - recv}); per process p50 {p50} p99 {p99} max {mx} ms")
print(f"run p99 <= {max(v for v in p99 if v is not None):.2f} ms; max {max(v for v in mx if v is not None):.2f} ms")
print(f"hub CPU {hub_ns/1e6:.0f} ms = {hub_ns/1e3/max(recv,1):.2f} us/delivery; receivers' CPU {lg_ns/1e6:.0f} ms "
      f"({lg_ns/1e3/max(recv,1):.2f} us/delivery); sender {snd_ns/1e6:.0f} ms")
print("load: " + open("/proc/loadavg").read().strip())
PY
done
echo "results in $OUT"
