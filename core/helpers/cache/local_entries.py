"""This process's copies of cache entries: a hit without a round trip to the backend.

Copies are made from entries read from the shared backend, and used only while the change feed
is live. Every removal is announced on the feed; each process drops its copies of what was
removed as soon as it hears of it, and all of them when it stops hearing. A copy never outlives
the shared entry, nor LOCAL_COPY_SECONDS (change_feed.py).

A namespace the backend said is on hold is remembered as held until the hold ends: the reads
in between skip the cache without asking it again. A removal of the namespace drops that too,
so the next read asks the backend what holds now.
"""

from __future__ import annotations

import time

from core.helpers.cache.change_feed import LOCAL_COPY_SECONDS, local_copy_seconds

# The change feed's topic: b"n<namespace>" (all of it removed) or b"e<namespace>\0<call>".
CACHE_TOPIC = b"cache"


class LocalEntries:
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._by_namespace: dict[str, dict[str, tuple[bytes, float]]] = {}
        self._count = 0
        # Bumped by every removal heard: an entry read before a removal must not be kept.
        self.generation = 0
        self._held_until: dict[str, float] = {}

    def get(self, namespace: str, call_key: str) -> bytes | None:
        entries = self._by_namespace.get(namespace)
        if entries is None:
            return None
        found = entries.get(call_key)
        if found is None:
            return None
        value, expires = found
        if time.monotonic() >= expires:
            # An expiry is not a removal: reads in flight may still keep what they read.
            self._discard(namespace, call_key)
            return None
        return value

    def keep(
        self, namespace: str, call_key: str, value: bytes, seconds: float, generation: int
    ) -> bool:
        """Keep `value` for `seconds` (at most LOCAL_COPY_SECONDS), unless a removal was heard
        since it was read at `generation`. Whether it was kept."""
        if generation != self.generation or seconds <= 0:
            return False
        if self._count >= self.max_entries:
            self.clear()  # rare, and cheaper than keeping an eviction order on every hit
        entries = self._by_namespace.setdefault(namespace, {})
        if call_key not in entries:
            self._count += 1
        expires = time.monotonic() + local_copy_seconds(seconds)
        entries[call_key] = (value, expires)
        return True

    def hold(self, namespace: str, seconds: float) -> None:
        """Remember that `namespace` is on hold for `seconds` (at most LOCAL_COPY_SECONDS)."""
        self._held_until[namespace] = time.monotonic() + min(seconds, LOCAL_COPY_SECONDS)

    def is_held(self, namespace: str) -> bool:
        until = self._held_until.get(namespace)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._held_until[namespace]
        return False

    def drop_namespace(self, namespace: str) -> None:
        self.generation += 1
        self._held_until.pop(namespace, None)
        self._count -= len(self._by_namespace.pop(namespace, {}))

    def drop_entry(self, namespace: str, call_key: str) -> None:
        self.generation += 1
        self._discard(namespace, call_key)

    def _discard(self, namespace: str, call_key: str) -> None:
        entries = self._by_namespace.get(namespace)
        if entries is not None and entries.pop(call_key, None) is not None:
            self._count -= 1

    def heard(self, payload: bytes) -> None:
        """Apply a removal announced as `namespace_removed` or `entry_removed` made it."""
        kind, text = payload[:1], payload[1:].decode()
        if kind == b"n":
            self.drop_namespace(text)
        else:
            namespace, _, call_key = text.partition("\0")
            self.drop_entry(namespace, call_key)

    def clear(self) -> None:
        self.generation += 1
        self._by_namespace.clear()
        self._held_until.clear()
        self._count = 0


def namespace_removed(namespace: str) -> bytes:
    return b"n" + namespace.encode()


def entry_removed(namespace: str, call_key: str) -> bytes:
    return b"e" + f"{namespace}\0{call_key}".encode()
