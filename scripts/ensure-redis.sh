#!/bin/sh
# Makes sure `redis-server` is on PATH for the Redis engine's tests
# (tests/redis_*.rs start their own throw-away servers on loopback ports).
# Installs the Debian package when it is missing and we may.
set -eu
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
            echo "ensure-redis: redis-server missing; install it: apt-get install -y redis-server" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y redis-server >/dev/null 2>&1 \
        || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y redis-server >/dev/null; }
    # The package may start a system-wide server; the tests never use it.
    command -v redis-server >/dev/null 2>&1 && exit 0
fi
echo "ensure-redis: redis-server not found; install Redis 5 or later (e.g. apt-get install redis-server)" >&2
exit 1
