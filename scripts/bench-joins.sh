#!/usr/bin/env bash
# Hub CPU per join (issue 14 item 2): CONNS /chat joins (`loadgen idle`, one
# user and one HS256 token per connection, round-robin over ROOMS rooms)
# against a release hub with one worker and server pings off. The hub's CPU
# is the sum of its threads' /proc/PID/task/*/schedstat run time from just
# before the load generator starts until the hub goes quiet after the last
# join (no change for 1.5 s), so the load generator's own CPU (a separate
# process) is not in it, and neither are the leaves at the end.
#
#   cargo build --release --example hub --example loadgen
#   scripts/bench-joins.sh 19000 1900          # connections, rooms
#   CALLGRIND=1 scripts/bench-joins.sh 2000 200  # instructions per join instead
#
# With CALLGRIND=1 the hub runs under valgrind's callgrind; its counters are
# zeroed before the first join and dumped once the hub is quiet, so the
# profile (callgrind.joins.out in the current directory, or $CALLGRIND_OUT)
# holds the joining phase only. HUB_ARGS adds hub flags.
#
# NAIVE=DIR measures the referee's rust-naive instead (DIR is the referee's
# `peers/rust-naive`, its release binary built): the same seed protocol,
# token check, join notice to the room and history frame, so its CPU per
# join beside the hub's, run after run, is the same-run ratio:
#   NAIVE=/work/wt/bench/peers/rust-naive scripts/bench-joins.sh 19000 1900
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${1:-5000}"; ROOMS="${2:-500}"
TARGET="${CARGO_TARGET_DIR:-target}"
SECRET=measure-secret-0123456789abcdef0123456789
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d)
OUT="${CALLGRIND_OUT:-$PWD/callgrind.joins.out}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
HUB_CMD=("$TARGET/release/examples/hub" --port "$PORT" --jwt-secret "$SECRET" --data-dir "$DATA/hub"
  --ping-interval 0 --threads 1 ${HUB_ARGS:-})
if [ -n "${NAIVE:-}" ]; then
  # rust-naive's defaults: tokio's multi-threaded runtime, batched writes.
  export JWT_SECRET="$SECRET"
  HUB_CMD=("$NAIVE/target/release/rust-naive" --port "$PORT")
fi
if [ -n "${CALLGRIND:-}" ]; then
  HUB_CMD=(valgrind --tool=callgrind --callgrind-out-file="$OUT" "${HUB_CMD[@]}")
fi
mkdir -p "$DATA/hub"
"${HUB_CMD[@]}" >"$DATA/hub.log" 2>&1 &
HUB=$!
LG=
trap 'kill $HUB 2>/dev/null || true; [ -n "$LG" ] && kill $LG 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 600); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && break
  sleep 0.1
done
cpu() { cat /proc/$HUB/task/*/schedstat | awk '{s+=$1} END {printf "%.0f\n", s}'; }
# User and system time of the whole process, in clock ticks.
ticks() { awk '{print $14, $15}' /proc/$HUB/stat; }
sleep 1
[ -n "${CALLGRIND:-}" ] && callgrind_control --zero "$HUB" >/dev/null
A=$(cpu); TA=$(ticks)
T0=$(date +%s.%N)
"$TARGET/release/examples/loadgen" idle --url "ws://127.0.0.1:$PORT" --jwt-secret "$SECRET" \
  --conns "$CONNS" --rooms "$ROOMS" --hold-secs 600 --timeout 900 --connect-timeout-ms 60000 \
  --quiet >"$DATA/lg.json" 2>"$DATA/lg.err" &
LG=$!
# Quiet: the hub's CPU unchanged over 1.5 s (6 samples), at most 15 min.
LAST=$A; SAME=0; B=$A
for _ in $(seq 3600); do
  sleep 0.25
  NOW=$(cpu)
  if [ "$NOW" = "$LAST" ] && [ "$NOW" != "$A" ]; then SAME=$((SAME + 1)); else SAME=0; fi
  LAST=$NOW
  if [ "$SAME" -ge 6 ]; then B=$NOW; TB=$(ticks); break; fi
done
T1=$(date +%s.%N)
[ -n "${CALLGRIND:-}" ] && callgrind_control --dump=joins "$HUB" >/dev/null
# The load generator holds its sockets for 10 minutes and reports at the
# end: count the joined sockets on the hub's side now (ESTABLISHED from
# its port), then stop it.
JOINED=$(ss -Htn state established "( sport = :$PORT )" | wc -l)
kill $LG 2>/dev/null || true
wait $LG 2>/dev/null || true
LG=
python3 - "$A" "$B" "$JOINED" "$CONNS" "$ROOMS" "$T0" "$T1" "$TA" "${TB:-$TA}" "$(getconf CLK_TCK)" <<'PY'
import sys
a, b, joined, conns, rooms = (int(x) for x in sys.argv[1:6])
t0, t1 = float(sys.argv[6]), float(sys.argv[7])
ua, sa = (int(x) for x in sys.argv[8].split())
ub, sb = (int(x) for x in sys.argv[9].split())
hz = int(sys.argv[10])
user, system = (ub - ua) / hz, (sb - sa) / hz
cpu = b - a
per = cpu / joined / 1000 if joined else float("nan")
print(f"conns={conns} rooms={rooms} joined={joined} hub_cpu_ms={cpu / 1e6:.1f} "
      f"per_join_us={per:.1f} user_s={user:.2f} sys_s={system:.2f} wall_s={t1 - t0 - 1.5:.1f}")
PY
