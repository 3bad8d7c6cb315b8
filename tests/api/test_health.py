from __future__ import annotations

from httpx import AsyncClient


async def test_health_answers_without_touching_anything(client: AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_writer_and_reader(client: AsyncClient) -> None:
    response = await client.get("/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"writer": "ok", "reader": "ok", "cache": "ok", "broker": "ok"},
    }


async def test_docs_are_served_outside_prod(client: AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/openapi.json")).json()["paths"].keys() >= {
        "/api/v1/users",
        "/api/v1/users/{user_id}",
    }


async def test_a_request_that_needs_no_database_opens_no_connection(client: AsyncClient) -> None:
    from core.db import databases

    await databases.dispose()
    for _ in range(5):
        assert (await client.get("/health")).status_code == 200

    pools = {databases.writer.pool, databases.reader.pool}
    assert sum(pool.checkedin() + pool.checkedout() for pool in pools) == 0  # type: ignore[attr-defined]


async def test_a_writer_busy_with_requests_is_busy_not_down(client: AsyncClient) -> None:
    from contextlib import AsyncExitStack

    from sqlalchemy.pool import QueuePool

    from core.db import databases

    pool = databases.writer.pool
    assert isinstance(pool, QueuePool)
    async with AsyncExitStack() as held:
        # Every pooled writer connection taken, as by requests running long statements.
        for _ in range(pool.size()):
            await held.enter_async_context(databases.writer.connect())
        response = await client.get("/ready")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["writer"] == "busy"
    assert (await client.get("/ready")).json()["checks"]["writer"] == "ok"
