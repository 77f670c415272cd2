#!/usr/bin/env bash
# Reproduces BENCHMARKS.md with one command: builds the example hub and the example load
# generator in release, runs the load generator's scenarios a-e against the hub (each
# scenario against a freshly started hub on a free loopback port, stopped by its PID), and
# prints one markdown table.
#
#   scripts/bench-hub.sh                     # scenarios a b c d e, 3 rounds each (~1-2 min + build)
#   scripts/bench-hub.sh --scenarios "a e" --repeat 1
#   scripts/bench-hub.sh --peers             # then the referee comparison (shared/bench, ~10 min):
#                                            # custom (our hub), ws-node, socketio, nexios-uvloop
#
# Scenarios (examples/loadgen, `loadgen scenario X`):
#   a  1 room x 1000 subscribers, 1 publisher sends 200 messages back to back (saturation)
#   b  1 room x 1000 subscribers, 100 msg/s for 10 s: latency p50/p99
#   c  5000 idle connections in 500 rooms: server RSS per connection (VmRSS delta / conns)
#   d  100 rooms x 10 subscribers, 100 publishers x 200 messages at once
#   e  1 room x 100 subscribers, the first never reads; 250 msg/s of 4 KiB for 8 s: every
#      other reader must get 100%, and the server's RSS must stay bounded
#
# Options (or the environment variables in brackets):
#   --scenarios "a b c d e"  [SCENARIOS]  which scenarios
#   --repeat N               [REPEAT]     rounds per fan-out scenario, median reported (default 3;
#                                         scenario e runs REPEAT_E rounds, default 1)
#   --port P                 [PORT]       first port to try (default 18300); counts up, skipping busy ones
#   --out DIR                [OUT]        results (default target/bench-hub/<UTC time>)
#   --no-build                            use the binaries already built
#   --peers                               also run the referee's run_peers.sh (sets up ./bench-work)
#   HUB_ARGS                              extra hub flags, e.g. "--queue-max-bytes 262144"
#   LOADGEN_ARGS                          extra load generator flags, e.g. "--threads 2"
#   SHARED_BENCH                          the referee's folder (default ../shared/bench beside the repo)
#   BENCH_WORK                            --peers: where the referee is set up (default ./bench-work)
#   REF_PEERS (or PEERS), REF_SCENARIOS, REF_PORT
#                                         --peers: which peers (default "custom ws-node socketio
#                                         nexios-uvloop"), scenarios (a b c d) and first port (18100);
#                                         REPEAT is passed on to run_peers.sh as well. "custom" is
#                                         this hub; PEERS="rust-naive custom" compares it in the same
#                                         run with a plain tokio-tungstenite server
#   CARGO_TARGET_DIR                      honoured: binaries are taken from there
#
# The same-run comparison of this hub with rust-naive alone (skips this script's own scenarios):
#   PEERS="rust-naive custom" REF_SCENARIOS="a b d" scripts/bench-hub.sh --scenarios "" --peers
#
# Everything listens on and targets 127.0.0.1 only; every load generator run is bounded by
# its --timeout and every wait in this script by a count.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1

SCENARIOS="${SCENARIOS:-a b c d e}"
REPEAT="${REPEAT:-3}"
REPEAT_E="${REPEAT_E:-1}"
PORT="${PORT:-18300}"
OUT="${OUT:-}"
BUILD=1
PEERS_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --scenarios) SCENARIOS="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --peers) PEERS_RUN=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# >= 32 bytes, so any HS256 library accepts it without a warning.
SECRET="${BENCH_JWT_SECRET:-channelbox-bench-secret-0123456789abcdef}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
HUB="$TARGET/release/examples/hub"
LG="$TARGET/release/examples/loadgen"
OUT="${OUT:-$ROOT/target/bench-hub/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT" || exit 1
OUT="$(cd "$OUT" && pwd)"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
  echo "warning: open files limit is $(ulimit -n); scenario c needs ~10,100 (5000 per side)" >&2
fi

# ---------------------------------------------------------------- 1. build
if [ "$BUILD" = 1 ]; then
  echo "== building the hub and the load generator (release)" >&2
  cargo build --release --example hub --example loadgen >&2 || { echo "build failed" >&2; exit 1; }
fi
for b in "$HUB" "$LG"; do
  [ -x "$b" ] || { echo "missing $b (build failed, or run without --no-build)" >&2; exit 1; }
done

# The hub's listen flag: --listen ADDR:PORT, or --port PORT (+ --host).
HUB_HELP="$("$HUB" --help 2>&1 || true)"
listen_args() { # port
  if grep -q -- '--listen' <<<"$HUB_HELP"; then
    echo "--listen 127.0.0.1:$1"
  elif grep -q -- '--host' <<<"$HUB_HELP"; then
    echo "--host 127.0.0.1 --port $1"
  else
    echo "--port $1"
  fi
}
listen_template() { # the same with {port}, for run_peers.sh's CUSTOM_CMD
  listen_args '{port}'
}
# Every hub this script starts keeps its files (history on disk, the
# default; hub.redb) in a directory of its own under $OUT, so no run
# replays another's history. HUB_ARGS="--history-store memory" measures
# the hub with history in memory (as every figure before issue 11 was).
hub_flags() {
  local f="--jwt-secret $SECRET"
  # (unless HUB_ARGS names one: scripts/bench-durable.sh does)
  if grep -q -- '--data-dir' <<<"$HUB_HELP" && ! grep -q -- '--data-dir' <<<"${HUB_ARGS:-}"; then
    f="$f --data-dir $OUT/data.$(date +%s%N)"
  fi
  grep -q -- '--messages-per-second' <<<"$HUB_HELP" && f="$f --messages-per-second 0"
  echo "$f"
}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -r); cpus: $(nproc); mem: $(free -g 2>/dev/null | awk '/Mem:/{print $2}') GiB"
  echo "rustc: $(rustc --version 2>/dev/null)"
  echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none) $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(dirty tree)')"
  echo "hub: ${HUB#"$ROOT"/} $(listen_args PORT) $(hub_flags | sed "s/$SECRET/<secret>/") ${HUB_ARGS:-}"
  echo "loadgen: ${LG#"$ROOT"/} scenario X --repeat $REPEAT ${LOADGEN_ARGS:-}"
} > "$OUT/versions.txt"
cat "$OUT/versions.txt" >&2

# ---------------------------------------------------------------- 2. scenarios
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

HUB_PID=""
start_hub() { # sets HUB_PID and HUB_PORT; tries up to 10 ports
  local tries=0
  while [ $tries -lt 10 ]; do
    tries=$((tries + 1))
    PORT=$((PORT + 1))
    if port_busy "$PORT"; then continue; fi
    # shellcheck disable=SC2046,SC2086
    "$HUB" $(listen_args "$PORT") $(hub_flags) ${HUB_ARGS:-} > "$OUT/hub.$1.log" 2>&1 &
    HUB_PID=$!
    HUB_PORT=$PORT
    for _ in $(seq 1 200); do # 20 s
      if port_busy "$PORT"; then
        if kill -0 "$HUB_PID" 2>/dev/null; then return 0; fi
        break # someone else took the port meanwhile
      fi
      kill -0 "$HUB_PID" 2>/dev/null || break
      sleep 0.1
    done
    echo "   hub did not come up on port $PORT (see $OUT/hub.$1.log), trying the next port" >&2
    stop_hub
  done
  return 1
}

stop_hub() {
  [ -n "$HUB_PID" ] || return 0
  kill "$HUB_PID" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$HUB_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$HUB_PID" 2>/dev/null
  wait "$HUB_PID" 2>/dev/null
  HUB_PID=""
}
trap stop_hub EXIT
trap 'stop_hub; exit 130' INT TERM

scenario_timeout() {
  case "$1" in a) echo 75 ;; b) echo 90 ;; c) echo 60 ;; d) echo 60 ;; e) echo 90 ;; *) echo 60 ;; esac
}

FILES=()
NOTES=()
T_START=$(date +%s)
for sc in $SCENARIOS; do
  case "$sc" in a|b|c|d|e) ;; *) echo "unknown scenario $sc (a-e)" >&2; continue ;; esac
  rep="$REPEAT"; [ "$sc" = e ] && rep="$REPEAT_E"
  if ! start_hub "$sc"; then
    echo "{\"mode\":\"error\",\"scenario\":\"$sc\",\"error\":\"hub failed to start, see hub.$sc.log\"}" > "$OUT/$sc.json"
    FILES+=("$OUT/$sc.json"); continue
  fi
  echo "== scenario $sc: hub pid $HUB_PID on 127.0.0.1:$HUB_PORT" >&2
  t0=$(date +%s)
  # shellcheck disable=SC2086
  "$LG" scenario "$sc" --url "ws://127.0.0.1:$HUB_PORT" --jwt-secret "$SECRET" \
    --server-pid "$HUB_PID" --repeat "$rep" --timeout "$(scenario_timeout "$sc")" ${LOADGEN_ARGS:-} \
    > "$OUT/$sc.json" 2> "$OUT/$sc.log"
  rc=$?
  sed 's/^/   /' "$OUT/$sc.log" | head -14 >&2
  echo "   (loadgen rc=$rc, $(( $(date +%s) - t0 )) s)" >&2
  if ! kill -0 "$HUB_PID" 2>/dev/null; then
    NOTES+=("scenario $sc: the hub exited during the run (see $OUT/hub.$sc.log)")
  fi
  [ -s "$OUT/$sc.json" ] || echo "{\"mode\":\"error\",\"scenario\":\"$sc\",\"error\":\"loadgen rc=$rc, no output\"}" > "$OUT/$sc.json"
  FILES+=("$OUT/$sc.json")
  stop_hub
done
echo "scenarios took $(( $(date +%s) - T_START )) s; results in $OUT" >&2

{
  echo "### channelbox hub, loopback, $(nproc) cores ($(date -u +%F))"
  echo
  [ ${#FILES[@]} -gt 0 ] && "$LG" report "${FILES[@]}"
  echo
  echo "server µs/delivery = hub CPU (utime+stime from /proc/PID/stat) during the round / messages delivered;"
  echo "RSS/conn = (hub VmRSS after the hold - before connecting) / connections. Fan-out columns: median round."
  echo
  echo "Measured with \`scripts/bench-hub.sh$( [ "$SCENARIOS" != "a b c d e" ] && printf ' --scenarios "%s"' "$SCENARIOS")$( [ "$REPEAT" != 3 ] && printf ' --repeat %s' "$REPEAT")\`:"
  sed 's/^/- /' "$OUT/versions.txt"
  for n in "${NOTES[@]}"; do echo "- $n"; done
} | tee "$OUT/summary.md"

# ---------------------------------------------------------------- 3. referee comparison
if [ "$PEERS_RUN" = 1 ]; then
  SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
  BW="${BENCH_WORK:-$ROOT/bench-work}"
  if [ ! -x "$BW/run_peers.sh" ] || [ ! -x "$BW/loadgen/target/release/loadgen" ] || [ ! -x "$BW/.venv/bin/python" ]; then
    [ -x "$SHARED_BENCH/setup.sh" ] || { echo "no referee at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 1; }
    echo "== setting up the referee in $BW (npm, pip, cargo)" >&2
    "$SHARED_BENCH/setup.sh" "$BW" >&2 || { echo "referee setup failed" >&2; exit 1; }
  fi
  # run_peers.sh exports JWT_SECRET (its own fixed secret) to the servers it starts, and runs
  # CUSTOM_CMD through `bash -c "exec ..."` with {port} replaced, so $JWT_SECRET in CUSTOM_CMD
  # is expanded there. CUSTOM_ARGS is only word-split, never expanded, so it gets the value.
  REF_SECRET="$(sed -n 's/^SECRET="\([^"]*\)".*/\1/p' "$BW/run_peers.sh" | head -1)"
  [ -n "$REF_SECRET" ] || { echo "cannot read SECRET from $BW/run_peers.sh" >&2; exit 1; }
  custom_cmd="$HUB $(listen_template) --jwt-secret \$JWT_SECRET"
  # A fresh data directory for every start (run_peers.sh starts it once per round).
  if grep -q -- '--data-dir' <<<"$HUB_HELP" && ! grep -q -- '--data-dir' <<<"${HUB_ARGS:-}"; then
    custom_cmd="$custom_cmd --data-dir \$(mktemp -d -p $OUT data.XXXXXX)"
  fi
  grep -q -- '--messages-per-second' <<<"$HUB_HELP" && custom_cmd="$custom_cmd --messages-per-second 0"
  custom_cmd="$custom_cmd ${HUB_ARGS:-}"
  REF_PEERS="${REF_PEERS:-${PEERS:-custom ws-node socketio nexios-uvloop}}"
  echo "== referee: PEERS=\"$REF_PEERS\" CUSTOM_CMD='$custom_cmd'" >&2
  PEERS="$REF_PEERS" \
  SCENARIOS="${REF_SCENARIOS:-a b c d}" \
  PORT="${REF_PORT:-18100}" REPEAT="$REPEAT" \
  CUSTOM_CMD="$custom_cmd" \
  CUSTOM_ARGS="--protocol seed --jwt-secret $REF_SECRET" \
  OUT="$OUT/peers" \
    "$BW/run_peers.sh" | tee "$OUT/peers-summary.md"
fi
