"""What the Python recipe programs share (not part of any recipe): the token provider the tests
use in place of Azure Identity, and the driver that makes a pool open new connections over time.

Environment (set by tests/clients.rs):
  AAD_HOST, AAD_PORT, AAD_USER, AAD_DBNAME  where to connect
  AAD_MINT      JSON array: the aad-auth-mint command that prints a short-lived token
  AAD_STATIC=1  hand out the first token for ever (the negative control: a pool that does not
                fetch a fresh token must fail once it has expired)
  AAD_STEPS, AAD_INTERVAL  how many steps the driver takes and how long it waits between them

The driver checks out 1, 2, ..., AAD_STEPS connections at once, one step every AAD_INTERVAL
seconds, so the pool must open one new connection per step, many of them after the first token
has expired. It prints one JSON line: connections opened, tokens fetched, connections opened
after the first token expired, and every error.
"""

import base64
import json
import os
import subprocess
import time

HOST = os.environ["AAD_HOST"]
PORT = int(os.environ["AAD_PORT"])
USER = os.environ["AAD_USER"]
DBNAME = os.environ["AAD_DBNAME"]
# Loopback without SSL here; the documented recipes verify the server's certificate.
CONNINFO = f"host={HOST} port={PORT} dbname={DBNAME} user={USER} sslmode=disable"
SSL_QUERY = {"sslmode": "disable"}
SSL = False
STEPS = int(os.environ.get("AAD_STEPS", "8"))
INTERVAL = float(os.environ.get("AAD_INTERVAL", "1.0"))

_first = None
tokens_fetched = 0
first_expiry = None


def _exp(token: str) -> int:
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return int(json.loads(base64.urlsafe_b64decode(payload))["exp"])


def entra_token() -> str:
    """A fresh token on every call, like credential.get_token(...).token near expiry."""
    global _first, tokens_fetched, first_expiry
    if os.environ.get("AAD_STATIC") == "1" and _first is not None:
        return _first
    token = subprocess.run(
        json.loads(os.environ["AAD_MINT"]), check=True, capture_output=True, text=True
    ).stdout.strip()
    tokens_fetched += 1
    if _first is None:
        _first, first_expiry = token, _exp(token)
    return token


async def entra_token_async() -> str:
    return entra_token()


class Report:
    def __init__(self):
        self.opened = {}  # backend pid -> when this program first saw it
        self.errors = []

    def saw(self, pid: int):
        self.opened.setdefault(pid, time.time())

    def failed(self, error: BaseException):
        self.errors.append(f"{type(error).__name__}: {error}".strip()[:300])

    def print(self):
        after = sum(1 for t in self.opened.values() if first_expiry is not None and t > first_expiry + 0.5)
        print(json.dumps({
            "connections": len(self.opened),
            "tokens": tokens_fetched,
            "after_first_expiry": after,
            "errors": self.errors,
        }))


def drive(checkout_many):
    """checkout_many(n) runs `SELECT pg_backend_pid()` on n pooled connections held at once and
    returns their pids."""
    report = Report()
    for step in range(1, STEPS + 1):
        try:
            for pid in checkout_many(step):
                report.saw(pid)
        except Exception as e:  # every failure is reported, none stops the run
            report.failed(e)
        time.sleep(INTERVAL)
    report.print()


async def drive_async(checkout_many):
    import asyncio
    report = Report()
    for step in range(1, STEPS + 1):
        try:
            for pid in await checkout_many(step):
                report.saw(pid)
        except Exception as e:
            report.failed(e)
        await asyncio.sleep(INTERVAL)
    report.print()
