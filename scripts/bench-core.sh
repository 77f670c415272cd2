#!/usr/bin/env bash
# Core benchmark, one command: `scripts/bench-core.sh [--quick]`.
#
# 1. examples/bench_core: fan-out ns per delivery (groups of 1..10,000,
#    100 B / 4 KB, with and without history), batch drain, two threads,
#    heap per idle connection and per history message.
# 2. Nexios' own ChannelBox.group_send to 1000 no-op channels, measured by
#    shared/bench/inproc/nexios_inproc.py in the same run, and the ratio.
# 3. Instructions per delivery under callgrind (stable on a noisy machine),
#    for groups of 1, 1000 and 10,000.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
SHARED=${SHARED_BENCH:-../shared/bench}
VENV=${BENCH_VENV:-.venv-bench}

echo "# channelbox core benchmark, $(date -u +%FT%TZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "rustc: $(rustc --version)"
echo
cargo build --release --quiet --example bench_core
target/release/examples/bench_core $QUICK | tee /tmp/bench_core.out

ours_ns=$(awk -F'|' '$2+0==1000 && $3 ~ /100 B/ && $4 ~ /no/ {gsub(/ /,"",$5); print $5}' /tmp/bench_core.out)

echo
if [ -f "$SHARED/inproc/nexios_inproc.py" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q nexios==3.12.3 uvloop >/dev/null
  fi
  nexios_json=$("$VENV/bin/python" "$SHARED/inproc/nexios_inproc.py" --channels 1000 --seconds 2 --repeat 3 --json | tail -1)
  nexios_us=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); v=d.get("noop") or d.get("results",{}).get("noop") or d; print(v["us_per_delivery"] if isinstance(v,dict) and "us_per_delivery" in v else "")' "$nexios_json" 2>/dev/null || true)
  echo "Nexios ChannelBox.group_send, 1000 no-op channels: ${nexios_us:-?} µs per delivery"
  echo "channelbox group_send, 1000 members, 100 B: ${ours_ns} ns per delivery"
  if [ -n "${nexios_us:-}" ] && [ -n "$ours_ns" ]; then
    python3 -c "import sys; n=float(sys.argv[1])*1000; o=float(sys.argv[2]); print(f'ratio: channelbox is {n/o:.0f}x faster per delivery')" "$nexios_us" "$ours_ns"
  fi
  echo "(raw Nexios result: $nexios_json)"
else
  echo "shared/bench not found at $SHARED: skipping the Nexios comparison"
fi

if command -v valgrind >/dev/null; then
  echo
  b=target/release/examples/bench_core
  ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null \
      --toggle-collect='*Hub*::group_send*' "$b" --callgrind "$1" "$2" 2>&1 \
      | awk '/Collected/ {print $4}'; }
  # members, then two send counts: the difference divided by the extra
  # deliveries is the cost of one delivery.
  for spec in "1 10000 60000" "1000 100 600" "10000 10 60"; do
    set -- $spec
    a=$(ir "$2" "$1"); z=$(ir "$3" "$1")
    echo "callgrind: $(( (z - a) / (($3 - $2) * $1) )) instructions per delivery (group of $1, 100 B, no history)"
  done
fi

echo
echo "Bursts through the C ABI (queue depths 1 to 256): scripts/bench-burst.sh"
