#!/usr/bin/env bash
# Property-based test of the admin API against its own OpenAPI document: builds the
# daemon, runs it on the simulator with the demo config on a free loopback port and a
# token, and lets schemathesis send generated requests to every endpoint. Fails on any
# 5xx, any answer whose status, content type or body the document does not describe,
# any endpoint served without the token, or a daemon that dies.
#
#   bash scripts/schemathesis.sh            # from the repository root (CI: .ci/run)
#   MAX_EXAMPLES=50 bash scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${MAX_EXAMPLES:-25}
VENV=$PWD/target/schemathesis-venv

# schemathesis, pinned, in a virtualenv of its own (its dependencies stay out of the
# system's Python).
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin navixy-alerts

work=$(mktemp -d)
daemon=""
cleanup() {
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="schemathesis-$RANDOM$RANDOM"
base="http://127.0.0.1:$port"

# The demo config (simulator, stock rules, stdout), on that port with the token.
sed -e "s|rules: \[../rules/\*.yaml\]|rules: [$PWD/rules/*.yaml]|" \
    -e "s|server: { listen: 127.0.0.1:9898 }|server: { listen: \"127.0.0.1:$port\", token: \"$token\" }|" \
    examples/demo.yaml >"$work/config.yaml"
grep -q "$token" "$work/config.yaml" || { echo "schemathesis.sh: examples/demo.yaml changed shape" >&2; exit 1; }

# GET with the token, body to stdout; non-zero unless 2xx (no curl needed).
fetch() {
    python3 - "$1" "$token" <<'PY'
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(request, timeout=5) as response:
    sys.stdout.write(response.read().decode())
PY
}

target/debug/navixy-alerts run -c "$work/config.yaml" >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 1 100); do
    fetch "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log" >&2; echo "schemathesis.sh: the daemon did not start" >&2; exit 1; }
    sleep 0.2
done
fetch "$base/api/v1/openapi.json" >"$work/openapi.json"

# From the temporary folder: schemathesis keeps its cache of failures in the current one.
# `/api/v1/events` is an endless stream (a client never sees its body end); the
# integration tests read it.
status=0
(cd "$work" && "$VENV/bin/schemathesis" run "$work/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth \
    --max-examples "$MAX_EXAMPLES" \
    --exclude-path /api/v1/events \
    --workers 1 \
    --no-color) || status=$?

if ! kill -0 "$daemon" 2>/dev/null; then
    echo "schemathesis.sh: the daemon died during the run:" >&2
    tail -n 50 "$work/daemon.log" >&2
    exit 1
fi
if grep -q "panicked" "$work/daemon.log"; then
    echo "schemathesis.sh: the daemon panicked:" >&2
    grep -A5 "panicked" "$work/daemon.log" >&2
    exit 1
fi
exit "$status"
