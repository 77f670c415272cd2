#!/usr/bin/env bash
# Builds and installs the channelbox Python package into a venv, then runs its tests.
#
#   bindings/python/run_tests.sh                 # everything (~1 min after the first build)
#   bindings/python/run_tests.sh -k tutorial     # extra arguments go to pytest
#
# Environment:
#   CHANNELBOX_PY_VENV   the venv (default: <repo>/.venv-py; created when missing)
#   PYTHON               the interpreter that creates it (default: python3)
#   CHANNELBOX_PREBUILT_LIB=/path/libchannelbox.so   install that library instead of running cargo
#   CARGO_TARGET_DIR     honoured by the cargo build that `pip install` runs
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${CHANNELBOX_PY_VENV:-$ROOT/.venv-py}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

echo "== installing test requirements" >&2
"${PIP[@]}" install "setuptools>=64" wheel -r "$HERE/requirements-test.txt"

echo "== building and installing bindings/python (cargo build --release)" >&2
"${PIP[@]}" install --no-build-isolation --force-reinstall --no-deps "$HERE"
rm -rf "$HERE/build" "$HERE"/*.egg-info

# The tests must exercise the installed package (with its shipped library),
# not the source tree: pytest runs from tests/, where no `channelbox` sits.
unset CHANNELBOX_LIB
cd "$HERE/tests"
echo "== pytest ($("$VENV/bin/python" -c 'import channelbox; print(channelbox.__file__)'))" >&2
exec "$VENV/bin/python" -m pytest -c "$HERE/pyproject.toml" --rootdir "$HERE" "$@"
