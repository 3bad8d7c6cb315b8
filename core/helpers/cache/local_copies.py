"""Per-process copies of cache entries, served only while this process hears every change.

A copy is made from a backend hit and dropped when any process announces a change touching it:
RedisBackend publishes each change in the round trip that makes it. Copies are used only while
the subscription answers its heartbeat; when it fails or goes quiet they are all dropped and
reads go to the backend until it is back, so a change is seen within STALE_SECONDS under any
single fault (a killed subscription, a Redis restart, a lost message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence

import orjson

from core.helpers.cache.memory_backend import InMemoryBackend
from core.helpers.cache.redis_backend import RedisBackend

logger = logging.getLogger(__name__)

# The subscription is pinged this often, and copies are served only if it was heard from
# within STALE_SECONDS: the bound on a change going unseen when the subscription fails silently.
HEARTBEAT_SECONDS = 0.5
STALE_SECONDS = 2.0
RESUBSCRIBE_SECONDS = 0.5
# At most this many copies of at most this many bytes each: a bound on the memory they take.
MAX_COPIES = 5_000
MAX_COPY_BYTES = 16_384


class LocalCopies:
    """Copies keyed by (namespace head, call key); a namespace removal drops them all at once
    by moving the namespace to a new epoch."""

    def __init__(self) -> None:
        self._store = InMemoryBackend(MAX_COPIES)
        self._epochs: dict[str, int] = {}
        # Bumped by every change heard or made here: a read that began before it stores no copy.
        self.generation = 0
        self._heard_at = -math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def usable(self) -> bool:
        # Only on the loop that follows the changes (an eager task's thread has its own).
        return (
            time.monotonic() - self._heard_at < STALE_SECONDS
            and asyncio.get_running_loop() is self._loop
        )

    def _key(self, head: str, tail: str) -> str:
        return f"{head}\x00{self._epochs.get(head, 0)}\x00{tail}"

    async def get(self, head: str, tail: str) -> bytes | None:
        return await self._store.get(self._key(head, tail))

    async def put(self, head: str, tail: str, value: bytes, ttl: float, generation: int) -> None:
        if generation == self.generation and len(value) <= MAX_COPY_BYTES and self.usable():
            await self._store.set(self._key(head, tail), value, ttl)

    async def drop(self, namespaces: Sequence[str], entries: Sequence[Sequence[str]]) -> None:
        self.generation += 1
        if asyncio.get_running_loop() is not self._loop:
            return  # no copies on this loop; the announcement reaches the one that keeps them
        for head in namespaces:
            self._epochs[head] = self._epochs.get(head, 0) + 1
        for head, tail in entries:
            await self._store.delete(self._key(head, tail))

    def _drop_all(self) -> None:
        self.generation += 1
        self._store = InMemoryBackend(MAX_COPIES)

    def follow(self, backend: RedisBackend) -> None:
        """Start hearing the changes every process makes, on this event loop."""
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._follow(backend), name="cache-changes")

    async def stop(self) -> None:
        task, self._task, self._loop = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._heard_at = -math.inf
        self._drop_all()

    async def _follow(self, backend: RedisBackend) -> None:
        while True:
            try:
                async for message in backend.changes(HEARTBEAT_SECONDS):
                    now = time.monotonic()
                    if now - self._heard_at >= STALE_SECONDS:
                        # Subscribed again, or quiet for a while: changes may have gone unheard.
                        self._drop_all()
                        logger.info("following cache changes: local copies in use")
                    self._heard_at = now
                    if message is not None:
                        namespaces, entries = orjson.loads(message)
                        await self.drop(namespaces, entries)
            except Exception as error:
                if self._heard_at > -math.inf:
                    logger.warning("cache change feed lost (%r); no local copies until back", error)
            self._heard_at = -math.inf
            self._drop_all()
            await asyncio.sleep(RESUBSCRIBE_SECONDS)
