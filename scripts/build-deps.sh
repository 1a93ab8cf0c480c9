#!/usr/bin/env bash
# What building aad_auth for PostgreSQL $PG (default 15) needs, and nothing else, idempotently:
#   1. a Rust toolchain at least as new as Cargo.toml's rust-version (checked, never installed:
#      the message says what to install);
#   2. Debian packages: that version's server headers (postgresql-server-dev-$PG, which brings
#      pg_config but no server) when it is packaged here, clang and libclang-dev for pgrx's
#      bindgen, pkg-config, and the Kerberos and OpenSSL headers PostgreSQL's headers include;
#   3. cargo-pgrx at the version pinned in Cargo.toml (skipped when present; about 6 minutes);
#   4. `cargo pgrx init` with that pg_config, offline (pgrx never downloads PostgreSQL).
# It never installs a PostgreSQL server, another version's packages or the test tools
# (scripts/test-deps.sh does those). Used by `make install`, `make package` and `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
PG=${PG:-15}
say() { echo "build-deps: $*" >&2; }

# 1. Rust.
need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
version_of() { "$1" --version 2>/dev/null | awk '{print $2}'; }
older() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" != "$2" ]; } # $1 < $2
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
    say "no Rust toolchain (cargo and rustc) on PATH; aad_auth needs Rust $need or later to build."
    say "install it with rustup (https://rustup.rs):"
    say "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal"
    say "  . \"\$HOME/.cargo/env\""
    say "then run this command again. Only the build machine needs Rust: the package does not."
    exit 1
fi
have=$(version_of rustc)
if older "$have" "$need"; then
    say "rustc $have is too old: aad_auth needs Rust $need or later."
    say "update it with: rustup update stable   (or install a newer toolchain from https://rustup.rs)"
    exit 1
fi

# 2. Debian packages.
PG_CONFIG=$(scripts/pg-config.sh "$PG")
packages=(clang libclang-dev pkg-config libkrb5-dev libssl-dev gcc make dpkg-dev)
case $PG_CONFIG in
    /usr/lib/postgresql/"$PG"/bin/pg_config) packages+=("postgresql-server-dev-$PG") ;;
esac
install_missing build-deps "${packages[@]}"
if [ ! -f "$("$PG_CONFIG" --includedir-server)/postgres.h" ]; then
    say "$PG_CONFIG has no server headers ($("$PG_CONFIG" --includedir-server)/postgres.h is missing)"
    exit 1
fi
got=$("$PG_CONFIG" --version | sed -n 's/^PostgreSQL \([0-9]*\).*/\1/p')
if [ "$got" != "$PG" ]; then
    say "$PG_CONFIG is PostgreSQL $got, not $PG: name the matching one, e.g. PG=$got"
    exit 1
fi

# 3. cargo-pgrx.
PGRX_VERSION=$(sed -n 's/^pgrx = "=\(.*\)"/\1/p' Cargo.toml)
if ! cargo pgrx --version 2>/dev/null | grep -qF "$PGRX_VERSION"; then
    say "installing cargo-pgrx $PGRX_VERSION (about 6 minutes, once)"
    cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
fi

# 4. `cargo pgrx init` rewrites its config with exactly the versions it is given: keep the ones
# already there and add $PG's.
PGRX_HOME=${PGRX_HOME:-$HOME/.pgrx}
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
    cargo pgrx init "${init_args[@]}" >&2
fi
