from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from core.helpers.cache.base import BaseBackend, VersionedRead, versioned_key


class InMemoryBackend(BaseBackend):
    """A per-process store with expiry and a size bound (least recently used goes first).

    For the embedded default and tests: nothing is shared between processes.
    """

    enforces_timeouts = True  # nothing here can wait

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()

    def _live(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at is not None and expires_at <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires_at = None if ttl is None else time.monotonic() + ttl
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def delete_startswith(self, prefix: str) -> None:
        for key in [key for key in self._entries if key.startswith(prefix)]:
            del self._entries[key]

    async def incr(self, key: str, ttl: float | None = None) -> int:
        entry = self._entries.get(key)
        if self._live(key) is None or entry is None:
            await self.set(key, b"1", ttl)
            return 1
        expires_at, value = entry
        count = int(value) + 1
        self._entries[key] = (expires_at, str(count).encode())
        return count

    async def get_versioned(
        self, version_key: str, hold_key: str, head: str, tail: str
    ) -> VersionedRead:
        version = int(self._live(version_key) or 0)
        held = self._live(hold_key) is not None
        return VersionedRead(version, held, self._live(versioned_key(head, version, tail)))

    async def clear(self) -> None:
        self._entries.clear()
