"""How the authentication middleware reads auth states under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from core.fastapi.middlewares import authenticate
from core.security.auth_state import (
    AuthState,
    forget_auth_state,
    hold_auth_state,
    use_auth_state_loader,
)
from core.security.tokens import encode_token, new_token_id

LOAD_SECONDS = 0.05


def bearer(user_id: int) -> bytes:
    token, _ = encode_token(
        user_id=user_id, token_type="access", session_id=new_token_id(), token_version=0
    )
    return b"Bearer " + token.encode()


class CountingLoads:
    """The database query for auth states, slow enough for requests to overlap it."""

    def __init__(self) -> None:
        self.user_ids: list[int] = []

    async def __call__(self, user_id: int) -> AuthState:
        self.user_ids.append(user_id)
        await asyncio.sleep(LOAD_SECONDS)
        return AuthState(active=True)


@pytest.fixture
def loads() -> Iterator[CountingLoads]:
    from app.auth import load_auth_state

    counting = CountingLoads()
    use_auth_state_loader(counting)
    yield counting
    use_auth_state_loader(load_auth_state)


async def test_concurrent_requests_of_one_user_share_one_load(loads: CountingLoads) -> None:
    results = await asyncio.gather(*(authenticate(bearer(7)) for _ in range(20)))

    assert [user.id for user, _ in results] == [7] * 20
    assert all(read_on_writer for _, read_on_writer in results)  # loaded, not cached
    assert loads.user_ids == [7]
    user, read_on_writer = await authenticate(bearer(7))
    assert (user.id, read_on_writer) == (7, False)  # now from the cache
    assert loads.user_ids == [7]


async def test_a_request_after_a_change_does_not_join_a_load_begun_before_it(
    loads: CountingLoads,
) -> None:
    before = asyncio.create_task(authenticate(bearer(8)))
    await asyncio.sleep(LOAD_SECONDS / 5)  # its load is under way
    await forget_auth_state(8)  # a change to user 8
    await authenticate(bearer(8))
    await before

    assert loads.user_ids == [8, 8]


async def test_after_a_write_the_user_reads_from_the_writer_without_reloading(
    loads: CountingLoads,
) -> None:
    await authenticate(bearer(9))
    assert (await authenticate(bearer(9)))[1] is False  # cached: reads may use the replica
    await hold_auth_state(9)  # a commit made for user 9
    user, read_on_writer = await authenticate(bearer(9))
    assert (user.id, read_on_writer) == (9, True)
    assert loads.user_ids == [9]  # the state itself did not change: no new load
