from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from core.helpers.cache.base import (
    CACHE_TIMEOUT_SECONDS,
    BaseBackend,
    CacheUnavailableError,
    VersionedRead,
)
from core.helpers.outage import Outage

logger = logging.getLogger(__name__)

T = TypeVar("T")


# Where every change (removals and holds) is announced, for processes that keep local copies.
CHANGES_CHANNEL = "cache:changes"
# How long a Redis that failed is skipped before it is tried again.
RETRY_SECONDS = 1.0
# A whole call (a connection, the command, its one retry), kept under CACHE_TIMEOUT_SECONDS.
CALL_TIMEOUT_SECONDS = 0.8 * CACHE_TIMEOUT_SECONDS


class RedisBackend(BaseBackend):
    """Redis through redis.asyncio: one round trip per operation, short timeouts.

    After a failure the backend is skipped (`outage`) for `retry_seconds` and fails at once,
    so an outage costs each request nothing rather than a timeout each.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.25,
        retry_seconds: float = RETRY_SECONDS,
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.max_connections = max_connections
        self._clients: dict[asyncio.AbstractEventLoop, Redis] = {}
        self.outage = Outage(retry_seconds)

    @property
    def client(self) -> Redis:
        # One client per event loop, made there on first use: connections belong to the loop
        # (and the process) that opened them.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # More concurrent callers than connections wait for one (up to the timeout) instead
            # of failing at once: a busy process is not a Redis outage.
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # One immediate retry on a fresh connection: a pooled connection that died
                # with a Redis restart must not fail the call that happens to pick it.
                retry=Retry(NoBackoff(), retries=1),
                retry_on_error=[RedisConnectionError],
            )
            client = self._clients[loop] = Redis(connection_pool=pool)
        return client

    async def call(self, operation: Callable[[Redis], Awaitable[T]], *, always: bool = False) -> T:
        """`operation` on this loop's client, failing at once while Redis is marked down (for the
        cache and the rate limiter alike); `always`: a change to propagate tries even then."""
        if not always and self.outage.ongoing:
            raise CacheUnavailableError("redis is marked down")
        try:
            # Inside the caller's bound (`bounded`): a hung Redis times out here, and is marked
            # down, instead of each call being cancelled from outside.
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
                with self.outage.trying():
                    return await operation(self.client)
        except ResponseError as error:
            # Redis answered: an error about this command, not an outage.
            raise CacheUnavailableError(str(error)) from error
        except (RedisError, OSError, TimeoutError) as error:
            if _no_connection_free(error):
                # Every connection stayed busy for the whole wait: this process is loaded, and
                # marking Redis down would move its work onto the database.
                raise CacheUnavailableError(str(error)) from error
            self.outage.begin()
            logger.warning("redis unavailable (%s: %s)", type(error).__name__, error)
            raise CacheUnavailableError(str(error)) from error

    # The client is made without decode_responses, so values come back as bytes.
    async def get(self, key: str) -> bytes | None:
        return cast("bytes | None", await self.call(lambda redis: redis.get(key)))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.call(lambda redis: redis.set(key, value, px=_milliseconds(ttl)))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        px = _milliseconds(ttl)
        return bool(await self.call(lambda redis: redis.set(key, value, px=px, nx=True)))

    async def delete(self, key: str) -> None:
        await self.call(lambda redis: redis.delete(key))

    async def delete_startswith(self, prefix: str) -> None:
        async def scan_and_delete(redis: Redis) -> None:
            # In batches: a prefix may cover more keys than one command should carry.
            batch: list[bytes] = []
            async for key in redis.scan_iter(match=_escape_glob(prefix) + "*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    await redis.unlink(*batch)
                    batch.clear()
            if batch:
                await redis.unlink(*batch)

        await self.call(scan_and_delete)

    async def get_versioned(self, head: str, tail: str) -> VersionedRead:
        # The entry's key depends on the version, so both are read server-side in one trip.
        version, held, value, ms = await self.call(
            lambda redis: cast(
                "Awaitable[list[Any]]", redis.register_script(_GET_VERSIONED)(args=[head, tail])
            )
        )
        return VersionedRead(int(version), bool(held), value, ms / 1000 if ms > 0 else None)

    async def change(
        self,
        namespaces: Sequence[str],
        removed: Sequence[tuple[str, str]],
        held: Sequence[tuple[str, str]],
        seconds: float,
    ) -> None:
        entries = [*removed, *held]
        arguments: list[str | int | bytes] = [
            *(max(1, int(seconds * 1000)), len(namespaces), len(removed)),
            change_message(namespaces, entries),
            *namespaces,
            *(part for entry in entries for part in entry),
        ]
        await self.call(lambda redis: redis.register_script(_CHANGE)(args=arguments), always=True)

    async def changes(self, heartbeat: float, stale: float) -> AsyncGenerator[bytes | float, None]:
        """Every change announced by any process (bytes), and for each heartbeat sent every
        `heartbeat` seconds, once answered, the monotonic time it was sent (float): every change
        announced before then has been heard. Raises when the subscription is lost or nothing
        has come for `stale` seconds."""
        # Its own client, without retries: a silent reconnect would hide that what was
        # announced meanwhile is gone.
        client = Redis.from_url(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), retries=0),
        )
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANGES_CHANNEL)
                heard_at, subscribed = time.monotonic(), 0
                while True:
                    sent_at = time.monotonic()
                    await pubsub.ping(repr(sent_at))
                    while (left := sent_at + heartbeat - time.monotonic()) > 0:
                        message = await pubsub.get_message(timeout=left)
                        if message is None:
                            if time.monotonic() - heard_at > stale:
                                raise TimeoutError(f"nothing from redis for {stale} s")
                            continue
                        heard_at = time.monotonic()
                        if message["type"] == "message":
                            yield message["data"]
                        elif message["type"] == "pong":
                            yield float(message["data"])
                        elif message["type"] == "subscribe" and (subscribed := subscribed + 1) > 1:
                            raise ConnectionError("subscribed again: announcements may be lost")
        finally:
            await client.aclose()

    async def close(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose(close_connection_pool=True)

    def forget_inherited(self) -> None:
        """In a forked child: drop the parent's clients without touching their sockets."""
        self._clients.clear()


# The key layout of base.versioned_key, base.hold_key and BaseBackend.change, computed where
# the version is known. Run as registered scripts (EVALSHA), like the rate limiter's: the body
# is sent once per server, then named by its digest.
_GET_VERSIONED = """
local version = redis.call('GET', ARGV[1] .. ':version') or '0'
local held = redis.call('EXISTS', ARGV[1] .. ':hold', ARGV[1] .. ':hold:' .. ARGV[2])
local key = ARGV[1] .. ':v' .. version .. ':' .. ARGV[2]
return {version, held, redis.call('GET', key), redis.call('PTTL', key)}
"""
_CHANGE = f"""
local ms, namespaces, removed = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local first_entry = 5 + namespaces
for i = 5, first_entry - 1 do
  redis.call('INCR', ARGV[i] .. ':version')
  redis.call('SET', ARGV[i] .. ':hold', '1', 'PX', ms)
end
for i = first_entry, #ARGV, 2 do
  local head, tail = ARGV[i], ARGV[i + 1]
  if i < first_entry + 2 * removed then
    local version = redis.call('GET', head .. ':version') or '0'
    redis.call('SET', head .. ':v' .. version .. ':' .. tail, '', 'PX', ms)
  end
  redis.call('SET', head .. ':hold:' .. tail, '1', 'PX', ms)
end
redis.call('PUBLISH', '{CHANGES_CHANNEL}', ARGV[4])
"""


def change_message(namespaces: Sequence[str], entries: Sequence[tuple[str, str]]) -> bytes:
    """What every process hears of a change: the namespaces removed, the entries removed or held."""
    return orjson.dumps([list(namespaces), [list(entry) for entry in entries]])


def _no_connection_free(error: BaseException) -> bool:
    # BlockingConnectionPool's wait timing out; a connection that fails has an OSError cause.
    return isinstance(error, RedisConnectionError) and isinstance(error.__cause__, TimeoutError)


def _milliseconds(seconds: float | None) -> int | None:
    return None if seconds is None else max(1, int(seconds * 1000))


def _escape_glob(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
