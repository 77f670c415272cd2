#!/usr/bin/env bash
# Reproduces the search section of BENCHMARKS.md with one command: builds
# examples/hub/examples/bench_search.rs in release, runs it RUNS times alone
# (memory index: queries, then the rebuild from history a restarted hub does)
# and RUNS times on Redis (two nodes on a throw-away redis-server: node 1
# saves and indexes, node 2 queries), and prints the median of every
# `result` line over the runs.
#
#   scripts/bench-search.sh                    # 1,000,000 messages, 1000 rooms, 3 runs each
#   N=200000 ROOMS=100 RUNS=1 scripts/bench-search.sh
#   MODES=alone scripts/bench-search.sh        # or MODES=redis
#
# Each run's full output is kept in OUT (default target/bench-search/<UTC time>).
# A 1M run takes about a minute alone and two to four on Redis (filling
# Redis history through the core is most of it), and up to ~1.5 GB of RAM
# for Redis.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
ROOMS=${ROOMS:-1000}
RUNS=${RUNS:-3}
MODES=${MODES:-"alone redis"}
OUT=${OUT:-target/bench-search/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

case " $MODES " in *" redis "*) scripts/ensure-redis.sh ;; esac
cargo build --release -q -p channelbox-hub --example bench_search
BIN=${CARGO_TARGET_DIR:-target}/release/examples/bench_search

for run in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
        flag=""
        [ "$mode" = redis ] && flag="--redis"
        echo "run $run/$RUNS: $mode ($N messages, $ROOMS rooms), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        # Bounded: a run that hangs is cut after 15 minutes.
        timeout 900 "$BIN" $flag "$N" "$ROOMS" > "$OUT/$mode-$run.txt"
    done
done

python3 - "$OUT" <<'EOF'
import collections, glob, statistics, sys
out = sys.argv[1]
values = collections.OrderedDict()
for path in sorted(glob.glob(f"{out}/*.txt")):
    for line in open(path):
        if line.startswith("result "):
            key, value = line[len("result "):].rsplit(" = ", 1)
            values.setdefault(key.strip(), []).append(float(value))
print(f"medians over runs ({out}):")
print("| measure | median | runs |")
print("| --- | ---: | --- |")
for key, vs in values.items():
    print(f"| {key} | {statistics.median(vs):g} | {', '.join(f'{v:g}' for v in vs)} |")
EOF
