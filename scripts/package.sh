#!/usr/bin/env bash
# make package PG=NN: a Debian package of aad_auth for PostgreSQL NN (15 to 18), for servers that
# carry no compiler:
#   dist/postgresql-NN-aad-auth_<version>_<arch>.deb
# It holds the release library (/usr/lib/postgresql/NN/lib/aad_auth.so), the control file and
# the SQL scripts (/usr/share/postgresql/NN/extension/), LICENSE and CHANGELOG.md, in the layout
# of Debian's and PGDG's postgresql-NN, on which it depends. The build runs `cargo pgrx package`
# against the pg_config that scripts/pg-config.sh names (its headers; the package's paths are
# always Debian's). Run scripts/build-deps.sh first (`make package` does).
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."
PG=${PG:-15}
PG_CONFIG=$(scripts/pg-config.sh "$PG")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
name=postgresql-$PG-aad-auth
out=target/package/pg$PG
stage=target/package/$name
deb=dist/${name}_${version}_${arch}.deb

echo "package: building aad_auth $version for PostgreSQL $PG (release) with $PG_CONFIG" >&2
case $PG_CONFIG in
    /usr/lib/postgresql/"$PG"/bin/pg_config) ;;
    *) if ! grep -q '^#define ENABLE_GSS 1' "$("$PG_CONFIG" --includedir-server)/pg_config.h"; then
           echo "package: warning: $PG_CONFIG was built without GSSAPI, so this library will not count" >&2
           echo "package: GSS-encrypted connections as encrypted (aad_auth.require_secure_transport refuses" >&2
           echo "package: them unless they also use SSL). For production, build on a machine with" >&2
           echo "package: postgresql-server-dev-$PG from Debian or the PGDG repository." >&2
       fi ;;
esac
rm -rf "$out" "$stage"
cargo pgrx package --no-default-features --features "pg$PG" --pg-config "$PG_CONFIG" --out-dir "$out" >&2

lib=$stage/usr/lib/postgresql/$PG/lib
ext=$stage/usr/share/postgresql/$PG/extension
doc=$stage/usr/share/doc/$name
install -d -m 755 "$lib" "$ext" "$doc" "$stage/DEBIAN"
so=$(find "$out" -name aad_auth.so)
[ -n "$so" ] || { echo "package: cargo pgrx package wrote no aad_auth.so under $out" >&2; exit 1; }
install -m 644 "$so" "$lib/aad_auth.so"
strip --strip-unneeded "$lib/aad_auth.so"
find "$out" -path '*/extension/*' \( -name 'aad_auth.control' -o -name 'aad_auth--*.sql' \) \
    -exec install -m 644 {} "$ext/" \;
[ -f "$ext/aad_auth.control" ] && [ -f "$ext/aad_auth--$version.sql" ] \
    || { echo "package: the control file or aad_auth--$version.sql is missing" >&2; exit 1; }
install -m 644 LICENSE "$doc/copyright"
gzip -9n -c CHANGELOG.md > "$doc/changelog.gz"
chmod 644 "$doc/changelog.gz"

# The library's own shared-library dependencies (libc, libgcc), as Debian computes them.
tmp=$(mktemp -d)
[ -d "$tmp" ] || { echo "package: mktemp failed" >&2; exit 1; }
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/debian"
printf 'Source: aad-auth\n\nPackage: %s\nArchitecture: any\n' "$name" > "$tmp/debian/control"
so_abs=$(realpath "$lib/aad_auth.so")
shlibs=$(cd "$tmp" && dpkg-shlibdeps -O "$so_abs" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
# ca-certificates: the key refresher verifies login.microsoftonline.com against the system's CA
# store, which a minimal server may lack.
depends="postgresql-$PG, ca-certificates${shlibs:+, $shlibs}"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: aad_auth developers <aad-auth@users.noreply.github.com>
Installed-Size: $size
Depends: $depends
Section: database
Priority: optional
Description: Microsoft Entra ID (Azure AD) sign-in for PostgreSQL $PG
 aad_auth verifies Microsoft Entra ID access tokens sent as passwords, offline, against the
 tenant's signing keys, and admits each principal only as the role bound to its object id,
 with the SQL functions and security labels of Azure Database for PostgreSQL Flexible Server.
 .
 Load it with shared_preload_libraries = 'aad_auth', then CREATE EXTENSION aad_auth.
 Before removing this package, remove the pg_hba.conf trust lines aad_auth governs.
CONTROL
(cd "$stage" && find usr -type f -exec md5sum {} + | sort -k2) > "$stage/DEBIAN/md5sums"
chmod 644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

mkdir -p dist
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
