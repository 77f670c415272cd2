#!/usr/bin/env bash
# Durable history benchmark, one command: `scripts/bench-durable.sh [--quick|--hub-only]`.
#
# 1. examples/bench_durable: saved sends per second with group commit (1 to
#    64 sending threads, fsync on and off), and Hub::new on a store holding
#    1 M saved messages (1000 groups x 1000).
# 2. Instructions per saved send under callgrind (stable on a noisy
#    machine), memory store against disk store, groups of 10 members: one
#    sending thread (every send its own commit) and 16 (commits shared).
#    Counts every thread of the process, the writer's included.
# 3. The example hub's CPU per delivery with --history-store disk (fsync on;
#    --history-fsync false; --history-commit-interval-ms 5) against
#    --history-store memory in the same run, rounds alternating: loadgen
#    scenarios d (100 rooms x 10, 100 publishers x 200 saved messages) and a
#    (1 room x 1000, 200 messages), REPEAT rounds each (default 3), medians.
#    Uses scripts/bench-hub.sh (same hub flags, loopback only).
#
# BENCH_DIR: where the stores go (default target/); REPEAT: hub rounds;
# NO_BUILD=1: use the release binaries already built;
# STORES: which hub settings, in this order each round (default "memory disk
# disk-nofsync interval5ms"; also interval0ms, interval2ms: the disk store
# with that --history-commit-interval-ms, fsync on).
# HUB_BINS="before=/path/to/hub after=target/release/examples/hub": compare
# hub binaries in the same run, each round running every binary with every
# store in turn (default: target/release/examples/hub alone, label "hub");
# each binary's disk rows are divided by its own memory rows.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
QUICK=${1:-}
REPEAT=${REPEAT:-3}
[ "$QUICK" = --quick ] && REPEAT=1
HUB_ONLY=0
[ "$QUICK" = --hub-only ] && HUB_ONLY=1 && QUICK=

echo "# channelbox durable history benchmark, $(date -u +%FT%TZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "disk: $(df -h "${BENCH_DIR:-target}" | awk 'NR==2 {print $1, $2}')"
echo "rustc: $(rustc --version)"
echo
if [ -n "${NO_BUILD:-}" ]; then
  : # NO_BUILD=1: the release binaries already built
elif [ "$HUB_ONLY" = 1 ]; then
  cargo build --release --quiet --example hub --example loadgen || exit 1
else
  cargo build --release --quiet --example bench_durable --example hub --example loadgen || exit 1
fi
[ "$HUB_ONLY" = 1 ] || target/release/examples/bench_durable $QUICK

if [ "$HUB_ONLY" = 0 ] && command -v valgrind >/dev/null; then
  echo
  b=target/release/examples/bench_durable
  ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$b" --callgrind "$@" 2>&1 \
      | awk '/Collected/ {print $4}'; }
  echo "| callgrind, 100 B saved sends to groups of 10 | sending threads | instructions per send | per delivery |"
  echo "| --- | --- | --- | --- |"
  for threads in 1 16; do
    for store in memory disk; do
      a=$(ir "$store" "$threads" 1600); z=$(ir "$store" "$threads" 4800)
      per=$(( (z - a) / 3200 ))
      echo "| $store | $threads | $per | $(( per / 10 )) |"
    done
  done
fi

echo
echo "## hub CPU per delivery: --history-store memory vs disk (same run, alternating)"
OUTS=$(mktemp -d "${TMPDIR:-/tmp}/bench-durable.XXXXXX")
# Each binary gets a target directory of its own (links to it and to the
# load generator) for scripts/bench-hub.sh, which takes the hub from there.
LABELS=""
for spec in ${HUB_BINS:-hub=target/release/examples/hub}; do
  label=${spec%%=*}; bin=$(realpath "${spec#*=}")
  mkdir -p "$OUTS/bin-$label/release/examples"
  ln -sf "$bin" "$OUTS/bin-$label/release/examples/hub"
  ln -sf "$(realpath target/release/examples/loadgen)" "$OUTS/bin-$label/release/examples/loadgen"
  LABELS="$LABELS $label"
done
for round in $(seq 1 "$REPEAT"); do
  for label in $LABELS; do
  for store in ${STORES:-memory disk disk-nofsync interval5ms}; do
    data="$OUTS/data-$label-$store-$round"
    mkdir -p "$data"
    case "$store" in
      disk-nofsync) flags="--history-store disk --history-fsync false" ;;
      interval*ms) ms=${store#interval}; flags="--history-store disk --history-commit-interval-ms ${ms%ms}" ;;
      *) flags="--history-store $store" ;;
    esac
    CARGO_TARGET_DIR="$OUTS/bin-$label" HUB_ARGS="$flags --data-dir $data" scripts/bench-hub.sh --no-build \
      --scenarios "d a" --repeat 1 --out "$OUTS/$label-$store-$round" >/dev/null 2>"$OUTS/$label-$store-$round.log" \
      || echo "round $round ($label, $store) failed: see $OUTS/$label-$store-$round.log"
  done
  done
done
python3 - "$OUTS" "$REPEAT" "${STORES:-memory disk disk-nofsync interval5ms}" "$LABELS" <<'PY'
import json, statistics, sys, glob, os
outs, repeat, stores, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
def rounds(store, sc, key="server_us_per_delivery"):
    vals = []
    for f in glob.glob(os.path.join(outs, f"{store}-[0-9]*", f"{sc}.json")):
        for line in open(f):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            for r in d.get("rounds", []):
                v = r.get(key)
                if v is not None:
                    vals.append(v)
    return vals
print("| scenario | hub | store | server µs/delivery (median) | / memory | rounds | deliveries/s (median) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for sc in ("d", "a"):
    for label in labels:
        m = rounds(f"{label}-memory", sc)
        mm = statistics.median(m) if m else None
        for store in stores:
            v = rounds(f"{label}-{store}", sc)
            if not v or not mm:
                print(f"| {sc} | {label} | {store} | ? | ? | missing rounds | |")
                continue
            med = statistics.median(v)
            rate = statistics.median(rounds(f"{label}-{store}", sc, "deliveries_per_s") or [0])
            print(f"| {sc} | {label} | {store} | {med:.3f} | {med/mm:.2f}x | {v} | {rate:,.0f} |")
PY
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(raw results: $OUTS)"
