#!/usr/bin/env bash
# Loopback fan-out of the C chat server beside the Rust hub, with the
# project's load generator: `examples/c-server/bench.sh [scenario...]`
# (default: a e; see `loadgen scenario --help`). Each server runs alone,
# on 127.0.0.1, with its default limits (the hub without its rate limit);
# the table of each run goes to stderr, its JSON line to target/bench-c-server/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECRET=bench-secret-0123456789abcdef
OUT=$ROOT/target/bench-c-server
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo build --release --quiet --example hub --example loadgen
make -C examples/c-server --quiet
LG=$ROOT/target/release/examples/loadgen

# Starts a server (its PID in $PID, its port in $PORT) and waits for it.
start() { # name
  local log=$OUT/$1.log
  if [ "$1" = c-server ]; then
    examples/c-server/chat-server --port 0 --jwt-secret "$SECRET" > "$log" 2>&1 &
  else
    PORT=$((20000 + RANDOM % 20000))
    target/release/examples/hub --listen "127.0.0.1:$PORT" --jwt-secret "$SECRET" \
      --messages-per-second 0 --data-dir "$OUT/hub-data" > "$log" 2>&1 &
  fi
  PID=$!
  for _ in $(seq 100); do
    if [ "$1" = c-server ]; then
      PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$log" | cut -d: -f2 || true)
      [ -n "$PORT" ] && return 0
    elif (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$1 did not start: $(cat "$log")" >&2
  exit 1
}

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(a e)
for scenario in "${scenarios[@]}"; do
  for server in c-server hub; do
    start $server
    echo "== $server, scenario $scenario" >&2
    timeout 300 "$LG" scenario "$scenario" --url "ws://127.0.0.1:$PORT" \
      --jwt-secret "$SECRET" --server-pid "$PID" --label "$server" \
      > "$OUT/$server.$scenario.json"
    kill -TERM "$PID"
    wait "$PID"
  done
done
