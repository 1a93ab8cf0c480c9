#!/usr/bin/env bash
# The SQL test tier: the #[pg_test]s in src/tests.rs, run by `cargo pgrx test pgNN` (NN = $PG, default 15) against a
# throwaway cluster with aad_auth preloaded (options in src/lib.rs, pg_test module).
# Works as root: the cluster runs as the `postgres` system user through sudo. Idempotent.
# Extra arguments are passed to `cargo pgrx test pgNN` (NN = $PG, default 15) (e.g. a test-name filter).
# Env: PGRX_TEST_PGDATA (default /tmp/aad_auth_pgtest), PGRX_TEST_TIMEOUT (default 900 s).
set -euo pipefail
cd "$(dirname "$0")/.."

PG=${PG:-15}
PGDATA_BASE=${PGRX_TEST_PGDATA:-/tmp/aad_auth_pgtest/pg$PG}
RUNAS=postgres

if [ "$(id -u)" = 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        apt-get install -y sudo >/dev/null
    fi
    mkdir -p "$PGDATA_BASE"
    chmod 755 "$(dirname "$PGDATA_BASE")"
    chown "$RUNAS": "$PGDATA_BASE"
    chmod 700 "$PGDATA_BASE"
    export CARGO_PGRX_TEST_RUNAS=$RUNAS
    export CARGO_PGRX_TEST_PGDATA=$PGDATA_BASE
fi

# timeout: should the runner ever be challenged for a password it would wait for ever.
exec timeout "${PGRX_TEST_TIMEOUT:-900}" cargo pgrx test "pg$PG" "$@"
