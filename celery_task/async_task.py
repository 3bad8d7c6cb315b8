"""`@async_task`: Celery tasks written as `async def`.

Each worker process runs them on one event loop that lives as long as the process (see
loops.py), so engines and Redis clients are made once and reused, and nothing is ever
"attached to a different loop". Each run gets its own database session scope: `session` and
`@Transactional` work in a task exactly as in a request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from celery_task.application import AppTask, celery_app
from celery_task.loops import loop_running_here, run_on_a_new_loop, thread_loop
from core.db import session_scope

P = ParamSpec("P")
R = TypeVar("R")


async def _in_session_scope(
    function: Callable[..., Coroutine[Any, Any, R]], args: Any, kwargs: Any
) -> R:
    async with session_scope():
        return await function(*args, **kwargs)


def run_async_task(function: Callable[..., Coroutine[Any, Any, R]], args: Any, kwargs: Any) -> R:
    if loop_running_here():
        # Run synchronously by async code (a task sent by an eager task, or a task called
        # directly): that code's loop waits for this call, so the task needs a loop of its own.
        return run_on_a_new_loop(lambda: _in_session_scope(function, args, kwargs))
    return _run_to_the_end(thread_loop(), _in_session_scope(function, args, kwargs))


def _run_to_the_end(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, R]) -> R:
    task = loop.create_task(coroutine)
    try:
        return loop.run_until_complete(task)
    except BaseException:
        # Raised from outside the task (Celery's soft time limit arrives as a signal while the
        # loop waits): cancelled and awaited here, or it would resume in the next task's run.
        if not task.done():
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        raise


def async_task(
    *task_args: Any, **task_options: Any
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], AppTask]:
    """`@async_task(name="user.send_welcome_email")` on an `async def`: a Celery task.

    Takes the options of `@celery_app.task`. From async code send it with
    `await task.adelay(...)` / `await task.aapply_async(...)`, from sync code with `.delay()` /
    `.apply_async()`; pass ids, not objects.
    """

    def decorate(function: Callable[P, Coroutine[Any, Any, R]]) -> AppTask:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return run_async_task(function, args, kwargs)

        task: AppTask = celery_app.task(*task_args, **task_options)(run)
        return task

    return decorate
