#!/usr/bin/env bash
# scripts/pg-config.sh NN: prints the pg_config to build and test aad_auth for PostgreSQL NN.
#   $PG_CONFIG when set (it must be version NN);
#   else the Debian/PGDG layout /usr/lib/postgresql/NN/bin/pg_config when that server version is
#   packaged for this machine (installed, or known to apt: scripts/build-deps.sh installs its
#   headers, postgresql-server-dev-NN);
#   else a build from a PyPI wheel (scripts/pg.sh NN), which is how this project tests 16 to 18 on
#   Debian 12 without the PGDG repository, and can build packages there; with AAD_NO_WHEEL=1
#   (`make install`: it installs into the server pg_config names) that is an error instead.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/pg-config.sh 15|16|17|18}
case $version in 15|16|17|18) ;; *) echo "scripts/pg-config.sh: PostgreSQL $version is not supported (15 to 18)" >&2; exit 2 ;; esac

if [ -n "${PG_CONFIG:-}" ]; then
    echo "$PG_CONFIG"
elif [ -x "/usr/lib/postgresql/$version/bin/pg_config" ] \
    || apt-cache show "postgresql-server-dev-$version" >/dev/null 2>&1; then
    echo "/usr/lib/postgresql/$version/bin/pg_config"
elif [ "${AAD_NO_WHEEL:-}" = 1 ]; then
    echo "scripts/pg-config.sh: no PostgreSQL $version here (/usr/lib/postgresql/$version) and apt knows no" >&2
    echo "postgresql-server-dev-$version: name your server's pg_config, e.g. PG_CONFIG=/usr/pgsql-$version/bin/pg_config," >&2
    echo "or add the PGDG repository (https://wiki.postgresql.org/wiki/Apt) and run this again." >&2
    exit 1
else
    scripts/pg.sh "$version"
fi
