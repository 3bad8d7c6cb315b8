"""Concurrent calls for the same thing, in one process, share one run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")

# Told to those waiting when the caller running the function was cancelled: one of them runs it.
_ABANDONED = object()


class SingleFlight:
    """`await flights.run(key, function)`: callers that come while `function()` runs share its
    result or error, so a value expiring under load is not fetched once per request in flight."""

    def __init__(self) -> None:
        self._running: dict[tuple[int, Hashable], asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, function: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        # Per loop: a future must only be awaited on the loop that made it.
        slot = (id(loop), key)
        if (running := self._running.get(slot)) is not None:
            # Shielded: a caller that gives up does not cancel the run the others wait for.
            value = await asyncio.shield(running)
            if value is _ABANDONED:
                return await self.run(key, function)
            return cast(T, value)
        future: asyncio.Future[Any] = loop.create_future()
        self._running[slot] = future
        try:
            value = await function()
        except asyncio.CancelledError:
            future.set_result(_ABANDONED)
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._running[slot]
        future.set_result(value)
        return value
