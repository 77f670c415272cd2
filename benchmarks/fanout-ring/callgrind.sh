#!/bin/sh
# Instructions and D1 misses (reads + writes, callgrind's cache model) per
# delivery (send) and per message (drain), for both designs at depths 1, 10,
# 64 and 256. Each phase is collected alone (`--toggle-collect` on its
# function), with the cache simulated throughout, so the lines a phase finds
# evicted are those the other phases evicted. See BENCHMARKS.md, "Shared
# ring vs per-connection queues (measured)".
set -eu
cd "$(dirname "$0")"
cargo build --release --quiet
bin=target/release/fanout-ring
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "| depth | phase | design | instructions | D1 misses |"
echo "|---:|:---|:---|---:|---:|"
for depth in 1 10 64 256; do
    for phase in send drain; do
        for design in queues ring ringclone; do
            n=$(valgrind --tool=callgrind --cache-sim=yes \
                --toggle-collect="*cg_${design}_${phase}*" \
                --callgrind-out-file="$out" "$bin" callgrind "$depth" 2>/dev/null)
            awk -v n="$n" -v depth="$depth" -v phase="$phase" -v design="$design" '
                /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
                /^summary:/ {
                    printf "| %d | %s | %s | %.1f | %.2f |\n", depth, phase, design,
                        $col["Ir"] / n, ($col["D1mr"] + $col["D1mw"]) / n
                }' "$out"
        done
    done
done
