#!/usr/bin/env bash
# make demo: a throwaway cluster with aad_auth preloaded and a local key set; creates a
# principal, mints an Entra-shaped token, signs in with psql, then shows an expired token
# being refused. No Azure needed. AAD_DEMO_KEEP=1 leaves the cluster running.
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BIN=$("$PG_CONFIG" --bindir)
DIR=${AAD_DEMO_DIR:-/tmp/aad_auth_demo}
MINT=${MINT:-target/debug/aad-auth-mint}
TENANT=72f988bf-86f1-41af-91ab-2d7cd011db47
OID=5d7c1f3e-2a4b-4c8d-9e0f-a1b2c3d4e5f6
ROLE=alice@contoso.com
PORT=${AAD_DEMO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
as_pg() { runuser -u postgres -- "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -f "$DIR/data/postmaster.pid" ]; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
fi
rm -rf "$DIR"
mkdir -p "$DIR/idp"
"$MINT" keygen "$DIR/idp" demo-key-1 >/dev/null
chown -R postgres: "$DIR"
chmod 700 "$DIR/idp"
chmod 644 "$DIR/idp/jwks.json"

say "a throwaway cluster on 127.0.0.1:$PORT with aad_auth preloaded ($DIR)"
as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth-local=trust --auth-host=reject >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
shared_preload_libraries = 'aad_auth'
aad_auth.tenant_id = '$TENANT'
aad_auth.jwks_file = '$DIR/idp/jwks.json'
CONF
cat > "$DIR/data/pg_hba.conf" <<HBA
# unix socket: the break-glass path, never touched by aad_auth
local all all trust
# TCP: aad_auth demands an Entra ID token (labelled roles) or the role's password.
# (A real server uses hostssl with ssl = on: tokens travel as cleartext passwords.)
host all all 127.0.0.1/32 trust
HBA
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
grep -h "aad_auth:" "$DIR/server.log" | sed 's/^/    log: /'

say "bind role \"$ROLE\" to Entra object $OID"
psql -X -h "$DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE EXTENSION aad_auth" \
    -c "SELECT pgaadauth_create_principal_with_oid('$ROLE', '$OID', 'user', false, false)" \
    -c "SELECT * FROM pgaadauth_list_principals(false)"

say "mint a token (v1, user, aud https://ossrdbms-aad.database.windows.net) and sign in over TCP"
TOKEN=$("$MINT" user "$DIR/idp" "$TENANT" "$OID" "$ROLE")
echo "token: ${TOKEN:0:24}… (${#TOKEN} bytes)"
PGPASSWORD=$TOKEN psql -X "host=127.0.0.1 port=$PORT dbname=postgres user=$ROLE" \
    -c "SELECT current_user, session_user"

say "an expired token is refused"
EXPIRED=$("$MINT" user "$DIR/idp" "$TENANT" "$OID" "$ROLE" --expired)
if PGPASSWORD=$EXPIRED psql -X "host=127.0.0.1 port=$PORT dbname=postgres user=$ROLE" -c "SELECT 1" 2>"$DIR/refused.txt"; then
    echo "demo: the expired token was accepted" >&2
    exit 1
fi
sed 's/^/    psql: /' "$DIR/refused.txt"

say "sign-in statistics (aad_auth_sign_in_stats(), for admins; unix-socket sessions are not counted)"
psql -X -h "$DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "SELECT rolname, accepted, refused, refused_by->>'expired' AS expired FROM aad_auth_sign_in_stats()"

say "the server log (one line per Entra sign-in)"
grep -h "aad_auth: sign-in" "$DIR/server.log" | sed 's/^/    log: /'

if [ "${AAD_DEMO_KEEP:-0}" = 1 ]; then
    say "the cluster keeps running; stop it with: runuser -u postgres -- $BIN/pg_ctl -D $DIR/data stop"
else
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null
    say "cluster stopped (AAD_DEMO_KEEP=1 keeps it running)"
fi
