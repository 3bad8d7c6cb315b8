"""Every error, whoever raised it, is an RFC 9457 problem document."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, HTTPException
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from core.db import session
from core.exceptions.handlers import install_exception_handlers
from tests.servers import ServerStack

USERS = "/api/v1/users"
PROBLEM_KEYS = {"type", "title", "status", "detail", "error_code"}


def assert_problem(response_status: int, body: dict[str, object], content_type: str) -> None:
    assert content_type == "application/problem+json"
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == response_status
    assert body["type"] == "about:blank"


async def test_unknown_route_is_a_problem_404(client: AsyncClient) -> None:
    response = await client.get("/no/such/route")

    assert response.status_code == 404
    assert_problem(404, response.json(), response.headers["content-type"])
    assert response.json()["error_code"] == "NOT_FOUND"


async def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_host_sent(
    client: AsyncClient,
) -> None:
    # A redirect would be built from the Host header: an open redirect behind most proxies.
    response = await client.get("/api/v1/posts/", headers={"host": "evil.example"})

    assert response.status_code == 404
    assert "location" not in response.headers
    assert_problem(404, response.json(), response.headers["content-type"])


async def test_a_body_of_many_bad_fields_gets_a_bounded_answer(client: AsyncClient) -> None:
    body = {"email": "many@example.com", "password": "x" * 12} | {f"k{n}": n for n in range(500)}

    response = await client.post("/api/v1/users", json=body)

    assert response.status_code == 422
    assert len(response.json()["errors"]) == 50
    assert "the first 50 of" in response.json()["detail"]
    assert len(response.content) < 10_000


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
async def test_a_body_in_another_format_is_a_415(
    client: AsyncClient, stack: ServerStack, content_type: str
) -> None:
    # What `curl -d` sends unless told otherwise.
    body = b'{"email": "form@example.com", "password": "long enough password"}'

    response = await client.post(USERS, content=body, headers={"content-type": content_type})

    assert response.status_code == 415
    assert_problem(415, response.json(), response.headers["content-type"])
    assert response.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert stack.primary.psql("SELECT count(*) FROM users WHERE email = 'form@example.com'") == "0"


async def test_json_under_its_structured_names_is_read_as_json(client: AsyncClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = await client.post(USERS, content=b"{}", headers={"content-type": content_type})
        assert response.status_code == 422  # read, and found to lack its fields
        assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_wrong_method_is_a_problem_405_with_allow(client: AsyncClient) -> None:
    response = await client.delete("/health")

    assert response.status_code == 405
    assert_problem(405, response.json(), response.headers["content-type"])
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response.headers["allow"]


async def test_allow_names_every_method_the_url_answers(client: AsyncClient) -> None:
    # Two routes share the path: listing (GET) and creating (POST).
    response = await client.put("/api/v1/posts")

    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}


async def test_malformed_json_is_a_problem_400(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/users", content=b'{"email": ', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert_problem(400, response.json(), response.headers["content-type"])
    assert response.json()["error_code"] == "MALFORMED_JSON"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"email": "\xff"}', "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deep"),
        (b'{"email": ' + b"1" * 5000 + b"}", "a number too long"),
    ],
)
async def test_json_its_parser_gives_up_on_is_malformed_json_too(
    client: AsyncClient, body: bytes, reason: str
) -> None:
    response = await client.post(
        "/api/v1/users", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert_problem(400, response.json(), response.headers["content-type"])
    assert response.json()["error_code"] == "MALFORMED_JSON"
    assert response.json()["errors"] == [{"loc": ["body"], "msg": reason, "type": "json_invalid"}]


async def test_validation_error_lists_each_problem(client: AsyncClient) -> None:
    response = await client.post("/api/v1/users", json={})

    assert response.status_code == 422
    body = response.json()
    assert_problem(422, body, response.headers["content-type"])
    assert {tuple(error["loc"]) for error in body["errors"]} == {
        ("body", "email"),
        ("body", "password"),
        ("body", "nickname"),
    }
    assert all(error.keys() == {"loc", "msg", "type"} for error in body["errors"])
    assert body["title"] == "Unprocessable Content"  # RFC 9110's words, on every Python


@pytest.mark.parametrize(
    ("status", "code", "title"),
    [(413, "CONTENT_TOO_LARGE", "Content Too Large"), (414, "URI_TOO_LONG", "URI Too Long")],
)
async def test_an_http_exception_is_named_as_rfc_9110_names_it(
    status: int, code: str, title: str
) -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/refuse")
    async def refuse() -> None:
        raise HTTPException(status)

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as bare:
        body = (await bare.get("/refuse")).json()

    assert (body["status"], body["error_code"], body["title"]) == (status, code, title)
    assert body["detail"] == f"{title}."


@pytest.fixture
async def failing_client() -> AsyncIterator[AsyncClient]:
    """The app with routes that fail the way bugs do: an exception, a query the database refuses."""
    from app.server import create_app

    app: FastAPI = create_app()
    secret = "postgresql://admin:hunter2@db/secret"

    async def explode() -> None:
        raise RuntimeError(f"cannot connect to {secret}")

    async def bad_query() -> None:
        await session.execute(text("SELECT 1 / 0 AS hunter2"))

    async def conflict(sqlstate: str) -> None:
        # What PostgreSQL answers a transaction it rolled back for another's sake.
        sql = f"DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '{sqlstate}'; END $$"
        await session.execute(text(sql))

    app.add_api_route("/test-only/explode", explode)
    app.add_api_route("/test-only/conflict/{sqlstate}", conflict)
    app.add_api_route("/test-only/bad-query", bad_query)
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.mark.parametrize("path", ["/test-only/explode", "/test-only/bad-query"])
async def test_unhandled_error_is_a_500_that_leaks_nothing(
    failing_client: AsyncClient, path: str
) -> None:
    response = await failing_client.get(path, headers={"X-Request-ID": "req-500-check"})

    assert response.status_code == 500
    body = response.json()
    assert_problem(500, body, response.headers["content-type"])
    assert body["error_code"] == "INTERNAL_SERVER_ERROR"
    for leak in ("hunter2", "Traceback", "RuntimeError", "SELECT", "division"):
        assert leak not in response.text


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_a_deadlock_or_serialization_failure_is_a_409_to_retry(
    failing_client: AsyncClient, sqlstate: str
) -> None:
    response = await failing_client.get(f"/test-only/conflict/{sqlstate}")

    assert response.status_code == 409
    assert response.json()["error_code"] == "CHANGED_MEANWHILE"


@pytest.mark.parametrize("path", ["/test-only/explode", "/test-only/bad-query"])
async def test_a_500_carries_the_request_id_and_the_security_headers(
    failing_client: AsyncClient, path: str
) -> None:
    response = await failing_client.get(path, headers={"X-Request-ID": "req-500-check"})

    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500-check"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
