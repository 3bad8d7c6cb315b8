"""Local copies of cache entries: served without a round trip while every change is heard, and
never served past a change, a lost subscription or a read that began before a change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.helpers.cache import CacheManager, RedisBackend
from core.helpers.cache.base import VersionedRead
from core.helpers.cache.local_copies import STALE_SECONDS
from core.helpers.cache.redis_backend import CHANGES_CHANNEL
from tests.servers import ServerStack

pytestmark = pytest.mark.usefixtures("stack")


class CountingRedis(RedisBackend):
    """Counts the reads that reach Redis; `pause` holds a read's answer back."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads = 0
        self.pause: asyncio.Event | None = None

    async def get_versioned(self, head: str, tail: str) -> VersionedRead:
        self.reads += 1
        read = await super().get_versioned(head, tail)
        if self.pause is not None:
            await self.pause.wait()
        return read


@pytest.fixture
async def redis(stack: ServerStack) -> AsyncIterator[CountingRedis]:
    backend = CountingRedis(stack.redis.url_for(4))
    yield backend
    await backend.close()


async def following(backend: RedisBackend) -> CacheManager:
    """A cache that keeps local copies, once its subscription is up."""
    cache = CacheManager()
    cache.init(backend=backend)
    cache.follow_changes()
    deadline = time.monotonic() + 5
    while not cache._copies.usable():
        assert time.monotonic() < deadline, "the change feed never came up"
        await asyncio.sleep(0.02)
    return cache


def elsewhere(stack: ServerStack) -> CacheManager:
    """Another process's cache on the same Redis: it announces its changes."""
    cache = CacheManager()
    cache.init(backend=RedisBackend(stack.redis.url_for(4)))
    return cache


async def test_a_hit_is_then_served_from_the_local_copy(redis: CountingRedis) -> None:
    cache = await following(redis)
    runs = 0

    @cache.cached(prefix="copies-hit", ttl=60)
    async def read(n: int) -> dict[str, int]:
        nonlocal runs
        runs += 1
        return {"n": n}

    try:
        assert await read(1) == {"n": 1}  # a miss: computed and stored
        assert await read(1) == {"n": 1}  # a hit in Redis: copied here
        reads = redis.reads
        for _ in range(5):
            assert await read(1) == {"n": 1}
        assert redis.reads == reads
        assert runs == 1
    finally:
        await cache.close()


async def test_a_change_made_elsewhere_drops_the_copy_within_a_second(
    redis: CountingRedis, stack: ServerStack
) -> None:
    cache, other = await following(redis), elsewhere(stack)
    value = {"n": 1}

    async def current() -> dict[str, int]:
        return dict(value)

    entry = cache.cached(prefix="copies-change", ttl=60)(current)
    namespace = cache.cached(tag="copies-tag", ttl=60)(current)
    try:
        for _ in range(2):
            assert await entry() == {"n": 1}
            assert await namespace() == {"n": 1}
        value["n"] = 2
        await other.remove(other.cached(prefix="copies-change", ttl=60)(current))
        await other.remove_by_tag("copies-tag")
        deadline = time.monotonic() + 1.0
        while (await entry(), await namespace()) != ({"n": 2}, {"n": 2}):
            assert time.monotonic() < deadline, "a change made elsewhere went unheard"
            await asyncio.sleep(0.01)
    finally:
        await cache.close()
        await other.close()


async def test_a_read_that_began_before_a_change_stores_no_copy(
    redis: CountingRedis, stack: ServerStack
) -> None:
    cache, other = await following(redis), elsewhere(stack)
    value = {"n": 1}

    async def current() -> dict[str, int]:
        return dict(value)

    read = cache.cached(prefix="copies-race", ttl=60)(current)

    try:
        assert await read() == {"n": 1}  # stored in Redis
        redis.pause = asyncio.Event()
        in_flight = asyncio.ensure_future(read())  # has read {"n": 1}, its answer held back
        deadline = time.monotonic() + 5
        while redis.reads < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        value["n"] = 2
        generation = cache._copies.generation("cache:copies-race")
        await other.remove(other.cached(prefix="copies-race", ttl=60)(current))
        while cache._copies.generation("cache:copies-race") == generation:  # heard here
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        redis.pause.set()
        redis.pause = None
        assert await in_flight == {"n": 1}  # its caller gets what it read, but nobody else
        assert await read() == {"n": 2}
        assert await read() == {"n": 2}
    finally:
        await cache.close()
        await other.close()


async def test_a_killed_subscription_drops_every_copy_until_it_is_back(
    redis: CountingRedis, stack: ServerStack
) -> None:
    cache = await following(redis)
    value = {"n": 1}

    @cache.cached(prefix="copies-kill", ttl=60)
    async def read() -> dict[str, int]:
        return dict(value)

    try:
        for _ in range(2):
            assert await read() == {"n": 1}
        admin = RedisBackend(stack.redis.url_for(4))
        try:
            await admin.call(lambda r: r.client_kill_filter(_type="pubsub"))
            # Changed behind the cache's back, as if the announcement of it was lost.
            await admin.call(lambda r: r.flushdb())
            value["n"] = 2
        finally:
            await admin.close()
        deadline = time.monotonic() + STALE_SECONDS + 1
        while await read() != {"n": 2}:
            assert time.monotonic() < deadline, "a copy outlived the subscription it relied on"
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 5
        while not cache._copies.usable():  # subscribed again
            assert time.monotonic() < deadline, "the change feed did not come back"
            await asyncio.sleep(0.02)
    finally:
        await cache.close()


async def test_a_change_made_here_is_seen_by_the_very_next_read(redis: CountingRedis) -> None:
    cache = await following(redis)
    value = {"n": 1}

    @cache.cached(prefix="copies-own", ttl=60)
    async def read() -> dict[str, int]:
        return dict(value)

    try:
        for _ in range(3):
            assert await read() == {"n": 1}
        value["n"] = 2
        await cache.remove(read)
        assert await read() == {"n": 2}  # no wait for the announcement to come back
    finally:
        await cache.close()


async def test_a_hung_redis_stops_the_copies_within_the_stale_bound(
    redis: CountingRedis, stack: ServerStack
) -> None:
    cache = await following(redis)
    value = {"n": 1}

    @cache.cached(prefix="copies-hung", ttl=60)
    async def read() -> dict[str, int]:
        return dict(value)

    try:
        for _ in range(2):
            assert await read() == {"n": 1}
        stack.redis.freeze()
        try:
            # Changed where no announcement can come from: only the stale bound ends the copy.
            value["n"] = 2
            deadline = time.monotonic() + STALE_SECONDS + 1.5
            while await read() != {"n": 2}:
                assert time.monotonic() < deadline, "a copy outlived a subscription gone quiet"
                await asyncio.sleep(0.05)
        finally:
            stack.redis.thaw()
        deadline = time.monotonic() + 10
        while not cache._copies.usable():
            assert time.monotonic() < deadline, "the change feed did not come back"
            await asyncio.sleep(0.05)
    finally:
        await cache.close()


async def test_an_unreadable_announcement_drops_the_copies_and_keeps_following(
    redis: CountingRedis, stack: ServerStack
) -> None:
    cache = await following(redis)
    value = {"n": 1}

    @cache.cached(prefix="copies-junk", ttl=60)
    async def read() -> dict[str, int]:
        return dict(value)

    try:
        for _ in range(2):
            assert await read() == {"n": 1}
        await redis.call(lambda r: r.set(_entry_key(cache, read), b'{"n": 2}'))
        await redis.call(lambda r: r.publish(CHANGES_CHANNEL, b"not json"))
        deadline = time.monotonic() + 1
        while await read() != {"n": 2}:  # the copy went: Redis's entry is read again
            assert time.monotonic() < deadline, "an unreadable announcement was ignored"
            await asyncio.sleep(0.02)
        assert cache._copies.usable()
    finally:
        await cache.close()


async def test_closing_another_loops_connections_leaves_the_copies_alone(
    redis: CountingRedis,
) -> None:
    cache = await following(redis)

    @cache.cached(prefix="copies-thread", ttl=60)
    async def read() -> int:
        return 1

    try:
        # What a task run on a loop of its own does when it ends (celery_task/loops.py).
        await asyncio.to_thread(lambda: asyncio.run(cache.close()))
        assert cache._copies.usable()
        for _ in range(2):
            assert await read() == 1
        reads = redis.reads
        assert await read() == 1
        assert redis.reads == reads
    finally:
        await cache.close()


def _entry_key(cache: CacheManager, function: Any) -> str:
    """Where Redis holds the entry of `function()` (namespace version 0)."""
    spec = function.__cached__
    return f"{spec.head}:v0:{cache.key_maker.make(spec.function, (), {}, spec.exclude)}"


async def test_without_following_changes_no_copy_is_kept(redis: CountingRedis) -> None:
    cache = CacheManager()
    cache.init(backend=redis)

    @cache.cached(prefix="copies-none", ttl=60)
    async def read() -> int:
        return 1

    for _ in range(3):
        assert await read() == 1
    assert redis.reads == 3
