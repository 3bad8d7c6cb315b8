"""What users notice when a database server goes away and comes back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from core.db import databases, session, session_scope, use_writer
from core.helpers.cache import Cache
from core.helpers.outage import Outage
from tests.helpers import registration, signed_up
from tests.servers import ServerStack

IN_RECOVERY = select(func.pg_is_in_recovery())
# Generous: this only guards against a hang, it does not measure speed.
HANG_GUARD_SECONDS = 15


async def off_the_loop(operation: Callable[[], object]) -> None:
    """Stop or restart a server while the event loop keeps running, as a serving process's does
    (a blocking call here would freeze the loop and hide the server's goodbye from the pool)."""
    await asyncio.to_thread(operation)


async def read_runs_on_replica() -> bool:
    async with session_scope():
        return bool(await session.scalar(IN_RECOVERY))


async def test_reads_fall_back_to_the_primary_while_the_replica_is_down_and_then_return(
    stack: ServerStack, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    assert await read_runs_on_replica()
    fallback = databases.reader_fallback
    assert fallback is not None
    fallback.outage.seconds = 0.5
    caplog.set_level(logging.WARNING)

    await off_the_loop(stack.replica.stop)
    try:
        assert await asyncio.wait_for(read_runs_on_replica(), HANG_GUARD_SECONDS) is False
        assert "read replica unreachable" in caplog.text

        account = await signed_up(client)
        read = await client.get(f"/api/v1/users/{account.id}", headers=account.headers)
        assert read.status_code == 200

        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
    finally:
        stack.replica.start()
        stack.wait_for_replica()

    await asyncio.sleep(fallback.outage.seconds + 0.1)
    assert await read_runs_on_replica()
    fallback.outage.seconds = 5.0


async def test_a_read_after_the_replica_restarted_gets_a_fresh_connection(
    stack: ServerStack,
) -> None:
    assert await read_runs_on_replica()

    await off_the_loop(stack.replica.restart)
    try:
        # The pooled connection died with the server: found closed at checkout, it is replaced.
        assert await asyncio.wait_for(read_runs_on_replica(), HANG_GUARD_SECONDS)
    finally:
        stack.wait_for_replica()


async def test_writes_work_again_right_after_the_primary_restarts(
    stack: ServerStack, client: AsyncClient
) -> None:
    assert (await client.post("/api/v1/users", json=registration())).status_code == 201
    await off_the_loop(stack.primary.restart)
    try:
        # The pooled connections died with the server; the next request must not see that.
        response = await client.post("/api/v1/users", json=registration())
        assert response.status_code == 201
    finally:
        stack.wait_for_replica()


async def test_a_request_gets_503_not_a_hang_while_the_primary_is_down(
    stack: ServerStack, client: AsyncClient
) -> None:
    await off_the_loop(stack.primary.stop)
    try:
        response = await asyncio.wait_for(
            client.post("/api/v1/users", json=registration()), HANG_GUARD_SECONDS
        )
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"

        ready = await asyncio.wait_for(client.get("/ready"), HANG_GUARD_SECONDS)
        assert ready.status_code == 503
        assert ready.json()["checks"]["writer"].startswith("down")
    finally:
        stack.primary.start()
        stack.wait_for_replica()

    assert (await client.post("/api/v1/users", json=registration())).status_code == 201


@pytest.fixture
async def short_timeouts(settings: Callable[..., None]) -> AsyncIterator[None]:
    """Engines whose connects and statements give up after a second, as a hung server needs."""
    settings(DB_COMMAND_TIMEOUT=1, DB_CONNECT_TIMEOUT=1)
    await databases.dispose()
    yield
    await databases.dispose()  # the next use builds engines with the usual settings


async def test_a_hung_replica_sends_reads_to_the_primary_and_they_return_after_it(
    stack: ServerStack, short_timeouts: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert await read_runs_on_replica()  # a replica connection in the pool
    fallback = databases.reader_fallback
    assert fallback is not None
    fallback.outage.seconds = 1.0
    caplog.set_level(logging.WARNING)

    stack.replica.freeze()
    try:
        outcomes: list[object] = []
        for _ in range(3):
            try:
                outcomes.append(await asyncio.wait_for(read_runs_on_replica(), HANG_GUARD_SECONDS))
            except Exception as error:  # at most the read that met the hang fails
                outcomes.append(type(error).__name__)
        # A hung replica costs the reads that meet it a timeout each, then they use the primary.
        assert outcomes[1:] == [False, False], outcomes
        assert "read replica unreachable" in caplog.text
    finally:
        stack.replica.thaw()

    await asyncio.sleep(fallback.outage.seconds + 0.1)
    assert await asyncio.wait_for(read_runs_on_replica(), HANG_GUARD_SECONDS)


async def test_a_replica_still_hung_when_its_outage_ends_is_probed_by_one_read_only(
    stack: ServerStack, short_timeouts: None, caplog: pytest.LogCaptureFixture
) -> None:
    fallback = databases.reader_fallback
    assert fallback is not None
    fallback.outage.seconds = 1.0
    caplog.set_level(logging.WARNING)

    async def read() -> bool:
        return await asyncio.wait_for(read_runs_on_replica(), HANG_GUARD_SECONDS)

    stack.replica.freeze()
    try:
        fallback.mark_down(TimeoutError("frozen"))
        # Eight reads in flight at once open eight writer connections during the outage.
        assert await asyncio.gather(*(read() for _ in range(8))) == [False] * 8
        await asyncio.sleep(fallback.outage.seconds + 0.1)
        before = caplog.text.count("read replica unreachable")
        # The outage is over, the replica still hung: one read tries it, the rest stay put.
        after_outage = await asyncio.gather(*(read() for _ in range(8)))
        probes = caplog.text.count("read replica unreachable") - before
    finally:
        stack.replica.thaw()

    assert after_outage == [False] * 8
    assert probes == 1
    await asyncio.sleep(fallback.outage.seconds + 0.1)
    assert await read()
    fallback.outage.seconds = 5.0


async def test_a_slow_statement_is_cancelled_and_the_replica_stays_in_use(
    short_timeouts: None,
) -> None:
    async with session_scope():
        with pytest.raises(DBAPIError, match="statement timeout"):
            await asyncio.wait_for(session.execute(select(func.pg_sleep(3))), HANG_GUARD_SECONDS)

    fallback = databases.reader_fallback
    assert fallback is not None
    assert not fallback.outage.ongoing  # slow is not hung
    assert await read_runs_on_replica()


async def test_a_hung_primary_gets_writes_a_503_and_authenticated_reads_keep_working(
    stack: ServerStack,
    client: AsyncClient,
    short_timeouts: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Put back afterwards: the tests after this one find the writer trusted again.
    monkeypatch.setattr("app.auth.service.writer_outage", Outage(5.0))
    accounts = [await signed_up(client) for _ in range(3)]
    stack.wait_for_replica()
    # No cached auth state, and no hold left by the sign-up: the states must be read now.
    await Cache.backend.client.flushdb()  # type: ignore[attr-defined]
    caplog.set_level(logging.WARNING)

    stack.primary.freeze()
    try:
        write = await asyncio.wait_for(
            client.post("/api/v1/users", json=registration()), HANG_GUARD_SECONDS
        )
        reads = [
            await asyncio.wait_for(
                client.get(f"/api/v1/users/{account.id}", headers=account.headers),
                HANG_GUARD_SECONDS,
            )
            for account in accounts
        ]
    finally:
        stack.primary.thaw()

    assert write.status_code == 503
    assert write.json()["error_code"] == "DATABASE_UNAVAILABLE"
    assert [(r.status_code, r.json()["id"]) for r in reads] == [(200, a.id) for a in accounts]
    # Only the first read waited for the writer; the others went to the replica at once.
    assert caplog.text.count("writer unreachable") == 1

    # What the replica said was not kept (it may predate a logout it had not replayed yet):
    # once the writer is back, the writer decides at once. Changed behind the cache's back here.
    monkeypatch.setattr("app.auth.service.writer_outage", Outage(5.0))
    stack.primary.psql(f"UPDATE users SET deleted_at = now() WHERE id = {accounts[0].id}")
    after = await client.get(f"/api/v1/users/{accounts[0].id}", headers=accounts[0].headers)
    assert after.status_code == 401


async def test_a_database_host_that_cannot_be_reached_is_a_503(
    client: AsyncClient, settings: Callable[..., None]
) -> None:
    # A documentation-only address: "no route to host" (or a timeout), not "connection refused".
    unreachable = "postgresql+asyncpg://app@[2001:db8::1]:5432/app"
    settings(WRITER_DB_URL=unreachable, READER_DB_URL=unreachable, DB_CONNECT_TIMEOUT=2)
    await databases.dispose()
    try:
        response = await asyncio.wait_for(
            client.post("/api/v1/users", json=registration()), HANG_GUARD_SECONDS
        )
    finally:
        await databases.dispose()

    assert response.status_code == 503
    assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"


async def test_closing_the_pools_does_not_wait_on_a_server_that_stopped_answering(
    stack: ServerStack, settings: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    """A shutdown while the primary hangs: each pooled connection's goodbye would wait for an
    answer that never comes (up to the command timeout, one connection after another)."""
    settings(DB_COMMAND_TIMEOUT=60)
    await databases.dispose()
    async with session_scope():
        await session.scalar(select(1))
        use_writer()
        await session.scalar(select(1))
    caplog.set_level(logging.WARNING)

    stack.primary.freeze()
    try:
        await asyncio.wait_for(databases.dispose(), HANG_GUARD_SECONDS)
    finally:
        stack.primary.thaw()

    assert "database connections did not close" in caplog.text
    # The next use builds new pools.
    async with session_scope():
        use_writer()
        assert await session.scalar(select(1)) == 1
