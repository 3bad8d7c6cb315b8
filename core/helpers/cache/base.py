"""What a cache backend and a key maker must provide."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence


class CacheUnavailableError(Exception):
    """The backend could not answer (down, timed out). Callers fail open on it."""


class BaseBackend(ABC):
    """A byte store with expiry. Implement `get`, `set` and `delete_startswith`.

    The other methods have generic implementations built on those three; override them when
    the store can do better (one round trip, atomic counters, exact deletes).
    """

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value`; it expires after `ttl` seconds (never when None)."""

    @abstractmethod
    async def delete_startswith(self, prefix: str) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return list(await asyncio.gather(*(self.get(key) for key in keys)))

    async def delete(self, key: str) -> None:
        # Correct for a cache (removing more than asked only costs a miss); override it for
        # an exact delete.
        await self.delete_startswith(key)

    async def incr(self, key: str, ttl: float) -> int:
        """Add one to a counter that expires `ttl` seconds after its first increment.

        This default is not atomic across processes; stores with atomic counters override it.
        """
        value = await self.get(key)
        count = int(value or 0) + 1
        await self.set(key, str(count).encode(), ttl)
        return count

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections; the backend may be used again afterwards."""
