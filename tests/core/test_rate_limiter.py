"""The limiter counts alike in Redis and in this process's memory (its fallback)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from limits import RateLimitItem, parse

from core.helpers.cache import Cache, InMemoryBackend, RedisBackend
from core.helpers.rate_limiter import Hit, rate_limiter
from tests.servers import ServerStack


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    shared = Cache.backend
    if request.param == "memory":
        Cache.init(backend=InMemoryBackend())  # no Redis: the limiter counts in this process
    yield request.param
    # Counted where the test says: in Redis, or in memory because there is no Redis.
    assert not rate_limiter.degraded
    Cache.init(backend=shared)


async def test_hits_count_down_to_a_refusal_that_says_how_long_to_wait(store: str) -> None:
    item = parse("3/minute")
    hits = [await rate_limiter.hit(item, "route", store) for _ in range(4)]

    assert [(hit.allowed, hit.remaining) for hit in hits] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    # Room comes back when the first hit leaves the window.
    assert 55 <= hits[-1].reset_in <= 60


async def test_peek_counts_nothing_and_clear_gives_the_whole_limit_back(store: str) -> None:
    item = parse("2/minute")
    await rate_limiter.hit(item, "route", store)

    assert (await rate_limiter.peek(item, "route", store)).remaining == 1
    assert (await rate_limiter.peek(item, "route", store)).remaining == 1
    await rate_limiter.hit(item, "route", store)
    assert not (await rate_limiter.peek(item, "route", store)).allowed
    await rate_limiter.clear(item, "route", store)
    assert (await rate_limiter.peek(item, "route", store)).remaining == 2
    assert (await rate_limiter.hit(item, "other-route", store)).remaining == 1


async def test_a_count_lasts_the_whole_window(store: str) -> None:
    item = parse("2 per 4 seconds")
    await rate_limiter.hit(item, "route", store)
    await rate_limiter.hit(item, "route", store)

    # Past half the window both hits still count (a rate that only refills would allow one).
    await asyncio.sleep(2.2)
    assert not (await rate_limiter.hit(item, "route", store)).allowed
    await asyncio.sleep(2.0)
    assert (await rate_limiter.hit(item, "route", store)).allowed


async def test_take_back_removes_just_the_hit_it_is_given(store: str) -> None:
    item = parse("3/minute")
    first = await rate_limiter.hit(item, "take-back", store)
    second = await rate_limiter.hit(item, "take-back", store)

    await rate_limiter.take_back(item, first)
    await rate_limiter.take_back(item, first)  # once only: the other hit stays
    assert (await rate_limiter.peek(item, "take-back", store)).remaining == 2
    await rate_limiter.take_back(item, second)
    refused = [await rate_limiter.hit(item, "take-back", store) for _ in range(4)][-1]
    await rate_limiter.take_back(item, refused)  # counted nothing, takes nothing back
    assert not (await rate_limiter.peek(item, "take-back", store)).allowed


async def test_when_redis_stops_counting_goes_on_from_this_processs_hits(
    stack: ServerStack,
) -> None:
    item = parse("3/minute")
    first = await rate_limiter.hit(item, "outage")
    await rate_limiter.hit(item, "outage")
    stack.redis.stop()
    try:
        # Not a fresh limit: the two hits Redis counted are still this process's.
        during = [await rate_limiter.hit(item, "outage") for _ in range(2)]
        await rate_limiter.take_back(item, first)
        after_take_back = await rate_limiter.hit(item, "outage")
    finally:
        stack.redis.start()

    assert [(hit.allowed, hit.remaining) for hit in during] == [(True, 0), (False, 0)]
    assert after_take_back.allowed


async def test_the_record_never_holds_more_than_redis_does(stack: ServerStack) -> None:
    item = parse("2/minute")
    counted = await rate_limiter.hit(item, "cleared-elsewhere")
    await rate_limiter.hit(item, "cleared-elsewhere")
    # A success through another process clears the count in Redis, not this process's record.
    backend = Cache.backend
    assert isinstance(backend, RedisBackend)
    await backend.client.delete(counted.key)
    assert (await rate_limiter.peek(item, "cleared-elsewhere")).remaining == 2
    stack.redis.stop()
    try:
        during = await rate_limiter.hit(item, "cleared-elsewhere")
    finally:
        stack.redis.start()

    assert (during.allowed, during.remaining) == (True, 1)


async def hits_while_redis_is_down(
    stack: ServerStack, item: RateLimitItem, name: str, times: int
) -> list[Hit]:
    """`times` hits counted while Redis is stopped; back when this returns, and tried again."""
    backend = Cache.backend
    assert isinstance(backend, RedisBackend)
    stack.redis.stop()
    try:
        hits = [await rate_limiter.hit(item, name) for _ in range(times)]
    finally:
        stack.redis.start()
    await asyncio.sleep(backend.outage.seconds)
    return hits


async def test_hits_counted_while_redis_was_down_still_count_once_it_is_back(
    stack: ServerStack,
) -> None:
    item = parse("3/minute")
    during = await hits_while_redis_is_down(stack, item, "handed-over", 2)
    # Redis never saw the two hits: unless it hears of them now, they are free again.
    after = [await rate_limiter.hit(item, "handed-over") for _ in range(2)]
    elsewhere = await rate_limiter.peek(item, "handed-over")
    backend = Cache.backend
    assert isinstance(backend, RedisBackend)

    assert [hit.allowed for hit in during] == [True, True]
    assert [(hit.allowed, hit.remaining) for hit in after] == [(True, 0), (False, 0)]
    assert not elsewhere.allowed
    assert not rate_limiter.degraded  # counted in Redis, where every process sees them
    assert await backend.client.zcard(after[0].key) == 3


async def test_a_hit_redis_heard_of_late_is_one_hit_and_can_be_taken_back(
    stack: ServerStack,
) -> None:
    item = parse("5/minute")
    lost, kept = await hits_while_redis_is_down(stack, item, "heard-late", 2)
    backend = Cache.backend
    assert isinstance(backend, RedisBackend)
    # As if Redis had counted `lost` and only its answer had gone missing.
    await backend.client.zadd(lost.key, {lost.counted: 1})
    await rate_limiter.peek(item, "heard-late")  # hands both over
    await rate_limiter.take_back(item, kept)

    assert await backend.client.zrange(lost.key, 0, -1) == [lost.counted.encode()]
    assert (await rate_limiter.peek(item, "heard-late")).remaining == 4


async def test_without_redis_the_record_keeps_each_hit_once() -> None:
    shared = Cache.backend
    Cache.init(backend=InMemoryBackend())
    try:
        hit = await rate_limiter.hit(parse("3/minute"), "memory-only")
    finally:
        Cache.init(backend=shared)

    assert await rate_limiter.record.get(hit.key) is not None
    # No copy kept for a Redis that is not there to hear of it.
    assert await rate_limiter.record.get("unheard:" + hit.key) is None
