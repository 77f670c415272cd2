#!/usr/bin/env bash
# Memory per idle connection (issue 14 item 3): CONNS idle /chat sockets in
# ROOMS rooms (one user each, `loadgen idle --server-pid`) against a fresh
# release hub at its defaults (disk history, pings every 25 s, one worker).
# Prints the hub's RSS growth per connection (held - before, as loadgen
# reports it), its anonymous part (RssAnon: heap and stacks, without the
# code pages the first joins fault in: a fixed ~1.2 MB, 76-500 B a
# connection at 5,000 in nine runs of one binary, with what the page
# cache held of it and when the "before" sample fell) and the system's Slab growth per TCP socket (both ends of
# each loopback connection are on this machine: the delta is divided by
# 2 x CONNS; other processes move it too, so it is an estimate).
#
#   cargo build --release --example hub --example loadgen
#   scripts/bench-memory.sh 19000 1900 3     # connections, rooms, runs
#
# HUB_BIN=PATH measures another hub binary (before/after comparisons).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${1:-19000}"; ROOMS="${2:-1900}"; RUNS="${3:-3}"
TARGET="${CARGO_TARGET_DIR:-target}"
SECRET=measure-secret-0123456789abcdef0123456789
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
for r in $(seq 1 "$RUNS"); do
  DATA=$(mktemp -d)
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${HUB_BIN:-$TARGET/release/examples/hub}" --port "$PORT" --jwt-secret "$SECRET" --data-dir "$DATA" \
    --threads 1 --messages-per-second 0 >"$DATA/hub.log" 2>&1 &
  HUB=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  S0=$(slab_kb)
  "$TARGET/release/examples/loadgen" idle --url "ws://127.0.0.1:$PORT" --jwt-secret "$SECRET" \
    --conns "$CONNS" --rooms "$ROOMS" --hold-secs 10 --timeout 900 --server-pid "$HUB" --quiet \
    >"$DATA/lg.json" 2>"$DATA/lg.err" &
  LG=$!
  for _ in $(seq 9000); do grep -q joined "$DATA/lg.err" 2>/dev/null && break; sleep 0.1; done
  sleep 8
  S1=$(slab_kb)
  wait "$LG" || true
  kill "$HUB" 2>/dev/null || true; wait "$HUB" 2>/dev/null || true
  python3 - "$DATA/lg.json" "$S0" "$S1" "$CONNS" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
s0, s1, n = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"conns {r.get('conns')} in {r.get('rooms')} rooms: hub RSS {r.get('server_rss_kb_before')} -> "
      f"{r.get('server_rss_kb_held')} kB, {r.get('server_rss_bytes_per_conn')} B per connection "
      f"(anonymous {r.get('server_anon_bytes_per_conn')} B); "
      f"slab +{s1 - s0} kB, {(s1 - s0) * 1024 / (2 * n):.0f} B per TCP socket; "
      f"joining {r.get('connect_s')} s; errors {r.get('errors_total')}")
PY
  echo "load: $(cat /proc/loadavg)"
  rm -rf "$DATA"
done
