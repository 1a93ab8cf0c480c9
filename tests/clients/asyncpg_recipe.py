"""docs/clients.md, asyncpg with its pool: the block between the recipe markers is the
documented recipe, verbatim."""

import asyncio

from harness import DBNAME, HOST, PORT, SSL, USER, drive_async, entra_token_async


async def main():
    # recipe: asyncpg
    import asyncpg

    # password may be a coroutine function: asyncpg awaits it for every new connection.
    pool = await asyncpg.create_pool(
        host=HOST,
        port=PORT,
        user=USER,
        database=DBNAME,
        password=entra_token_async,
        ssl=SSL,
        min_size=1,
        max_size=10,
    )
    # end recipe

    async def checkout_many(n):
        conns = []
        try:
            for _ in range(n):
                conns.append(await asyncio.wait_for(pool.acquire(), 3))
            return [await c.fetchval("SELECT pg_backend_pid()") for c in conns]
        finally:
            for c in conns:
                await pool.release(c)

    await drive_async(checkout_many)
    pool.terminate()


asyncio.run(main())
