#!/usr/bin/env bash
# probe-peer.sh SPEC...  SPEC = naive | hub:STORE[:BIN]   ; R rounds of referee d (or SC=a) under perf stat
set -uo pipefail
B=/work/wt/bench; LG=$B/loadgen/target/release/loadgen
S=bench-secret-0123456789abcdef0123456789; R=${R:-5}; PORT=${PORT:-19760}; SC=${SC:-d}
ulimit -n 20000
EV=task-clock,context-switches,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_writev,syscalls:sys_enter_read
case $SC in d) A="--rooms 100 --subs 10";; a) A="--rooms 1 --subs 1000";; esac
for i in $(seq 1 ${ALT:-2}); do for spec in "$@"; do
  D=$(mktemp -d); PORT=$((PORT+1))
  case $spec in
    naive) JWT_SECRET=$S $B/peers/rust-naive/target/release/rust-naive --port $PORT --batch >$D/log 2>&1 & ;;
    hub*) IFS=: read -r _ st bin xa <<<"$spec"; ${bin:-/work/main/target/release/examples/hub} --listen 127.0.0.1:$PORT --jwt-secret $S --messages-per-second 0 --history-store $st --data-dir $D/data ${xa:-} >$D/log 2>&1 & ;;
  esac
  hp=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  $LG fanout $A --messages 200 --repeat 1 --timeout 60 --drain-ms 20000 --url ws://127.0.0.1:$PORT --protocol seed --jwt-secret $S >/dev/null 2>&1
  read -r u0 s0 < <(awk '{print $14, $15}' /proc/$hp/stat)
  perf stat -e "$EV" -p $hp -o $D/perf.txt & pp=$!
  $LG fanout $A --messages 200 --repeat $R --timeout 60 --drain-ms 20000 --url ws://127.0.0.1:$PORT --protocol seed --jwt-secret $S --server-pid $hp > $D/out.json 2>$D/lg.log
  kill -INT $pp; wait $pp 2>/dev/null
  read -r u1 s1 < <(awk '{print $14, $15}' /proc/$hp/stat)
  kill $hp; wait $hp 2>/dev/null
  python3 - $D "$spec" $((u1-u0)) $((s1-s0)) <<'PY'
import json,sys,re
d,spec,u,s=sys.argv[1:]
j=json.load(open(f"{d}/out.json")); deliv=sum(r.get("delivered",0) for r in j.get("rounds",[]))
p={}
for l in open(f"{d}/perf.txt"):
    m=re.match(r"\s*([\d.,]+)\s+(?:msec\s+)?(\S+)",l)
    if m: p[m.group(2).split(":")[-1].replace("sys_enter_","")]=float(m.group(1).replace(",",""))
k=1e6/max(deliv,1)
rcpu=sum(r.get("server_cpu_s",0) or 0 for r in j.get("rounds",[]))
print(f"{spec:12} rounds_us/d={rcpu*1e6/max(deliv,1):.3f} deliv={deliv} us/d={p.get('task-clock',0)*1000/max(deliv,1):.3f} user={int(u)*1e4/max(deliv,1):.3f} sys={int(s)*1e4/max(deliv,1):.3f} "+" ".join(f"{n}={p.get(n,0)*1000/max(deliv,1):.1f}" for n in ["sendto","recvfrom","write","writev","read","epoll_wait","futex","context-switches"])+"  (per 1000 deliveries)")
PY
  rm -rf $D
done; done
