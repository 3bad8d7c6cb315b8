from __future__ import annotations

import json
import logging

import pytest
from fastapi import APIRouter, Depends, FastAPI
from httpx import ASGITransport, AsyncClient
from starlette.types import Receive, Scope, Send

from core.fastapi.dependencies import Logging
from core.fastapi.schemas.current_user import CurrentUser
from core.logging import ContextFilter, JSONFormatter
from tests.helpers import signed_up


async def test_each_response_carries_a_request_id(client: AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/health")

    assert len(first.headers["x-request-id"]) == 32
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123_X.y:z", True), ("has spaces", False), ("x" * 200, False), ("<script>", False)],
)
async def test_a_sane_incoming_request_id_is_kept_and_others_replaced(
    client: AsyncClient, sent: str, kept: bool
) -> None:
    response = await client.get("/health", headers={"X-Request-ID": sent})

    assert (response.headers["x-request-id"] == sent) is kept


async def test_one_access_log_line_per_request_with_id_and_user(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    account = await signed_up(client)
    caplog.set_level(logging.INFO, logger="api.access")
    caplog.clear()

    response = await client.get(
        "/api/v1/users/me", headers={**account.headers, "X-Request-ID": "trace-me"}
    )

    lines = [r for r in caplog.records if r.name == "api.access"]
    assert len(lines) == 1
    record = lines[0]
    assert record.request_id == "trace-me"  # type: ignore[attr-defined]
    assert record.user_id == account.id  # type: ignore[attr-defined]
    assert record.status == response.status_code == 200  # type: ignore[attr-defined]
    assert record.path == "/api/v1/users/me"  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]

    formatted = json.loads(JSONFormatter().format(record))
    assert formatted["request_id"] == "trace-me"
    assert formatted["user_id"] == account.id
    assert formatted["message"] == "GET /api/v1/users/me 200"


async def test_a_line_break_in_the_path_cannot_forge_a_log_line(
    client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.access")
    caplog.clear()
    forged = "2030-01-01 00:00:00 INFO api.access [request_id=x] POST /api/v1/auth/login 200"

    await client.get(f"/x%0A{forged.replace(' ', '%20')}?token=secret")

    (record,) = [r for r in caplog.records if r.name == "api.access"]
    line = record.getMessage()
    assert "\n" not in line
    assert line.startswith("GET /x%0A2030-01-01%2000")
    assert "secret" not in line  # the query is not logged


@pytest.mark.parametrize(("user", "logged"), [(None, "-"), (CurrentUser(id=42), 42)])
async def test_logging_binds_the_caller_on_an_app_without_the_auth_middleware(
    user: CurrentUser | None, logged: object
) -> None:
    seen: list[object] = []
    app = FastAPI()
    router = APIRouter(dependencies=[Depends(Logging())])

    @router.get("/who")
    async def who() -> dict[str, bool]:
        record = logging.LogRecord("test", logging.INFO, "", 0, "", None, None)
        ContextFilter().filter(record)
        seen.append(vars(record)["user_id"])
        return {"ok": True}

    app.include_router(router)

    async def authenticated_elsewhere(scope: Scope, receive: Receive, send: Send) -> None:
        if user is not None:
            scope["user"] = user
        await app(scope, receive, send)

    transport = ASGITransport(app=authenticated_elsewhere)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/who")

    assert response.status_code == 200
    assert seen == [logged]
