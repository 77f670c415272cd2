#!/usr/bin/env bash
# Instructions per delivery of the example hub under callgrind, one command:
#
#   scripts/callgrind-hub.sh [memory|disk] [d|a]      # default: disk d
#
# Runs the release hub under `valgrind --tool=callgrind` twice, with the
# load generator's fan-out of scenario d (100 rooms x 10 subscribers, 100
# publishers) or a (1 room x 1000, one publisher) at two message counts
# (M1, M2 per publisher; default 20 and 60 in d, 40 and 120 in a), and
# prints (Ir(M2) - Ir(M1)) / (deliveries(M2) - deliveries(M1)): the
# instructions of every hub thread (the history writer's included) per
# delivery, with the connections, joins and start-up cancelled out.
# Callgrind counts are exact, so this is stable on a loaded machine (the
# timing of group commits is not: under callgrind a commit gathers what
# arrived in its slowed-down time).
#
# Also printed: the same without the history writer thread
# (without-writer), and without it and the hub's state-store writer
# (without-writers: `embedded::write_batches`, which commits the joins'
# membership and first-visit marks in as many commits as the slowed-down
# joins happen to spread over, 270-440 here, ~200 000 instructions each: up
# to ~1 000 instructions a delivery of noise in the other two figures).
#
# CG_KEEP=DIR keeps the callgrind outputs there (callgrind_annotate them).
# HUB_ARGS: extra hub flags. Loopback only; the hub is stopped by its PID.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
STORE=${1:-disk}
SC=${2:-d}
case "$SC" in
  d) ROOMS=100; SUBS=10; M1=${M1:-20}; M2=${M2:-60} ;;
  a) ROOMS=1; SUBS=1000; M1=${M1:-40}; M2=${M2:-120} ;;
  *) echo "scenario d or a" >&2; exit 2 ;;
esac
SECRET=channelbox-bench-secret-0123456789abcdef
TARGET="${CARGO_TARGET_DIR:-target}"
HUB="${HUB:-$TARGET/release/examples/hub}"
LG="$TARGET/release/examples/loadgen"
KEEP=${CG_KEEP:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cg-hub.XXXXXX")
PORT=${PORT:-$((18950 + RANDOM % 500))}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

run() { # messages -> prints "Ir deliveries"
  local m=$1 out pid port
  out="$WORK/cg.$m"
  port=$PORT
  while port_busy "$port"; do port=$((port + 1)); done
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$out" "$HUB" --listen "127.0.0.1:$port" \
    --jwt-secret "$SECRET" --messages-per-second 0 --history-store "$STORE" \
    --data-dir "$WORK/data.$m" ${HUB_ARGS:-} >"$WORK/hub.$m.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    port_busy "$port" && break
    kill -0 "$pid" 2>/dev/null || break # the hub (or valgrind) exited
    sleep 0.1
  done
  "$LG" fanout --url "ws://127.0.0.1:$port" --jwt-secret "$SECRET" --rooms "$ROOMS" \
    --subs "$SUBS" --messages "$m" --quiet-ms 20000 --drain-ms 600000 --timeout 900 >"$WORK/lg.$m.json" 2>"$WORK/lg.$m.log"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  local ir del
  ir=$(grep -h '^totals:' "$out"* 2>/dev/null | awk '{s += $2} END {print s}')
  # The history writer thread's share, and its commits.
  writer=$(callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$out" 2>/dev/null \
    | awk '/channelbox::store::Writer::run \[/ {gsub(",", "", $1); print $1; exit}')
  # The hub's state store's writer thread (redb, joins' first-visit and
  # membership marks): its commits gather the joins' changes in a
  # timing-dependent number of commits, so it does not cancel out either.
  state=$(callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$out" 2>/dev/null \
    | awk '/channelbox_hub::store::embedded::write_batches \[/ {gsub(",", "", $1); print $1; exit}')
  commits=$(callgrind_annotate --inclusive=yes --tree=calling --threshold=100 --auto=no "$out" 2>/dev/null \
    | grep -m1 ">   .*channelbox::store::Writer::commit (" | grep -o "([0-9,]*x)" | tr -d '(),x')
  # The load generator's first round; none (it failed, or the hub did not
  # start) is an error, with the logs to read, not a Python traceback.
  if ! del=$(python3 -c 'import json,sys
try:
    d=json.load(open(sys.argv[1]))
    r=d["rounds"][0]
except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
    sys.exit(f"no round ({type(e).__name__}: {e})")
print(r.get("delivered", r.get("deliveries", 0)), r.get("lost", "?"))' "$WORK/lg.$m.json" 2>&1); then
    echo "callgrind-hub.sh: the load generator reported no round at M=$m: $del" >&2
    echo "  its output: $(head -c 300 "$WORK/lg.$m.log" 2>/dev/null)" >&2
    echo "  the hub's log: $(tail -c 300 "$WORK/hub.$m.log" 2>/dev/null)" >&2
    return 1
  fi
  echo "$ir $del ${writer:-0} ${commits:-0} ${state:-0}"
}

if ! out1=$(run "$M1") || ! out2=$(run "$M2"); then
  rm -rf "$WORK"
  exit 1
fi
read -r ir1 d1 lost1 w1 c1 s1 <<<"$out1"
read -r ir2 d2 lost2 w2 c2 s2 <<<"$out2"
per=$(python3 -c "print(round(($ir2 - $ir1) / ($d2 - $d1)))" 2>/dev/null || echo "?")
# Without the writer thread (whose commits gather what arrived in the
# slowed-down time, so their number varies from run to run), and the
# writer's instructions per saved message.
rest=$(python3 -c "print(round((($ir2 - $w2) - ($ir1 - $w1)) / ($d2 - $d1)))" 2>/dev/null || echo "?")
# Without either writer thread (the history's and the state store's): the
# send and delivery path alone, comparable between memory and disk.
path=$(python3 -c "print(round((($ir2 - $w2 - $s2) - ($ir1 - $w1 - $s1)) / ($d2 - $d1)))" 2>/dev/null || echo "?")
wmsg=$(python3 -c "print(round(($w2 - $w1) / (($d2 - $d1) / $SUBS)))" 2>/dev/null || echo "?")
echo "store=$STORE scenario=$SC M=$M1/$M2 Ir=$ir1/$ir2 deliveries=$d1/$d2 lost=$lost1/$lost2 instructions/delivery=$per without-writer/delivery=$rest without-writers/delivery=$path state-writer=$s1/$s2 writer/message=$wmsg commits=$c1/$c2 ${HUB_ARGS:-}"
if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp "$WORK"/cg.* "$KEEP"/; fi
rm -rf "$WORK"
