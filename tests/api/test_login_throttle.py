"""The login throttle keyed per account and address: an attacker slows an account down, but
never locks its owner out, and cannot lock anyone out by naming their address."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tests.helpers import PASSWORD, login, signed_up

From = Callable[[str], AbstractAsyncContextManager[AsyncClient]]


@pytest.fixture
def from_address(app: FastAPI) -> From:
    """A client whose requests arrive from `address`."""

    @asynccontextmanager
    async def client_at(address: str) -> AsyncIterator[AsyncClient]:
        transport = ASGITransport(app=app, client=(address, 40000))
        async with AsyncClient(transport=transport, base_url="http://test") as http:
            yield http

    return client_at


async def test_failures_from_another_address_do_not_lock_the_owner_out(
    client: AsyncClient, from_address: From
) -> None:
    owner = await signed_up(client)
    async with from_address("198.51.100.66") as attacker:
        guesses = [(await login(attacker, owner.email, "guess")).status_code for _ in range(7)]
        right_password_there = await login(attacker, owner.email, PASSWORD)
    async with from_address("203.0.113.10") as home:
        mine = await login(home, owner.email, PASSWORD)

    assert guesses == [401] * 5 + [429] * 2
    assert right_password_there.status_code == 429
    assert mine.status_code == 200


async def test_many_addresses_failing_slow_the_account_down_but_a_fresh_address_gets_in(
    client: AsyncClient, from_address: From
) -> None:
    owner = await signed_up(client)
    # Twelve addresses, two failures each: past the account's free failures.
    for n in range(12):
        async with from_address(f"198.51.100.{n}") as attacker:
            for _ in range(2):
                await login(attacker, owner.email, "guess")
    async with from_address("198.51.100.0") as attacker:
        delayed = await login(attacker, owner.email, "guess")
    async with from_address("203.0.113.10") as home:
        mine = await login(home, owner.email, PASSWORD)

    assert delayed.status_code == 429
    assert delayed.json()["error_code"] == "AUTH__TOO_MANY_ATTEMPTS"
    assert 0 < int(delayed.headers["retry-after"]) <= 300
    assert mine.status_code == 200


async def test_a_success_clears_the_account_and_address_count(client: AsyncClient) -> None:
    account = await signed_up(client)
    for _ in range(4):
        assert (await login(client, account.email, "typo")).status_code == 401
    assert (await login(client, account.email)).status_code == 200

    again = [(await login(client, account.email, "typo")).status_code for _ in range(5)]

    assert again == [401] * 5
