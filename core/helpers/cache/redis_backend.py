from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from core.helpers.cache.base import BaseBackend, CacheUnavailableError, VersionedRead

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How often a subscription proves it is alive: a PING on it, whose answer comes after every
# message published before it. A connection that died without an error (a frozen server, a
# dropped route) gives no answer, and is given up ANSWER_SECONDS later.
LISTEN_POLL_SECONDS = 1.0
ANSWER_SECONDS = 2.0


class RedisBackend(BaseBackend):
    """Redis through redis.asyncio: one round trip per operation, short timeouts.

    After a failure the backend stays "down" for `retry_seconds` and fails at once, so an
    outage costs each request nothing rather than a timeout each.
    """

    enforces_timeouts = True  # socket timeouts, and a fast "down" mark after a failure

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.25,
        retry_seconds: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.max_connections = max_connections
        self._clients: dict[asyncio.AbstractEventLoop, Redis] = {}
        self._down_until = 0.0

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
                # with a Redis restart must not fail the request that happens to pick it.
                retry=Retry(NoBackoff(), retries=1),
                retry_on_error=[RedisConnectionError],
            )
            client = self._clients[loop] = Redis(connection_pool=pool)
        return client

    async def _call(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        if time.monotonic() < self._down_until:
            raise CacheUnavailableError("redis is marked down")
        try:
            return await operation(self.client)
        except (RedisError, OSError, TimeoutError) as error:
            self._down_until = time.monotonic() + self.retry_seconds
            logger.warning("redis unavailable (%s: %s)", type(error).__name__, error)
            raise CacheUnavailableError(str(error)) from error

    # The client is made without decode_responses, so values come back as bytes.
    async def get(self, key: str) -> bytes | None:
        return cast("bytes | None", await self._call(lambda redis: redis.get(key)))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return cast("list[bytes | None]", await self._call(lambda redis: redis.mget(keys)))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        px = None if ttl is None else max(1, int(ttl * 1000))
        await self._call(lambda redis: redis.set(key, value, px=px))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        px = None if ttl is None else max(1, int(ttl * 1000))
        return bool(await self._call(lambda redis: redis.set(key, value, px=px, nx=True)))

    async def delete(self, key: str) -> None:
        await self._call(lambda redis: redis.delete(key))

    async def delete_startswith(self, prefix: str) -> None:
        async def scan_and_delete(redis: Redis) -> None:
            pattern = _escape_glob(prefix) + "*"
            batch: list[bytes] = []
            async for key in redis.scan_iter(match=pattern, count=500):
                batch.append(key)
                if len(batch) >= 500:
                    await redis.unlink(*batch)
                    batch.clear()
            if batch:
                await redis.unlink(*batch)

        await self._call(scan_and_delete)

    async def incr(self, key: str, ttl: float | None = None) -> int:
        if ttl is None:
            return int(await self._call(lambda redis: redis.incr(key)))

        async def increment_with_expiry(redis: Redis) -> int:
            async with redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.pexpire(key, max(1, int(ttl * 1000)), nx=True)
                count, _ = await pipe.execute()
            return int(count)

        return await self._call(increment_with_expiry)

    async def get_versioned(
        self, version_key: str, hold_key: str, head: str, tail: str
    ) -> VersionedRead:
        # The entry's key depends on the version, so both are read server-side in one trip.
        async def read(redis: Redis) -> list[Any]:
            return cast(
                "list[Any]",
                await redis.eval(_VERSIONED_GET, 2, version_key, hold_key, head, tail),
            )

        version, hold_milliseconds, value, milliseconds_left = await self._call(read)
        return VersionedRead(
            int(version),
            held=hold_milliseconds != _NO_SUCH_KEY,
            value=value,
            expires_in=_seconds(milliseconds_left),
            held_for=_seconds(hold_milliseconds),
        )

    broadcasts = True

    async def publish(self, channel: str, message: bytes) -> None:
        await self._call(lambda redis: redis.publish(channel, message))

    async def listen(self, channel: str) -> AsyncIterator[bytes | None]:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        loop = asyncio.get_running_loop()
        try:
            await pubsub.subscribe(channel)
            yield None
            next_ping = loop.time() + LISTEN_POLL_SECONDS
            pinged_at: float | None = None
            while True:
                now = loop.time()
                if pinged_at is None and now >= next_ping:
                    await pubsub.ping()
                    pinged_at = now
                wait = next_ping - now if pinged_at is None else pinged_at + ANSWER_SECONDS - now
                message = await pubsub.get_message(timeout=max(wait, 0.01))
                if message is None:
                    # Only after reading: a loop that did not run for a while (a worker between
                    # tasks) finds the answer waiting in the socket.
                    if pinged_at is not None and loop.time() - pinged_at > ANSWER_SECONDS:
                        raise TimeoutError(f"no answer to a PING within {ANSWER_SECONDS} s")
                    continue
                if message["type"] == "pong":
                    pinged_at, next_ping = None, loop.time() + LISTEN_POLL_SECONDS
                    yield None  # alive: nothing published before the PING was missed
                else:
                    yield message["data"]
        except (RedisError, OSError, TimeoutError) as error:
            raise CacheUnavailableError(f"lost the subscription to {channel}: {error}") from error
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def ping(self) -> bool:
        return bool(await self._call(lambda redis: redis.ping()))

    async def close(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose(close_connection_pool=True)

    def forget_inherited(self) -> None:
        """In a forked child: drop the parent's clients without touching their sockets."""
        self._clients.clear()


# The same layout as base.versioned_key, computed where the version is known.
_VERSIONED_GET = """
local version = redis.call('GET', KEYS[1]) or '0'
local hold_milliseconds = redis.call('PTTL', KEYS[2])
local key = ARGV[1] .. ':v' .. version .. ':' .. ARGV[2]
local value = redis.call('GET', key)
local milliseconds_left = -1
if value then milliseconds_left = redis.call('PTTL', key) end
return {version, hold_milliseconds, value, milliseconds_left}
"""
# What PTTL answers for a key that does not exist (-1: it exists without expiry).
_NO_SUCH_KEY = -2


def _seconds(milliseconds: int) -> float | None:
    return milliseconds / 1000 if milliseconds >= 0 else None


def _escape_glob(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
