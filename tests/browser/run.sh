#!/usr/bin/env bash
# Browser test of the hub's web client: installs what it needs, builds and
# starts the hub in demo mode on a free loopback port, runs
# tests/browser/test_client.py, stops the hub.
#
#   tests/browser/run.sh
#
# Needs apt-get (for chromium, once) and pip; Playwright's own browser
# download is not used: the test drives the system's /usr/bin/chromium.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-browser"
OUT="$ROOT/target/browser"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium" >&2
  apt-get update -qq && apt-get install -y -qq chromium
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import playwright" >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q playwright
fi

cargo build -q --example hub
HUB="$CARGO_TARGET_DIR/debug/examples/hub"

PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
DATA="$(mktemp -d)"
mkdir -p "$OUT"
LOG="$OUT/hub.log"
"$HUB" --port "$PORT" --data-dir "$DATA" >"$LOG" 2>&1 &
HUB_PID=$!
cleanup() {
  kill "$HUB_PID" 2>/dev/null || true
  wait "$HUB_PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$HUB_PID" 2>/dev/null; then
    echo "the hub exited; log:" >&2
    cat "$LOG" >&2
    exit 1
  fi
  sleep 0.1
done

timeout 300 "$VENV/bin/python" tests/browser/test_client.py --url "http://127.0.0.1:$PORT" --out "$OUT"
