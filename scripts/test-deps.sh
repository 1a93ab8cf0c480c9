#!/usr/bin/env bash
# What the tests, the demo and the benchmarks need beyond the build (scripts/build-deps.sh),
# idempotently, on a fresh Debian 12 as root:
#   - Debian packages: the PostgreSQL 15 server the tests run, sudo (the SQL tier), PgBouncer and
#     Pgpool-II (tests/poolers.rs starts its own: their services are stopped and disabled), pip
#     (scripts/pg.sh fetches 16 to 18 from PyPI), Node.js and npm, and pgjdbc when a JDK is present;
#   - the client libraries of docs/clients.md: tests/clients/requirements.txt into a virtual
#     environment under target/clients/venv, tests/clients/package.json into
#     tests/clients/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "test-deps: $*" >&2; }

packages=(postgresql-15 sudo python3 pgbouncer pgpool2)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
command -v javac >/dev/null 2>&1 && packages+=(libpostgresql-jdbc-java)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        say "these packages are missing and installing them needs root: ${missing[*]}"
        exit 1
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for service in pgbouncer pgpool2; do
        service "$service" stop >/dev/null 2>&1 || true
        update-rc.d -f "$service" remove >/dev/null 2>&1 || true
    done
fi

# Python clients, in their own environment (never the system's site-packages).
venv=target/clients/venv
if ! cmp -s tests/clients/requirements.txt "$venv/requirements.txt"; then
    say "installing the Python client libraries (tests/clients/requirements.txt)"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || { say "python3 -m venv failed: install python3-venv"; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
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

