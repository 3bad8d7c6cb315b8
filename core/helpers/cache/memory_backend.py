from __future__ import annotations

import threading
import time
from collections import OrderedDict

from core.helpers.cache.base import BaseBackend


class InMemoryBackend(BaseBackend):
    """A per-process store with expiry and a size bound (least recently used goes first).

    For the embedded default and tests: nothing is shared between processes. Each operation
    completes without waiting, so the generic methods of BaseBackend are atomic on one loop.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()
        # Eager tasks use the store from a thread of their own, beside the server's loop.
        self._lock = threading.Lock()

    async def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, value = entry
            if expires_at is not None and expires_at <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires_at = None if ttl is None else time.monotonic() + ttl
        with self._lock:
            self._entries[key] = (expires_at, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    async def delete_startswith(self, prefix: str) -> None:
        with self._lock:
            for key in [key for key in self._entries if key.startswith(prefix)]:
                del self._entries[key]
