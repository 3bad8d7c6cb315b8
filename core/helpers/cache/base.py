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


def versioned_key(head: str, version: int, tail: str) -> str:
    """Where an entry of a namespace lives: bumping the namespace's version orphans them all."""
    return f"{head}:v{version}:{tail}"


def hold_key(head: str, tail: str) -> str:
    """What marks one entry of a namespace as held, whatever the namespace's version."""
    return f"{head}:hold:{tail}"


class VersionedRead(NamedTuple):
    """What get_versioned reads in one go; `ttl`: the entry's seconds left, if the store tells."""

    version: int
    held: bool
    value: bytes | None
    ttl: float | None = None


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

    async def get_versioned(self, head: str, tail: str) -> VersionedRead:
        keys = (f"{head}:version", f"{head}:hold", hold_key(head, tail))
        version, held, entry_held = [await self.get(key) for key in keys]
        number = int(version or 0)
        value = await self.get(versioned_key(head, number, tail))
        return VersionedRead(number, held is not None or entry_held is not None, value)

    async def change(
        self,
        namespaces: Sequence[str],
        removed: Sequence[tuple[str, str]],
        held: Sequence[tuple[str, str]],
        seconds: float,
    ) -> None:
        """For `seconds`: orphan and hold each namespace head, replace each removed (head,
        tail) entry with a TOMBSTONE and hold it, and hold each held entry. Stores that can do
        it all in one round trip override this."""
        for head in namespaces:
            version = int(await self.get(f"{head}:version") or 0)
            await self.set(f"{head}:version", str(version + 1).encode())
            await self.set(f"{head}:hold", b"1", seconds)
        for head, tail in removed:
            version = int(await self.get(f"{head}:version") or 0)
            await self.set(versioned_key(head, version, tail), TOMBSTONE, seconds)
        for head, tail in [*removed, *held]:
            await self.set(hold_key(head, tail), b"1", seconds)

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
