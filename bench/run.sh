#!/usr/bin/env bash
# Entry point of `make bench`: installs what the benchmark needs when it is missing (wrk from
# Debian's packages, the pinned servers into .venv), builds the Go tools, then runs
# bench/run.py with the arguments given (e.g. --quick, -w plaintext,ws-echo, -s uvicorn,floor).
# Every step is idempotent; see bench/README.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
GO=${GO:-go}
VENV=${VENV:-.venv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
VPY=$VENV/bin/python

say() { printf 'bench: %s\n' "$*" >&2; }

# 1. wrk, the HTTP load generator (it also needs taskset, from util-linux).
if ! command -v wrk >/dev/null 2>&1; then
    say "installing wrk (apt-get)"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
command -v taskset >/dev/null 2>&1 || say "warning: taskset not found: runs will not be pinned"

# 2. The virtualenv and the pinned servers (re-installed when a requirements file changes).
if [ ! -x "$VPY" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VPY" -m pip install -q --upgrade pip
fi
stamp=$VENV/.bench-requirements
want=$(cat bench/requirements.txt integration_tests/requirements.txt examples/requirements.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing bench/requirements.txt into $VENV"
    "$VPY" -m pip install -q -r bench/requirements.txt
    echo "$want" >"$stamp"
fi
# The gateway's worker package (make venv installs it too); best effort while it is being written.
if ! (cd / && "$VPY" -c 'import python_worker.worker') >/dev/null 2>&1 && [ -f python_worker/pyproject.toml ]; then
    "$VPY" -m pip install -q -e ./python_worker >/dev/null 2>&1 || say "warning: could not install ./python_worker"
fi

# 3. The Go tools: the floor server, the WebSocket load generator, and the gateway itself.
mkdir -p bin
"$GO" build -o bin/bench-floor ./bench/floor
"$GO" build -o bin/bench-loadgen ./bench/loadgen
buildlog=$(mktemp)
if "$GO" build -o bin/asgi-gateway ./cmd/asgi-gateway 2>"$buildlog"; then
    export BENCH_GATEWAY_BUILD=ok
else
    export BENCH_GATEWAY_BUILD=failed
    say "warning: go build ./cmd/asgi-gateway failed: asgi-gateway will show as n/a"
    sed 's/^/    /' "$buildlog" | head -20 >&2
fi
rm -f "$buildlog"

exec "$VPY" bench/run.py "$@"
