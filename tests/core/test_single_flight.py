"""SingleFlight: concurrent callers share one run, and survive the end of the one running it."""

from __future__ import annotations

import asyncio

import pytest

from core.helpers.single_flight import SingleFlight


class SlowCounter:
    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> int:
        self.runs += 1
        await asyncio.sleep(0.05)
        return self.runs


async def test_concurrent_callers_share_one_run() -> None:
    flights, count = SingleFlight(), SlowCounter()
    results = await asyncio.gather(*(flights.run("key", count) for _ in range(10)))
    assert results == [1] * 10
    assert await flights.run("key", count) == 2  # a later call runs again


async def test_an_error_reaches_every_caller() -> None:
    flights = SingleFlight()

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    results = await asyncio.gather(
        *(flights.run("key", fail) for _ in range(3)), return_exceptions=True
    )
    assert [type(result) for result in results] == [ValueError] * 3


async def test_callers_go_on_when_the_running_one_is_cancelled() -> None:
    flights, count = SingleFlight(), SlowCounter()
    first = asyncio.create_task(flights.run("key", count))
    await asyncio.sleep(0.01)  # first is running it
    others = [asyncio.create_task(flights.run("key", count)) for _ in range(3)]
    await asyncio.sleep(0.01)
    first.cancel()

    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.gather(*others) == [2, 2, 2]  # one of them ran it again, once
