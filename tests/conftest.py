"""The suite runs against real servers: a PostgreSQL primary with a streaming replica, Redis and
an SMTP server.

They are started once per test session from the machine's binaries (tests/servers.py) and
stopped at the end. Settings reach the code the way they reach a deployment: environment
variables.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from core.config import load_config, reset_config
from core.db import databases, session_scope
from core.helpers.cache import Cache, RedisBackend
from core.helpers.cache.redis_backend import RETRY_SECONDS
from core.helpers.rate_limiter import rate_limiter
from tests.servers import ServerStack, start_stack

ROOT = Path(__file__).resolve().parent.parent
TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-keys"
FRONTEND_URL = "http://frontend.test"


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    return cfg


@pytest.fixture(scope="session")
def stack() -> Iterator[ServerStack]:
    servers = start_stack()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session", autouse=True)
def test_settings(stack: ServerStack) -> Iterator[None]:
    env = {
        "ENV": "test",
        "WRITER_DB_URL": stack.primary.dsn(),
        "READER_DB_URL": stack.replica.dsn(),
        # Cache, broker and results in separate databases: tests empty the cache freely.
        "REDIS_URL": stack.redis.url_for(0),
        "CELERY_BROKER_URL": stack.redis.url_for(1),
        "CELERY_BACKEND_URL": stack.redis.url_for(2),
        "JWT_SECRET_KEY": TEST_JWT_SECRET,
        "MAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(stack.smtp.port),
        "FRONTEND_URL": FRONTEND_URL,
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    reset_config()
    load_config()
    command.upgrade(alembic_config(stack.primary.dsn()), "head")
    stack.wait_for_replica()
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    reset_config()


@pytest.fixture(scope="session")
async def app() -> AsyncIterator[FastAPI]:
    from app.server import create_app

    application = create_app()
    yield application
    await databases.dispose()
    await Cache.close()


@pytest.fixture(autouse=True)
async def empty_cache() -> None:
    """Each test starts with an empty cache: no throttle counters, no cached auth state."""
    backend = Cache.backend
    if isinstance(backend, RedisBackend):
        await backend.client.flushdb()
    # And the hits this process remembers, as a fresh process would start.
    await rate_limiter.record.delete_startswith("")
    if rate_limiter.degraded:
        # A test before this one stopped Redis: let the rate limiter try it again at once.
        await asyncio.sleep(RETRY_SECONDS)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
def settings() -> Iterator[Callable[..., None]]:
    """`settings(NAME=value, ...)` changes this process's settings for one test."""

    def change(**overrides: object) -> None:
        load_config(**overrides)

    yield change
    load_config()


@pytest.fixture
async def scope() -> AsyncIterator[None]:
    """A unit of work for tests that use `session` directly, as a request would."""
    async with session_scope():
        yield
