#!/usr/bin/env bash
# Browser tests of the hub's web client: installs what it needs (chromium,
# playwright, axe-core), builds the hub, and runs tests/browser/test_client.py
# (the everyday flow), tests/browser/test_returning.py (coming back,
# identity, members, a stopped hub, a phone, the keyboard, accessibility)
# tests/browser/test_dashboard.py (the admin dashboard, issue 15) and
# tests/browser/test_unread.py (unread badges, DM attachments).
# Each starts its own hub; screenshots go to target/browser/.
#
#   tests/browser/run.sh
#
# Needs apt-get (for chromium, once), pip and npm; Playwright's own browser
# download is not used: the tests drive the system's /usr/bin/chromium.
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

# axe-core for the accessibility check: from npm into target/, injected by
# the test into the page; the hub never serves it.
AXE_DIR="$CARGO_TARGET_DIR/browser-node"
AXE="$AXE_DIR/node_modules/axe-core/axe.min.js"
if [ ! -f "$AXE" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq npm
  fi
  mkdir -p "$AXE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$AXE_DIR" axe-core@4 >&2
fi

cargo build -q --example hub
HUB="$CARGO_TARGET_DIR/debug/examples/hub"
mkdir -p "$OUT"
# Screenshots of this run only.
rm -f "$OUT"/*.png "$OUT"/axe-*.json
cd "$ROOT/tests/browser"
# Each test starts (and stops, and restarts) its own hub on a free loopback port.
timeout 300 "$VENV/bin/python" test_client.py --hub "$HUB" --out "$OUT"
timeout 400 "$VENV/bin/python" test_returning.py --hub "$HUB" --out "$OUT" --axe "$AXE"
timeout 200 "$VENV/bin/python" test_dashboard.py --hub "$HUB" --out "$OUT" --axe "$AXE"
timeout 240 "$VENV/bin/python" test_unread.py --hub "$HUB" --out "$OUT" --axe "$AXE"
