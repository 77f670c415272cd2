#!/usr/bin/env bash
# Same-run A/B of examples/bench_burst.c against two builds of the library:
# `scripts/bench-burst-ab.sh BEFORE_DIR AFTER_DIR [RUNS]`, each directory
# holding a release `libchannelbox.so` (for example one built at the branch
# point and copied out, and this tree's `target/release`).
#
# Builds bench_burst against each (header from include/), then runs the two
# binaries alternately RUNS times (default 3), each run itself the median of
# 15 rounds, and prints the median of the RUNS medians for every cell
# (depths 1, 10, 64, 256; fresh and reused queues; ready fd off and on;
# send ns per delivery, drain ns per message). Then callgrind instructions
# per delivery (send) and per message (drain) for both, one run each part
# (deterministic). Prints the load average before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
runs=${3:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for side in before after; do
  dir=${!side}
  cc -O2 -Wall -Wextra -std=c11 -Iinclude examples/bench_burst.c -o "$work/bench_$side" \
    -L"$dir" -lchannelbox -Wl,-rpath,"$dir"
done

echo "# bench_burst A/B, $(date -u +%FT%TZ)"
echo "before: $before; after: $after"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
  for side in before after; do
    "$work/bench_$side" | grep -E '^\| [0-9]' >"$work/$side.$i"
  done
done
echo "load after the timed runs: $(cut -d' ' -f1-3 /proc/loadavg)"

# Instructions: "depth mode part Ir".
cg() {
  local bin=$1 part=$2 mode=$3 depth=$4 out="$work/cg.out"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$bin" --callgrind "$part" "$mode" "$depth" >/dev/null 2>&1
  callgrind_annotate "$out" | grep 'PROGRAM TOTALS' | tr -d , | awk '{print $1}'
}
if command -v valgrind >/dev/null; then
  for side in before after; do
    for depth in 1 10 64 256; do
      for mode in fresh reused; do
        for part in send drain send-ready drain-ready; do
          echo "$depth $mode $part $(cg "$work/bench_$side" "$part" "$mode" "$depth")"
        done
      done
    done >"$work/$side.cg"
  done
fi

python3 - "$work" "$runs" <<'EOF'
import statistics, sys, os
work, runs = sys.argv[1], int(sys.argv[2])
parts = ["send", "drain", "send-ready", "drain-ready"]
def timed(side):
    cells = {}
    for i in range(1, runs + 1):
        for line in open(f"{work}/{side}.{i}"):
            f = [x.strip() for x in line.strip().strip("|").split("|")]
            key = (int(f[0]), f[1])
            for p, v in zip(parts, f[2:6]):
                cells.setdefault(key + (p,), []).append(float(v))
    return {k: statistics.median(v) for k, v in cells.items()}
def counted(side):
    path = f"{work}/{side}.cg"
    out = {}
    if os.path.exists(path):
        for line in open(path):
            d, m, p, ir = line.split()
            out[(int(d), m, p)] = int(ir) / (int(d) * 1000)
    return out
tb, ta, cb, ca = timed("before"), timed("after"), counted("before"), counted("after")
print()
print("| depth | queues | ready fd | send ns, before → after | send instr. | drain ns, before → after | drain instr. |")
print("|---:|:---|:---|---:|---:|---:|---:|")
for d in (1, 10, 64, 256):
    for m in ("fresh", "reused"):
        for fd, s, dr in (("off", "send", "drain"), ("on", "send-ready", "drain-ready")):
            def cell(t0, t1, k):
                return f"{t0[k]:.1f} → {t1[k]:.1f}" if k in t0 and k in t1 else "-"
            def ins(k):
                return f"{cb[k]:.1f} → {ca[k]:.1f}" if k in cb and k in ca else "-"
            print(f"| {d} | {m} | {fd} | {cell(tb, ta, (d, m, s))} | {ins((d, m, s))} "
                  f"| {cell(tb, ta, (d, m, dr))} | {ins((d, m, dr))} |")
EOF
echo
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
