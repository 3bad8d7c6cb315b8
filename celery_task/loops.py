"""The event loops async tasks run on, and the thread eager tasks sent from async code run on.

A worker process runs its async tasks on one loop that lives as long as the process (made
after the fork, see signals.py). In eager mode a task sent from async code runs on one
long-lived thread of its own, so the sender's loop goes on serving while the task runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from core.db import databases
from core.helpers.cache import Cache

logger = logging.getLogger(__name__)

R = TypeVar("R")

_local = threading.local()


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's persistent loop for running tasks, made on first use."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


def loop_running_here() -> bool:
    """Whether this thread is running an event loop (sync code called from async code)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def release_loop_resources() -> None:
    """Close this loop's database pools and cache connections."""
    await databases.dispose()
    await Cache.close()


def _mark_eager_thread() -> None:
    # A task running here is waited for by its sender: a task it sends must not queue.
    _local.eager = True


# One thread, never replaced, so its loop and that loop's database pools are made only once.
_eager_thread = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="eager-task", initializer=_mark_eager_thread
)


async def run_eager(call: Callable[[], R]) -> R:
    """Run `call` (an eager send, which runs the task) on the eager thread; this loop goes on."""
    if getattr(_local, "eager", False):
        # Sent by a task running eagerly (on the eager thread, or on a loop of its own there):
        # queueing behind that task would wait for ever, so it runs here, on a loop of its own.
        return call()
    future = _eager_thread.submit(contextvars.copy_context().run, call)
    return await asyncio.wrap_future(future)


def start_eager(call: Callable[[], object]) -> None:
    """Run `call` on the eager thread without waiting for it; a failure is logged."""
    _eager_thread.submit(contextvars.copy_context().run, call).add_done_callback(_log_failure)


def _log_failure(future: Future[object]) -> None:
    if (error := future.exception()) is not None:
        logger.error("an eager task sent from async code failed", exc_info=error)


def run_on_a_new_loop(make_coroutine: Callable[[], Coroutine[Any, Any, R]]) -> R:
    """Run a coroutine on a new loop on a new thread, then close that loop's pools; waits.

    For a task run synchronously by code whose own loop is running, and so cannot run it.
    """

    async def run_then_release() -> R:
        try:
            return await make_coroutine()
        finally:
            await release_loop_resources()

    context = contextvars.copy_context()
    with ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="async-task", initializer=_mark_eager_thread
    ) as runner:
        return runner.submit(context.run, asyncio.run, run_then_release()).result()
