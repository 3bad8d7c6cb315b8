"""`@async_task`: Celery tasks written as `async def`.

Each worker process runs them on one event loop that lives as long as the process (made after
the fork, see signals.py), so engines and Redis clients are made once and reused, and nothing
is ever "attached to a different loop". Each run gets its own database session scope: `session`
and `@Transactional` work in a task exactly as in a request.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from celery import Task

from celery_task.application import celery_app
from core.db import databases, session_scope
from core.helpers.cache import Cache

P = ParamSpec("P")
R = TypeVar("R")

_local = threading.local()
# Where eager tasks sent from async code run: that code's own loop is busy waiting for them.
_eager_runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eager-async-task")


def thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's persistent loop for running tasks, made on first use."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


async def release_loop_resources() -> None:
    """Close this loop's database pools and cache connections."""
    await databases.dispose()
    await Cache.close()


async def _in_session_scope(
    function: Callable[..., Coroutine[Any, Any, R]], args: Any, kwargs: Any
) -> R:
    try:
        async with session_scope():
            return await function(*args, **kwargs)
    finally:
        # The loop stops between tasks: what the task left writing is finished first.
        await Cache.finish_writes()


def run_async_task(function: Callable[..., Coroutine[Any, Any, R]], args: Any, kwargs: Any) -> R:
    def run_here() -> R:
        return thread_loop().run_until_complete(_in_session_scope(function, args, kwargs))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_here()
    # The caller's context goes along (its request id shows in the task's log lines); the task
    # still gets its own session scope.
    return _eager_runner.submit(contextvars.copy_context().run, run_here).result()


def async_task(
    *task_args: Any, **task_options: Any
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Task]:
    """`@async_task(name="user.send_welcome_email")` on an `async def`: a Celery task.

    Takes the options of `@celery_app.task`. Send it with `.delay()` / `.apply_async()` like
    any task; pass ids, not objects.
    """

    def decorate(function: Callable[P, Coroutine[Any, Any, R]]) -> Task:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return run_async_task(function, args, kwargs)

        return celery_app.task(*task_args, **task_options)(run)

    return decorate
