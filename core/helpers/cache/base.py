"""What a cache backend and a key maker must provide."""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")


class CacheUnavailableError(Exception):
    """The backend could not answer (down, timed out). Callers fail open on it."""


def spread(seconds: float, by: float = 0.5) -> float:
    """A lifetime of between (1 - by) and all of `seconds`, at random.

    Values stored together (a warm-up, a burst of logins) would otherwise all expire at the same
    moment, and every one of them be fetched again at once.
    """
    return seconds * random.uniform(1.0 - by, 1.0)


def versioned_key(head: str, version: int, tail: str) -> str:
    """Where an entry of a versioned namespace lives: bumping the version orphans them all."""
    return f"{head}:v{version}:{tail}"


class VersionedRead(NamedTuple):
    """A namespace's current version, whether it is on hold, and the entry stored under it."""

    version: int
    held: bool
    value: bytes | None
    # Seconds the entry has left, where the store tells (None: unknown or no expiry).
    expires_in: float | None = None
    # Seconds the hold has left, where the store tells (None: not held, unknown or no expiry).
    held_for: float | None = None


class BaseBackend(ABC):
    """A byte store with expiry. Implement `get`, `set` and `delete_startswith`.

    The other methods have generic implementations built on those three; override them when
    the store can do better (one round trip, atomic counters, exact deletes).
    """

    # Whether every operation gives up quickly by itself (socket timeouts). If not, callers on
    # the request path bound each operation with an event-loop timer, which costs a little.
    enforces_timeouts: bool = False

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value`; it expires after `ttl` seconds (never when None)."""

    @abstractmethod
    async def delete_startswith(self, prefix: str) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await asyncio.gather(*(self.get(key) for key in keys)))

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store `value` only if `key` holds nothing; whether it was stored.

        This default is not atomic across processes; stores that can do it atomically do.
        """
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        # Correct for a cache (removing more than asked only costs a miss); override it for
        # an exact delete.
        await self.delete_startswith(key)

    async def incr(self, key: str, ttl: float | None = None) -> int:
        """Add one to a counter; with `ttl`, it expires that long after its first increment.

        This default is not atomic across processes; stores with atomic counters override it.
        """
        value = await self.get(key)
        count = int(value or 0) + 1
        await self.set(key, str(count).encode(), ttl)
        return count

    async def get_versioned(
        self, version_key: str, hold_key: str, head: str, tail: str
    ) -> VersionedRead:
        """Read a namespace's version, its hold marker and the entry `versioned_key(head,
        version, tail)`. Stores that can do this in one round trip override it."""
        raw_version, hold = await self.get_many([version_key, hold_key])
        version = int(raw_version or 0)
        value = await self.get(versioned_key(head, version, tail))
        return VersionedRead(version, hold is not None, value)

    # Whether `publish` reaches every process that `listen`s through this store. A store that
    # lives in one process has nobody else to tell.
    broadcasts: bool = False

    async def publish(self, channel: str, message: bytes) -> None:
        """Send `message` to every listener of `channel` (stores that broadcast)."""
        raise NotImplementedError(f"{type(self).__name__} does not broadcast")

    def listen(self, channel: str) -> AsyncIterator[bytes | None]:
        """Messages on `channel` as they come, and None whenever the subscription is known to
        be in place: first once subscribed, then each time it proves it is alive (about every
        second).

        It raises CacheUnavailableError when the connection is lost or stops answering:
        messages may have been missed from then on.
        """
        raise NotImplementedError(f"{type(self).__name__} does not broadcast")

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release this event loop's connections; the backend may be used again afterwards."""

    def forget_inherited(self) -> None:  # noqa: B027 - optional hook, nothing to drop by default
        """In a forked child process: drop connections inherited from the parent, unclosed."""


async def bounded(backend: BaseBackend, operation: Awaitable[T], seconds: float) -> T:
    """Await a backend operation, giving up after `seconds` unless the backend does so itself."""
    if backend.enforces_timeouts:
        return await operation
    async with asyncio.timeout(seconds):
        return await operation


class BaseKeyMaker(ABC):
    """Turns a call into the part of a cache key that tells calls apart."""

    @abstractmethod
    def make(
        self,
        function: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        exclude: frozenset[str],
    ) -> str:
        """The same call must give the same string in every process; different calls must not."""
