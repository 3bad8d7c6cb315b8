"""GCRA in one Lua script: atomic, on the Redis server's clock (API processes with skewed clocks
agree), one round trip that counts and returns what is left (`limits` needs two: `hit`, then
`get_window_stats`). While Redis cannot answer, the same arithmetic runs in this process."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from limits import RateLimitItem
from redis.asyncio import Redis

from core.helpers.cache.base import CacheUnavailableError, bounded
from core.helpers.cache.cache_manager import Cache
from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RETRY_SECONDS, RedisBackend

logger = logging.getLogger(__name__)

# KEYS[1]: the caller's theoretical arrival time (TAT), µs. ARGV: emission interval, period (µs),
# 1 to count or 0 to look. Returns (fits, TAT - now); `local` in RateLimiter._count mirrors it.
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


def _key(item: RateLimitItem, identifiers: tuple[str, ...]) -> str:
    return f"ratelimit:{item.key_for(*identifiers)}"


class RateLimiter:
    def __init__(self) -> None:
        self._local = InMemoryBackend()
        # Whether counts are kept per process since Redis last failed to answer.
        self.degraded = False

    async def _run(
        self, shared: Callable[[Redis], Awaitable[Any]], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        """`shared` in the cache's Redis; `local` where there is none or it cannot answer."""
        backend = Cache.backend
        if isinstance(backend, RedisBackend):
            try:
                result = await bounded(lambda: backend.call(shared))
            except CacheUnavailableError as error:
                if not self.degraded:
                    logger.warning("rate limits are counted per process: redis is down (%s)", error)
                self.degraded = True
            else:
                if self.degraded:
                    logger.warning("rate limits are shared again: redis is back")
                self.degraded = False
                return result
        return await local()

    async def _count(self, item: RateLimitItem, identifiers: tuple[str, ...], count: bool) -> Hit:
        key, period = _key(item, identifiers), item.get_expiry() * 1_000_000
        interval = period // item.amount
        args = [interval, period, int(count)]

        async def local() -> tuple[int, int]:
            # The in-memory store never waits, so reading and storing here is atomic.
            now = time.time_ns() // 1000
            tat = max(int(await self._local.get(key) or 0), now)
            allowed = tat + interval - period <= now
            if allowed and count:
                tat += interval
                await self._local.set(key, b"%d" % tat, (tat - now) / 1_000_000)
            return allowed, tat - now

        allowed, ahead = await self._run(
            lambda redis: redis.register_script(_GCRA)([key], args), local
        )
        wait = ahead if allowed else ahead + interval - period
        # Whole seconds, rounded up: a client that waits this long finds room.
        return Hit(bool(allowed), max(0, (period - ahead) // interval), math.ceil(wait / 1_000_000))

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
