"""A change made in one API process applies in every other at once, and reads keep answering
while the primary is down."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
from httpx import AsyncClient

from core.security.auth_state import forget_auth_state
from tests.helpers import signed_up
from tests.servers import ServerStack
from tests.test_main import api_process

ME = "/api/v1/users/me"


@pytest.fixture(scope="module")
def other_process() -> Iterator[str]:
    """A second API process on the same databases and Redis, as another worker would be."""
    with api_process() as base_url:
        yield base_url


@contextlib.contextmanager
def replication_paused(stack: ServerStack) -> Iterator[None]:
    """The replica stops applying what the primary writes: a read there sees the past."""
    stack.replica.psql("SELECT pg_wal_replay_pause()", database="postgres")
    try:
        yield
    finally:
        stack.replica.psql("SELECT pg_wal_replay_resume()", database="postgres")
        stack.wait_for_replica()


async def test_a_logout_in_another_process_applies_here_at_once(
    client: AsyncClient, other_process: str
) -> None:
    account = await signed_up(client)
    for _ in range(3):  # cached here and in Redis
        assert (await client.get(ME, headers=account.headers)).status_code == 200

    async with httpx.AsyncClient(base_url=other_process) as other:
        assert (await other.get(ME, headers=account.headers)).status_code == 200
        logout = await other.post("/api/v1/auth/logout", headers=account.headers)
    assert logout.status_code == 204

    refused = await client.get(ME, headers=account.headers)
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "TOKEN_REVOKED"


async def test_a_profile_change_in_another_process_shows_here_at_once(
    client: AsyncClient, other_process: str
) -> None:
    account = await signed_up(client)
    for _ in range(3):
        assert (await client.get(ME, headers=account.headers)).json()["nickname"] == "Ann"

    async with httpx.AsyncClient(base_url=other_process) as other:
        changed = await other.patch(
            f"/api/v1/users/{account.id}", json={"nickname": "Elsewhere"}, headers=account.headers
        )
    assert changed.status_code == 200

    assert (await client.get(ME, headers=account.headers)).json()["nickname"] == "Elsewhere"


async def test_after_a_write_in_another_process_this_one_reads_the_user_from_the_primary(
    client: AsyncClient, other_process: str, stack: ServerStack
) -> None:
    account = await signed_up(client)
    assert (await client.get(f"/api/v1/users/{account.id}", headers=account.headers)).is_success

    with replication_paused(stack):
        async with httpx.AsyncClient(base_url=other_process) as other:
            changed = await other.patch(
                f"/api/v1/users/{account.id}", json={"nickname": "Fresh"}, headers=account.headers
            )
        assert changed.status_code == 200
        assert "Ann" in stack.replica.psql(f"SELECT nickname FROM users WHERE id = {account.id}")

        # The replica still has the old row; the writer's own read here sees the write.
        mine = await client.get(f"/api/v1/users/{account.id}", headers=account.headers)
        assert mine.json()["nickname"] == "Fresh"


async def test_authenticated_reads_answer_from_the_replica_while_the_primary_is_down(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    stack.wait_for_replica()
    await forget_auth_state(account.id)  # nothing cached: the auth state must be loaded
    stack.primary.stop()
    try:
        read = await client.get(f"/api/v1/users/{account.id}", headers=account.headers)
        assert read.status_code == 200, read.text
        assert read.json()["id"] == account.id
        assert (await client.get(ME, headers=account.headers)).status_code == 200
    finally:
        stack.primary.start()
        stack.wait_for_replica()


async def test_two_authorization_headers_are_refused(client: AsyncClient) -> None:
    first, second = await signed_up(client), await signed_up(client)
    response = await client.get(
        ME,
        headers=[
            ("Authorization", f"Bearer {first.access_token}"),
            ("Authorization", f"Bearer {second.access_token}"),
        ],
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "one Authorization header" in response.json()["detail"]
