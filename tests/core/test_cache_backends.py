"""Both backends behave the same: the in-memory one and a real Redis."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator

import pytest

from core.helpers.cache import BaseBackend, CacheUnavailableError, InMemoryBackend, RedisBackend
from core.helpers.cache.base import TOMBSTONE, bounded, versioned_key
from tests.servers import ServerStack


@pytest.fixture(params=["memory", "redis", "minimal"])
async def backend(request: pytest.FixtureRequest, stack: ServerStack) -> AsyncIterator[BaseBackend]:
    store: BaseBackend
    if request.param == "redis":
        store = RedisBackend(stack.redis.url_for(3))
        await store.client.flushdb()
    elif request.param == "minimal":
        store = DictBackend()
    else:
        store = InMemoryBackend()
    yield store
    await store.close()


async def values(backend: BaseBackend, *keys: str) -> list[bytes | None]:
    return [await backend.get(key) for key in keys]


async def test_set_get_and_expiry(backend: BaseBackend) -> None:
    await backend.set("a", b"1")
    await backend.set("short", b"2", ttl=0.05)

    assert await backend.get("a") == b"1"
    assert await backend.get("short") == b"2"
    assert await backend.get("missing") is None
    await asyncio.sleep(0.1)
    assert await backend.get("short") is None
    assert await backend.get("a") == b"1"


# The minimal backend's delete is its delete_startswith: correct for a cache, not exact.
@pytest.mark.parametrize("backend", ["memory", "redis"], indirect=True)
async def test_delete_is_exact_and_delete_startswith_takes_the_prefix(
    backend: BaseBackend,
) -> None:
    for key in ("user:1", "user:10", "user:2", "role:1"):
        await backend.set(key, b"v")

    await backend.delete("user:1")
    assert await values(backend, "user:1", "user:10") == [None, b"v"]

    await backend.delete_startswith("user:")
    assert await values(backend, "user:10", "user:2", "role:1") == [None, None, b"v"]


async def test_memory_backend_drops_least_recently_used_beyond_its_bound() -> None:
    backend = InMemoryBackend(max_entries=2)
    await backend.set("a", b"1")
    await backend.set("b", b"2")
    await backend.get("a")
    await backend.set("c", b"3")

    assert await values(backend, "a", "b", "c") == [b"1", None, b"3"]


def test_memory_backend_can_be_used_from_two_threads_at_once() -> None:
    """The embedded default runs eager tasks on a thread of their own, beside the server's
    loop, and both use the one in-memory cache: removals while the other thread reads."""
    backend = InMemoryBackend(max_entries=300)
    errors: list[BaseException] = []

    async def churn(reads: bool) -> None:
        for n in range(400):
            if reads:
                await backend.get(f"user:{n % 350}")
            else:
                await backend.set(f"user:{n}", b"v", ttl=0.0 if n % 3 else None)
        if not reads:
            await backend.delete_startswith("user:")

    def run(reads: bool) -> None:
        try:
            for _ in range(150):
                asyncio.run(churn(reads))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(reads,)) for reads in (True, False, False)]
    # Threads take turns far more often than usual, so an unguarded step is interrupted.
    usual = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(usual)

    assert errors == []


async def test_redis_backend_fails_fast_while_redis_is_down(stack: ServerStack) -> None:
    backend = RedisBackend(stack.redis.url_for(3), retry_seconds=0.2)
    await backend.set("k", b"v")
    stack.redis.stop()
    try:
        with pytest.raises(CacheUnavailableError):
            await backend.get("k")
        # Marked down: the next call does not even try.
        with pytest.raises(CacheUnavailableError, match="marked down"):
            await backend.get("k")
    finally:
        stack.redis.start()
    await asyncio.sleep(0.25)
    assert await backend.get("k") is None  # a restarted throwaway Redis is empty
    await backend.close()


async def test_more_callers_than_redis_connections_wait_their_turn(stack: ServerStack) -> None:
    backend = RedisBackend(stack.redis.url_for(3), max_connections=2)
    await backend.set("k", b"v")

    # A busy process is not a Redis outage: nobody fails, and nothing is marked down.
    values = await asyncio.gather(*(backend.get("k") for _ in range(50)))

    assert values == [b"v"] * 50
    assert await backend.get("k") == b"v"
    await backend.close()


async def test_a_call_that_finds_no_free_connection_fails_alone(stack: ServerStack) -> None:
    backend = RedisBackend(stack.redis.url_for(3), max_connections=1, timeout=0.05)
    await backend.set("k", b"v")
    pool = backend.client.connection_pool
    # The only connection, busy for longer than the wait (redis-py leaves this one untyped).
    held = await pool.get_connection()  # type: ignore[no-untyped-call]

    with pytest.raises(CacheUnavailableError, match="No connection available"):
        await backend.get("k")
    await pool.release(held)

    # A loaded process is not a Redis outage: the next call is not refused as "marked down".
    assert not backend.outage.ongoing
    assert await backend.get("k") == b"v"
    await backend.close()


async def test_change_orphans_namespaces_removes_and_holds_entries(backend: BaseBackend) -> None:
    for tail, value in (("x", b"1"), ("y", b"2"), ("z", b"3"), ("w", b"4")):
        await backend.set(versioned_key("cache:b" if tail != "x" else "cache:a", 0, tail), value)

    await backend.change(["cache:a"], [("cache:b", "y")], [("cache:b", "w")], seconds=0.2)

    async def read(head: str, tail: str) -> tuple[int, bool, bytes | None]:
        version, held, value, _ = await backend.get_versioned(head, tail)
        return version, held, value

    assert await read("cache:a", "x") == (1, True, None)
    assert await read("cache:b", "y") == (0, True, TOMBSTONE)
    assert await read("cache:b", "z") == (0, False, b"3")
    assert await read("cache:b", "w") == (0, True, b"4")
    await asyncio.sleep(0.3)
    assert await read("cache:a", "x") == (1, False, None)
    assert await read("cache:b", "y") == (0, False, None)
    assert await read("cache:b", "w") == (0, False, b"4")


async def test_redis_says_how_long_an_entry_has_left(stack: ServerStack) -> None:
    """Local copies never outlive the entry they were made from."""
    backend = RedisBackend(stack.redis.url_for(3))
    try:
        await backend.set(versioned_key("cache:left", 0, "x"), b"1", ttl=30)
        await backend.set(versioned_key("cache:left", 0, "y"), b"2")
        lasting = await backend.get_versioned("cache:left", "x")
        assert lasting.ttl is not None
        assert 29 < lasting.ttl <= 30
        assert (await backend.get_versioned("cache:left", "y")).ttl is None
    finally:
        await backend.close()


class DictBackend(BaseBackend):
    """The least a custom backend implements: get, set (with expiry) and delete_startswith."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.expires: dict[str, float] = {}

    async def get(self, key: str) -> bytes | None:
        if self.expires.get(key, float("inf")) <= time.monotonic():
            self.data.pop(key, None)
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.data[key] = value
        self.expires.pop(key, None)
        if ttl is not None:
            self.expires[key] = time.monotonic() + ttl

    async def delete_startswith(self, prefix: str) -> None:
        for key in [k for k in self.data if k.startswith(prefix)]:
            del self.data[key]


async def test_a_minimal_custom_backend_gets_the_rest_for_free() -> None:
    backend = DictBackend()

    assert await backend.add("n", b"1", ttl=60)
    assert not await backend.add("n", b"2", ttl=60)
    assert await values(backend, "n", "m") == [b"1", None]
    await backend.delete("n")
    assert await backend.get("n") is None
    await backend.close()


async def test_a_hung_redis_is_marked_down_by_the_first_call_that_waits_for_it(
    stack: ServerStack,
) -> None:
    redis = RedisBackend(stack.redis.url_for(0))
    await redis.set("probe", b"1")  # a pooled connection, open before the server hangs
    stack.redis.freeze()
    try:
        # The caller's bound is never reached: the call gives up first and marks Redis down.
        with pytest.raises(CacheUnavailableError):
            await bounded(lambda: redis.get("probe"))
        with pytest.raises(CacheUnavailableError, match="marked down"):
            await redis.get("probe")
    finally:
        stack.redis.thaw()
        await redis.close()


async def test_a_redis_still_hung_when_its_outage_ends_is_tried_by_one_call_only(
    stack: ServerStack,
) -> None:
    redis = RedisBackend(stack.redis.url_for(0), retry_seconds=0.2)
    await redis.set("probe", b"1")
    stack.redis.freeze()
    try:
        with pytest.raises(CacheUnavailableError):
            await redis.get("probe")
        await asyncio.sleep(0.3)
        # Eight calls at once: one tries the hung server and times out, seven skip it at once.
        outcomes = await asyncio.gather(
            *(redis.get("probe") for _ in range(8)), return_exceptions=True
        )
    finally:
        stack.redis.thaw()
    skipped = [o for o in outcomes if "marked down" in str(o)]

    assert all(isinstance(o, CacheUnavailableError) for o in outcomes), outcomes
    assert len(skipped) == 7
    await asyncio.sleep(0.3)
    assert await redis.get("probe") == b"1"
    await redis.close()
