"""A connection pool that hands connections out in the order they were asked for.

SQLAlchemy's asyncio pool keeps its connections in an asyncio.Queue. When a connection is put
back, the longest waiter is woken, but a request arriving before it runs takes the connection,
and the woken waiter queues again at the end. Under sustained load some requests then wait for
seconds while the median waits milliseconds (make bench measured a p99 over 100 times the p50).
Here a returned connection goes straight to the first waiter.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, TypeVar

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

T = TypeVar("T")


class FairQueue(AsyncAdaptedQueue[T]):
    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: T, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)  # the pool never holds more than it made: no need to wait

    def get_nowait(self) -> T:
        if not self._items:
            raise Empty()
        return self._items.pop() if self.use_lifo else self._items.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if self._items or not block:
            return self.get_nowait()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await_(self._wait(waiter, timeout))

    async def _wait(self, waiter: asyncio.Future[T], seconds: float | None) -> T:
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return waiter.result()  # handed over just as the time ran out: keep it
            raise Empty() from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # cancelled after the hand-over: pass it on
            raise


class FairAsyncPool(AsyncAdaptedQueuePool):
    _queue_class: Any = FairQueue
