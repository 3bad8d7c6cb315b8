"""Local copies of cache entries: served without a round trip while every change is heard, and
never served past a change, a lost subscription or a read that began before a change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from core.helpers.cache import CacheManager, RedisBackend
from core.helpers.cache.base import VersionedRead, versioned_key
from core.helpers.cache.local_copies import STALE_SECONDS
from core.helpers.cache.redis_backend import CHANGES_CHANNEL
from tests.helpers import until
from tests.servers import ServerStack

pytestmark = pytest.mark.usefixtures("stack")

PREFIX = "copies"


class CountingRedis(RedisBackend):
    """Counts the reads Redis answered; `pause` holds an answer back from its caller."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads = 0
        self.pause: asyncio.Event | None = None

    async def get_versioned(self, head: str, tail: str) -> VersionedRead:
        read = await super().get_versioned(head, tail)
        self.reads += 1
        if self.pause is not None:
            await self.pause.wait()
        return read


@dataclass
class Copied:
    """A cache that follows changes, and one cached read of `value`, already copied here."""

    cache: CacheManager
    redis: CountingRedis
    value: dict[str, int] = field(default_factory=lambda: {"n": 1})

    async def current(self) -> dict[str, int]:
        return dict(self.value)

    def __post_init__(self) -> None:
        self.read: Callable[[], Awaitable[dict[str, int]]] = self.cache.cached(
            prefix=PREFIX, ttl=60
        )(self.current)

    def entry_key(self) -> str:
        """Where Redis holds the entry (namespace version 0)."""
        key = self.cache.key_maker.make(self.current, (), {}, frozenset())
        return versioned_key(f"cache:{PREFIX}", 0, key)


async def usable(copied: Copied) -> bool:
    return await _usable(copied.cache)


@pytest.fixture
async def copied(stack: ServerStack) -> AsyncIterator[Copied]:
    redis = CountingRedis(stack.redis.url_for(4))
    await redis.call(lambda client: client.flushdb())
    cache = CacheManager()
    cache.init(backend=redis)
    cache.follow_changes()
    copied = Copied(cache, redis)
    try:
        await until(lambda: usable(copied), 5, "the change feed never came up")
        assert await copied.read() == {"n": 1}  # a miss: computed and stored
        assert await copied.read() == {"n": 1}  # a hit in Redis: copied here
        yield copied
    finally:
        await cache.close()


async def reads_now(copied: Copied, expected: dict[str, int]) -> bool:
    return await copied.read() == expected


def elsewhere(stack: ServerStack) -> CacheManager:
    """Another process's cache on the same Redis: it announces its changes."""
    cache = CacheManager()
    cache.init(backend=RedisBackend(stack.redis.url_for(4)))
    return cache


async def test_a_hit_is_then_served_from_the_local_copy(copied: Copied) -> None:
    reads = copied.redis.reads
    copied.value["n"] = 2  # unseen: nothing announced it
    for _ in range(5):
        assert await copied.read() == {"n": 1}
    assert copied.redis.reads == reads


async def test_a_change_made_elsewhere_drops_the_copy_within_a_second(
    copied: Copied, stack: ServerStack
) -> None:
    other = elsewhere(stack)
    tagged = copied.cache.cached(tag="copies-tag", ttl=60)(copied.current)
    for _ in range(2):
        assert await tagged() == {"n": 1}
    copied.value["n"] = 2
    try:
        await other.remove(other.cached(prefix=PREFIX, ttl=60)(copied.current))
        await other.remove_by_tag("copies-tag")
    finally:
        await other.close()

    async def both_new() -> bool:
        return (await copied.read(), await tagged()) == ({"n": 2}, {"n": 2})

    await until(both_new, 1.0, "a change made elsewhere went unheard")


async def test_a_change_made_here_is_seen_by_the_very_next_read(copied: Copied) -> None:
    copied.value["n"] = 2
    await copied.cache.remove(copied.read)
    assert await copied.read() == {"n": 2}  # no wait for the announcement to come back


async def test_a_read_that_began_before_a_change_stores_no_copy(
    copied: Copied, stack: ServerStack
) -> None:
    other = elsewhere(stack)
    read = copied.cache.cached(prefix="copies-race", ttl=60)(copied.current)
    assert await read() == {"n": 1}  # a miss: stored in Redis, not copied
    reads = copied.redis.reads
    copied.redis.pause = asyncio.Event()
    in_flight = asyncio.ensure_future(read())  # a hit in Redis, its answer held back

    async def read_begun() -> bool:
        return copied.redis.reads > reads

    await until(read_begun, 5, "the read never reached Redis")
    copied.value["n"] = 2
    generation = copied.cache._copies.generation("cache:copies-race")
    try:
        await other.remove(other.cached(prefix="copies-race", ttl=60)(copied.current))
    finally:
        await other.close()

    async def heard() -> bool:
        return copied.cache._copies.generation("cache:copies-race") != generation

    await until(heard, 1, "the change was not heard")
    copied.redis.pause.set()
    copied.redis.pause = None
    assert await in_flight == {"n": 1}  # its caller gets what it read, but nobody else
    assert await read() == {"n": 2}
    assert await read() == {"n": 2}


async def test_a_killed_subscription_drops_every_copy_until_it_is_back(copied: Copied) -> None:
    await copied.redis.call(lambda client: client.client_kill_filter(_type="pubsub"))
    # Changed behind the cache's back, as if the announcement of it was lost.
    await copied.redis.call(lambda client: client.flushdb())
    copied.value["n"] = 2
    await until(
        lambda: reads_now(copied, {"n": 2}),
        STALE_SECONDS + 1,
        "a copy outlived the subscription it relied on",
    )
    await until(lambda: usable(copied), 5, "the change feed did not come back")


async def test_a_hung_redis_stops_the_copies_within_the_stale_bound(
    copied: Copied, stack: ServerStack
) -> None:
    stack.redis.freeze()
    try:
        # Changed where no announcement can come from: only the stale bound ends the copy.
        copied.value["n"] = 2
        await until(
            lambda: reads_now(copied, {"n": 2}),
            # The stale bound, then one Redis call's timeout before the read calls through.
            STALE_SECONDS + 3,
            "a copy outlived a subscription gone quiet",
        )
    finally:
        stack.redis.thaw()
    await until(lambda: usable(copied), 10, "the change feed did not come back")


async def test_an_unreadable_announcement_drops_the_copies_and_keeps_following(
    copied: Copied,
) -> None:
    await copied.redis.call(lambda client: client.set(copied.entry_key(), b'{"n": 2}'))
    await copied.redis.call(lambda client: client.publish(CHANGES_CHANNEL, b"not json"))
    # The copy went: Redis's entry is read again.
    await until(lambda: reads_now(copied, {"n": 2}), 1, "an unreadable announcement was ignored")
    assert await usable(copied)


async def test_closing_another_loops_connections_leaves_the_copies_alone(copied: Copied) -> None:
    # What a task run on a loop of its own does when it ends (celery_task/loops.py).
    await asyncio.to_thread(lambda: asyncio.run(copied.cache.close()))
    assert await usable(copied)
    reads = copied.redis.reads
    assert await copied.read() == {"n": 1}
    assert copied.redis.reads == reads


async def test_a_close_that_is_itself_cancelled_is_cancelled(copied: Copied) -> None:
    # A server stopped while it shuts down: the cancellation reaches the shutdown.
    closing = asyncio.ensure_future(copied.cache.close())
    await asyncio.sleep(0)  # closing has cancelled the change feed and waits for it to end
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert not await usable(copied)


async def test_closing_ends_the_change_feed_wherever_it_is(stack: ServerStack) -> None:
    """A server's shutdown closes the cache: it must end however far the feed has got (connecting,
    subscribing, a heartbeat in flight), or the worker process never exits."""
    cache = CacheManager()
    cache.init(backend=RedisBackend(stack.redis.url_for(4)))
    # Every 50 µs of the feed's first 15 ms: the moment a cancellation lands is what matters.
    for step in range(300):
        cache.follow_changes()
        await asyncio.sleep(step * 0.00005)
        try:
            async with asyncio.timeout(5):
                await cache.close()
        except TimeoutError:
            pytest.fail(f"the change feed did not end when closed {step * 0.05:.2f} ms in")
        assert not await _usable(cache)


async def test_a_new_backend_ends_the_copies_of_the_old_one(
    copied: Copied, stack: ServerStack
) -> None:
    replacement = CountingRedis(stack.redis.url_for(5))
    copied.cache.init(backend=replacement)
    assert not await usable(copied)
    copied.value["n"] = 2
    assert await copied.read() == {"n": 2}  # the new backend's miss, not the old copy
    copied.cache.follow_changes()
    await until(lambda: usable(copied), 5, "the new backend's changes are not followed")
    await copied.cache.close()
    await replacement.close()


async def test_following_again_after_a_loop_ended_without_closing(stack: ServerStack) -> None:
    cache = CacheManager()
    cache.init(backend=RedisBackend(stack.redis.url_for(4)))

    async def follow_and_leave() -> None:
        cache.follow_changes()
        await asyncio.sleep(0.2)

    # A loop that ends while following (a test's loop, a reloaded server's).
    await asyncio.to_thread(lambda: asyncio.run(follow_and_leave()))
    cache.follow_changes()
    try:
        await until(lambda: _usable(cache), 5, "changes are not followed on the new loop")
    finally:
        await cache.close()


async def _usable(cache: CacheManager) -> bool:
    return cache._copies.usable()


async def test_without_following_changes_no_copy_is_kept(stack: ServerStack) -> None:
    redis = CountingRedis(stack.redis.url_for(4))
    cache = CacheManager()
    cache.init(backend=redis)

    @cache.cached(prefix="copies-none", ttl=60)
    async def read() -> int:
        return 1

    try:
        for _ in range(3):
            assert await read() == 1
        assert redis.reads == 3
    finally:
        await redis.close()
