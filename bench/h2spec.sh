#!/usr/bin/env bash
# HTTP/2 conformance: runs h2spec (https://github.com/summerwind/h2spec) against the gateway over TLS,
# serving the integration test app (integration_tests/apps/testapp.py, one worker).
#
#   bash bench/h2spec.sh                 # every section; prints the failures and the summary
#   bash bench/h2spec.sh http2/6.5 hpack # only these sections (h2spec's spec ids)
#   H2SPEC_ARGS="-o 5 -v" bash bench/h2spec.sh   # more h2spec options (-o: timeout per test, -v: verbose)
#
# Installs h2spec into bin/ if it is neither there nor on PATH (go install through the Go module
# proxy), builds bin/asgi-gateway if missing, makes a throwaway self-signed certificate with openssl.
# Exits 0 when every test passed, 1 when some failed, 2 when it could not run. The full h2spec output
# is kept in $H2SPEC_OUT (default: bench/results/h2spec.txt) and the gateway's log next to it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEWAY=${ASGI_GATEWAY_BIN:-$ROOT/bin/asgi-gateway}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
OUT=${H2SPEC_OUT:-$ROOT/bench/results/h2spec.txt}
GATEWAY_LOG=${OUT%.txt}-gateway.log

die() { echo "h2spec.sh: $*" >&2; exit 2; }

# --- h2spec -------------------------------------------------------------------------------------
H2SPEC=${H2SPEC:-}
if [ -z "$H2SPEC" ]; then
    if [ -x "$ROOT/bin/h2spec" ]; then
        H2SPEC=$ROOT/bin/h2spec
    elif command -v h2spec >/dev/null 2>&1; then
        H2SPEC=$(command -v h2spec)
    else
        echo "h2spec.sh: installing h2spec into $ROOT/bin (go install github.com/summerwind/h2spec/cmd/h2spec@latest)" >&2
        command -v go >/dev/null 2>&1 || die "h2spec is not installed and there is no go command to install it"
        GOBIN="$ROOT/bin" go install github.com/summerwind/h2spec/cmd/h2spec@latest \
            || die "go install of h2spec failed (is the Go module proxy reachable? GOPROXY=$(go env GOPROXY))"
        H2SPEC=$ROOT/bin/h2spec
    fi
fi
[ -x "$H2SPEC" ] || die "$H2SPEC is not executable"

# --- the gateway --------------------------------------------------------------------------------
if [ ! -x "$GATEWAY" ]; then
    (cd "$ROOT" && go build -o bin/asgi-gateway ./cmd/asgi-gateway) || die "cannot build bin/asgi-gateway"
fi
[ -x "$PYTHON" ] || die "no Python at $PYTHON (make venv, or PYTHON=...)"
command -v openssl >/dev/null 2>&1 || die "needs the openssl command line for the certificate"

WORK=$(mktemp -d)
GATEWAY_PID=
cleanup() {
    if [ -n "$GATEWAY_PID" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
        kill -TERM "$GATEWAY_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$GATEWAY_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 \
    || die "openssl could not make a certificate"

mkdir -p "$(dirname "$OUT")"
"$GATEWAY" run testapp:app --app-dir "$ROOT/integration_tests/apps" --python "$PYTHON" \
    --host 127.0.0.1 --port 0 --workers 1 --no-access-log --no-use-colors \
    --ssl-certfile "$WORK/cert.pem" --ssl-keyfile "$WORK/key.pem" >"$GATEWAY_LOG" 2>&1 &
GATEWAY_PID=$!

PORT=
for _ in $(seq 1 200); do
    PORT=$(sed -n 's/.*listening on https:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$GATEWAY_LOG" | head -n 1)
    [ -n "$PORT" ] && break
    kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$GATEWAY_LOG" >&2; die "the gateway exited before listening"; }
    sleep 0.1
done
[ -n "$PORT" ] || { cat "$GATEWAY_LOG" >&2; die "the gateway did not say 'listening on https://...' within 20 s"; }
echo "h2spec.sh: gateway on https://127.0.0.1:$PORT (pid $GATEWAY_PID), $("$H2SPEC" --version 2>/dev/null || echo h2spec)" >&2

# --- h2spec -------------------------------------------------------------------------------------
# -t TLS, -k do not verify the certificate; the sections to run are the script's arguments.
set +e
# shellcheck disable=SC2086  # H2SPEC_ARGS is a list of options
"$H2SPEC" -t -k -h 127.0.0.1 -p "$PORT" ${H2SPEC_ARGS:-} "$@" >"$OUT" 2>&1
STATUS=$?
set -e

# h2spec prints each test as it runs, then "Failures:" with the failed ones and their expected /
# actual frames, then "Finished in ..." and "N tests, N passed, N skipped, N failed".
if grep -q '^Failures:' "$OUT"; then
    sed -n '/^Failures:/,$p' "$OUT"
else
    tail -n 3 "$OUT"
fi
SUMMARY=$(grep -E '^[0-9]+ tests, [0-9]+ passed, [0-9]+ skipped, [0-9]+ failed' "$OUT" | tail -n 1 || true)
echo
echo "h2spec.sh: ${SUMMARY:-no summary line (h2spec exit status $STATUS)}; full output in $OUT, gateway log in $GATEWAY_LOG"

kill -0 "$GATEWAY_PID" 2>/dev/null || { echo "h2spec.sh: the gateway died during the run" >&2; exit 1; }
if [ -z "$SUMMARY" ]; then
    exit 2
fi
FAILED=$(echo "$SUMMARY" | sed -E 's/.* ([0-9]+) failed.*/\1/')
[ "$FAILED" = "0" ] && [ "$STATUS" = "0" ] && exit 0
exit 1
