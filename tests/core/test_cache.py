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
    ChangeNotPropagatedException,
    DefaultKeyMaker,
    InMemoryBackend,
    RedisBackend,
)
from tests.core.test_cache_backends import DictBackend
from tests.servers import ServerStack


class Item(BaseModel):
    id: int
    name: str
    tags: list[str] = []


@pytest.fixture(params=["memory", "redis", "minimal"])
async def cache(request: pytest.FixtureRequest, stack: ServerStack) -> AsyncIterator[CacheManager]:
    manager = CacheManager()
    if request.param == "redis":
        backend = RedisBackend(stack.redis.url_for(4))
        await backend.client.flushdb()
        manager.init(backend=backend)
    elif request.param == "minimal":
        manager.init(backend=DictBackend())  # only get, set and delete_startswith
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


async def _by_position_or_name(user_id: int, limit: int = 10, sort: str = "id") -> None: ...


async def _keyword_only(user_id: int, *, limit: int = 10) -> None: ...


@pytest.mark.parametrize("function", [_by_position_or_name, _keyword_only])
def test_a_call_has_one_key_however_its_arguments_are_passed(function: Any) -> None:
    make = DefaultKeyMaker().make
    keys = {
        make(function, (1,), {}, frozenset()),
        make(function, (), {"user_id": 1}, frozenset()),
        make(function, (1,), {"limit": 10}, frozenset()),
        make(function, (), {"limit": 10, "user_id": 1}, frozenset()),
    }
    assert len(keys) == 1
    assert make(function, (1,), {"limit": 11}, frozenset()) not in keys
    assert make(function, (2,), {}, frozenset()) not in keys
    for args, kwargs in [((), {}), ((1,), {"user_id": 1}), ((1,), {"other": 1})]:
        with pytest.raises(TypeError):  # as calling the function so would
            make(function, args, kwargs, frozenset())


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
        # Inside a transaction a cached function runs uncached: it must see the transaction's
        # own writes, which the cache does not hold.
        assert await value(1) == 1
        assert calls.seen == [1, 1]

    await value(1)
    async with session_scope():
        with pytest.raises(RuntimeError):
            await change_then_fail()
        await value(1)
        assert calls.seen == [1]

        await change()
        await value(1)  # removed once it committed
    assert calls.seen == [1, 1, 1]


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
        assert "calling through" in caplog.text
        # A removal that cannot reach the cache is an error: others may still serve the entry.
        with pytest.raises(ChangeNotPropagatedException):
            await cache.remove_by_prefix("resilient")
    finally:
        stack.redis.start()
    await cache.close()
    assert calls.seen == [1, 1, 1, 1]


async def call(function: Callable[[object], Awaitable[int]]) -> int:
    return await function(object())


async def test_a_held_entry_is_served_flagged_and_nothing_new_is_stored(
    cache: CacheManager,
) -> None:
    calls = Calls()

    @cache.cached(prefix="hold", ttl=60)
    async def value(n: int) -> int:
        calls(n)
        return n

    assert await cache.fetch(value, 1) == (1, False, False)
    await cache.hold(value, 1)
    await cache.hold(value, 2)
    assert await cache.fetch(value, 1) == (1, True, True)  # still right, and served
    assert await cache.fetch(value, 2) == (2, False, True)
    assert await cache.fetch(value, 2) == (2, False, True)  # computed again: not stored
    assert calls.seen == [1, 2, 2]


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


async def test_a_read_that_started_before_a_removal_never_stores_its_result(
    cache: CacheManager,
) -> None:
    version = {"n": 1}
    release = asyncio.Event()

    @cache.cached(prefix="race", ttl=60)
    async def read() -> int:
        seen = version["n"]
        await release.wait()  # the row was read; the change lands while the call is busy
        return seen

    in_flight = asyncio.ensure_future(read())
    await asyncio.sleep(0.05)
    version["n"] = 2
    await cache.remove(read)
    release.set()
    assert await in_flight == 1  # its caller gets what it read...

    # ... but never stored: held, then (past the hold, READ_YOUR_WRITES_SECONDS) run afresh.
    await asyncio.sleep(2.1)
    assert await read() == 2
    assert await read() == 2


Entries = Sequence[tuple[str, str]]


class CountingBackend(InMemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.changes: list[tuple[list[str], int, int]] = []

    async def change(
        self, namespaces: Sequence[str], removed: Entries, held: Entries, seconds: float
    ) -> None:
        self.changes.append((list(namespaces), len(removed), len(held)))
        await super().change(namespaces, removed, held, seconds)


async def test_every_removal_of_a_commit_goes_to_the_backend_in_one_call() -> None:
    backend = CountingBackend()
    cache = CacheManager()
    cache.init(backend=backend)

    @cache.cached(prefix="one", ttl=60)
    async def one(n: int) -> int:
        return n

    @Transactional()
    async def change() -> None:
        await cache.remove(one, 1)
        await cache.remove(one, 2)
        await cache.hold(one, 3)
        await cache.remove_by_tag(CacheTag.GET_USER_LIST)
        await cache.remove_by_prefix("other")
        assert backend.changes == []  # nothing before the commit

    async with session_scope():
        await change()

    assert backend.changes == [(["cache:get_user_list", "cache:other"], 2, 1)]


class Unreachable(InMemoryBackend):
    async def change(
        self, namespaces: Sequence[str], removed: Entries, held: Entries, seconds: float
    ) -> None:
        raise OSError("connection refused")


async def test_a_commit_whose_removals_fail_is_kept_and_answers_503(stack: ServerStack) -> None:
    from sqlalchemy import text

    from core.db import session

    cache = CacheManager()
    cache.init(backend=Unreachable())

    @Transactional()
    async def change() -> None:
        await session.execute(text("CREATE TABLE IF NOT EXISTS cache_probe (n int)"))
        await session.execute(text("INSERT INTO cache_probe VALUES (7)"))
        await cache.remove_by_prefix("probe")

    async with session_scope():
        with pytest.raises(ChangeNotPropagatedException) as raised:
            await change()
    assert raised.value.status_code == 503
    assert "7" in stack.primary.psql("SELECT n FROM cache_probe")
    stack.primary.psql("DROP TABLE cache_probe")
