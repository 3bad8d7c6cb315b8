"""Cache.cached against a real Redis and the in-memory backend alike."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from core.db import Transactional, session_scope
from core.helpers.cache import (
    BaseKeyMaker,
    CacheManager,
    CacheTag,
    InMemoryBackend,
    RedisBackend,
)
from core.helpers.cache.change_feed import LOCAL_COPY_SECONDS, local_copy_seconds
from core.helpers.cache.local_entries import LocalEntries
from tests.core.test_cache_backends import DictBackend
from tests.core.test_change_feed import until_live
from tests.servers import ServerStack


class Item(BaseModel):
    id: int
    name: str
    tags: list[str] = []


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, stack: ServerStack) -> AsyncIterator[CacheManager]:
    manager = CacheManager()
    if request.param == "redis":
        backend = RedisBackend(stack.redis.url_for(4))
        await backend.client.flushdb()
        manager.init(backend=backend)
    else:
        manager.init(backend=InMemoryBackend())
    yield manager
    await manager.close()


class Calls:
    """Counts how often the real function ran, per argument."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, value: Any) -> None:
        self.seen.append(value)


async def test_argument_values_make_the_key(cache: CacheManager) -> None:
    calls = Calls()

    @cache.cached(prefix="double", ttl=60)
    async def double(number: int, factor: int = 2) -> int:
        calls(number)
        return number * factor

    assert [await double(1), await double(2), await double(1), await double(1, factor=2)] == [
        2,
        4,
        2,
        2,
    ]
    assert await double(1, factor=3) == 3
    assert calls.seen == [1, 2, 1]


@pytest.mark.parametrize("falsy", [None, 0, False, [], {}, ""])
async def test_falsy_results_are_hits(cache: CacheManager, falsy: Any) -> None:
    calls = Calls()

    @cache.cached(prefix=f"falsy-{type(falsy).__name__}", ttl=60)
    async def nothing(key: str) -> int | bool | list[int] | dict[str, int] | str | None:
        calls(key)
        return falsy  # type: ignore[no-any-return]

    assert await nothing("a") == falsy
    assert await nothing("a") == falsy
    assert type(await nothing("a")) is type(falsy)
    assert calls.seen == ["a"]


async def test_models_round_trip_as_models(cache: CacheManager) -> None:
    @cache.cached(prefix="items", ttl=60)
    async def items(owner: str) -> list[Item]:
        return [Item(id=1, name=owner, tags=["x"]), Item(id=2, name=owner)]

    miss = await items("ann")
    hit = await items("ann")

    assert hit == miss
    assert all(isinstance(item, Item) for item in hit)


async def test_prefix_and_tag_removal_drop_exactly_their_namespace(cache: CacheManager) -> None:
    calls = Calls()

    @cache.cached(prefix="a", ttl=60)
    async def in_a(n: int) -> int:
        calls(("a", n))
        return n

    @cache.cached(tag=CacheTag.GET_USER_LIST, ttl=60)
    async def tagged_one(n: int) -> int:
        calls(("tag1", n))
        return n

    @cache.cached(tag=CacheTag.GET_USER_LIST, ttl=60)
    async def tagged_two(n: int) -> int:
        calls(("tag2", n))
        return n

    async def call_all() -> None:
        for n in (1, 2):
            await in_a(n)
            await tagged_one(n)
            await tagged_two(n)

    await call_all()
    await call_all()
    assert len(calls.seen) == 6

    await cache.remove_by_tag(CacheTag.GET_USER_LIST)
    calls.seen.clear()
    await asyncio.sleep(2.1)  # past the hold that follows a removal (READ_YOUR_WRITES_SECONDS)
    await call_all()
    assert sorted(calls.seen) == [("tag1", 1), ("tag1", 2), ("tag2", 1), ("tag2", 2)]

    await cache.remove_by_prefix("a")
    calls.seen.clear()
    await call_all()
    await call_all()
    assert calls.seen == [("a", 1), ("a", 2)] * 2  # held: computed, not stored, for a moment
    await asyncio.sleep(2.1)
    calls.seen.clear()
    await call_all()
    await call_all()
    assert calls.seen == [("a", 1), ("a", 2)]


class CountingRedisBackend(RedisBackend):
    """Counts the round trips of cache reads."""

    reads = 0

    async def get_versioned(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await super().get_versioned(*args, **kwargs)


async def test_a_held_namespace_is_asked_about_once_per_hold(stack: ServerStack) -> None:
    backend = CountingRedisBackend(stack.redis.url_for(4))
    await backend.client.flushdb()
    cache = CacheManager()
    cache.init(backend=backend)
    calls = Calls()

    @cache.cached(prefix="held", ttl=60)
    async def value(n: int) -> int:
        calls(n)
        return n

    await cache.remove_by_prefix("held")
    for _ in range(3):
        assert await value(1) == 1
    assert calls.seen == [1, 1, 1]  # held: computed every time, never stored
    assert backend.reads == 1  # ... and the backend was asked only the first time

    await cache.remove_by_prefix("held")  # a removal: the next read asks again
    await value(1)
    assert backend.reads == 2

    await asyncio.sleep(2.1)  # past the hold (READ_YOUR_WRITES_SECONDS)
    await value(1)
    await value(1)
    assert calls.seen == [1] * 5  # stored once the hold ended, then served
    await cache.close()


async def test_removing_one_entry_keeps_the_others(cache: CacheManager) -> None:
    calls = Calls()

    class Users:
        @cache.cached(prefix="user", ttl=60)
        async def get(self, user_id: int) -> dict[str, int]:
            calls(user_id)
            return {"id": user_id}

    users = Users()
    await users.get(1)
    await users.get(2)

    await cache.remove(users.get, 1)
    await users.get(1)
    await users.get(2)

    assert calls.seen == [1, 2, 1]


async def test_removal_inside_a_rolled_back_transaction_does_nothing(
    cache: CacheManager,
) -> None:
    calls = Calls()

    @cache.cached(prefix="tx", ttl=60)
    async def value(n: int) -> int:
        calls(n)
        return n

    @Transactional()
    async def change_then_fail() -> None:
        await cache.remove_by_prefix("tx")
        raise RuntimeError("rolled back")

    @Transactional()
    async def change() -> None:
        await cache.remove_by_prefix("tx")
        assert await value(1) == 1  # still cached until the commit
        assert calls.seen == [1]

    await value(1)
    async with session_scope():
        with pytest.raises(RuntimeError):
            await change_then_fail()
        await value(1)
        assert calls.seen == [1]

        await change()
        await value(1)
    assert calls.seen == [1, 1]


async def test_concurrent_misses_run_the_function_once(cache: CacheManager) -> None:
    calls = Calls()

    @cache.cached(prefix="slow", ttl=60)
    async def slow(n: int) -> int:
        calls(n)
        await asyncio.sleep(0.3)  # long enough for every caller to find the run in progress
        return n * 10

    results = await asyncio.gather(*(slow(7) for _ in range(50)))

    assert results == [70] * 50
    assert calls.seen == [7]


async def test_a_failing_function_is_not_cached_and_fails_every_waiter(
    cache: CacheManager,
) -> None:
    attempts = Calls()

    @cache.cached(prefix="flaky", ttl=60)
    async def flaky(n: int) -> int:
        attempts(n)
        await asyncio.sleep(0.3)  # long enough for every caller to find the run in progress
        raise ValueError("nope")

    outcomes = await asyncio.gather(*(flaky(1) for _ in range(5)), return_exceptions=True)

    assert all(isinstance(outcome, ValueError) for outcome in outcomes)
    with pytest.raises(ValueError, match="nope"):
        await flaky(1)
    assert attempts.seen == [1, 1]


async def test_redis_going_down_never_fails_a_call(
    stack: ServerStack, caplog: pytest.LogCaptureFixture
) -> None:
    cache = CacheManager()
    cache.init(backend=RedisBackend(stack.redis.url_for(4), retry_seconds=0.1))
    calls = Calls()

    @cache.cached(prefix="resilient", ttl=60)
    async def resilient(n: int) -> int:
        calls(n)
        return n + 1

    assert await resilient(1) == 2
    stack.redis.stop()
    try:
        assert [await resilient(1) for _ in range(3)] == [3 - 1] * 3
        await cache.remove_by_prefix("resilient")
        assert "calling through" in caplog.text
    finally:
        stack.redis.start()
    await cache.close()
    assert calls.seen == [1, 1, 1, 1]


async def call(function: Callable[[object], Awaitable[int]]) -> int:
    return await function(object())


def test_arguments_that_cannot_be_keys_are_refused_clearly() -> None:
    cache = CacheManager()

    @cache.cached(prefix="objects", ttl=60)
    async def by_object(thing: object) -> int:
        return 1

    with pytest.raises(
        TypeError, match=r"cannot build a cache key for .*by_object.*not JSON serializable: object"
    ):
        asyncio.run(call(by_object))


async def test_excluded_and_injected_arguments_stay_out_of_the_key(cache: CacheManager) -> None:
    calls = Calls()

    @cache.cached(prefix="excluded", ttl=60, exclude=["trace_id"])
    async def lookup(n: int, trace_id: str) -> int:
        calls((n, trace_id))
        return n

    await lookup(1, "first")
    await lookup(1, "second")
    assert calls.seen == [(1, "first")]


class UpperKeyMaker(BaseKeyMaker):
    def make(
        self,
        function: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        exclude: frozenset[str],
    ) -> str:
        return f"{function.__name__}:{str(args[0]).upper()}"


async def test_a_custom_backend_and_key_maker_plug_in_through_init(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = DictBackend()
    cache = CacheManager()
    cache.init(backend=backend, key_maker=UpperKeyMaker())
    calls = Calls()

    @cache.cached(prefix="custom", ttl=60)
    async def greet(name: str) -> str:
        calls(name)
        return f"hello {name}"

    assert await greet("ann") == "hello ann"
    assert await greet("ANN") == "hello ann"  # the key maker says these are one call
    assert calls.seen == ["ann"]
    assert backend.data == {"cache:custom:v0:greet:ANN": b'"hello ann"'}

    await cache.remove_by_prefix("custom")
    assert backend.data["cache:custom:version"] == b"1"
    with caplog.at_level(logging.WARNING):
        assert await greet("ann") == "hello ann"
    assert calls.seen == ["ann", "ann"]


def test_copies_made_together_do_not_expire_together() -> None:
    lifetimes = [local_copy_seconds() for _ in range(1000)]
    assert all(LOCAL_COPY_SECONDS / 2 <= seconds <= LOCAL_COPY_SECONDS for seconds in lifetimes)
    # Spread over the second half of the bound, not bunched at one moment.
    assert max(lifetimes) - min(lifetimes) > LOCAL_COPY_SECONDS / 4
    assert local_copy_seconds(at_most=2.0) <= 2.0


async def test_a_copy_expiring_does_not_stop_reads_in_flight_from_being_kept() -> None:
    local = LocalEntries()
    local.keep("user", "1", b"one", seconds=0.01, generation=local.generation)
    in_flight = local.generation  # a read of entry 2 starts
    await asyncio.sleep(0.02)
    assert local.get("user", "1") is None  # expired
    local.keep("user", "2", b"two", seconds=60, generation=in_flight)
    assert local.get("user", "2") == b"two"  # only a removal heard may refuse it
    local.drop_entry("user", "1")
    local.keep("user", "3", b"three", seconds=60, generation=in_flight)
    assert local.get("user", "3") is None


class GatedWrites(RedisBackend):
    """Redis whose writes wait until the test lets them through."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.writes_allowed = asyncio.Event()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.writes_allowed.wait()
        await super().set(key, value, ttl)


async def test_with_local_copies_a_miss_does_not_wait_for_its_write(stack: ServerStack) -> None:
    backend = GatedWrites(stack.redis.url_for(4))
    await backend.client.flushdb()
    manager = CacheManager()
    manager.init(backend=backend)
    await until_live(manager.changes)
    calls = Calls()

    @manager.cached(prefix="gated", ttl=60)
    async def square(number: int) -> int:
        calls(number)
        return number * number

    # Answered while its write is still held back, and again from this process's copy.
    assert await asyncio.wait_for(square(3), timeout=5) == 9
    assert await asyncio.wait_for(square(3), timeout=5) == 9
    assert calls.seen == [3]
    assert await backend.client.keys("cache:gated:*") == []

    backend.writes_allowed.set()
    await manager.close()  # finishes the write under way
    assert len(await backend.client.keys("cache:gated:v*")) == 1
    await backend.close()
