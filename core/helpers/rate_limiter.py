"""Moving-window counting with the `limits` library: shared in Redis, atomic (one Lua script per
hit), and kept in this process's memory while Redis cannot answer, so limits are never off."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TypeVar

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from core.config import config
from core.helpers.cache.base import CacheUnavailableError, bounded
from core.helpers.cache.redis_backend import RETRY_DEAD_CONNECTIONS

logger = logging.getLogger(__name__)

T = TypeVar("T")

# After Redis failed, calls go straight to the local counts this long instead of each waiting.
RETRY_SECONDS = 1.0


class Hit(NamedTuple):
    allowed: bool
    remaining: int
    reset_in: int  # seconds until the window has room again


class RateLimiter:
    def __init__(self) -> None:
        # Connections, locks and the expiry timer belong to the event loop that made them.
        self._storages: dict[asyncio.AbstractEventLoop, tuple[Storage | None, Storage]] = {}
        self._down_until = 0.0
        self._degraded = False

    def _storage(self) -> tuple[Storage | None, Storage]:
        """(Redis when configured, this process's memory) for the running event loop."""
        loop = asyncio.get_running_loop()
        if loop not in self._storages:
            shared = None
            if config.CACHE_BACKEND == "redis" and config.REDIS_URL:
                shared = RedisStorage(
                    f"async+{config.REDIS_URL}",
                    implementation="redispy",
                    key_prefix="ratelimit",
                    socket_timeout=0.25,
                    socket_connect_timeout=0.25,
                    **RETRY_DEAD_CONNECTIONS,
                )
            self._storages[loop] = (shared, MemoryStorage())
        return self._storages[loop]

    @property
    def degraded(self) -> bool:
        """Whether counts are kept per process since Redis last failed to answer."""
        return self._degraded

    async def run(self, operation: Callable[[Storage], Awaitable[T]]) -> T:
        """`operation` on the shared storage, or on this process's while Redis is down."""
        shared, local = self._storage()
        if shared is not None and time.monotonic() >= self._down_until:
            try:
                result = await bounded(lambda: operation(shared))
            except CacheUnavailableError as error:
                self._down_until = time.monotonic() + RETRY_SECONDS
                if not self._degraded:
                    logger.warning("rate limits are counted per process: redis is down (%s)", error)
                    self._degraded = True
            else:
                if self._degraded:
                    logger.warning("rate limits are shared again: redis is back")
                    self._degraded = False
                return result
        return await operation(local)

    async def hit(self, item: RateLimitItem, *identifiers: str) -> Hit:
        """Count one request against `item`, unless it is used up; what the headers need."""
        return await self.run(lambda storage: _count(storage, item, identifiers, hit=True))

    async def peek(self, item: RateLimitItem, *identifiers: str) -> Hit:
        """Whether `item` has room left, counting nothing."""
        return await self.run(lambda storage: _count(storage, item, identifiers, hit=False))

    async def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        await self.run(lambda storage: storage.clear(item.key_for(*identifiers)))


async def _count(
    storage: Storage, item: RateLimitItem, identifiers: tuple[str, ...], hit: bool
) -> Hit:
    limiter = MovingWindowRateLimiter(storage)
    allowed = await limiter.hit(item, *identifiers) if hit else None
    stats = await limiter.get_window_stats(item, *identifiers)
    # Whole seconds, rounded up: a client that waits this long finds room.
    reset_in = max(0, math.ceil(stats.reset_time - time.time()))
    room = stats.remaining > 0 if allowed is None else allowed
    return Hit(room, max(0, stats.remaining), reset_in)


rate_limiter = RateLimiter()

__all__ = ["RETRY_SECONDS", "Hit", "RateLimiter", "rate_limiter"]
