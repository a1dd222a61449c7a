#!/usr/bin/env bash
# Runs the web console's tests in a real browser: headless Chromium driven
# through WebDriver (chromedriver), against `strata serve` processes the
# tests start themselves. By default `cargo test --test browser`:
#
#   scripts/test-browser.sh                          # the browser tests
#   scripts/test-browser.sh cargo test --test browser tail   # some of them
#   STRATA_BROWSER_LATENCY=1000 scripts/test-browser.sh       # + the live-tail latency run (1,000 appends)
#
# It sets STRATA_BROWSER_TESTS=1, which compiles the tests in (without it
# they are listed as ignored, with this script's name). When
# STRATA_WEBDRIVER is already set (a running chromedriver's URL), the
# command runs against it. Otherwise it finds Debian's chromium and
# chromedriver (installing the `chromium` and `chromium-driver` packages
# with apt-get when they are missing and we are root), starts chromedriver
# on a free loopback port, runs the command with STRATA_WEBDRIVER set, and
# stops chromedriver on exit, whatever happens. Screenshots of every page
# (desktop and narrow) land in target/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
    set -- cargo test --test browser
fi

log() { echo "test-browser: $*" >&2; }

# The tests are compiled in (not ignored) when this is set; the driver's
# URL is read when they run, so a new port does not rebuild anything.
export STRATA_BROWSER_TESTS=1

if [ -n "${STRATA_WEBDRIVER:-}" ]; then
    log "using STRATA_WEBDRIVER=$STRATA_WEBDRIVER from the environment"
    exec "$@"
fi

if ! command -v chromedriver >/dev/null 2>&1 || ! { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; }; then
    if [ "$(id -u)" -ne 0 ]; then
        log "chromium or chromedriver is missing, and installing them needs root:"
        log "  sudo apt-get update && sudo apt-get install -y chromium chromium-driver"
        exit 1
    fi
    log "chromium or chromedriver is missing: installing Debian's chromium and chromium-driver"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver >/dev/null
fi

export STRATA_CHROMIUM="${STRATA_CHROMIUM:-$(command -v chromium || echo /usr/bin/chromium)}"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=$((20000 + RANDOM % 30000))
while port_in_use "$PORT"; do PORT=$((20000 + RANDOM % 30000)); done
WORK="$(mktemp -d)"
chromedriver --port="$PORT" --log-path="$WORK/chromedriver.log" >/dev/null 2>&1 &
DRIVER=$!
cleanup() {
    kill "$DRIVER" 2>/dev/null || true
    wait "$DRIVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$PORT/status" >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
done
if ! curl -sf "http://127.0.0.1:$PORT/status" >/dev/null 2>&1; then
    log "chromedriver did not start; its log:"
    cat "$WORK/chromedriver.log" >&2 || true
    exit 1
fi
log "chromedriver on port $PORT ($("$STRATA_CHROMIUM" --version 2>/dev/null || echo chromium))"

export STRATA_WEBDRIVER="http://127.0.0.1:$PORT"
"$@"
