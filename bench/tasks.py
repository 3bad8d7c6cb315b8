"""The tasks of the Celery round trip: the same read, as an async task and as a plain sync one."""

from __future__ import annotations

import os
import threading

import psycopg
from sqlalchemy import select

from app.user import User
from celery_task import async_task, celery_app
from core.db import session

_local = threading.local()


@async_task(name="bench.read_user_async")
async def read_user_async(user_id: int) -> str | None:
    return await session.scalar(select(User.nickname).where(User.id == user_id))


@celery_app.task(name="bench.read_user_sync")
def read_user_sync(user_id: int) -> str | None:
    connection = getattr(_local, "connection", None)
    if connection is None:
        dsn = os.environ["READER_DB_URL"].replace("postgresql+asyncpg", "postgresql")
        connection = _local.connection = psycopg.connect(dsn, autocommit=True)
    row = connection.execute("SELECT nickname FROM users WHERE id = %s", (user_id,)).fetchone()
    return None if row is None else str(row[0])
