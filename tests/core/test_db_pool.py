"""The connection pool: the first to ask is served first, and the connection used last goes out
first."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import Pool

from core.db import databases
from core.db.pool import FairAsyncPool
from tests.servers import ServerStack


async def order_of_service(stack: ServerStack, poolclass: type[Pool]) -> list[str]:
    """Five requests wait for the only connection; its holder gives it back and at once asks
    for it again. Who gets it, in which order?"""
    engine = create_async_engine(
        stack.primary.dsn(), poolclass=poolclass, pool_size=1, max_overflow=0, pool_timeout=10
    )
    served: list[str] = []

    async def use(name: str) -> None:
        async with engine.connect() as connection:
            served.append(name)
            await connection.execute(text("SELECT 1"))

    holder = await engine.connect()
    waiters = []
    for number in range(5):
        waiters.append(asyncio.create_task(use(f"waiter {number}")))
        await asyncio.sleep(0.02)  # each is waiting before the next asks
    await holder.close()
    await use("holder again")
    await asyncio.gather(*waiters)
    await engine.dispose()
    return served


async def test_a_returned_connection_goes_to_the_longest_waiter(stack: ServerStack) -> None:
    served = await order_of_service(stack, FairAsyncPool)

    assert served == [*(f"waiter {number}" for number in range(5)), "holder again"]


async def test_one_query_at_a_time_keeps_to_the_connection_used_last() -> None:
    """After a burst has opened several connections, a light load reuses one of them: the
    others stay idle, so only they pay the ping before their next use (engines.py)."""

    async def server_process(hold_seconds: float = 0) -> int:
        async with databases.writer.connect() as connection:
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await asyncio.sleep(hold_seconds)
            return int(pid)

    burst = await asyncio.gather(*(server_process(hold_seconds=0.05) for _ in range(4)))
    assert len(set(burst)) == 4
    # Handed out in the order they came back, each query would go to the next of them.
    assert len({await server_process() for _ in range(8)}) == 1
