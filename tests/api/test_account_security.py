"""The security review's findings: each of these failed before the fix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.pool import QueuePool

from core.db import databases
from core.security.passwords import _hashing_slots
from tests.api.test_auth import account_with_permission
from tests.helpers import PASSWORD, login, registration, signed_up, until
from tests.servers import ServerStack

NEW_PASSWORD = "a brand new passphrase"
T = TypeVar("T")


@asynccontextmanager
async def no_hashing() -> AsyncIterator[None]:
    """Every password-hashing slot taken: a request that hashes waits until the block ends."""
    holders = [object() for _ in range(int(_hashing_slots.total_tokens))]
    for holder in holders:
        await _hashing_slots.acquire_on_behalf_of(holder)
    try:
        yield
    finally:
        for holder in holders:
            _hashing_slots.release_on_behalf_of(holder)


async def hash_waiting() -> bool:
    return _hashing_slots.statistics().tasks_waiting > 0


async def answered(request: Awaitable[T]) -> T:
    # A liveness bound, not a speed figure: a request that waits for a hash never returns here.
    return await asyncio.wait_for(request, 10)


async def test_an_admin_changing_their_own_password_needs_the_current_one(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    url = f"/api/v1/users/{admin.id}"

    without = await client.patch(url, json={"password": NEW_PASSWORD}, headers=admin.headers)
    with_it = await client.patch(
        url, json={"password": NEW_PASSWORD, "current_password": PASSWORD}, headers=admin.headers
    )

    assert without.status_code == 422
    assert without.json()["errors"][0]["loc"] == ["body", "current_password"]
    assert with_it.status_code == 200
    assert (await login(client, admin.email, NEW_PASSWORD)).status_code == 200


async def test_an_admin_sets_another_users_password_without_theirs(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin, user = await signed_up(client, stack, admin=True), await signed_up(client)

    response = await client.patch(
        f"/api/v1/users/{user.id}", json={"password": NEW_PASSWORD}, headers=admin.headers
    )

    assert response.status_code == 200
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200


async def test_only_admins_delete_admins(client: AsyncClient, stack: ServerStack) -> None:
    admin, other_admin = (
        await signed_up(client, stack, admin=True),
        await signed_up(client, stack, admin=True),
    )
    deleter = await account_with_permission(client, admin, "users:delete")

    by_deleter = await client.delete(f"/api/v1/users/{other_admin.id}", headers=deleter.headers)
    by_admin = await client.delete(f"/api/v1/users/{other_admin.id}", headers=admin.headers)

    assert by_deleter.status_code == 403
    assert by_deleter.json()["error_code"] == "USER__ADMIN_DELETION_FORBIDDEN"
    assert by_admin.status_code == 204


async def test_the_last_active_admin_cannot_be_deleted(
    client: AsyncClient, stack: ServerStack
) -> None:
    admin = await signed_up(client, stack, admin=True)
    # Earlier tests' admins are done with: this one becomes the only admin left.
    stack.primary.psql(f"UPDATE users SET is_admin = false WHERE is_admin AND id <> {admin.id}")

    by_url = await client.delete(f"/api/v1/users/{admin.id}", headers=admin.headers)
    by_me = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=admin.headers
    )

    for response in (by_url, by_me):
        assert response.status_code == 409
        assert response.json()["error_code"] == "USER__LAST_ADMIN"
    assert (await client.get("/api/v1/users/me", headers=admin.headers)).status_code == 200


async def test_registration_is_throttled_per_address(client: AsyncClient) -> None:
    email = registration()["email"]
    statuses = [
        (await client.post("/api/v1/users", json=registration(email=email))).status_code
        for _ in range(7)
    ]

    assert statuses[0] == 201
    assert statuses[1:5] == [409] * 4
    assert statuses[5:] == [429, 429]
    refused = await client.post("/api/v1/users", json=registration(email=email))
    assert refused.headers["retry-after"].isdigit()


async def test_forgot_password_is_throttled_alike_for_known_and_unknown(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)
    for email in (account.email, registration()["email"]):
        statuses = [
            (await client.post("/api/v1/auth/forgot-password", json={"email": email})).status_code
            for _ in range(6)
        ]
        assert statuses == [202] * 5 + [429]


async def test_requests_from_elsewhere_never_keep_the_owner_from_a_reset(
    app: FastAPI, client: AsyncClient
) -> None:
    account = await signed_up(client)
    forgot = {"email": account.email}
    elsewhere = ASGITransport(app=app, client=("198.51.100.23", 4000))
    async with AsyncClient(transport=elsewhere, base_url="http://test") as attacker:
        theirs = [
            (await attacker.post("/api/v1/auth/forgot-password", json=forgot)).status_code
            for _ in range(6)
        ]

    mine = await client.post("/api/v1/auth/forgot-password", json=forgot)

    assert theirs == [202] * 5 + [429]
    assert mine.status_code == 202


async def test_resend_is_throttled(client: AsyncClient) -> None:
    account = await signed_up(client)
    statuses = [
        (await client.post("/api/v1/auth/verify-email/resend", headers=account.headers)).status_code
        for _ in range(6)
    ]

    assert statuses == [202] * 5 + [429]


async def test_probing_emails_through_an_email_change_is_throttled_like_registration(
    client: AsyncClient,
) -> None:
    account, other = await signed_up(client), await signed_up(client)
    probe = {"email": other.email, "current_password": "not the password"}
    statuses = [
        (
            await client.patch(f"/api/v1/users/{account.id}", json=probe, headers=account.headers)
        ).status_code
        for _ in range(6)
    ]

    # A taken address is refused before the password check, so on registration's budget (of
    # five per address, one of them spent registering it).
    assert statuses == [409] * 4 + [429] * 2


async def test_wrong_current_passwords_are_throttled_like_failed_logins(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)
    url = f"/api/v1/users/{account.id}"

    statuses = [
        (
            await client.patch(
                url,
                json={"password": NEW_PASSWORD, "current_password": f"guess {n}"},
                headers=account.headers,
            )
        ).status_code
        for n in range(6)
    ]
    # Locked now: even the right one must wait, and so must a login.
    right = await client.patch(
        url, json={"password": NEW_PASSWORD, "current_password": PASSWORD}, headers=account.headers
    )

    assert statuses == [403] * 5 + [429]
    assert right.status_code == 429
    assert "retry-after" in right.headers
    assert (await login(client, account.email)).status_code == 429


async def test_a_password_check_waits_for_its_hash_holding_no_database_connection(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)
    change = {"password": NEW_PASSWORD, "current_password": PASSWORD}

    async with no_hashing():
        patch = asyncio.ensure_future(
            client.patch(f"/api/v1/users/{account.id}", json=change, headers=account.headers)
        )
        await until(hash_waiting, 10, "the request never came to its password check")
        pools = {databases.writer.pool, databases.reader.pool}
        held = sum(pool.checkedout() for pool in pools if isinstance(pool, QueuePool))

    assert held == 0
    assert (await answered(patch)).status_code == 200


async def test_registration_refuses_a_taken_email_and_a_bad_nickname_before_hashing(
    client: AsyncClient,
) -> None:
    taken = await signed_up(client)
    body = registration()
    bad_nickname = (
        f'{{"email": "{body["email"]}", "password": "{PASSWORD}", "nickname": "Ann\\ud800"}}'
    )

    async with no_hashing():
        duplicate = await answered(
            client.post("/api/v1/users", json=registration(email=taken.email))
        )
        invalid = await answered(
            client.post(
                "/api/v1/users",
                content=bad_nickname.encode(),
                headers={"content-type": "application/json"},
            )
        )

    assert duplicate.status_code == 409
    assert duplicate.json()["error_code"] == "USER__DUPLICATE_EMAIL"
    assert invalid.status_code == 422
    assert [error["loc"] for error in invalid.json()["errors"]] == [["body", "nickname"]]


async def test_a_password_change_is_refused_for_a_stale_if_match_or_taken_email_before_hashing(
    client: AsyncClient,
) -> None:
    account, other = await signed_up(client), await signed_up(client)
    url = f"/api/v1/users/{account.id}"
    old_tag = (await client.get(url, headers=account.headers)).headers["etag"]
    assert (await client.patch(url, json={"nickname": "Bea"}, headers=account.headers)).is_success
    change = {"password": NEW_PASSWORD, "current_password": PASSWORD}

    async with no_hashing():
        stale = await answered(
            client.patch(url, json=change, headers={**account.headers, "If-Match": old_tag})
        )
        taken = await answered(
            client.patch(url, json={**change, "email": other.email}, headers=account.headers)
        )

    assert stale.status_code == 412
    assert stale.json()["error_code"] == "PRECONDITION_FAILED"
    assert taken.status_code == 409
    assert taken.json()["error_code"] == "USER__DUPLICATE_EMAIL"
    # Nothing changed: the old password still logs in.
    assert (await login(client, account.email)).status_code == 200


async def test_a_bad_reset_token_and_a_locked_account_are_refused_before_hashing(
    client: AsyncClient,
) -> None:
    account = await signed_up(client)
    for n in range(5):
        assert (await login(client, account.email, f"guess {n}")).status_code == 401
    change = {"password": NEW_PASSWORD, "current_password": PASSWORD}

    async with no_hashing():
        reset = await answered(
            client.post(
                "/api/v1/auth/reset-password",
                json={"token": "not-a-token", "password": NEW_PASSWORD},
            )
        )
        locked_login = await answered(login(client, account.email))
        locked_change = await answered(
            client.patch(f"/api/v1/users/{account.id}", json=change, headers=account.headers)
        )

    assert reset.status_code == 400
    assert reset.json()["error_code"] == "AUTH__INVALID_EMAIL_TOKEN"
    assert [locked_login.status_code, locked_change.status_code] == [429, 429]
