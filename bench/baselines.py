"""The baselines `make bench` measures the project against, in the same run.

`bare_fastapi`: FastAPI with one route and nothing else. `limit_app`: the same user-visible
work as the project's authenticated reads with raw asyncpg, PyJWT and Starlette, no framework
around them: the practical limit on this machine.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import jwt
import orjson
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

bare_fastapi = FastAPI()


@bare_fastapi.get("/ping")
async def ping() -> dict[str, str]:
    return {"ping": "pong"}


_pool: dict[str, Any] = {}
USER_COLUMNS = "id, email, nickname, is_admin, created_at"


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
    row = await _pool["reader"].fetchrow(
        f"SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL", user_id
    )
    return _json(dict(row))


async def users(request: Request) -> Response:
    user_id = _user_id(request)
    if user_id is None:
        return _json({"detail": "unauthorized"}, 401)
    async with _pool["reader"].acquire() as connection:
        if not await connection.fetchval("SELECT is_admin FROM users WHERE id = $1", user_id):
            return _json({"detail": "forbidden"}, 403)
        limit = int(request.query_params.get("limit", "10"))
        rows = await connection.fetch(
            f"SELECT {USER_COLUMNS} FROM users WHERE deleted_at IS NULL AND id > 0 "
            "ORDER BY id LIMIT $1",
            limit + 1,
        )
    return _json({"items": [dict(row) for row in rows[:limit]], "next_cursor": None})


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    dsn = os.environ["READER_DB_URL"].replace("postgresql+asyncpg", "postgresql")
    _pool["reader"] = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    yield
    await _pool["reader"].close()


limit_app = Starlette(
    routes=[Route("/api/v1/users/me", me), Route("/api/v1/users", users)], lifespan=_lifespan
)
