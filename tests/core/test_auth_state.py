"""How the authentication middleware reads auth states under concurrency, through the real query."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from core.db import session_factory
from core.fastapi.middlewares import authenticate
from core.security.auth_state import (
    AuthState,
    LoadAuthState,
    forget_auth_state,
    hold_auth_state,
    queries,
)
from core.security.tokens import encode_token, new_token_id
from tests.helpers import new_user

LOAD_SECONDS = 0.05


def bearer(user_id: int) -> bytes:
    token, _ = encode_token(
        user_id=user_id, token_type="access", session_id=new_token_id(), token_version=0
    )
    return b"Bearer " + token.encode()


class CountingLoads:
    """The application's auth-state query, counted, and slow enough for requests to overlap it."""

    def __init__(self, load: LoadAuthState) -> None:
        self.load = load
        self.user_ids: list[int] = []

    async def __call__(self, user_id: int) -> AuthState | None:
        self.user_ids.append(user_id)
        await asyncio.sleep(LOAD_SECONDS)
        return await self.load(user_id)


@pytest.fixture
def loads() -> Iterator[CountingLoads]:
    from app.auth import load_auth_state

    counting = CountingLoads(load_auth_state)
    queries.auth_state = counting
    yield counting
    queries.auth_state = load_auth_state


@pytest.fixture
async def user_id() -> int:
    """A user on the writer, whose auth state the query reads."""
    async with session_factory() as independent:
        user = new_user()
        independent.add(user)
        await independent.flush()
        return user.id


async def test_concurrent_requests_of_one_user_share_one_load(
    loads: CountingLoads, user_id: int
) -> None:
    results = await asyncio.gather(*(authenticate(bearer(user_id)) for _ in range(20)))

    assert [user.id for user, _ in results] == [user_id] * 20
    assert all(read_on_writer for _, read_on_writer in results)  # loaded, not cached
    assert loads.user_ids == [user_id]
    user, read_on_writer = await authenticate(bearer(user_id))
    assert (user.id, read_on_writer) == (user_id, False)  # now from the cache
    assert loads.user_ids == [user_id]


async def test_a_request_after_a_change_does_not_join_a_load_begun_before_it(
    loads: CountingLoads, user_id: int
) -> None:
    before = asyncio.create_task(authenticate(bearer(user_id)))
    await asyncio.sleep(LOAD_SECONDS / 5)  # its load is under way
    await forget_auth_state(user_id)  # a change to the user
    await authenticate(bearer(user_id))
    await before

    assert loads.user_ids == [user_id, user_id]


async def test_after_a_write_the_user_reads_from_the_writer_without_reloading(
    loads: CountingLoads, user_id: int
) -> None:
    await authenticate(bearer(user_id))
    assert (await authenticate(bearer(user_id)))[1] is False  # cached: reads may use the replica
    await hold_auth_state(user_id)  # a commit made for the user
    user, read_on_writer = await authenticate(bearer(user_id))
    assert (user.id, read_on_writer) == (user_id, True)
    assert loads.user_ids == [user_id]  # the state itself did not change: no new load
