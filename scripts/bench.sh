#!/usr/bin/env bash
# make bench: the connection rate of new connections on one cluster, measured in the same run
# and alternating between four ways of signing in over TCP:
#   trust   a trust line aad_auth does not govern for this role (aad_auth.skip_roles): the limit
#   scram   a scram-sha-256 line (PostgreSQL's own password check)
#   password an ordinary role's password on a governed line (checked by aad_auth)
#   token   an Entra ID access token with the signing key cached
# Each is pgbench -C (a new connection per transaction), select-only, several clients.
# Prints the rates and the ratios token/scram and token/trust and writes them as JSON.
# Keys come from a key endpoint served on loopback, so the fetch count is real.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
BIN=$("$PG_CONFIG" --bindir)
DIR=${AAD_BENCH_DIR:-/tmp/aad_auth_bench}
OUT=${AAD_BENCH_OUT:-target/bench/connections.json}
MINT=${MINT:-target/release/aad-auth-mint}
SECONDS_PER_RUN=${AAD_BENCH_SECONDS:-8}
ROUNDS=${AAD_BENCH_ROUNDS:-3}
CLIENTS=${AAD_BENCH_CLIENTS:-4}
TENANT=72f988bf-86f1-41af-91ab-2d7cd011db47
OID=5d7c1f3e-2a4b-4c8d-9e0f-a1b2c3d4e5f6
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
KEYS_PORT=$(free_port)
as_pg() { runuser -u postgres -- "$@"; }

cleanup() {
    [ -n "${KEYS_PID:-}" ] && kill "$KEYS_PID" 2>/dev/null || true
    [ -f "$DIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

[ -f "$DIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR/idp" "$(dirname "$OUT")"
"$MINT" keygen "$DIR/idp" bench-key >/dev/null
chown -R postgres: "$DIR"
python3 -m http.server --bind 127.0.0.1 "$KEYS_PORT" --directory "$DIR/idp" >/dev/null 2>&1 &
KEYS_PID=$!

as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth-local=trust --auth-host=reject >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 50
shared_preload_libraries = 'aad_auth'
aad_auth.tenant_id = '$TENANT'
aad_auth.jwks_uri = 'http://127.0.0.1:$KEYS_PORT/jwks.json'
aad_auth.skip_roles = 'bench_trust'
aad_auth.log_logins = off
password_encryption = 'scram-sha-256'
CONF
cat > "$DIR/data/pg_hba.conf" <<HBA
local all all trust
host all bench_scram 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
HBA
as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null
psql_admin() { psql -X -q -h "$DIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
psql_admin -c "CREATE EXTENSION aad_auth" \
    -c "SELECT pgaadauth_create_principal_with_oid('bench_token', '$OID', 'user', false, false)" \
    -c "CREATE ROLE bench_trust LOGIN" \
    -c "CREATE ROLE bench_scram LOGIN PASSWORD 'bench-password'" \
    -c "CREATE ROLE bench_password LOGIN PASSWORD 'bench-password'"
"$BIN/pgbench" -i -q -s 1 -h "$DIR" -p "$PORT" -U postgres postgres >/dev/null 2>&1
psql_admin -c "GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_trust, bench_scram, bench_password, bench_token"
TOKEN=$("$MINT" user "$DIR/idp" "$TENANT" "$OID" bench@contoso.com)

# pgbench -C: a new connection for every transaction; the tps is the connection rate.
rate() {
    local role=$1 password=$2
    PGPASSWORD=$password "$BIN/pgbench" -n -C -S -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" \
        -h 127.0.0.1 -p "$PORT" -U "$role" postgres 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

declare -A total
MODES=(trust scram password token)
for mode in "${MODES[@]}"; do total[$mode]=0; done
for round in $(seq "$ROUNDS"); do
    for mode in "${MODES[@]}"; do
        case $mode in
            trust) r=$(rate bench_trust "") ;;
            scram) r=$(rate bench_scram bench-password) ;;
            password) r=$(rate bench_password bench-password) ;;
            token) r=$(rate bench_token "$TOKEN") ;;
        esac
        [ -n "$r" ] || { echo "bench: pgbench failed for $mode" >&2; tail -5 "$DIR/server.log" >&2; exit 1; }
        printf 'round %s  %-8s %8.1f connections/s\n' "$round" "$mode" "$r"
        total[$mode]=$(python3 -c "print(${total[$mode]} + $r)")
    done
done
FETCHES=$(psql_admin -A -t -c "SELECT fetches FROM aad_auth_jwks_status()")

python3 - "$OUT" "$ROUNDS" "$FETCHES" "${total[trust]}" "${total[scram]}" "${total[password]}" "${total[token]}" "$CLIENTS" "$SECONDS_PER_RUN" <<'PY'
import json, os, sys
out, rounds, fetches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
trust, scram, password, token = (float(v) / rounds for v in sys.argv[4:8])
result = {
    "connections_per_second": {"trust": round(trust, 1), "scram": round(scram, 1),
                               "password": round(password, 1), "token": round(token, 1)},
    "ratios": {"token/scram": round(token / scram, 2), "token/trust": round(token / trust, 2),
               "password/scram": round(password / scram, 2)},
    "key_fetches": fetches,
    "method": {"tool": "pgbench -C -S", "clients": int(sys.argv[8]), "seconds_per_run": int(sys.argv[9]),
               "rounds": rounds, "cpus": os.cpu_count()},
}
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print()
for mode, rate in result["connections_per_second"].items():
    print(f"{mode:>9}: {rate:8.1f} new connections/s")
print(f"token/scram = {result['ratios']['token/scram']:.2f}   token/trust = {result['ratios']['token/trust']:.2f}"
      f"   key fetches = {fetches}")
print(f"written to {out}")
PY
