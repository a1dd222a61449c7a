#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster, with
# STRATA_POSTGRES_URL pointing at it; by default the whole test suite with
# the PostgreSQL backend enabled:
#
#   scripts/test-postgres.sh                       # cargo test --workspace with every postgres feature
#   scripts/test-postgres.sh cargo test -p strata-store --features postgres
#   scripts/test-postgres.sh bash                  # a shell with the cluster running
#
# When STRATA_POSTGRES_URL is already set, the command runs against that
# database and no cluster is started.
#
# Otherwise it finds PostgreSQL's server binaries (installing Debian's
# `postgresql` package with apt-get when they are missing and we are root),
# creates a cluster with initdb in a temporary directory (as the `postgres`
# user when run as root: the server refuses to run as root), starts it on a
# free loopback port with its unix socket in that directory, runs the
# command, and stops and deletes the cluster on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
    set -- cargo test --workspace --features strata-store/postgres,strata-projections/postgres,strata-http/postgres,strata/postgres
fi

if [ -n "${STRATA_POSTGRES_URL:-}" ]; then
    echo "test-postgres: using STRATA_POSTGRES_URL from the environment" >&2
    exec "$@"
fi

log() { echo "test-postgres: $*" >&2; }

find_bindir() {
    local d
    if command -v pg_config >/dev/null 2>&1; then
        d="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    fi
    # Debian keeps the server binaries out of PATH, one directory per major version.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

if ! BINDIR="$(find_bindir)"; then
    if [ "$(id -u)" -ne 0 ]; then
        log "PostgreSQL's server binaries were not found, and installing them needs root:"
        log "  sudo apt-get update && sudo apt-get install -y postgresql"
        exit 1
    fi
    log "PostgreSQL is missing: installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    BINDIR="$(find_bindir)" || { log "postgresql installed, but initdb was not found"; exit 1; }
fi
log "using $("$BINDIR/postgres" --version)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/strata-pg.XXXXXX")"
DATA="$TMP/data"
SOCK="$TMP/sock"
mkdir -p "$SOCK"

# As root, the cluster belongs to the `postgres` user (created by Debian's
# package; created here when missing).
RUN=()
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir "$TMP" --shell /usr/sbin/nologin postgres
    fi
    chown -R postgres "$TMP"
    RUN=(runuser -u postgres --)
fi

PORT=""
cleanup() {
    local rc=$?
    if [ -f "$DATA/postmaster.pid" ]; then
        "${RUN[@]}" "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${RUN[@]}" "$BINDIR/initdb" -D "$DATA" -U strata --auth=trust --encoding=UTF8 --no-locale --no-sync >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; log "initdb failed"; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first port tried is the same for a checkout every time, so that
# STRATA_POSTGRES_URL is too: the crates' build scripts read it (it decides
# whether the PostgreSQL tests run or are ignored), and a new value would
# rebuild the workspace. Taken, a random one.
preferred=$((20000 + $(pwd | cksum | cut -d' ' -f1) % 30000))
started=0
for attempt in $(seq 1 20); do
    if [ "$attempt" -eq 1 ]; then PORT=$preferred; else PORT=$((20000 + RANDOM % 30000)); fi
    if port_in_use "$PORT"; then continue; fi
    if "${RUN[@]}" "$BINDIR/pg_ctl" -D "$DATA" -l "$TMP/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c max_connections=300" start >/dev/null 2>&1; then
        started=1
        break
    fi
done
if [ "$started" -ne 1 ]; then
    cat "$TMP/server.log" >&2 || true
    log "could not start PostgreSQL"
    exit 1
fi

export STRATA_POSTGRES_URL="postgres://strata@127.0.0.1:$PORT/postgres"
log "PostgreSQL is up: STRATA_POSTGRES_URL=$STRATA_POSTGRES_URL (data in $DATA)"
set +e
"$@"
rc=$?
set -e
exit "$rc"
