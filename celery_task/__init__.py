from celery_task import signals as _signals  # noqa: F401 - connects the worker signal handlers
from celery_task.application import (
    AppTask,
    BrokerUnavailableException,
    call_broker,
    celery_app,
    run_every,
)
from celery_task.async_task import async_task
from celery_task.ownership import caused_by

__all__ = [
    "AppTask",
    "BrokerUnavailableException",
    "async_task",
    "call_broker",
    "caused_by",
    "celery_app",
    "run_every",
]
