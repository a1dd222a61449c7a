#!/usr/bin/env bash
# schemathesis (from PyPI, pinned, in a virtualenv under target/) with every
# check against a fresh `strata serve` on a temporary directory and a free
# loopback port; exits with schemathesis's status. Part of .ci/run.
#
#   scripts/schemathesis.sh                        # the CI run: deterministic, a few minutes
#   MAX_EXAMPLES=200 scripts/schemathesis.sh       # more cases per operation
#   scripts/schemathesis.sh --include-tag documents   # extra schemathesis arguments
#
# Deterministic: Hypothesis derandomized (no seed; no example database kept
# between runs), and a bound on examples per operation rather than on
# time, so a run sends the same cases on any machine. The hooks
# (scripts/schemathesis_hooks.py) and configuration (scripts/schemathesis.toml)
# are explained in docs/http.md, "OpenAPI and schemathesis".
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.32.5
VENV=target/schemathesis-venv
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
fi
cargo build --quiet --bin strata
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Served with a token, as a service reachable by others is: every check
# runs with an admin token, and schemathesis's own authentication checks
# (no token, a wrong one) expect the 401s the service gives.
TOKEN=$(target/debug/strata token create --scope admin --name schemathesis --data "$DATA/store" 2>/dev/null | tail -n 1)
target/debug/strata serve --addr "127.0.0.1:$PORT" --data "$DATA/store" 2>"$DATA/serve.log" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$DATA"' EXIT
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=scripts \
    "$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run \
    "http://127.0.0.1:$PORT/openapi.json" \
    --wait-for-schema 60 --checks all \
    --generation-deterministic \
    ${MAX_EXAMPLES:+--max-examples "$MAX_EXAMPLES"} \
    --workers 2 --request-timeout 35 --no-color \
    --header "Authorization: Bearer $TOKEN" "$@"
