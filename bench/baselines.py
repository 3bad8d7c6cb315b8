"""The baselines `make bench` measures the project against, in the same run.

`bare_fastapi`: FastAPI with one route and nothing else. `limit_app`: the same user-visible
work as the project's authenticated reads, the nickname change and the anonymous page of posts,
with raw asyncpg, PyJWT, redis-py and Starlette and no framework around them: the practical
limit on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import jwt
import orjson
import redis.asyncio as redis
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

bare_fastapi = FastAPI()


@bare_fastapi.get("/ping")
async def ping() -> dict[str, str]:
    return {"ping": "pong"}


_state: dict[str, Any] = {}
USER_COLUMNS = "id, email, nickname, is_admin, created_at, version"
POST_COLUMNS = "id, author_id, title, body, created_at, updated_at, version"
# The limit app's own channel: it hears its own announcements, as every API process must.
CHANGES_CHANNEL = "bench:limit:changes"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def _user_id(request: Request) -> int | None:
    header = request.headers.get("authorization", "")
    try:
        claims = jwt.decode(header[7:], os.environ["JWT_SECRET_KEY"], algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    return int(claims["sub"])


async def me(request: Request) -> Response:
    user_id = _user_id(request)
    if user_id is None:
        return _json({"detail": "unauthorized"}, 401)
    row = await _state["reader"].fetchrow(
        f"SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL", user_id
    )
    return _json(dict(row))


async def users(request: Request) -> Response:
    user_id = _user_id(request)
    if user_id is None:
        return _json({"detail": "unauthorized"}, 401)
    try:
        limit = int(request.query_params.get("limit", "10"))
        after_id = int(request.query_params.get("cursor", "0"))
    except ValueError:
        return _json({"detail": "bad limit or cursor"}, 422)
    async with _state["reader"].acquire() as connection:
        if not await connection.fetchval("SELECT is_admin FROM users WHERE id = $1", user_id):
            return _json({"detail": "forbidden"}, 403)
        rows = await connection.fetch(
            f"SELECT {USER_COLUMNS} FROM users WHERE deleted_at IS NULL AND id > $1 "
            "ORDER BY id LIMIT $2",
            after_id,
            limit + 1,
        )
    page = rows[:limit]
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    return _json({"items": [dict(row) for row in page], "next_cursor": next_cursor})


async def posts(request: Request) -> Response:
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError:
        return _json({"detail": "bad limit"}, 422)
    rows = await _state["reader"].fetch(
        f"SELECT {POST_COLUMNS} FROM posts WHERE deleted_at IS NULL "
        "ORDER BY created_at DESC, id LIMIT $1",
        limit + 1,
    )
    page = rows[:limit]
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    return _json({"items": [dict(row) for row in page], "next_cursor": next_cursor})


async def update_user(request: Request) -> Response:
    user_id = _user_id(request)
    if user_id is None:
        return _json({"detail": "unauthorized"}, 401)
    if int(request.path_params["user_id"]) != user_id:
        return _json({"detail": "forbidden"}, 403)
    try:
        nickname = orjson.loads(await request.body())["nickname"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _json({"detail": "nickname expected"}, 422)
    if not isinstance(nickname, str) or not 1 <= len(nickname) <= 64:
        return _json({"detail": "nickname expected"}, 422)
    row = await _state["writer"].fetchrow(
        "UPDATE users SET nickname = $1, updated_at = now() "
        f"WHERE id = $2 AND deleted_at IS NULL RETURNING {USER_COLUMNS}",
        nickname,
        user_id,
    )
    if row is None:
        return _json({"detail": "not found"}, 404)
    await _state["redis"].publish(CHANGES_CHANNEL, b"user:%d" % user_id)
    return _json(dict(row))


async def _listen(pubsub: Any) -> None:
    async for _ in pubsub.listen():
        pass


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    def dsn(name: str) -> str:
        return os.environ[name].replace("postgresql+asyncpg", "postgresql")

    _state["reader"] = await asyncpg.create_pool(dsn("READER_DB_URL"), min_size=10, max_size=10)
    _state["writer"] = await asyncpg.create_pool(dsn("WRITER_DB_URL"), min_size=10, max_size=10)
    _state["redis"] = redis.Redis.from_url(os.environ["REDIS_URL"])
    pubsub = _state["redis"].pubsub()
    await pubsub.subscribe(CHANGES_CHANNEL)
    listener = asyncio.create_task(_listen(pubsub))
    yield
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
    await pubsub.aclose()
    await _state["redis"].aclose()
    await _state["writer"].close()
    await _state["reader"].close()


limit_app = Starlette(
    routes=[
        Route("/api/v1/users/me", me),
        Route("/api/v1/users", users),
        Route("/api/v1/users/{user_id:int}", update_user, methods=["PATCH"]),
        Route("/api/v1/posts", posts),
    ],
    lifespan=_lifespan,
)
