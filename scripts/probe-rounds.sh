#!/usr/bin/env bash
# CPU per delivery round by round: R rounds of the referee's scenario d on
# one set of connections against one fresh server, one figure a round
# (the load generator's /proc ticks of the server over the round, per
# delivery). Shows whether a server's cost moves as it runs (the referee
# sums its rounds).
#
#   BENCH_WORK=<shared/bench set up with setup.sh> scripts/probe-rounds.sh naive
#   BENCH_WORK=... R=12 scripts/probe-rounds.sh target/release/examples/hub [hub flags]
#   STORE=disk (default memory) picks the hub's --history-store.
#
# Loopback only; the server is stopped by its PID; every run is bounded.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
B=${BENCH_WORK:-./bench-work}
LG=$B/loadgen/target/release/loadgen
[ -x "$LG" ] || { echo "no referee load generator at $LG: set BENCH_WORK (shared/bench/setup.sh DIR)" >&2; exit 1; }
S=$(sed -n 's/^SECRET="\([^"]*\)".*/\1/p' "$B/run_peers.sh" | head -1)
PORT=${PORT:-$((22000 + RANDOM % 5000))}
D=$(mktemp -d "${TMPDIR:-/tmp}/probe-rounds.XXXXXX")
ulimit -n 20000 2>/dev/null || true
bin=${1:?usage: probe-rounds.sh naive|HUB_BIN [hub flags]}; shift
if [ "$bin" = naive ]; then
  NAIVE=$B/peers/rust-naive/target/release/rust-naive
  JWT_SECRET=$S "$NAIVE" --port "$PORT" --batch > "$D/log" 2>&1 &
else
  "$bin" --listen "127.0.0.1:$PORT" --jwt-secret "$S" --messages-per-second 0 \
    --history-store "${STORE:-memory}" --data-dir "$D/data" "$@" > "$D/log" 2>&1 &
fi
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
timeout 600 "$LG" fanout --rooms 100 --subs 10 --messages 200 --timeout 120 --drain-ms 20000 \
  --url "ws://127.0.0.1:$PORT" --protocol seed --jwt-secret "$S" --repeat "${R:-12}" \
  --server-pid "$pid" > "$D/out.json" 2> "$D/lg.log"
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
python3 - "$D/out.json" "$bin" <<'PY'
import json, sys
rounds = json.load(open(sys.argv[1])).get("rounds", [])
per = [f"{r['server_cpu_s'] * 1e6 / max(r['delivered'], 1):.2f}" for r in rounds]
print(f"{sys.argv[2]}: µs/delivery by round {' '.join(per)}; lost {sum(r.get('lost') or 0 for r in rounds)}")
PY
rm -rf "$D"
