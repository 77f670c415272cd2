#!/usr/bin/env bash
# Where the disk store's CPU goes in loadgen scenario d (issue 11): per hub
# binary and history store, one fresh hub, one warm-up run of d, then R
# rounds of d (default 8) under `perf stat` (syscall counts: root or
# perf_event_paranoid <= 1 for the tracepoints), and the hub's threads' CPU
# from /proc (the tokio workers apart from the history writer `cbx-history`).
#
#   scripts/probe-durable.sh before=/tmp/hub-old:memory before=/tmp/hub-old:disk \
#       after=target/release/examples/hub:disk          # each spec label=binary:store
#   ALTERNATE=3 R=8 PORT=18760 (defaults) ; extra hub flags in HUB_ARGS
#
# One line a run: deliveries, the hub's task-clock per delivery (whole loadgen
# run, joins included), worker and writer ticks (10 ms, user+sys), sendto
# calls and deliveries per sendto, write/epoll_wait calls, context switches,
# history commits (warm-up included). Loopback only; every wait is bounded.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
LG=target/release/examples/loadgen
S=channelbox-bench-secret-0123456789abcdef
R=${R:-8}
PORT=${PORT:-18760}
ulimit -n 20000 2>/dev/null || true
token() { python3 - "$S" <<'PY'
import hmac, hashlib, base64, json, time, sys
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"sub": "probe", "username": "probe", "roles": ["admin"], "exp": int(time.time()) + 3600}).encode())
print(h + "." + p + "." + b(hmac.new(sys.argv[1].encode(), (h + "." + p).encode(), hashlib.sha256).digest()))
PY
}
ticks() { # comm user sys, summed over the threads of that name
  for t in /proc/"$1"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14, $15}' "$t/stat")"; done \
    | awk '{u[$1]+=$2; s[$1]+=$3} END {for (k in u) print k, u[k], s[k]}' | sort
}
EV=task-clock,context-switches,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait
for i in $(seq 1 "${ALTERNATE:-3}"); do
  for spec in "$@"; do
    label=${spec%%=*}; rest=${spec#*=}; bin=${rest%:*}; store=${rest##*:}
    D=$(mktemp -d "${TMPDIR:-/tmp}/probe-durable.XXXXXX")
    # shellcheck disable=SC2086
    "$bin" --listen 127.0.0.1:$PORT --jwt-secret $S --messages-per-second 0 --data-dir "$D" \
      --history-store "$store" ${HUB_ARGS:-} > "$D/hub.log" 2>&1 &
    hp=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    $LG scenario d --url ws://127.0.0.1:$PORT --jwt-secret $S --repeat 1 --timeout 120 > /dev/null 2>&1
    ticks $hp > "$D/t0"
    perf stat -e "$EV" -p $hp -o "$D/perf.txt" & pp=$!
    $LG scenario d --url ws://127.0.0.1:$PORT --jwt-secret $S --server-pid $hp --repeat "$R" \
      --timeout 120 > "$D/d.json" 2> "$D/d.log"
    kill -INT $pp; wait $pp 2>/dev/null
    ticks $hp > "$D/t1"
    commits=$(curl -s -m 5 -H "Authorization: Bearer $(token)" "http://127.0.0.1:$PORT/stats?detail" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["detail"]["history_store"]["commits"])' 2>/dev/null)
    kill $hp; for _ in $(seq 50); do kill -0 $hp 2>/dev/null || break; sleep 0.1; done; kill -9 $hp 2>/dev/null
    wait $hp 2>/dev/null
    python3 - "$D" "$i" "$label" "$store" "${commits:-?}" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys, re
d, i, label, store, commits, load = sys.argv[1:]
deliv = sum(r.get("delivered", 0) for r in json.load(open(f"{d}/d.json")).get("rounds", []))
perf = {}
for line in open(f"{d}/perf.txt"):
    m = re.match(r"\s*([\d.,]+)\s+(?:msec\s+)?(\S+)", line)
    if m:
        perf[m.group(2).split(":")[-1]] = float(m.group(1).replace(",", ""))
def ticks(f):
    return {l.split()[0]: (int(l.split()[1]), int(l.split()[2])) for l in open(f)}
t0, t1 = ticks(f"{d}/t0"), ticks(f"{d}/t1")
def used(pred):
    return sum(sum(t1[k]) - sum(t0.get(k, (0, 0))) for k in t1 if pred(k))
writer = used(lambda k: k == "cbx-history")
workers = used(lambda k: k not in ("cbx-history", "hub-state-write"))
send = perf.get("sys_enter_sendto", 0)
print(f"{i} {label} {store} deliveries={deliv} us/delivery={perf.get('task-clock', 0) * 1000 / max(deliv, 1):.3f} "
      f"workers={workers} writer={writer} sendto={send:.0f} deliveries/sendto={deliv / max(send, 1):.1f} "
      f"write={perf.get('sys_enter_write', 0):.0f} epoll_wait={perf.get('sys_enter_epoll_wait', 0):.0f} "
      f"cs={perf.get('context-switches', 0):.0f} commits={commits} load={load}")
PY
    rm -rf "$D"
  done
done
