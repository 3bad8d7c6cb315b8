from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from starlette.responses import Response

from celery_task import call_broker, celery_app
from core.db import databases
from core.helpers.cache import Cache

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0

CheckState = Literal["ok", "down", "degraded", "busy"]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    checks: dict[str, str]


# Encoded once: a liveness probe runs every few seconds on every process, and its answer never
# changes.
_ALIVE = Liveness().model_dump_json().encode()


@router.get("/health", response_model=Liveness)
async def health() -> Response:
    """Liveness: the process answers. Touches nothing."""
    return Response(_ALIVE, media_type="application/json")


async def _writer_state(engine: AsyncEngine) -> CheckState:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return "ok"


async def _reader_state(engine: AsyncEngine) -> CheckState:
    async with engine.connect() as connection:
        in_recovery = await connection.scalar(text("SELECT pg_is_in_recovery()"))
    # A reader connection that is not on a standby is the fallback to the writer.
    return "ok" if in_recovery else "degraded"


async def _check(probe: Awaitable[CheckState]) -> str:
    try:
        return await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
    except Exception as error:
        return f"down: {type(error).__name__}"


async def _database_check(probe: Awaitable[CheckState], engine: AsyncEngine) -> str:
    state = await _check(probe)
    pool = engine.pool
    # Every pooled connection was serving a request the whole time: busy, not down (a probe
    # that pulled the process out of rotation at its peak would turn load into an outage).
    busy = isinstance(pool, QueuePool) and pool.checkedout() >= pool.size()
    return "busy" if state == "down: TimeoutError" and busy else state


async def _cache_state() -> CheckState:
    await Cache.backend.get("ready:probe")
    return "ok"


def _connect_to_broker() -> None:
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)


async def _broker_state() -> CheckState:
    # Off the loop and bounded, as every broker call: a broker out of reach is "down", not a hang.
    await call_broker(_connect_to_broker)
    return "ok"


@router.get("/ready", response_model=Readiness)
async def ready(response: Response) -> Readiness:
    """Readiness: 503 when the writer is down; a reader, cache or broker outage degrades."""
    writer, reader = databases.writer, databases.reader
    probes = {
        "writer": _database_check(_writer_state(writer), writer),
        "cache": _check(_cache_state()),
        "broker": _check(_broker_state()),
    }
    if databases.has_separate_reader:
        probes["reader"] = _database_check(_reader_state(reader), reader)
    # At once, so the answer takes one check's time at most.
    checks = dict(zip(probes, await asyncio.gather(*probes.values()), strict=True))
    checks.setdefault("reader", checks["writer"])
    if checks["writer"] not in ("ok", "busy"):
        response.status_code = 503
        return Readiness(status="unavailable", checks=checks)
    degraded = any(state != "ok" for state in checks.values())
    return Readiness(status="degraded" if degraded else "ok", checks=checks)
