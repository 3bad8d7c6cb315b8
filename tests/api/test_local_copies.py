"""Copies of auth states and cached reads held per process: a change made in any process
applies in all of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import httpx
import pytest
from httpx import AsyncClient

from core.helpers.cache import Cache
from core.helpers.cache.base import CacheUnavailableError
from core.security.auth_state import auth_state_key, local_auth_states
from tests.core.test_change_feed import until_live
from tests.helpers import HEARD_WITHIN_SECONDS, signed_up, status_within
from tests.servers import ServerStack
from tests.test_main import ROOT, free_port, start_server, stop, wait_until_serving

ME = "/api/v1/users/me"


@pytest.fixture
def other_process() -> Iterator[str]:
    """A second API process on the same databases and Redis, as another worker would be."""
    port = free_port()
    server = start_server(
        [
            *("-m", "uvicorn", "app.server:create_app", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        ],
        ROOT,
        dict(os.environ),
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base_url, server)
        yield base_url
    finally:
        stop(server)


async def holds_a_copy(client: AsyncClient, headers: dict[str, str], user_id: int) -> None:
    """Request until this process answers from its own copy of the user's auth state."""
    for _ in range(100):
        assert (await client.get(ME, headers=headers)).status_code == 200
        if local_auth_states.get(user_id) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("this process never kept a copy of the auth state")


async def test_a_logout_in_another_process_applies_here(
    client: AsyncClient, other_process: str
) -> None:
    account = await signed_up(client)
    await holds_a_copy(client, account.headers, account.id)

    async with httpx.AsyncClient(base_url=other_process) as other:
        logout = await other.post("/api/v1/auth/logout", headers=account.headers)
    assert logout.status_code == 204

    assert await status_within(client, ME, account.headers, 401) == 401


async def test_a_profile_change_in_another_process_shows_here(
    client: AsyncClient, other_process: str
) -> None:
    account = await signed_up(client)
    await holds_a_copy(client, account.headers, account.id)
    for _ in range(3):  # the cached read is now this process's own copy
        assert (await client.get(ME, headers=account.headers)).json()["nickname"] == "Ann"

    async with httpx.AsyncClient(base_url=other_process) as other:
        changed = await other.patch(
            f"/api/v1/users/{account.id}", json={"nickname": "Elsewhere"}, headers=account.headers
        )
    assert changed.status_code == 200

    async def nickname_here() -> str:
        for _ in range(int(HEARD_WITHIN_SECONDS / 0.05)):
            nickname = str((await client.get(ME, headers=account.headers)).json()["nickname"])
            if nickname == "Elsewhere":
                break
            await asyncio.sleep(0.05)
        return nickname

    assert await nickname_here() == "Elsewhere"


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_losing_redis_drops_the_copies_and_the_database_decides(
    client: AsyncClient, stack: ServerStack, outage: str
) -> None:
    """Stopped, its connections break. Frozen, like a hung server, they stay open and no error
    ever comes: only the unanswered PINGs on the subscription tell."""
    begin, end = {
        "stopped": (stack.redis.stop, stack.redis.start),
        "frozen": (stack.redis.freeze, stack.redis.thaw),
    }[outage]
    account = await signed_up(client)
    await holds_a_copy(client, account.headers, account.id)

    begin()
    try:
        # Changed behind everyone's back: nobody announces it, only the database knows.
        stack.primary.psql(
            f"UPDATE users SET token_version = token_version + 1 WHERE id = {account.id}"
        )
        stack.wait_for_replica()
        # Well before the copy would expire (LOCAL_COPY_SECONDS): it was given up.
        status = await status_within(client, ME, account.headers, 401, seconds=4)
    finally:
        end()
        await cache_answers_again()

    assert status == 401


async def cache_answers_again() -> None:
    """After an outage the backend fails fast for a moment; wait until it answers."""
    for _ in range(100):
        with contextlib.suppress(CacheUnavailableError):
            await Cache.backend.get("probe")
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the cache did not answer again")


async def test_a_request_that_loads_its_auth_state_does_not_wait_to_store_it(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await signed_up(client)
    await until_live(Cache.changes)
    local_auth_states.clear()  # the next request loads the state from the database
    await Cache.backend.delete(auth_state_key(account.id))
    backend = Cache.backend
    writes_allowed = asyncio.Event()
    add = backend.add

    async def held_back_add(key: str, value: bytes, ttl: float | None = None) -> bool:
        await writes_allowed.wait()
        return await add(key, value, ttl)

    monkeypatch.setattr(backend, "add", held_back_add)
    me = await asyncio.wait_for(client.get(ME, headers=account.headers), timeout=5)
    assert me.status_code == 200
    assert await backend.get(auth_state_key(account.id)) is None  # not stored yet

    writes_allowed.set()
    await Cache.finish_writes()
    assert await backend.get(auth_state_key(account.id)) is not None
