"""Concurrent calls for the same thing, in one process, share one run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")

# What those waiting are told when the caller running the function was cancelled: its request
# ended, theirs did not, so one of them runs it instead.
_ABANDONED = object()


class SingleFlight:
    """`await flights.run(key, function)`: the first caller runs `function()`; callers that
    come while it runs wait for its result (or its error) instead of running it again.

    When a value expires under load, every request in flight misses it at once: without this,
    each of them would ask the cache or the database the same question.
    """

    def __init__(self) -> None:
        self._running: dict[tuple[int, Hashable], asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, function: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        # Per loop: a future must only be awaited on the loop that made it.
        slot = (id(loop), key)
        running = self._running.get(slot)
        if running is not None:
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
