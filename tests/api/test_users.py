from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from httpx import AsyncClient

from tests.helpers import unique_email
from tests.servers import ServerStack


def registration(**overrides: Any) -> dict[str, Any]:
    return {"email": unique_email(), "password": "correct horse", "nickname": "Ann", **overrides}


def assert_no_secrets(body: object) -> None:
    text = str(body).lower()
    assert "password" not in text
    assert "argon2" not in text


async def test_register_returns_the_user_without_secrets(
    client: AsyncClient, stack: ServerStack
) -> None:
    response = await client.post("/api/v1/users", json=registration(email="Mixed.Case@Example.COM"))

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "mixed.case@example.com"
    assert body["nickname"] == "Ann"
    assert body["is_admin"] is False
    assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]
    assert_no_secrets(body)
    stored = stack.primary.psql(f"SELECT password_hash FROM users WHERE id = {body['id']}")
    assert stored.startswith("$argon2id$")


async def test_registered_user_can_be_read_back(client: AsyncClient, stack: ServerStack) -> None:
    created = (await client.post("/api/v1/users", json=registration())).json()
    stack.wait_for_replica()

    response = await client.get(f"/api/v1/users/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


async def test_duplicate_email_is_a_409_whatever_its_case(client: AsyncClient) -> None:
    email = unique_email()
    assert (await client.post("/api/v1/users", json=registration(email=email))).status_code == 201

    response = await client.post("/api/v1/users", json=registration(email=email.upper()))

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "An account with this email address already exists.",
        "error_code": "USER__DUPLICATE_EMAIL",
    }


async def test_concurrent_registrations_of_one_email_create_exactly_one_user(
    client: AsyncClient, stack: ServerStack
) -> None:
    email = unique_email()
    responses = await asyncio.gather(
        *(client.post("/api/v1/users", json=registration(email=email)) for _ in range(16))
    )

    assert Counter(r.status_code for r in responses) == {201: 1, 409: 15}
    assert stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{email}'") == "1"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "x" * 129}, "password"),
        ({"nickname": ""}, "nickname"),
        ({"nickname": "   "}, "nickname"),
        ({"nickname": "n" * 65}, "nickname"),
        ({"is_admin": True}, "is_admin"),
    ],
)
async def test_invalid_registration_is_a_422_naming_the_field(
    client: AsyncClient, stack: ServerStack, overrides: dict[str, Any], field: str
) -> None:
    body = registration(**overrides)

    response = await client.post("/api/v1/users", json=body)

    assert response.status_code == 422
    problem = response.json()
    assert problem["error_code"] == "VALIDATION_ERROR"
    assert ["body", field] in [error["loc"] for error in problem["errors"]]
    assert_no_secrets({k: v for k, v in problem.items() if k != "errors"})
    assert stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{body['email']}'") in (
        "0",
        "",
    )


async def test_unknown_user_is_a_404(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/999999999")

    assert response.status_code == 404
    assert response.json()["error_code"] == "USER__NOT_FOUND"


async def test_soft_deleted_user_is_a_404(client: AsyncClient, stack: ServerStack) -> None:
    created = (await client.post("/api/v1/users", json=registration())).json()
    stack.primary.psql(f"UPDATE users SET deleted_at = now() WHERE id = {created['id']}")
    stack.wait_for_replica()

    response = await client.get(f"/api/v1/users/{created['id']}")

    assert response.status_code == 404


async def test_non_numeric_user_id_is_a_422(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/abc")

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "user_id"]
