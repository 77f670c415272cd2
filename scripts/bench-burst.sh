#!/usr/bin/env bash
# Fan-out under bursts through the C ABI, one command:
# `scripts/bench-burst.sh [--quick]`.
#
# Builds the release library and examples/bench_burst.c against it, runs
# the timed table (1000 members, 100 B, queue depths 1, 10, 64, 256; a host
# that drains connection by connection and one on the ready list), then
# counts instructions (and, for the sends, simulated D1 cache misses) per
# delivery under callgrind, for the sends and for the drains separately:
# stable numbers on a shared, noisy machine.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}

echo "# channelbox burst benchmark, $(date -u +%FT%TZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rustc: $(rustc --version); cc: $(cc --version | head -1)"
echo
cargo build --release --quiet -p channelbox
bin=target/release/bench_burst
cc -O2 -Wall -Wextra -std=c11 -Iinclude examples/bench_burst.c -o "$bin" \
  -Ltarget/release -lchannelbox -Wl,-rpath,"$PWD/target/release"
"$bin" $QUICK
echo
"$bin" --idle 100000

if command -v valgrind >/dev/null; then
  echo
  echo "callgrind (--cache-sim=yes): instructions (and D1 cache misses) per"
  echo "delivery for the sends, instructions per message for the drains; per"
  echo "connection host, then ready-list host (ready fd on, cbx_hub_recv_ready):"
  echo
  echo "| depth | queues | send | send D1 misses | drain, per connection | send, ready fd on | drain, ready list |"
  echo "|---:|:---|---:|---:|---:|---:|---:|"
  out=$(mktemp)
  trap 'rm -f "$out"' EXIT
  # Prints "Ir D1-misses" for one part of one run.
  cg() {
    valgrind --tool=callgrind --cache-sim=yes --instr-atstart=no --callgrind-out-file="$out" \
      "$bin" --callgrind "$1" "$2" "$3" >/dev/null 2>&1
    callgrind_annotate "$out" | grep 'PROGRAM TOTALS' | tr -d , \
      | awk '{print $1, $9 + $11}'
  }
  for depth in 1 10 64 256; do
    for mode in fresh reused; do
      read -r s_ir s_miss < <(cg send "$mode" "$depth")
      read -r d_ir _ < <(cg drain "$mode" "$depth")
      read -r rs_ir _ < <(cg send-ready "$mode" "$depth")
      read -r rd_ir _ < <(cg drain-ready "$mode" "$depth")
      awk -v n=$((depth * 1000)) -v s="$s_ir" -v m="$s_miss" -v d="$d_ir" \
        -v rs="$rs_ir" -v rd="$rd_ir" -v depth="$depth" -v mode="$mode" \
        'BEGIN { printf "| %d | %s | %.1f | %.2f | %.1f | %.1f | %.1f |\n", depth, mode, s / n, m / n, d / n, rs / n, rd / n }'
    done
  done
fi
