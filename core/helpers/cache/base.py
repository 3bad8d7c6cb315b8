"""What a cache backend and a key maker must provide."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")

# What a removed entry holds while it is held: a miss that must not be filled.
TOMBSTONE = b""


class CacheUnavailableError(Exception):
    """The backend could not answer (down, timed out). Callers fail open on it."""


def versioned_key(head: str, version: int | bytes | str, tail: str) -> str:
    """Where an entry of a namespace lives: bumping the namespace's version orphans them all."""
    version = version.decode() if isinstance(version, bytes) else version
    return f"{head}:v{version}:{tail}"


class VersionedRead(NamedTuple):
    """A namespace's current version, whether it is held, and the entry stored under it."""

    version: int
    held: bool
    value: bytes | None


class BaseBackend(ABC):
    """A byte store with expiry. Implement `get`, `set` and `delete_startswith`.

    The other methods are built on those three; a store that can do them in one round trip, or
    atomically, overrides them (RedisBackend does).
    """

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value`; it expires after `ttl` seconds (never when None)."""

    @abstractmethod
    async def delete_startswith(self, prefix: str) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def delete(self, key: str) -> None:
        # Removing more than asked only costs a miss; stores with an exact delete override it.
        await self.delete_startswith(key)

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store `value` only where nothing is stored; whether it was stored.

        Not atomic here; stores that can check and set in one step do.
        """
        if await self.get(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def incr(self, key: str, ttl: float | None = None) -> int:
        """Add one to a counter that expires `ttl` seconds after its first increment.

        Not atomic here, and each increment restarts the expiry; stores with atomic counters
        override it.
        """
        count = int(await self.get(key) or 0) + 1
        await self.set(key, str(count).encode(), ttl)
        return count

    async def get_versioned(self, head: str, tail: str) -> VersionedRead:
        """The version of namespace `head`, whether it is held, and its entry `tail`."""
        version, hold = await self.get_many([f"{head}:version", f"{head}:hold"])
        number = int(version or 0)
        value = await self.get(versioned_key(head, number, tail))
        return VersionedRead(number, hold is not None, value)

    async def remove(
        self, namespaces: Sequence[str], entries: Sequence[tuple[str, str]], hold: float
    ) -> None:
        """Orphan every entry of each namespace head and hold it, and hold each (head, tail)
        entry with a TOMBSTONE, for `hold` seconds. Stores that can do all of it in one round
        trip override this."""
        for head in namespaces:
            await self.incr(f"{head}:version")
            await self.set(f"{head}:hold", b"1", hold)
        for head, tail in entries:
            version = int(await self.get(f"{head}:version") or 0)
            await self.set(versioned_key(head, version, tail), TOMBSTONE, hold)

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release this event loop's connections; the backend may be used again afterwards."""

    def forget_inherited(self) -> None:  # noqa: B027 - optional hook, nothing to drop by default
        """In a forked child process: drop connections inherited from the parent, unclosed."""


# A cache that does not answer within this is treated as down for the call.
CACHE_TIMEOUT_SECONDS = 0.5


async def bounded(operation: Callable[[], Awaitable[T]]) -> T:
    """Run a backend operation within CACHE_TIMEOUT_SECONDS; any failure is a
    CacheUnavailableError, which callers turn into their degraded behaviour."""
    try:
        async with asyncio.timeout(CACHE_TIMEOUT_SECONDS):
            return await operation()
    except CacheUnavailableError:
        raise
    except Exception as error:
        raise CacheUnavailableError(f"{type(error).__name__}: {error}") from error


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
