"""Per-process copies of cache entries, served only while this process hears every change.

A copy is made from a backend hit and dropped when any process announces a change touching it:
RedisBackend publishes each change in the round trip that makes it. Copies are served only while
the subscription is known to be current: each heartbeat carries its send time, and Redis answers
it after every message published before it, so an answer proves nothing older went unheard.
When the subscription fails or falls STALE_SECONDS behind, every copy is dropped and reads go to
the backend until it is back: a change is seen within that bound under any single fault.
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

HEARTBEAT_SECONDS = 0.5
STALE_SECONDS = 2.0
# Bounds the memory copies take: about 80 MiB per process at worst.
MAX_COPIES = 5_000
MAX_COPY_BYTES = 16_384


class LocalCopies:
    """Copies keyed by (namespace head, call key). A namespace removal moves its head to a new
    epoch, orphaning its copies at once; every change touching a head bumps the head's
    generation, so a read of it that began before the change stores no copy."""

    def __init__(self) -> None:
        self._store = InMemoryBackend(MAX_COPIES)
        # Per head read through here (code-defined namespaces): [epoch, generation].
        self._heads: dict[str, list[int]] = {}
        self._cleared = 0
        self._current_at = -math.inf  # everything announced before it has been heard
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def _owned(self) -> bool:
        # Copies belong to the loop that follows changes; an eager task's thread has its own.
        return asyncio.get_running_loop() is self._loop

    def usable(self) -> bool:
        return time.monotonic() - self._current_at < STALE_SECONDS and self._owned()

    def generation(self, head: str) -> tuple[int, int]:
        """Changes so far to `head`; a read records it when it starts."""
        return self._cleared, self._heads.setdefault(head, [0, 0])[1]

    def _key(self, head: str, tail: str) -> str:
        return f"{head}\x00{self._heads.setdefault(head, [0, 0])[0]}\x00{tail}"

    async def get(self, head: str, tail: str) -> bytes | None:
        return await self._store.get(self._key(head, tail))

    async def put(
        self, head: str, tail: str, value: bytes, ttl: float, generation: tuple[int, int]
    ) -> None:
        if generation == self.generation(head) and len(value) <= MAX_COPY_BYTES and self.usable():
            await self._store.set(self._key(head, tail), value, ttl)

    async def drop(self, namespaces: Sequence[str], entries: Sequence[Sequence[str]]) -> None:
        if self._loop is not None and not self._owned():
            return  # the announcement reaches the loop that keeps the copies
        for head in namespaces:
            if (state := self._heads.get(head)) is not None:
                state[0] += 1
                state[1] += 1
        for head, tail in entries:
            if (state := self._heads.get(head)) is not None:
                state[1] += 1
                await self._store.delete(self._key(head, tail))

    def _drop_all(self) -> None:
        self._cleared += 1
        self._store = InMemoryBackend(MAX_COPIES)

    def _lose(self) -> None:
        """No longer sure every change was heard: nothing copied so far may be served."""
        self._current_at = -math.inf
        self._drop_all()

    def _end(self) -> asyncio.Task[None] | None:
        """Stop serving copies; the follower task to end, if one is still running."""
        task, self._task, self._loop = self._task, None, None
        self._lose()
        if task is None or task.done() or task.get_loop().is_closed():
            return None
        return task

    def follow(self, backend: RedisBackend) -> None:
        """Start hearing the changes every process makes, on this event loop."""
        if self._task is not None and not self._task.done() and not self._loop_closed():
            return
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._follow(backend), name="cache-changes")

    def _loop_closed(self) -> bool:
        return self._loop is not None and self._loop.is_closed()

    def detach(self) -> None:
        """Stop serving copies and hearing changes (the backend they came from was replaced)."""
        if (task := self._end()) is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def stop(self) -> None:
        if self._task is None or (not self._owned() and not self._loop_closed()):
            return  # another loop's resources are being released, not the copies'
        if (task := self._end()) is None:
            return
        task.cancel()
        # wait(), not await: a cancellation of this caller must reach it, not pass for the task's.
        await asyncio.wait([task])
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.warning("cache change feed did not close cleanly (%r)", error)

    async def _follow(self, backend: RedisBackend) -> None:
        try:
            while True:
                try:
                    await self._hear(backend)
                except Exception as error:
                    if not self._following():
                        raise  # stopped or replaced: a failure while closing must not keep it going
                    if self._current_at > -math.inf:
                        logger.warning("cache change feed lost (%r); no copies until back", error)
                if not self._following():
                    return
                self._lose()
                # As long as a failed Redis is skipped by every other call.
                await asyncio.sleep(backend.outage.seconds)
        finally:
            if self._following():  # ended some other way (its loop closed): no copies
                self._lose()

    def _following(self) -> bool:
        """Whether the running task is still the follower. One that was stopped or replaced ends
        at the next thing it hears, even if its cancellation was lost: on Python 3.11,
        asyncio.wait_for (redis-py sends with it) drops one that lands as the send completes."""
        return asyncio.current_task() is self._task

    async def _hear(self, backend: RedisBackend) -> None:
        changes = backend.changes(HEARTBEAT_SECONDS, STALE_SECONDS)
        async with contextlib.aclosing(changes):
            async for heard in changes:
                if not self._following():
                    return
                if isinstance(heard, float):  # a heartbeat's send time, answered
                    if time.monotonic() - self._current_at >= STALE_SECONDS:
                        # Subscribed again, or fell behind: changes may have gone unheard.
                        self._drop_all()
                        logger.info("following cache changes: local copies in use")
                    self._current_at = max(self._current_at, heard)
                    continue
                try:
                    namespaces, entries = orjson.loads(heard)
                    await self.drop(namespaces, entries)
                except (ValueError, TypeError) as error:
                    logger.warning("unreadable cache change (%r); dropping every copy", error)
                    self._drop_all()
