"""The Celery application. Nothing here connects or reads settings until first used."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio import to_thread
from celery import Celery, Task
from celery.exceptions import BackendGetMetaError
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from celery_task.configurator import CeleryConfigurator
from celery_task.loops import loop_running_here, run_eager, start_eager
from celery_task.ownership import task_id_for
from core.config import config
from core.db import commit_batch
from core.exceptions import ServiceUnavailableException
from core.helpers.cache.redis_backend import RETRY_SECONDS
from core.helpers.outage import Outage
from core.logging import request_id_var, user_id_var

logger = logging.getLogger(__name__)

R = TypeVar("R")

# How long async code waits for the broker or the result backend before it gives up (503).
SEND_TIMEOUT_SECONDS = 2.0

# What a broker or result backend out of reach raises once Celery's own few retries are spent.
_UNREACHABLE = (
    OperationalError,
    BackendGetMetaError,
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)


# After a failure the broker is skipped as long as the cache skips a failed Redis (it is
# usually the same server): callers meanwhile get their 503 at once, and while it hangs only
# one call at a time holds a worker thread waiting on it.
broker_outage = Outage(RETRY_SECONDS)

# Tasks whose blocking send from async code was logged: each is logged once per process.
_warned_about_blocking: set[str] = set()


class BrokerUnavailableException(ServiceUnavailableException):
    error_code = "BROKER_UNAVAILABLE"
    detail = "Background work cannot be queued right now; retry later."


def _is_unreachable(error: BaseException) -> bool:
    if isinstance(error, RuntimeError) and error.__cause__ is not None:
        # The result backend reports a result channel it could not reconnect this way.
        return isinstance(error.__cause__, _UNREACHABLE)
    return isinstance(error, _UNREACHABLE)


async def call_broker(function: Callable[[], R]) -> R:
    """Run a blocking call to the broker or result backend on a worker thread, bounded in time.

    Raises `BrokerUnavailableException` when they cannot be reached or do not answer within
    `SEND_TIMEOUT_SECONDS` (at once while `broker_outage` lasts); a call given up on finishes
    on its thread within a few seconds (see configurator.py), so it may still be delivered.
    """
    outage = broker_outage
    if outage.ongoing:
        raise BrokerUnavailableException()
    try:
        with outage.trying(), anyio.fail_after(SEND_TIMEOUT_SECONDS):
            return await to_thread.run_sync(function, abandon_on_cancel=True)
    except BrokerUnavailableException:
        outage.begin()  # a publish that failed at once, said so already
        raise
    except Exception as error:
        if not _is_unreachable(error):
            raise
        outage.begin()
        logger.warning("broker or result backend out of reach: %r", error)
        raise BrokerUnavailableException() from error


class AppTask(Task):  # type: ignore[misc]
    """Every task of the project: sent after the surrounding transaction commits.

    A task sent inside `@Transactional` is published once the transaction has committed (and
    never if it rolls back), so a worker never looks for a row that is not there yet. The
    caller gets the task's id at once. The request id travels along in the message headers.

    From async code send with `await task.adelay(...)` / `await task.aapply_async(...)`: the
    publish runs on a worker thread, bounded by `SEND_TIMEOUT_SECONDS`, and an unreachable
    broker is a `BrokerUnavailableException` (503); in eager mode the task runs on the eager
    thread (loops.py) while the caller's loop goes on.
    """

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> AsyncResult:
        """For synchronous code; async code awaits `aapply_async`, which never blocks its loop."""
        options = self._prepared(options)
        if (deferred := self._after_commit(args, kwargs, options)) is not None:
            return deferred
        if loop_running_here():
            if self.app.conf.task_always_eager:
                # Called from async code: the task runs on the eager thread, not on this loop.
                start_eager(functools.partial(self._publish, args, kwargs, options))
                return self.AsyncResult(options["task_id"])
            self._warn_once_about_blocking()
        return self._publish(args, kwargs, options)

    async def aapply_async(
        self, args: Any = None, kwargs: Any = None, **options: Any
    ) -> AsyncResult:
        """`apply_async` for async code: published after commit inside `@Transactional`."""
        options = self._prepared(options)
        if (deferred := self._after_commit(args, kwargs, options)) is not None:
            return deferred
        return await _off_the_loop(functools.partial(self._publish, args, kwargs, options))

    async def adelay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """`delay` for async code."""
        return await self.aapply_async(args, kwargs)

    def signature_from_request(
        self,
        request: Any = None,
        args: Any = None,
        kwargs: Any = None,
        queue: Any = None,
        **extra_options: Any,
    ) -> Any:
        """What a retry sends: with the first send's `argsrepr`/`kwargsrepr`, which Celery does
        not carry over, so a retried mail's log lines and events hide its links too."""
        request = self.request if request is None else request
        for name in ("argsrepr", "kwargsrepr"):
            if (shown := getattr(request, name, None)) is not None:
                extra_options.setdefault(name, shown)
        return super().signature_from_request(request, args, kwargs, queue, **extra_options)

    def _after_commit(self, args: Any, kwargs: Any, options: dict[str, Any]) -> AsyncResult | None:
        """Inside `@Transactional`, queue the send for after the commit (core.db's commit
        batch: every send of the transaction is published in one go, off the loop)."""
        publishes = commit_batch(_PUBLISHES_AFTER_COMMIT, _publish_all)
        if publishes is None:
            return None
        publishes.append(functools.partial(self._publish, args, kwargs, options))
        return self.AsyncResult(options["task_id"])

    def _prepared(self, options: dict[str, Any]) -> dict[str, Any]:
        # The id is fixed now: a send deferred to after the commit still answers with it.
        task_id = options.get("task_id") or task_id_for(user_id_var.get())
        options = {**options, "task_id": task_id}
        headers = options["headers"] = dict(options.get("headers") or {})
        if (request_id := request_id_var.get()) is not None:
            headers.setdefault("request_id", request_id)
        return options

    def _publish(self, args: Any, kwargs: Any, options: dict[str, Any]) -> AsyncResult:
        try:
            return super().apply_async(args, kwargs, **options)
        except Exception as error:
            # An eager run raises the task's own errors, which say nothing about the broker.
            if self.app.conf.task_always_eager or not _is_unreachable(error):
                raise
            logger.warning("could not queue %s: %r", self.name, error)
            raise BrokerUnavailableException() from error

    def _warn_once_about_blocking(self) -> None:
        if self.name not in _warned_about_blocking:
            _warned_about_blocking.add(self.name)
            logger.warning(
                "%s sent with .delay()/.apply_async() from async code: the event loop waits "
                "while it is published; use `await task.adelay(...)` there",
                self.name,
            )


_PUBLISHES_AFTER_COMMIT = "celery_task.publishes"


async def _off_the_loop(publish: Callable[[], R]) -> R:
    """The one way async code sends tasks: never on its own loop's thread."""
    if celery_app.conf.task_always_eager:
        return await run_eager(publish)
    return await call_broker(publish)


async def _publish_all(publishes: list[Callable[[], AsyncResult]]) -> None:
    await _off_the_loop(lambda: [publish() for publish in publishes])


celery_app = Celery("celery_task", task_cls=AppTask)
celery_app.add_defaults(lambda: CeleryConfigurator(config).as_dict())


def run_every(seconds: float, task_name: str) -> None:
    """Have `celery beat` send the task every `seconds`; a run not started by the next is dropped.

    By name: touching the task itself at import would configure Celery (read settings) then.
    """
    celery_app.add_periodic_task(
        seconds, celery_app.signature(task_name), name=task_name, expires=seconds
    )
