"""A change made in one API process applies in every other at once, and reads keep answering
while the primary is down."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis
from httpx import AsyncClient

from core.db import Transactional, session_scope, use_writer
from core.helpers.cache.cache_manager import hold_seconds
from core.security.auth_state import forget_auth_state
from tests.helpers import Account, signed_up, status_within
from tests.servers import ServerStack
from tests.test_main import api_process

ME = "/api/v1/users/me"
USER = "/api/v1/users/{}"


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


def script_calls(stack: ServerStack) -> int:
    """How many scripts Redis has run: every cache read and change that reaches it is one."""
    with redis.Redis.from_url(stack.redis.url) as admin:
        stats = admin.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha"))


async def served_from_copies(
    other: AsyncClient, account: Account, stack: ServerStack, seconds: float = 10.0
) -> bool:
    """Whether `other` comes to answer the account's reads without a call to Redis (once the
    hold after sign-up is over and its subscription is up)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = script_calls(stack)
        for _ in range(3):
            assert (await other.get(ME, headers=account.headers)).status_code == 200
        if script_calls(stack) == before:
            return True
        await asyncio.sleep(0.1)
    return False


@contextlib.asynccontextmanager
async def copying(
    client: AsyncClient, other_process: str, stack: ServerStack
) -> AsyncIterator[tuple[AsyncClient, Account, Account]]:
    """A client of the other process, which serves the first of two new accounts from its
    copies; the second is for checking it comes to do so again."""
    account, later = await signed_up(client), await signed_up(client)
    async with httpx.AsyncClient(base_url=other_process) as other:
        assert await served_from_copies(other, account, stack)
        yield other, account, later


# DESIGN's revocation bound: 1 s while Redis is healthy, 5 s under a single fault.
async def test_a_logout_here_ends_the_copies_another_process_keeps_within_a_second(
    client: AsyncClient, other_process: str, stack: ServerStack
) -> None:
    async with copying(client, other_process, stack) as (other, account, _):
        logout = await client.post("/api/v1/auth/logout", headers=account.headers)
        assert logout.status_code == 204
        assert await status_within(other, ME, account.headers, 401, seconds=1.0) == 401


async def test_with_its_subscription_killed_another_process_drops_its_copies_within_5_s(
    client: AsyncClient, other_process: str, stack: ServerStack
) -> None:
    async with copying(client, other_process, stack) as (other, account, later):
        with redis.Redis.from_url(stack.redis.url) as admin:
            admin.client_kill_filter(_type="pubsub")
            # Revoked behind every cache's back, as if its announcement was lost in the gap.
            stack.primary.psql(
                f"UPDATE users SET token_version = token_version + 1 WHERE id = {account.id}"
            )
            admin.flushdb()
        assert await status_within(other, ME, account.headers, 401, seconds=5.0) == 401
        assert await served_from_copies(other, later, stack)  # subscribed again


async def test_a_redis_restart_costs_another_process_its_copies_not_a_revocation(
    client: AsyncClient, other_process: str, stack: ServerStack
) -> None:
    async with copying(client, other_process, stack) as (other, account, later):
        stack.redis.stop()
        try:
            # Saved, but not announced: the client is told (503), and the other process,
            # no longer hearing changes, reads the state from the database.
            logout = await client.post("/api/v1/auth/logout", headers=account.headers)
            assert logout.status_code == 503
            assert await status_within(other, ME, account.headers, 401, seconds=5.0) == 401
        finally:
            stack.redis.start()
        assert await status_within(other, ME, account.headers, 401, seconds=1.0) == 401
        assert await served_from_copies(other, later, stack)


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


@pytest.mark.parametrize("writer", ["this process", "the other process"])
async def test_after_a_write_in_one_process_the_other_reads_the_user_from_the_primary(
    client: AsyncClient, other_process: str, stack: ServerStack, writer: str
) -> None:
    account = await signed_up(client)
    async with httpx.AsyncClient(base_url=other_process) as other:
        # The reader has the user cached: as an entry in Redis here, as a copy over there.
        writes, reads = (client, other) if writer == "this process" else (other, client)
        if writer == "this process":
            assert await served_from_copies(other, account, stack)
        else:
            assert (
                await client.get(f"/api/v1/users/{account.id}", headers=account.headers)
            ).is_success

        with replication_paused(stack):
            changed = await writes.patch(
                f"/api/v1/users/{account.id}", json={"nickname": "Fresh"}, headers=account.headers
            )
            assert changed.status_code == 200
            assert "Ann" in stack.replica.psql(
                f"SELECT nickname FROM users WHERE id = {account.id}"
            )

            # Neither the cache nor the replica: the write's hold sends the read to the primary.
            read = await reads.get(f"/api/v1/users/{account.id}", headers=account.headers)
            assert read.json()["nickname"] == "Fresh"


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
        # Past the hold that removing it began: the state read on the replica is cached.
        await asyncio.sleep(hold_seconds())
        for _ in range(2):
            assert (await client.get(ME, headers=account.headers)).status_code == 200
    finally:
        stack.primary.start()
        stack.wait_for_replica()
    # The primary is back: the user's next write sends their reads to it again, although the
    # auth state cached meanwhile was read on the replica.
    with replication_paused(stack):
        renamed = await client.patch(
            USER.format(account.id), json={"nickname": "Fresh"}, headers=account.headers
        )
        assert renamed.status_code == 200, renamed.text
        read = await client.get(USER.format(account.id), headers=account.headers)
    assert read.json()["nickname"] == "Fresh"


async def test_a_read_on_the_writer_never_shares_a_replica_read_in_flight(
    client: AsyncClient, stack: ServerStack
) -> None:
    from app.user import user_service

    account = await signed_up(client)
    before = (await client.get(ME, headers=account.headers)).json()["nickname"]
    stack.wait_for_replica()
    with replication_paused(stack):
        renamed = await client.patch(
            USER.format(account.id), json={"nickname": "Fresh"}, headers=account.headers
        )
        assert renamed.status_code == 200

        async def nickname(on_writer: bool) -> str:
            async with session_scope():
                if on_writer:
                    use_writer()  # as a request by the user who just wrote does
                return (await user_service.get_read(account.id)).nickname

        # The replica's read starts first and waits on Redis while the writer's call begins.
        on_replica, on_writer = await asyncio.gather(nickname(False), nickname(True))

    assert on_replica == before  # the replica's past: allowed there
    assert on_writer == "Fresh"


async def test_a_cached_read_in_a_transaction_sees_its_writes_and_keeps_none(
    client: AsyncClient,
) -> None:
    from app.user import user_service

    account = await signed_up(client)
    before = (await client.get(ME, headers=account.headers)).json()["nickname"]

    @Transactional()
    async def rename_then_fail() -> str:
        await user_service.repository.update(account.id, {"nickname": "Never saved"})
        seen = (await user_service.get_read(account.id)).nickname
        raise RuntimeError(seen)

    async with session_scope():
        with pytest.raises(RuntimeError) as failed:
            await rename_then_fail()
    async with session_scope():
        use_writer()
        after = (await user_service.get_read(account.id)).nickname

    assert str(failed.value) == "Never saved"
    assert after == before


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
