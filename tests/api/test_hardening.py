"""Abuse and failure cases: each must end in a clear 4xx/503, never a 500 or a bypass."""

from __future__ import annotations

import asyncio
from collections import Counter

import bcrypt
import pytest
from httpx import AsyncClient

from core.security.auth_state import forget_auth_state
from tests.helpers import PASSWORD, login, registration, signed_up
from tests.servers import ServerStack


async def test_parallel_guesses_cannot_outrun_the_throttle(client: AsyncClient) -> None:
    account = await signed_up(client)

    responses = await asyncio.gather(
        *(login(client, account.email, f"guess {n}") for n in range(30))
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses[401] <= 5
    assert statuses[401] + statuses[429] == 30


async def test_a_burst_of_logins_does_not_starve_the_database_pool(
    client: AsyncClient,
) -> None:
    accounts = [await signed_up(client) for _ in range(20)]

    responses = await asyncio.gather(*(login(client, a.email) for a in accounts))

    assert [r.status_code for r in responses] == [200] * 20


@pytest.mark.parametrize(
    "stored",
    ["garbage-that-is-no-hash", bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(4)).decode()],
    ids=["unknown-scheme", "bcrypt-with-long-password"],
)
async def test_odd_stored_hashes_are_a_401_not_a_500(
    client: AsyncClient, stack: ServerStack, stored: str
) -> None:
    account = await signed_up(client)
    stack.primary.psql(f"UPDATE users SET password_hash = '{stored}' WHERE id = {account.id}")

    response = await login(client, account.email, "y" * 100)

    assert response.status_code == 401


async def test_an_overflowing_cursor_is_a_400(client: AsyncClient, stack: ServerStack) -> None:
    admin = await signed_up(client, stack, admin=True)
    import base64

    cursor = base64.urlsafe_b64encode(b"u" + b"9" * 30).decode().rstrip("=")

    response = await client.get("/api/v1/users", params={"cursor": cursor}, headers=admin.headers)

    assert response.status_code == 400
    assert response.json()["error_code"] == "USER__INVALID_CURSOR"


@pytest.mark.parametrize("nickname", ["nul\u0000byte", "bell\u0007"])
async def test_control_characters_are_a_422(client: AsyncClient, nickname: str) -> None:
    response = await client.post("/api/v1/users", json=registration(nickname=nickname))

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "nickname"]


async def test_concurrent_role_assignments_take_turns(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    user = await signed_up(client)
    role = f"concurrent-{user.id}"
    await client.post("/api/v1/roles", json={"name": role}, headers=admin.headers)

    responses = await asyncio.gather(
        *(
            client.put(
                f"/api/v1/users/{user.id}/roles", json={"roles": [role]}, headers=admin.headers
            )
            for _ in range(8)
        )
    )

    assert [r.status_code for r in responses] == [200] * 8
    count = stack.primary.psql(f"SELECT count(*) FROM user_roles WHERE user_id = {user.id}")
    assert count == "1"


async def test_a_database_outage_during_authentication_is_a_503(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    await forget_auth_state(account.id)  # the next request loads it from the database
    stack.primary.stop()
    try:
        response = await asyncio.wait_for(
            client.get("/api/v1/users/me", headers=account.headers), 15
        )
    finally:
        stack.primary.start()
        stack.wait_for_replica()

    assert response.status_code == 503
    assert response.json()["error_code"] == "DATABASE_UNAVAILABLE"


async def test_ready_reports_cache_and_broker_outages_as_degraded(
    client: AsyncClient, stack: ServerStack
) -> None:
    stack.redis.stop()
    try:
        response = await asyncio.wait_for(client.get("/ready"), 15)
    finally:
        stack.redis.start()

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["cache"].startswith("down")
    assert body["checks"]["broker"].startswith("down")
    assert body["checks"]["writer"] == "ok"


async def test_login_still_works_with_the_password_after_a_hash_upgrade(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    stack.primary.psql(f"UPDATE users SET password_hash = '{legacy}' WHERE id = {account.id}")

    results = await asyncio.gather(*(login(client, account.email) for _ in range(3)))

    assert [r.status_code for r in results] == [200] * 3
    assert stack.primary.psql(
        f"SELECT password_hash LIKE '$argon2id$%' FROM users WHERE id = {account.id}"
    ) == ("t")
