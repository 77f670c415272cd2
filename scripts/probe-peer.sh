#!/usr/bin/env bash
# Hub against rust-naive in the referee's scenario d (or a), syscall by
# syscall: per spec, a fresh server, one warm-up run of the referee's load
# generator, then R rounds under `perf stat` (syscall tracepoints need
# perf_event_paranoid <= 2 for your own processes, or root). ALT passes,
# the specs alternating within each pass.
#
#   scripts/probe-peer.sh naive hub:memory hub:disk            # main's release hub
#   scripts/probe-peer.sh naive hub:disk:/tmp/hub-old hub:disk:target/release/examples/hub
#   scripts/probe-peer.sh "hub:memory::--read-buffer-bytes 16384"   # spec = hub:STORE[:BIN[:FLAGS]]
#   R=8 ALT=3 SC=d BENCH_WORK=./bench-work (defaults)
#   LG_ARGS="--rate 200": load generator flags for the measured rounds
#   (a fixed rate per publisher: both servers get the same arrivals, so
#   their batching does not depend on their own speed)
#
# One line a run, per delivery: `rounds_us/d`, the server's CPU during the
# rounds only (the load generator's /proc ticks summed over the R rounds,
# what the referee reports per round: joins excluded); `us/d`, perf's
# task-clock over the whole run (joins included); user and system time;
# then system calls and context switches per 1000 deliveries.
# BENCH_WORK is shared/bench installed with its setup.sh (as for
# `scripts/bench-hub.sh --peers`). Loopback only; every run is bounded.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
B=${BENCH_WORK:-./bench-work}
LG=$B/loadgen/target/release/loadgen
NAIVE=$B/peers/rust-naive/target/release/rust-naive
[ -x "$LG" ] || { echo "no referee load generator at $LG: set BENCH_WORK (shared/bench/setup.sh DIR)" >&2; exit 1; }
[ -x "$NAIVE" ] || (cd "$B/peers/rust-naive" && cargo build --release -q) || exit 1
S=$(sed -n 's/^SECRET="\([^"]*\)".*/\1/p' "$B/run_peers.sh" | head -1)
R=${R:-8}; PORT=${PORT:-19760}; SC=${SC:-d}
ulimit -n 20000 2>/dev/null || true
EV=task-clock,context-switches
for s in sendto recvfrom write epoll_wait futex; do EV="$EV,syscalls:sys_enter_$s"; done
case $SC in
  d) SHAPE="--rooms 100 --subs 10" ;;
  a) SHAPE="--rooms 1 --subs 1000" ;;
  *) echo "SC=d or SC=a" >&2; exit 2 ;;
esac
fanout() { # port [extra loadgen flags]
  local port=$1; shift
  # shellcheck disable=SC2086
  timeout 300 "$LG" fanout $SHAPE --messages 200 --timeout 120 --drain-ms 20000 \
    --url "ws://127.0.0.1:$port" --protocol seed --jwt-secret "$S" "$@"
}
for i in $(seq 1 "${ALT:-3}"); do
  for spec in "$@"; do
    D=$(mktemp -d "${TMPDIR:-/tmp}/probe-peer.XXXXXX"); PORT=$((PORT + 1))
    case $spec in
      naive) JWT_SECRET=$S "$NAIVE" --port $PORT --batch > "$D/log" 2>&1 & ;;
      hub:*)
        IFS=: read -r _ store bin flags <<< "$spec"
        # shellcheck disable=SC2086
        "${bin:-target/release/examples/hub}" --listen 127.0.0.1:$PORT --jwt-secret "$S" \
          --messages-per-second 0 --history-store "$store" --data-dir "$D/data" ${flags:-} > "$D/log" 2>&1 & ;;
      *) echo "spec: naive or hub:STORE[:BIN[:FLAGS]]" >&2; exit 2 ;;
    esac
    pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    fanout $PORT --repeat 1 > /dev/null 2>&1
    perf stat -e "$EV" -p $pid -o "$D/perf.txt" & pp=$!
    # shellcheck disable=SC2086
    fanout $PORT --repeat "$R" --server-pid $pid ${LG_ARGS:-} > "$D/out.json" 2> "$D/lg.log"
    kill -INT $pp; wait $pp 2>/dev/null
    kill $pid; for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    python3 - "$D" "$spec" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, re, sys
d, spec, load = sys.argv[1:]
rounds = json.load(open(f"{d}/out.json")).get("rounds", [])
deliv = sum(r.get("delivered", 0) for r in rounds)
cpu = sum(r.get("server_cpu_s") or 0 for r in rounds)
lost = sum(r.get("lost") or 0 for r in rounds)
p = {}
for line in open(f"{d}/perf.txt"):
    m = re.match(r"\s*([\d.,]+)\s+(?:msec\s+)?(\S+)", line)
    if m:
        p[m.group(2).split(":")[-1].replace("sys_enter_", "")] = float(m.group(1).replace(",", ""))
k = 1000 / max(deliv, 1)
print(f"{spec}: rounds_us/d={cpu * 1e6 / max(deliv, 1):.3f} us/d={p.get('task-clock', 0) * k:.3f} deliveries={deliv} lost={lost} "
      + " ".join(f"{n}={p.get(n, 0) * k:.1f}" for n in ["sendto", "recvfrom", "write", "epoll_wait", "futex", "context-switches"])
      + f" (per 1000 deliveries) load={load}")
PY
    rm -rf "$D"
  done
done
