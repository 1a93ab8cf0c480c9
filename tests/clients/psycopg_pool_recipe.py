"""docs/clients.md, psycopg 3 with psycopg_pool: the block between the recipe markers is the
documented recipe, verbatim."""

from contextlib import ExitStack

from harness import CONNINFO, drive, entra_token

# recipe: psycopg_pool
from psycopg_pool import ConnectionPool

# kwargs is called for every new connection the pool opens: each gets a fresh token.
pool = ConnectionPool(
    CONNINFO,
    kwargs=lambda: {"password": entra_token()},
    min_size=1,
    max_size=10,
    open=True,
)
# end recipe


def checkout_many(n):
    with ExitStack() as stack:
        conns = [stack.enter_context(pool.connection(timeout=3)) for _ in range(n)]
        return [c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in conns]


drive(checkout_many)
pool.close()
