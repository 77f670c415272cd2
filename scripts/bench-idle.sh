#!/usr/bin/env bash
# Idle CPU of the hub per connection per second, with server pings at a
# given interval: CONNS idle /chat connections (loadgen idle, one user per
# connection) against a release hub with one worker, hub CPU time (sum of
# its threads' schedstat run time) over a 30 s window that starts 5 s after
# the load generator said every connection joined (at 19,000 joining can
# take longer than any fixed wait on a busy machine).
#
#   cargo build --release --example hub --example loadgen
#   scripts/bench-idle.sh 25 5000      # ping interval (s; 0 = off), connections
set -euo pipefail
cd "$(dirname "$0")/.."
PING="${1:-25}"; CONNS="${2:-3000}"
TARGET="${CARGO_TARGET_DIR:-target}"
SECRET=measure-secret-0123456789abcdef0123456789
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DATA=$(mktemp -d)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$TARGET/release/examples/hub" --port "$PORT" --jwt-secret "$SECRET" --data-dir "$DATA" \
  --ping-interval "$PING" --threads 1 >"$DATA/hub.log" 2>&1 &
HUB=$!
trap 'kill $HUB 2>/dev/null || true; rm -rf "$DATA"' EXIT
sleep 1
"$TARGET/release/examples/loadgen" idle --url "ws://127.0.0.1:$PORT" --jwt-secret "$SECRET" \
  --conns "$CONNS" --rooms 30 --hold-secs 40 --timeout 600 --quiet >"$DATA/lg.json" 2>"$DATA/lg.err" &
LG=$!
cpu() { cat /proc/$HUB/task/*/schedstat | awk '{s+=$1} END {printf "%.0f\n", s}'; }
for _ in $(seq 5000); do grep -q joined "$DATA/lg.err" 2>/dev/null && break; sleep 0.1; done
sleep 5
A=$(cpu); sleep 30; B=$(cpu)
wait $LG || true
python3 - "$A" "$B" "$CONNS" "$PING" <<'PY'
import sys
a, b, n, ping = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print(f"ping={ping}s conns={n} window=30s hub_cpu_ns={b - a} per_conn_per_s_ns={(b - a) / n / 30:.1f}")
PY
cat "$DATA/lg.json"
echo "load: $(cat /proc/loadavg)"
