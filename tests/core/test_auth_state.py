"""How the authentication middleware reads auth states under concurrency."""

from __future__ import annotations

import asyncio

from core.fastapi.middlewares import TokenAuthBackend
from core.security.auth_state import AuthState, local_auth_states
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


async def test_concurrent_requests_of_one_user_share_one_load() -> None:
    loads = CountingLoads()
    backend = TokenAuthBackend(loads)

    results = await asyncio.gather(*(backend.authenticate(bearer(7)) for _ in range(20)))

    assert [user.id for user, _ in results] == [7] * 20
    assert loads.user_ids == [7]


async def test_a_request_after_a_change_does_not_join_a_load_begun_before_it() -> None:
    loads = CountingLoads()
    backend = TokenAuthBackend(loads)

    before = asyncio.create_task(backend.authenticate(bearer(8)))
    await asyncio.sleep(LOAD_SECONDS / 5)  # its load is under way
    local_auth_states.forget(8)  # a change to user 8 is heard
    await backend.authenticate(bearer(8))
    await before

    assert loads.user_ids == [8, 8]
