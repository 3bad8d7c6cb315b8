"""GCRA counting in one Lua script: atomic, one round trip that counts and reports what is left,
timed by the Redis server's clock so every API process agrees. While Redis cannot answer, the
same arithmetic runs over this process's memory, so limits are never off.

Our own script rather than the `limits` library's strategies: those count (`hit`) and report
what is left (`get_window_stats`) in separate calls, two round trips where one does."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar, cast

from limits import RateLimitItem
from redis.asyncio import Redis

from core.helpers.cache.base import CacheUnavailableError, bounded
from core.helpers.cache.cache_manager import Cache
from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RETRY_SECONDS, RedisBackend

logger = logging.getLogger(__name__)

T = TypeVar("T")

# KEYS[1] holds the caller's theoretical arrival time (TAT) in microseconds; ARGV: the emission
# interval and the period in microseconds, and 1 to count or 0 to only look. Returns whether a
# request fits and how far the TAT is ahead of now. `local` below is the same in Python.
_GCRA = """
local clock = redis.call('TIME')
local now = clock[1] * 1000000 + clock[2]
local interval, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or 0), now)
local allowed = tat + interval - period <= now
if allowed and ARGV[3] == '1' then
  tat = tat + interval
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
end
return {allowed and 1 or 0, tat - now}
"""


class Hit(NamedTuple):
    allowed: bool
    remaining: int
    reset_in: int  # seconds: a refused caller's wait, else until the whole quota is back


def _hit(allowed: bool, ahead: int, interval: int, period: int) -> Hit:
    """What the caller is told, from the TAT being `ahead` microseconds past now."""
    wait = ahead if allowed else ahead + interval - period
    # Whole seconds, rounded up: a client that waits this long finds room.
    return Hit(allowed, max(0, (period - ahead) // interval), math.ceil(wait / 1_000_000))


def _key(item: RateLimitItem, identifiers: tuple[str, ...]) -> str:
    return f"ratelimit:{item.key_for(*identifiers)}"


class RateLimiter:
    def __init__(self) -> None:
        self._local = InMemoryBackend()
        self._degraded = False

    @property
    def degraded(self) -> bool:
        """Whether counts are kept per process since Redis last failed to answer."""
        return self._degraded

    async def _run(
        self, shared: Callable[[Redis], Awaitable[T]], local: Callable[[], Awaitable[T]]
    ) -> T:
        """`shared` in the cache's Redis, or `local` while it cannot answer (or is none)."""
        backend = Cache.backend
        if isinstance(backend, RedisBackend):
            try:
                result = await bounded(lambda: backend.call(shared))
            except CacheUnavailableError as error:
                if not self._degraded:
                    logger.warning("rate limits are counted per process: redis is down (%s)", error)
                    self._degraded = True
            else:
                if self._degraded:
                    logger.warning("rate limits are shared again: redis is back")
                    self._degraded = False
                return result
        return await local()

    async def _count(self, item: RateLimitItem, identifiers: tuple[str, ...], count: bool) -> Hit:
        key = _key(item, identifiers)
        period = item.get_expiry() * 1_000_000
        interval = period // item.amount

        async def shared(redis: Redis) -> Hit:
            script = redis.register_script(_GCRA)
            reply = await script(keys=[key], args=[interval, period, int(count)])
            allowed, ahead = cast("list[Any]", reply)
            return _hit(bool(allowed), int(ahead), interval, period)

        async def local() -> Hit:
            # The in-memory store never waits, so reading and storing here is atomic.
            now = time.time_ns() // 1000
            tat = max(int(await self._local.get(key) or 0), now)
            allowed = tat + interval - period <= now
            if allowed and count:
                tat += interval
                await self._local.set(key, str(tat).encode(), (tat - now) / 1_000_000)
            return _hit(allowed, tat - now, interval, period)

        return await self._run(shared, local)

    async def hit(self, item: RateLimitItem, *identifiers: str) -> Hit:
        """Count one request against `item`, unless it is used up; what the headers need."""
        return await self._count(item, identifiers, count=True)

    async def peek(self, item: RateLimitItem, *identifiers: str) -> Hit:
        """Whether `item` has room left, counting nothing."""
        return await self._count(item, identifiers, count=False)

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        key = _key(item, identifiers)
        await self._run(lambda redis: redis.delete(key), lambda: self._local.delete(key))


rate_limiter = RateLimiter()

__all__ = ["RETRY_SECONDS", "Hit", "RateLimiter", "rate_limiter"]
