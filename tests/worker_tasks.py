"""Tasks only the test suite's workers load (`--include tests.worker_tasks`): queue `default`."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select

from app.role import Role, RoleCreate, role_service
from celery_task import async_task, celery_app
from core.db import Transactional, session, use_writer
from core.logging import request_id_var

logger = logging.getLogger(__name__)


@async_task(name="tests.create_role")
async def create_role(name: str) -> int:
    @Transactional()
    async def create() -> int:
        role = await role_service.create(RoleCreate(name=name))
        return role.id

    return await create()


@async_task(name="tests.find_role")
async def find_role(name: str) -> int | None:
    use_writer()
    return await session.scalar(select(Role.id).where(Role.name == name))


@async_task(name="tests.count_roles")
async def count_roles() -> int:
    return int(await session.scalar(select(func.count()).select_from(Role)) or 0)


@async_task(name="tests.echo_request_id")
async def echo_request_id(marker: str) -> str | None:
    logger.info("task with marker %s", marker)
    return request_id_var.get()


@async_task(name="tests.nap")
async def nap(seconds: float) -> float:
    """Takes a while and touches nothing."""
    await asyncio.sleep(seconds)
    return seconds


@async_task(name="tests.relay")
async def relay(seconds: float) -> str:
    """Sends a nap, as a task that hands work on does; returns its id."""
    return str((await nap.adelay(seconds)).id)


@async_task(name="tests.relay_on")
async def relay_on(seconds: float) -> str:
    """Sends a relay: three tasks deep, each sent by the one before; returns the relay's id."""
    return str((await relay.adelay(seconds)).id)


@celery_app.task(name="tests.add")
def add(a: int, b: int) -> int:
    return a + b


@async_task(name="tests.survive_worker_loss")
async def survive_worker_loss(counter_key: str) -> int:
    """Counts its runs in Redis; the first run lingers so a test can kill its process."""
    from redis.asyncio import Redis

    from core.config import config

    assert config.REDIS_URL is not None
    async with Redis.from_url(config.REDIS_URL) as redis:
        attempt = int(await redis.incr(counter_key))
    if attempt == 1:
        await asyncio.sleep(30)
    return attempt


@async_task(name="tests.fail")
async def fail(message: str) -> None:
    """Raises: a task that goes wrong."""
    raise RuntimeError(message)


@async_task(name="tests.outlive_soft_limit", soft_time_limit=0.5)
async def outlive_soft_limit(counter_key: str) -> None:
    """Sleeps past its soft time limit, then counts in Redis: it must never get that far."""
    from redis.asyncio import Redis

    from core.config import config

    await asyncio.sleep(1.5)
    assert config.REDIS_URL is not None
    async with Redis.from_url(config.REDIS_URL) as redis:
        await redis.incr(counter_key)
