#!/usr/bin/env bash
# Installs what building and testing aad_auth needs, idempotently: Debian packages (only the
# missing ones), cargo-pgrx at the version pinned in Cargo.toml (skipped when present), and
# `cargo pgrx init` against the system pg_config (offline: pgrx never downloads PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGRX_VERSION=$(sed -n 's/^pgrx = "=\(.*\)"/\1/p' Cargo.toml)
PACKAGES=(postgresql-15 postgresql-server-dev-15 clang libclang-dev pkg-config libkrb5-dev libssl-dev sudo python3
    pgbouncer pgpool2)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The poolers are for tests/poolers.rs, which starts its own: not as services.
    for service in pgbouncer pgpool2; do
        service "$service" stop >/dev/null 2>&1 || true
        update-rc.d -f "$service" remove >/dev/null 2>&1 || true
    done
fi

# scripts/pg.sh downloads PostgreSQL 16-18 wheels with pip.
if ! python3 -m pip --version >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || { echo "setup: pip is missing and installing it needs root" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -qF "$PGRX_VERSION"; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION (about 6 minutes, once)"
    cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
fi

# `cargo pgrx init` rewrites its config with exactly the versions it is given: keep the ones
# already there and add $PG's.
PGRX_HOME=${PGRX_HOME:-$HOME/.pgrx}
PG=${PG:-15}
if ! grep -qs "^pg$PG = \"$PG_CONFIG\"" "$PGRX_HOME/config.toml"; then
    init_args=()
    for v in 15 16 17 18; do
        if [ "$v" = "$PG" ]; then
            init_args+=("--pg$v" "$PG_CONFIG")
        else
            known=$(sed -n "s/^pg$v = \"\(.*\)\"/\1/p" "$PGRX_HOME/config.toml" 2>/dev/null || true)
            [ -n "$known" ] && [ -x "$known" ] && init_args+=("--pg$v" "$known")
        fi
    done
    cargo pgrx init "${init_args[@]}"
fi
