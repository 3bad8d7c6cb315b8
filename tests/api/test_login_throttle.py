"""The login throttle keyed per account and address: an attacker slows an account down, but
never locks its owner out, and cannot lock anyone out by naming their address."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tests.helpers import PASSWORD, login, signed_up
from tests.servers import ServerStack

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


async def test_parallel_guesses_on_many_accounts_cannot_pass_the_address_limit(
    client: AsyncClient, from_address: From
) -> None:
    owner = await signed_up(client)
    async with from_address(f"198.51.100.{owner.id % 200 + 20}") as attacker:
        # All at once: each would find the address clean if counted only after its hash.
        guesses = await asyncio.gather(
            *(login(attacker, f"nobody{n}-{owner.id}@example.com", "guess") for n in range(56))
        )
        owner_there = await login(attacker, owner.email)

    statuses = sorted(guess.status_code for guess in guesses)
    assert statuses == [401] * 50 + [429] * 6
    assert owner_there.status_code == 429


async def test_successes_do_not_count_towards_the_address_limit(
    client: AsyncClient, from_address: From
) -> None:
    people = [await signed_up(client) for _ in range(3)]
    async with from_address(f"203.0.113.{people[0].id % 200 + 20}") as office:
        # One address (an office behind NAT): far more logins than the failure limit.
        logins = [(await login(office, people[n % 3].email)).status_code for n in range(55)]
        typo = await login(office, people[0].email, "typo")

    assert logins == [200] * 55
    assert typo.status_code == 401


async def test_logins_the_database_could_not_check_do_not_count(
    client: AsyncClient, from_address: From, stack: ServerStack
) -> None:
    owner = await signed_up(client)
    async with from_address(f"203.0.113.{owner.id % 200 + 20}") as home:
        stack.primary.stop()
        try:
            # More tries than the pair's limit, while the account cannot be read.
            tries = [(await login(home, owner.email)).status_code for _ in range(7)]
        finally:
            stack.primary.start()
        back = await login(home, owner.email)

    assert tries == [503] * 7
    assert back.status_code == 200


async def test_a_success_clears_the_account_and_address_count(client: AsyncClient) -> None:
    account = await signed_up(client)
    for _ in range(4):
        assert (await login(client, account.email, "typo")).status_code == 401
    assert (await login(client, account.email)).status_code == 200

    again = [(await login(client, account.email, "typo")).status_code for _ in range(5)]

    assert again == [401] * 5


async def test_an_owner_who_waits_as_told_after_a_delay_gets_in(
    client: AsyncClient, from_address: From
) -> None:
    owner = await signed_up(client)
    for n in range(10):  # the account's free failures, from elsewhere
        async with from_address(f"198.51.100.{n}") as attacker:
            assert (await login(attacker, owner.email, "guess")).status_code == 401
    async with from_address("203.0.113.10") as home:
        typo = await login(home, owner.email, "typo")
        # Too soon, four times (a double click, a client retrying by itself).
        too_soon = [await login(home, owner.email) for _ in range(4)]
        await asyncio.sleep(int(too_soon[-1].headers["retry-after"]) + 0.2)
        after_waiting = await login(home, owner.email)

    assert typo.status_code == 401
    assert [r.status_code for r in too_soon] == [429] * 4
    assert int(too_soon[-1].headers["retry-after"]) <= 4
    assert after_waiting.status_code == 200


async def test_addresses_of_one_ipv6_64_are_one_address(
    client: AsyncClient, from_address: From
) -> None:
    owner = await signed_up(client)
    statuses = []
    for n in range(1, 8):  # one host, a new address for every guess
        async with from_address(f"2001:db8:5:{owner.id % 9000:x}::{n:x}") as attacker:
            statuses.append((await login(attacker, owner.email, "guess")).status_code)
    async with from_address(f"2001:db8:6:{owner.id % 9000:x}::1") as home:
        mine = await login(home, owner.email)

    assert statuses == [401] * 5 + [429] * 2
    assert mine.status_code == 200


async def test_a_wrong_current_password_is_a_failed_login_but_leaving_it_out_is_not(
    client: AsyncClient,
) -> None:
    owner = await signed_up(client)
    url, change = f"/api/v1/users/{owner.id}", {"password": "a brand new passphrase"}

    left_out = [
        (await client.patch(url, json=change, headers=owner.headers)).status_code for _ in range(7)
    ]
    wrong = [
        (
            await client.patch(
                url, json=change | {"current_password": "guess"}, headers=owner.headers
            )
        ).status_code
        for _ in range(7)
    ]

    assert left_out == [422] * 7
    assert wrong == [403] * 5 + [429] * 2
