"""docs/clients.md, SQLAlchemy (psycopg 3 driver): the block between the recipe markers is the
documented recipe, verbatim."""

from contextlib import ExitStack

from harness import DBNAME, HOST, PORT, SSL_QUERY, USER, drive, entra_token

# recipe: sqlalchemy
from sqlalchemy import URL, create_engine, event, text

engine = create_engine(
    URL.create(
        "postgresql+psycopg",
        username=USER,
        host=HOST,
        port=PORT,
        database=DBNAME,
        query=SSL_QUERY,
    ),
    pool_size=5,
    max_overflow=5,
    pool_pre_ping=True,
)


# Called before every new DBAPI connection: each gets a fresh token.
@event.listens_for(engine, "do_connect")
def provide_token(dialect, conn_rec, cargs, cparams):
    cparams["password"] = entra_token()
# end recipe


def checkout_many(n):
    with ExitStack() as stack:
        conns = [stack.enter_context(engine.connect()) for _ in range(n)]
        return [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in conns]


drive(checkout_many)
engine.dispose()
