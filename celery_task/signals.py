"""Worker process lifecycle: fresh connections after the fork, closed at exit; logging."""

from __future__ import annotations

from typing import Any

from celery import signals

from celery_task.loops import release_loop_resources, thread_loop
from core.db import databases
from core.heap import settle_heap
from core.helpers.cache import Cache
from core.logging import configure_logging, request_id_var
from core.tracing import setup_error_reports, setup_tracing, shutdown_tracing


@signals.setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Connected, so Celery leaves logging to us: the same format as the API's.
    configure_logging()


@signals.worker_process_init.connect
def _start_worker_process(**_: Any) -> None:
    # Connections opened by the parent belong to it: forget them (never close them here).
    databases.forget_inherited()
    Cache.forget_inherited()
    thread_loop()
    settle_heap()
    # After the fork: the span exporter's thread and Sentry's belong to this process.
    setup_error_reports()
    setup_tracing("worker")


@signals.worker_process_shutdown.connect
def _stop_worker_process(**_: Any) -> None:
    loop = thread_loop()
    loop.run_until_complete(release_loop_resources())
    loop.close()
    shutdown_tracing()


@signals.task_prerun.connect
def _bind_request_id(task: Any = None, **_: Any) -> None:
    if task is None:
        return
    request_id = getattr(task.request, "request_id", None)
    # An eager run already carries its caller's context; a worker must not keep the id of
    # the task it ran before.
    if request_id is not None or not task.request.is_eager:
        request_id_var.set(request_id)
