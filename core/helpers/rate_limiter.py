"""A sliding window in one Lua script: atomic, on the Redis server's clock (API processes with
skewed clocks agree), one round trip that counts and returns what is left (`limits` needs two:
`hit`, then `get_window_stats`). While Redis cannot answer, the same counting runs in this
process, on the record it keeps of its own hits, and the hits counted meanwhile are handed to
Redis with the next call it answers. Each key holds the times of the hits in its
window, so a count lasts the whole window, which the login throttle's "attempts without a
success in the window" relies on."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import time
from array import array
from bisect import bisect_right, insort
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from limits import RateLimitItem
from redis.asyncio import Redis

from core.helpers.cache.base import CacheUnavailableError, bounded
from core.helpers.cache.cache_manager import Cache
from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RedisBackend

logger = logging.getLogger(__name__)

# KEYS[1]: a sorted set of the window's hits (µs). ARGV: limit, window (µs), 1 to count or 0 to
# look, the name of the hit to count, then (age in µs, name) of each hit this process counted
# while Redis could not answer, added first: a hit handed over twice is still one. Returns
# (fits, hits in the window, µs until the oldest leaves it, the hit counted or "");
# `RateLimiter._count_here` mirrors it.
_SLIDING_WINDOW = """
local clock = redis.call('TIME')
local now = clock[1] * 1000000 + clock[2]
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 5, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now - tonumber(ARGV[i]), ARGV[i + 1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local hits = redis.call('ZCARD', KEYS[1])
local allowed = hits < limit
local counted = ''
if allowed and ARGV[3] == '1' then
  counted = ARGV[4]
  redis.call('ZADD', KEYS[1], now, counted)
  hits = hits + 1
end
if counted ~= '' or #ARGV > 4 then redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000)) end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
return {allowed and 1 or 0, hits, oldest and (oldest + window - now) or 0, counted}
"""


# The record's entry of the hits Redis has not heard of (counted while it could not answer).
_UNHEARD = "unheard:"


class Hit(NamedTuple):
    allowed: bool
    remaining: int
    reset_in: int  # seconds until the oldest hit leaves the window: a refused caller's wait
    key: str = ""
    counted: str = ""  # the hit's name in Redis (now or once it hears), for `take_back`
    stamp: int = 0  # the same hit in this process's own record (µs); 0 if none


def caller_address(host: str) -> str:
    """What limits count as one client address: an IPv6 host is given a whole /64, so any
    address in it is the same caller."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (a test client's name, "unknown")
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _key(item: RateLimitItem, identifiers: tuple[str, ...]) -> str:
    # Its own prefix: keys of another counting scheme (another type) are never read.
    return f"ratelimit:window:{item.key_for(*identifiers)}"


class RateLimiter:
    def __init__(self) -> None:
        # The hits this process counted, shared or not (one 8-byte stamp each, for the window):
        # when Redis stops answering, this process counts on from its own hits, not from zero.
        self.record = InMemoryBackend()
        # Whether counts are kept per process since Redis last failed to answer.
        self.degraded = False
        self._said_local = False
        # A hit's name in Redis is this process's name and its stamp.
        self._name = os.urandom(6).hex()
        self._last = 0

    async def _shared(self, call: Callable[[Redis], Awaitable[Any]]) -> tuple[bool, Any]:
        """(True, what `call` gave in the cache's Redis), or (False, None) where there is none
        or it cannot answer: then this process's record is all there is."""
        backend = Cache.backend
        if isinstance(backend, RedisBackend):
            try:
                result = await bounded(lambda: backend.call(call))
            except CacheUnavailableError as error:
                if not self.degraded:
                    logger.warning("rate limits are counted per process: redis is down (%s)", error)
                self.degraded = True
            else:
                if self.degraded:
                    logger.warning("rate limits are shared again: redis is back")
                self.degraded = False
                return True, result
        elif not self._said_local:
            self._said_local = True
            logger.info("rate limits are counted per process: the cache backend is not Redis")
        return False, None

    def _now(self) -> int:
        """This process's clock (µs), never the same twice, so a stamp names one hit."""
        # Not the wall clock: a step of it would put the stamps out of order.
        self._last = max(time.monotonic_ns() // 1000, self._last + 1)
        return self._last

    async def _window_here(self, key: str, window: int, now: int) -> array[int]:
        """This process's stamps of `key` still in the window."""
        stamps = array("q", await self.record.get(key) or b"")
        # Stamps are in order: drop the expired ones in one slice, not one by one.
        return stamps[bisect_right(stamps, now - window) :]

    async def _store(self, key: str, stamps: array[int], window: int) -> None:
        if stamps:
            await self.record.set(key, stamps.tobytes(), window / 1_000_000)
        else:
            await self.record.delete(key)

    async def _add_here(self, key: str, window: int, now: int) -> array[int]:
        """Add the stamp `now` to `key`'s stamps in the window; those stamps."""
        stamps = await self._window_here(key, window, now)
        insort(stamps, now)  # a call that began earlier may end later
        await self._store(key, stamps, window)
        return stamps

    async def _drop_here(self, key: str, window: int, gone: array[int] | list[int]) -> None:
        stamps = await self._window_here(key, window, self._now())
        await self._store(key, array("q", [s for s in stamps if s not in gone]), window)

    async def _count_here(
        self, key: str, limit: int, window: int, count: bool, now: int
    ) -> tuple[bool, int, int, int]:
        """The sliding window over this process's record: (fits, hits, µs until the oldest
        leaves, the hit's stamp or 0). The in-memory store never waits, so this is atomic."""
        stamps = await self._window_here(key, window, now)
        allowed, stamp = len(stamps) < limit, 0
        if allowed and count:
            stamps = await self._add_here(key, window, now)
            stamp = now
            if isinstance(Cache.backend, RedisBackend):
                # Kept apart too, for Redis to hear when it answers: else the hit is free again.
                await self._add_here(_UNHEARD + key, window, now)
        return allowed, len(stamps), stamps[0] + window - now if stamps else 0, stamp

    async def _follow(self, key: str, window: int, hits: int, counted: bool) -> int:
        """Bring the record in line with what Redis answered: the hit it counted, and never
        more hits than Redis holds (a success through another process may have cleared
        them); the hit's stamp, or 0."""
        now = self._now()
        stamps = await self._window_here(key, window, now)
        stamp = 0
        if counted:
            stamps.append(now)
            stamp = now
        elif len(stamps) <= hits:
            return 0  # nothing to add or drop: no write
        kept = stamps[len(stamps) - min(hits, len(stamps)) :]
        await self._store(key, kept, window)
        return stamp if kept else 0  # the newest stamp is kept whenever any is

    async def _count(self, item: RateLimitItem, identifiers: tuple[str, ...], count: bool) -> Hit:
        key, window, now = _key(item, identifiers), item.get_expiry() * 1_000_000, self._now()
        name = f"{self._name}:{now}"
        # Under the names they were counted with: a hit Redis did count before its answer was
        # lost is not counted twice, nor is one two calls at once both hand over.
        unheard = await self._window_here(_UNHEARD + key, window, now)
        handed = [part for stamp in unheard for part in (now - stamp, f"{self._name}:{stamp}")]
        shared, answer = await self._shared(
            lambda redis: redis.register_script(_SLIDING_WINDOW)(
                [key], [item.amount, window, int(count), name, *handed]
            )
        )
        if shared:
            allowed, hits, reset, counted = answer
            counted = counted.decode() if isinstance(counted, bytes) else counted
            stamp = await self._follow(key, window, hits, bool(counted))
            if unheard:
                # Only those Redis heard: a call that failed meanwhile may have added its own.
                await self._drop_here(_UNHEARD + key, window, unheard)
        else:
            allowed, hits, reset, stamp = await self._count_here(
                key, item.amount, window, count, now
            )
            counted = name if stamp else ""
        return Hit(
            bool(allowed),
            max(0, item.amount - hits),
            # Whole seconds, rounded up: a client that waits this long finds room.
            math.ceil(max(0, reset) / 1_000_000),
            key,
            counted,
            stamp,
        )

    async def hit(self, item: RateLimitItem, *identifiers: str) -> Hit:
        """Count one request against `item`, unless it is used up; what the headers need."""
        return await self._count(item, identifiers, count=True)

    async def peek(self, item: RateLimitItem, *identifiers: str) -> Hit:
        """Whether `item` has room left, counting nothing."""
        return await self._count(item, identifiers, count=False)

    async def take_back(self, item: RateLimitItem, hit: Hit) -> None:
        """Remove the one hit `hit` counted against `item`, as if it had never been made."""
        if hit.counted:
            await self._shared(lambda redis: redis.zrem(hit.key, hit.counted))
        if hit.stamp:
            for key in (hit.key, _UNHEARD + hit.key):
                await self._drop_here(key, item.get_expiry() * 1_000_000, [hit.stamp])

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        key = _key(item, identifiers)
        await self._shared(lambda redis: redis.delete(key))
        await self.record.delete(key)
        await self.record.delete(_UNHEARD + key)


rate_limiter = RateLimiter()
