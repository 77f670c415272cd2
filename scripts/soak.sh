#!/usr/bin/env bash
# The soak benchmark (BENCHMARKS.md, "Soak"): builds the hub and the load generator in
# release, starts a fresh hub on a free 127.0.0.1 port with an empty data dir, and runs
# `loadgen soak` against it: readers that stay and must see every message id, churners
# that keep leaving and rejoining with ?since=, 100 msg/s over 20 rooms, for 10 minutes.
#
#   scripts/soak.sh                          # 10 minutes, 1000 readers, 1000 churners
#   scripts/soak.sh --duration 60            # any `loadgen soak` flag is passed on
#
# Environment: PORT (first port to try, default 18500), OUT (results, default
# target/soak/<UTC time>), HUB_ARGS (extra hub flags), NO_BUILD=1 (use what is built).
# The result is one JSON line in $OUT/soak.json; progress goes to stderr.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1

PORT="${PORT:-18500}"
OUT="${OUT:-$ROOT/target/soak/$(date -u +%Y%m%dT%H%M%SZ)}"
SECRET="soak-secret-$RANDOM$RANDOM"
DURATION=600
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--duration" ] && DURATION="${args[$((i + 1))]}"
done
mkdir -p "$OUT"

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --quiet --example hub --example loadgen || exit 1
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 20); do port_busy "$PORT" && PORT=$((PORT + 1)); done
DATA="$(mktemp -d)"
HUB_PID=""
stop_hub() {
  [ -n "$HUB_PID" ] || return 0
  kill "$HUB_PID" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$HUB_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$HUB_PID" 2>/dev/null
  wait "$HUB_PID" 2>/dev/null
  HUB_PID=""
  rm -rf "$DATA"
}
trap stop_hub EXIT

# The hub's per-socket rate limit is left at its default: each publisher sends
# 100/20 = 5 msg/s, well under it.
# shellcheck disable=SC2086
"$BIN/hub" --listen "127.0.0.1:$PORT" --jwt-secret "$SECRET" --data-dir "$DATA" ${HUB_ARGS:-} \
  > "$OUT/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 1 200); do port_busy "$PORT" && break; sleep 0.1; done
kill -0 "$HUB_PID" 2>/dev/null || { echo "the hub did not start (see $OUT/hub.log)" >&2; exit 1; }

{
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -r); cpus: $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rustc: $(rustc --version 2>/dev/null)"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null)"
  echo "hub: --listen 127.0.0.1:$PORT --jwt-secret <secret> --data-dir <tmp> ${HUB_ARGS:-}"
  echo "loadgen: soak $*"
} | tee "$OUT/versions.txt" >&2

"$BIN/loadgen" soak --url "ws://127.0.0.1:$PORT" --jwt-secret "$SECRET" \
  --server-pid "$HUB_PID" --timeout $((DURATION + 120)) "$@" > "$OUT/soak.json"
rc=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/versions.txt" >&2
kill -0 "$HUB_PID" 2>/dev/null || { echo "the hub died during the soak (see $OUT/hub.log)" >&2; rc=1; }
echo "result: $OUT/soak.json" >&2
exit $rc
