#!/usr/bin/env bash
# Where the example hub's CPU goes by thread, scenario d, one command:
#
#   scripts/probe-threads.sh BIN:STORE...      # e.g. /tmp/hub-before:disk target/release/examples/hub:memory
#
# For each spec in turn (ALT times, default 3): a fresh hub with that
# --history-store, a warm-up round of the load generator's fan-out d (100
# rooms x 10 subscribers, 100 publishers x 200 messages), then R rounds
# (default 8: 1.6 M deliveries), and each thread's CPU over those rounds in
# 10 ms ticks (utime + stime from /proc, threads of one name summed: the
# tokio workers carry the binary's name, `cbx-history` is the durable
# store's writer, `hub-state-write` the hub state store's). One line a run.
# LG: the load generator (default target/release/examples/loadgen).
# Loopback only; the hub is stopped by its PID.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
LG=${LG:-target/release/examples/loadgen}
S=channelbox-bench-secret-0123456789abcdef
R=${R:-8}
PORT=${PORT:-$((19000 + RANDOM % 500))}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
A="--rooms 100 --subs 10 --messages 200 --timeout 60 --drain-ms 20000 --jwt-secret $S"
ticks() { # pid -> "name ticks" per thread name
  for t in /proc/"$1"/task/*; do
    echo "$(tr ' ' '_' <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
  done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
for _ in $(seq 1 "${ALT:-3}"); do
  for spec in "$@"; do
    bin=${spec%:*}
    store=${spec##*:}
    D=$(mktemp -d)
    PORT=$((PORT + 1))
    "$bin" --listen "127.0.0.1:$PORT" --jwt-secret "$S" --messages-per-second 0 \
      --history-store "$store" --data-dir "$D/data" >"$D/log" 2>&1 &
    hp=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    # shellcheck disable=SC2086
    "$LG" fanout $A --repeat 1 --url "ws://127.0.0.1:$PORT" >/dev/null 2>&1
    ticks "$hp" >"$D/t0"
    # shellcheck disable=SC2086
    "$LG" fanout $A --repeat "$R" --url "ws://127.0.0.1:$PORT" --server-pid "$hp" >"$D/out.json" 2>"$D/lg.log"
    ticks "$hp" >"$D/t1"
    kill "$hp"
    wait "$hp" 2>/dev/null
    deliv=$(python3 -c 'import json,sys; print(sum(r.get("delivered", 0) for r in json.load(open(sys.argv[1])).get("rounds", [])))' "$D/out.json" 2>/dev/null || echo 0)
    echo "$spec deliveries=$deliv $(join "$D/t0" "$D/t1" | awk '{printf "%s=%d ", $1, $3 - $2}')"
    rm -rf "$D"
  done
done
